"""Optimizers and learning-rate schedules for SSL pre-training.

- ``LARS``: You et al., "Large Batch Training of Convolutional Networks" (2017), in the form of
  the official SimCLR / Barlow Twins / VICReg code, written with ``torch._foreach_*`` ops so a
  step is a handful of multi-tensor kernels instead of a Python loop of small ones.
- ``build_optimizer``: LARS, or torch's AdamW / SGD with ``fused=True`` on CUDA (foreach on CPU).
- ``warmup_cosine``: linear warm-up then cosine decay (Loshchilov & Hutter, SGDR, 2017), as a
  pure function of the step that also accepts a tensor step inside a compiled training step.

Optimizer options are plain numbers and bools (no filter callables) so that
``optimizer.state_dict()`` loads with ``torch.load(..., weights_only=True)``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import torch
from torch import nn

__all__ = ["LARS", "build_optimizer", "param_groups_for_ssl", "set_lr", "warmup_cosine"]


def _is_no_decay(name: str, p: torch.Tensor, skip_names: Iterable[str]) -> bool:
    # Biases and norm scales/shifts are the 1-d parameters (BN, LN, Linear/Conv bias).
    return p.ndim <= 1 or any(name == s or name.endswith("." + s) for s in skip_names)


def param_groups_for_ssl(
    model: nn.Module,
    weight_decay: float,
    *,
    skip_names: Iterable[str] = (),
    static_lr: Iterable[str] = (),
    bias_lr_scale: float = 1.0,
    head_lr_scale: Mapping[str, float] | None = None,
) -> list[dict]:
    """Parameter groups: weights get ``weight_decay`` and LARS adaptation; biases and norm
    parameters (every parameter with ndim <= 1, plus names in ``skip_names``) get neither, as in
    the SimCLR, Barlow Twins and VICReg code. Frozen parameters are left out.

    ``static_lr``: names of submodules (``"predictor"``) whose parameters go into their own
    groups marked ``static_lr=True``: ``set_lr`` leaves their rate at the base rate (no warm-up,
    no decay), as solo-learn's SimSiam predictor (``learnable_params``' ``static_lr``; the
    SimSiam paper, Sec. 4.4, "a fixed lr for the predictor"). Every group carries the key.

    ``bias_lr_scale``: the biases' and norm parameters' rate as a fraction of the weights' (the
    group key ``lr_scale``, applied by ``set_lr``): 1 in solo-learn; the official Barlow Twins
    code trains them at 0.0048 / 0.2 = 0.024 of the weights' rate.

    ``head_lr_scale``: submodule name -> rate multiplier for its parameters (``{"predictor": 10}``:
    the BYOL paper's predictor learning-rate multiplier ablation; Tian et al., ICML 2021, on why a
    faster predictor helps non-contrastive methods). It multiplies ``bias_lr_scale``. Empty groups
    are dropped.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    _check_number(weight_decay, "weight_decay", allow_zero=True)
    _check_number(bias_lr_scale, "bias_lr_scale")
    skip = tuple(skip_names)
    static = tuple(static_lr)
    heads = dict(head_lr_scale or {})
    for head, scale in heads.items():
        _check_number(scale, f"head_lr_scale[{head!r}]")
    known = {name for name, _ in model.named_modules()}
    for arg, names in (("static_lr", static), ("head_lr_scale", tuple(heads))):
        missing = [s for s in names if not s or s not in known]  # "" is the model itself, not a head
        if missing:
            raise ValueError(f"{arg} names submodules {missing} that {type(model).__name__} does not have")

    def in_head(name: str, head: str) -> bool:
        return name.startswith(head + ".")

    # (decay, static, rate multiplier) -> parameters; groups ordered as before head_lr_scale existed
    # (decayed, then not; static groups last), so older checkpoints' optimizer states still load
    buckets: dict[tuple[bool, bool, float], list] = {}
    for name, p in model.named_parameters():
        if p.requires_grad:
            decay = not _is_no_decay(name, p, skip)
            scale = 1.0 if decay else float(bias_lr_scale)
            for head, head_scale in heads.items():
                if in_head(name, head):
                    scale *= float(head_scale)
            fixed = any(in_head(name, head) for head in static)
            buckets.setdefault((decay, fixed, scale), []).append(p)
    return [
        {"params": params, "weight_decay": float(weight_decay) if decay else 0.0, "lars_adaptation": decay}
        | {"static_lr": fixed, "lr_scale": scale}
        for (decay, fixed, scale), params in sorted(buckets.items(), key=lambda kv: (kv[0][1], not kv[0][0], kv[0][2]))
    ]


