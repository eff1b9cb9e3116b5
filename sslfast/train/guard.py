"""Divergence guard: a device-side record of whether every loss so far was finite.

``LossGuard.track(loss)`` runs a handful of tiny device ops per step and never reads anything on
the host, so it adds no synchronisation to the step. ``LossGuard.read()`` copies the record to
the host in one transfer; the trainer calls it only where it syncs already (the logging step,
the end of an epoch, before a checkpoint), and the speed run at the end of each epoch, outside
its training clock. A run whose loss went NaN/inf stops there with ``TrainingDiverged``, which
names the first non-finite step and the last finite loss.

Before a checkpoint the trainer also checks the weights and buffers themselves
(``nonfinite_state``): a finite loss can be followed by an update that overflows, and such
weights must never be saved.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["GuardRecord", "LossGuard", "TrainingDiverged", "nonfinite_state"]


class TrainingDiverged(RuntimeError):
    """The training loss became non-finite (or the weights did); ``summary`` is what was written."""

    def __init__(self, message: str, summary: dict | None = None):
        super().__init__(message)
        self.summary = summary


@dataclass(frozen=True)
class GuardRecord:
    """What ``LossGuard.read`` returns (host values)."""

    finite: bool  # every tracked loss was finite
    loss: float  # the latest loss (may be NaN/inf)
    first_bad_step: int | None  # 1-based step whose loss was the first non-finite one
    last_finite_loss: float | None  # the loss of the last step before that (None: none was finite)
    last_finite_step: int | None

    def describe(self) -> str:
        if self.finite:
            return "all losses finite"
        last = (
            f"last finite loss {self.last_finite_loss:.6g} at step {self.last_finite_step}"
            if self.last_finite_step
            else "no finite loss before it"
        )
        return f"the loss became non-finite ({self.loss}) at step {self.first_bad_step} ({last})"


class LossGuard:
    """Accumulates ``finite``, the first non-finite step and the last finite loss on the device."""

    def __init__(self, device: torch.device | str, step: int = 0):
        self.reset(device, step)

    def reset(self, device: torch.device | str | None = None, step: int = 0) -> None:
        """Forget the record; the next tracked loss is step ``step + 1``."""
        device = self._state.device if device is None else torch.device(device)
        # [all finite, first bad step, last finite loss, last finite step, step count, latest loss]
        # in one float64 tensor: read back with a single copy
        self._state = torch.tensor([1.0, 0.0, math.nan, 0.0, float(step), math.nan], dtype=torch.float64, device=device)

    @torch.no_grad()
    def track(self, loss: torch.Tensor) -> None:
        """Record this step's loss (a device tensor); no host sync."""
        s = self._state
        value = loss.detach().to(torch.float64).reshape(-1).sum()  # a scalar loss; sum() makes NaN stay NaN
        s[4] += 1
        ok = torch.isfinite(value)
        was = s[0] > 0
        now = was & ok
        s[1] = torch.where(was & ~ok, s[4], s[1])
        s[2] = torch.where(now, value, s[2])
        s[3] = torch.where(now, s[4], s[3])
        s[0] = now.to(torch.float64)
        s[5] = value

    def read(self) -> GuardRecord:
        """The record on the host (one device-to-host copy: a sync)."""
        finite, first_bad, last_loss, last_step, _, loss = self._state.tolist()
        return GuardRecord(
            finite=finite > 0,
            loss=loss,
            first_bad_step=None if finite > 0 else int(first_bad),
            last_finite_loss=None if last_step == 0 else last_loss,
            last_finite_step=None if last_step == 0 else int(last_step),
        )


@torch.no_grad()
def nonfinite_state(module: nn.Module, optimizer: torch.optim.Optimizer | None = None) -> list[str]:
    """Names of the floating-point parameters and buffers of ``module`` (and tensors of the
    optimizer's state, e.g. momentum buffers) holding NaN or inf.

    One reduction per tensor and a single host read: run it where the trainer syncs anyway
    (before a checkpoint), not per step.
    """
    tensors = list(module.named_parameters()) + list(module.named_buffers())
    if optimizer is not None:
        pname = {id(p): n for n, p in module.named_parameters()}
        for p, st in optimizer.state.items():
            for key, v in st.items():
                if isinstance(v, torch.Tensor):
                    tensors.append((f"optimizer[{pname.get(id(p), '?')}].{key}", v))
    names, flags = [], []
    for name, t in tensors:
        if t.is_floating_point() and t.numel():
            names.append(name)
            flags.append(torch.isfinite(t).all())
    if not flags:
        return []
    ok = torch.stack(flags).tolist()
    return [n for n, good in zip(names, ok, strict=True) if not good]
