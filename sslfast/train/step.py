"""The training step: views on the device, one forward over all views, loss, backward,
optimizer step, schedule and EMA update.

What is compiled: ``torch.compile`` wraps the model forward + loss (under autocast), with
``fullgraph=True`` by default, so AOTAutograd also compiles the backward. Three parts stay
outside the compiled region, on purpose:
- view generation (``make_views``): the fused Triton view kernel on GPU, launched with per-step
  random parameters drawn from a per-step ``torch.Generator``;
- ``loss.backward()`` (dynamo cannot trace it without compiled autograd; the backward graph is
  compiled anyway);
- the optimizer step and EMA update: multi-tensor kernels already (fused AdamW/SGD on CUDA,
  foreach LARS, ``torch._foreach_*`` EMA). The learning rate is computed on the host from the
  integer step and written into a tensor lr in place, so there is no host sync and no recompile.
Loss values are returned as device tensors; nothing in the step reads them on the host. Each
loss is also folded into ``step.guard`` (``guard.LossGuard``), a device-side finite flag that the
trainer reads at the syncs it already makes (logging, epoch end, checkpoints).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import fields

import torch
from torch import nn

from .guard import LossGuard
from .optim import set_lr

__all__ = ["TrainStep", "make_train_step", "step_seed"]


def step_seed(seed: int, step: int) -> int:
    """Seed of the view generator at ``step``: views depend only on (seed, step), so a resumed
    run draws the same augmentations as an uninterrupted one."""
    return (int(seed) * 1_000_003 + int(step) * 7_919 + 12_345) % (2**63 - 1)


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def _slice_params(p, sl: slice):
    from ..data_pipelines import ViewParams

    return ViewParams(**{f.name: getattr(p, f.name)[sl] for f in fields(ViewParams)})


class TrainStep:
    """Callable training step; see ``make_train_step``. ``step`` counts completed steps."""

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        *,
        views: Sequence,
        schedule,
        compile: bool | str = False,
        mode: str | None = None,
        fullgraph: bool = True,
        amp_dtype: torch.dtype | str | None = "auto",
        channels_last: bool | str = "auto",
        cuda_graphs: bool = False,
        ema: Callable[[int], float] | None = None,
        seed: int = 0,
        augment_backend: str = "auto",
        world_size: int = 1,
        rank: int = 0,
    ):
        from ..data_pipelines import ViewSpec

        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}")
        views = list(views)
        if not views or not all(isinstance(v, ViewSpec) for v in views):
            raise TypeError(f"views must be a non-empty list of ViewSpec, got {[type(v).__name__ for v in views]}")
        if not callable(schedule):
            raise TypeError(f"schedule must be a callable step -> lr, got {type(schedule).__name__}")
        if ema is not None and not callable(ema):
            raise TypeError(f"ema must be None or a callable step -> tau, got {type(ema).__name__}")
        if not (isinstance(compile, bool) or isinstance(compile, str)):
            raise TypeError(f"compile must be a bool or a torch.compile backend name, got {compile!r}")
        self.model, self.optimizer, self.specs = model, optimizer, views
        self.schedule, self.ema = schedule, ema
        self.device = next(model.parameters()).device
        on_cuda = self.device.type == "cuda"
        if amp_dtype == "auto":
            amp_dtype = torch.bfloat16 if on_cuda else None
        if amp_dtype not in (None, torch.bfloat16, torch.float16):
            raise ValueError(f"amp_dtype must be 'auto', None, torch.bfloat16 or torch.float16, got {amp_dtype!r}")
        self.amp_dtype = amp_dtype
        self.channels_last = on_cuda if channels_last == "auto" else bool(channels_last)
        if self.channels_last:
            model.to(memory_format=torch.channels_last)
        if cuda_graphs:
            if not on_cuda:
                raise ValueError(f"cuda_graphs=True needs a CUDA model, got device {self.device}")
            if not compile:
                raise ValueError("cuda_graphs=True captures the compiled step: pass compile=True as well")
            mode = mode or "reduce-overhead"  # inductor's CUDA-graph trees
        self.cuda_graphs = cuda_graphs
        self.seed, self.augment_backend = int(seed), augment_backend
        self.world_size, self.rank = int(world_size), int(rank)
        self.step = 0
        # divergence guard: a device-side finite flag per step, read only at existing syncs
        self.guard = LossGuard(self.device)
        self._forward = self._eager_forward
        if compile:
            backend = "inductor" if compile is True else compile
            kw = {"mode": mode} if backend == "inductor" and mode else {}
            self._forward = torch.compile(self._eager_forward, backend=backend, fullgraph=fullgraph, **kw)

    def _autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def _eager_forward(self, views: list[torch.Tensor]) -> torch.Tensor:
        with self._autocast():
            return self.model(views)

    def make_views(self, batch: torch.Tensor, step: int | None = None) -> list[torch.Tensor]:
        """Views of this rank's ``batch`` (uint8 NCHW) at ``step``, reproducible from (seed, step).

        Distributed: parameters are drawn for the *global* batch (world_size × B rows) and this
        rank keeps its rows, so the views equal the single-process views of the concatenated batch.
        """
        from ..data_pipelines import make_views, sample_params

        step = self.step if step is None else step
        batch = batch.to(self.device, non_blocking=True)
        gen = torch.Generator(device=self.device).manual_seed(step_seed(self.seed, step))
        if self.world_size == 1:
            views = make_views(batch, self.specs, generator=gen, backend=self.augment_backend)
        else:
            n = batch.shape[0]
            rows = slice(self.rank * n, (self.rank + 1) * n)
            params = [
                _slice_params(sample_params(s, n * self.world_size, gen, self.device, image_size=batch.shape[2:]), rows)
                for s in self.specs
            ]
            views = make_views(batch, self.specs, backend=self.augment_backend, params=params)
        # make_views writes channels_last; an NCHW model wants NCHW inputs (and grads DDP's buckets match)
        return views if self.channels_last else [v.contiguous() for v in views]

    def run_views(self, views: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        """One optimisation step on prepared views; returns device tensors (no host sync)."""
        lr = self.schedule(self.step)
        set_lr(self.optimizer, lr)  # host float into the tensor lr in place: no sync, no recompile
        if self.cuda_graphs:
            torch.compiler.cudagraph_mark_step_begin()
        loss = self._forward(views)
        self.guard.track(loss)  # device ops only: no host sync
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self.ema is not None:
            _unwrap(self.model).momentum_update(self.ema(self.step))
        self.step += 1
        # clone: CUDA-graph outputs are overwritten by the next replay
        return {"loss": loss.detach().clone() if self.cuda_graphs else loss.detach()}

    def __call__(self, batch: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.run_views(self.make_views(batch))


def make_train_step(model: nn.Module, optimizer: torch.optim.Optimizer, **options) -> TrainStep:
    """``step(batch_uint8) -> {"loss": device tensor}`` for an ``SSLModel`` (or its DDP wrapper).

    ``options`` are ``TrainStep``'s keywords, with ``compile=True`` by default.

    views: the ``ViewSpec`` list (``data_pipelines.preset``). schedule: ``step -> lr`` (e.g. a
    ``functools.partial`` of ``optim.warmup_cosine``), applied before each optimizer step.
    compile: True (inductor), False (eager) or a backend name such as ``"aot_eager"``; ``mode``
    is inductor's mode ("max-autotune", "reduce-overhead"...). amp_dtype / channels_last:
    ``"auto"`` = bf16 autocast and channels_last on CUDA, fp32 NCHW elsewhere. cuda_graphs:
    capture with inductor's CUDA-graph trees (``mode="reduce-overhead"``). ema: ``step -> tau``
    for the momentum encoder (``methods.momentum_tau``), None for methods without one.
    """
    options.setdefault("compile", True)
    return TrainStep(model, optimizer, **options)