def _check_number(value, name: str, allow_zero: bool = False) -> float:
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = float(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    if value < 0 or (value == 0 and not allow_zero):
        raise ValueError(f"{name} must be {'>= 0' if allow_zero else '> 0'}, got {value!r}")
    return float(value)


class LARS(torch.optim.Optimizer):
    r"""LARS with momentum, following the SimCLR / Barlow Twins / VICReg official code.

    Per parameter tensor w with gradient g, in groups with ``lars_adaptation=True``::

        u     = g + weight_decay * w
        q     = eta * ||w|| / ||u||
        q     = min(q / lr, 1)           (only with clip_lr=True: LARC "clip" mode, solo-learn)
        q     = 1                        (instead, if ||w|| = 0 or ||u|| = 0: not clipped either)
        mu    = momentum * mu + q * u
        w     = w - lr * mu

    Groups with ``lars_adaptation=False`` use q = 1 (and, from ``param_groups_for_ssl``,
    weight_decay = 0): plain momentum SGD for biases and norm parameters.
    ``eta=0.001`` is the Barlow Twins / VICReg / SimCLR value; solo-learn's CIFAR recipes use
    ``eta=0.02, clip_lr=True``. ``lr`` may be a 0-d tensor, so a compiled step can update it in
    place without recompiling.
    """

    def __init__(
        self,
        params,
        lr: float | torch.Tensor,
        *,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        eta: float = 0.001,
        clip_lr: bool = False,
        lars_adaptation: bool = True,
    ):
        _check_number(lr, "lr", allow_zero=True)  # 0 is a valid schedule start
        _check_number(momentum, "momentum", allow_zero=True)
        _check_number(weight_decay, "weight_decay", allow_zero=True)
        _check_number(eta, "eta")
        if momentum >= 1:
            raise ValueError(f"momentum must be in [0, 1), got {momentum!r}")
        defaults = dict(
            lr=lr,
            momentum=momentum,
            weight_decay=weight_decay,
            eta=eta,
            clip_lr=bool(clip_lr),
            lars_adaptation=bool(lars_adaptation),
        )
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            if any(p.grad.is_sparse for p in params):
                raise RuntimeError("LARS does not support sparse gradients")
            grads = [p.grad for p in params]
            bufs = []
            for p in params:
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                bufs.append(state["momentum_buffer"])
            _lars_update(
                params,
                grads,
                bufs,
                lr=group["lr"],
                momentum=group["momentum"],
                weight_decay=group["weight_decay"],
                eta=group["eta"],
                clip_lr=group["clip_lr"],
                adapt=group["lars_adaptation"],
            )
        return loss


def _lars_update(params, grads, bufs, *, lr, momentum, weight_decay, eta, clip_lr, adapt) -> None:
    # u = g + wd * w, as fresh tensors so p.grad is never modified.
    if weight_decay != 0:
        updates = torch._foreach_add(grads, params, alpha=weight_decay)
    else:
        updates = list(grads)
    if adapt:
        w_norm = torch.stack(torch._foreach_norm(params))
        u_norm = torch.stack(torch._foreach_norm(updates))
        # Evaluated on the device for all tensors at once: no host sync, no per-tensor branch.
        trust = eta * w_norm / u_norm
        if clip_lr:
            trust = torch.clamp(trust / lr, max=1.0)
        # a zero-norm tensor keeps q = 1, unclipped (solo-learn clips inside its norm check only)
        q = torch.where((w_norm > 0) & (u_norm > 0), trust, torch.ones_like(w_norm))
        q_list = q.unbind(0)
        if weight_decay != 0:
            torch._foreach_mul_(updates, q_list)
        else:
            updates = torch._foreach_mul(updates, q_list)
    if momentum != 0:
        torch._foreach_mul_(bufs, momentum)
        torch._foreach_add_(bufs, updates)
        updates = bufs
    if isinstance(lr, torch.Tensor):
        torch._foreach_sub_(params, torch._foreach_mul(updates, lr))
    else:
        torch._foreach_add_(params, updates, alpha=-lr)


def build_optimizer(
    name: str,
    params,
    lr: float | torch.Tensor,
    weight_decay: float = 0.0,
    *,
    momentum: float = 0.9,
    betas: tuple[float, float] = (0.9, 0.999),
    eta: float = 0.001,
    clip_lr: bool = False,
    skip_names: Iterable[str] = (),
    static_lr: Iterable[str] = (),
    bias_lr_scale: float = 1.0,
    head_lr_scale: Mapping[str, float] | None = None,
) -> torch.optim.Optimizer:
    """``"lars"`` | ``"adamw"`` | ``"sgd"`` over ``params``.

    ``params`` is an nn.Module (split with ``param_groups_for_ssl``: no decay on biases and
    norms; ``static_lr`` submodules keep ``lr`` throughout; biases and norms at ``bias_lr_scale``
    times the rate; ``head_lr_scale`` submodules at their multiple of it), an iterable of
    parameters, or a list of param-group dicts. AdamW and SGD use ``fused=True`` when every
    parameter is on CUDA and ``foreach=True`` otherwise.
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, got {type(name).__name__}")
    key = name.lower()
    if key not in ("lars", "adamw", "sgd"):
        raise ValueError(f"unknown optimizer {name!r}; valid names: adamw, lars, sgd")
    _check_number(weight_decay, "weight_decay", allow_zero=True)
    if isinstance(params, nn.Module):
        params = param_groups_for_ssl(
            params,
            weight_decay,
            skip_names=skip_names,
            static_lr=static_lr,
            bias_lr_scale=bias_lr_scale,
            head_lr_scale=head_lr_scale,
        )
        for g in params:
            if g["static_lr"] or g["lr_scale"] != 1.0:
                # its own rate (a tensor of its own: set_lr fills the other groups' shared one)
                g["lr"] = lr * g["lr_scale"]
            if key == "lars" and clip_lr and g["lars_adaptation"] and g["lr_scale"] != 1.0:
                # clipped LARS steps by min(eta·|w|/|u|, lr)·u: a rate multiplier alone is lost
                # wherever the trust ratio binds. Scaling eta with it multiplies every step of the
                # group by lr_scale, as a rate multiplier does in unclipped LARS (BYOL's optimiser).
                g["eta"] = eta * g["lr_scale"]
    else:
        params = list(params)
    if not params:
        raise ValueError("params is empty: no parameters to optimise")
    tensors = [p for g in params for p in (g["params"] if isinstance(g, dict) else [g])]
    if key == "lars":
        return LARS(params, lr, momentum=momentum, weight_decay=weight_decay, eta=eta, clip_lr=clip_lr)
    on_cuda = all(p.is_cuda for p in tensors)
    # torch's foreach AdamW/SGD reject a tensor lr off CUDA; the single-tensor path accepts it.
    impl = {"fused": True} if on_cuda else {"foreach": not isinstance(lr, torch.Tensor)}
    if key == "adamw":
        return torch.optim.AdamW(params, lr=lr, betas=betas, weight_decay=weight_decay, **impl)
    return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay, **impl)


def warmup_cosine(
    step, total_steps: int, warmup_steps: int, base_lr: float, final_lr: float = 0.0, *, start_lr: float = 0.0
):
    r"""Learning rate at ``step`` (0-based): linear warm-up, then cosine decay.

    .. math::
        lr(s) = start + (base - start)\,s/W                                 \quad s < W \\
        lr(s) = final + (base - final)\,\tfrac12\bigl(1 + \cos(\pi\,\tfrac{s - W}{T - W})\bigr) \quad W \le s

    with s clamped to T, so lr(0) = start_lr, lr(W) = base_lr, lr(T) = final_lr and later steps
    stay at final_lr (the VICReg / Barlow Twins schedule, there with start_lr = 0).

    The warm-up keeps its slope at any budget: ``warmup_steps`` may exceed ``total_steps``, and
    then the whole run is warm-up and never reaches ``base_lr`` (as solo-learn's
    LinearWarmupCosineAnnealingLR). Squeezing a 10-epoch warm-up into a 2-epoch run instead
    ramps to the full rate in a handful of steps, which diverges VICReg (issue 12).
    ``step`` may be an int (returns a float) or a tensor (returns a float32 tensor on its
    device, with no host sync: usable inside ``torch.compile``).
    """
    total_steps = int(total_steps)
    warmup_steps = int(warmup_steps)
    if total_steps < 1:
        raise ValueError(f"total_steps must be >= 1, got {total_steps}")
    if warmup_steps < 0:
        raise ValueError(f"warmup_steps must be >= 0, got {warmup_steps}")
    decay_steps = max(total_steps - warmup_steps, 1)
    if isinstance(step, torch.Tensor):
        s = step.to(torch.float32)
        warm = start_lr + (base_lr - start_lr) * s / max(warmup_steps, 1)
        progress = torch.clamp((s - warmup_steps) / decay_steps, 0.0, 1.0)
        cos = final_lr + (base_lr - final_lr) * 0.5 * (1.0 + torch.cos(math.pi * progress))
        return torch.where(s < warmup_steps, warm, cos)
    if isinstance(step, bool) or not isinstance(step, int):
        raise TypeError(f"step must be an int or a tensor, got {type(step).__name__}")
    if step < warmup_steps:
        return start_lr + (base_lr - start_lr) * step / warmup_steps
    progress = min((step - warmup_steps) / decay_steps, 1.0)
    return final_lr + (base_lr - final_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


def set_lr(optimizer: torch.optim.Optimizer, lr) -> None:
    """Write ``lr`` (times the group's ``lr_scale``, default 1) into every group except
    ``static_lr`` ones (``param_groups_for_ssl``); a tensor-valued group lr is updated in place
    (no recompile)."""
    for group in optimizer.param_groups:
        if group.get("static_lr", False):
            continue
        scale = group.get("lr_scale", 1.0)
        value = lr if scale == 1.0 else lr * scale
        if isinstance(group["lr"], torch.Tensor):
            group["lr"].fill_(value)
        else:
            group["lr"] = float(value)
