"""TiCo (Zhu, Moraes & Liu, 2022, arXiv:2206.10698), with lightly's ``TiCoLoss`` semantics.

Rows are L2-normalised; ``C' = β·cov + (1−β)·ẑ_aᵀẑ_a/N`` (detached);
``loss = 1 − mean_n⟨ẑ_a, ẑ_b⟩ + ρ·mean_n ẑ_a C' ẑ_aᵀ``.

Layers, in order: ``tico_fwd_torch`` (torch backend; contract of
``sslfast.kernels.tico.tico_fwd``), ``TiCoFunction``, ``tico_loss``, ``TiCoLoss``,
``tico_loss_reference``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .._checks import check_int, check_nonnegative, check_pair, check_prob
from .._numerics import NORM_EPS, acc_dtype, normalize_backward, normalize_rows
from ..backend import check_backend, resolve_backend
from ..distributed import check_gather_distributed, gather_pair
from ._common import creating_graph, differentiable_grads, scaled

__all__ = ["TiCoLoss", "tico_loss", "tico_loss_reference"]


def tico_fwd_torch(z_a, z_b, cov, beta: float, rho: float, compute_grad: bool):
    """TiCo loss, gradients and the updated running covariance C' = βC + (1−β)·UaᵀUa/N.

    The loss uses C' (as lightly); C' is a constant for the gradient (B is detached).
    """
    acc = torch.promote_types(acc_dtype(z_a.dtype), cov.dtype)
    za, zb = z_a.to(acc), z_b.to(acc)
    n = za.shape[0]
    ua, na = normalize_rows(za)  # overflow-safe F.normalize and ‖z‖ (sslfast._numerics)
    ub, nb = normalize_rows(zb)
    new_cov = torch.addmm(cov.to(acc), ua.T, ua, beta=beta, alpha=(1 - beta) / n)
    p = ua @ new_cov
    loss = 1 - (ua * ub).sum() / n + (rho / n) * (p * ua).sum()
    if not compute_grad:
        return loss, z_a.new_empty(0), z_b.new_empty(0), new_cov.to(cov.dtype)
    gua = (2 * rho * p - ub) / n  # C' symmetric: d(uCuᵀ)/du = 2uC
    gub = -ua / n
    ga = normalize_backward(gua, ua, na, NORM_EPS)
    gb = normalize_backward(gub, ub, nb, NORM_EPS)
    return loss, ga.to(z_a.dtype), gb.to(z_b.dtype), new_cov.to(cov.dtype)


def _tico_fwd(backend: str):
    """The forward+gradient launcher of a resolved backend: the Triton op or its torch twin."""
    if backend == "triton":
        from sslfast.kernels.tico import tico_fwd  # triton is optional: imported on first use

        return tico_fwd
    return tico_fwd_torch


class TiCoFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z_a, z_b, cov, beta, rho, backend):
        compute_grad = ctx.needs_input_grad[0] or ctx.needs_input_grad[1]
        loss, ga, gb, new_cov = _tico_fwd(backend)(z_a, z_b, cov, beta, rho, compute_grad)
        # For the double-backward path only: the inputs and C' (the loss's covariance, a constant for
        # the gradient). Not ``cov``: TiCoLoss overwrites its buffer in place right after this forward.
        ctx.save_for_backward(ga, gb, z_a, z_b, new_cov)
        ctx.rho = rho
        ctx.mark_non_differentiable(new_cov)
        return loss, new_cov

    @staticmethod
    def backward(ctx, grad_out, _grad_cov):
        ga, gb, z_a, z_b, new_cov = ctx.saved_tensors
        need = ctx.needs_input_grad
        if creating_graph():  # create_graph=True: a gradient that is itself differentiable
            acc, rho = torch.promote_types(acc_dtype(z_a.dtype), new_cov.dtype), ctx.rho
            # beta = 1 makes the reference's C' exactly the saved one (its batch term is detached anyway)
            da, db = differentiable_grads(
                lambda a, b: tico_loss_reference(a.to(acc), b.to(acc), new_cov.to(acc), 1.0, rho)[0],
                (z_a, z_b),
                grad_out,
                need[:2],
            )
            return da, db, None, None, None, None
        return scaled(grad_out, ga, need[0]), scaled(grad_out, gb, need[1]), None, None, None, None


def tico_loss(
    z_a: torch.Tensor, z_b: torch.Tensor, cov: torch.Tensor, *, beta: float = 0.9, rho: float = 8.0,
    gather_distributed: bool = False, backend: str = "auto",
) -> tuple[torch.Tensor, torch.Tensor]:
    """TiCo loss (Zhu, Moraes & Liu, 2022, arXiv:2206.10698), lightly's semantics.

    Rows are L2-normalised; ``C' = β·cov + (1−β)·ẑ_aᵀẑ_a/N`` (detached);
    ``loss = 1 − mean_n⟨ẑ_a, ẑ_b⟩ + ρ·mean_n ẑ_a C' ẑ_aᵀ``. Returns ``(loss, C')``: pass C' back in
    as ``cov`` on the next step (``TiCoLoss`` does this with a registered buffer).
    """
    check_pair(z_a, z_b)
    d = z_a.shape[1]
    if not isinstance(cov, torch.Tensor) or cov.shape != (d, d):
        seen = tuple(cov.shape) if isinstance(cov, torch.Tensor) else type(cov).__name__
        raise ValueError(f"cov must be a ({d}, {d}) tensor matching z_a's D={d}, got {seen}")
    if cov.device != z_a.device:
        raise ValueError(f"cov must be on z_a's device {z_a.device}, got {cov.device}")
    if not cov.is_floating_point():
        raise TypeError(f"cov must be a floating-point tensor, got {cov.dtype}")
    beta = check_prob(beta, "beta")
    check_nonnegative(rho, "rho")
    check_gather_distributed(gather_distributed, check_available=False)
    z_a, z_b = gather_pair(z_a, z_b, gather_distributed)
    backend = resolve_backend(backend, z_a.device)
    if backend == "reference":
        return tico_loss_reference(z_a, z_b, cov, beta, rho)
    return TiCoFunction.apply(z_a, z_b, cov.detach(), float(beta), float(rho), backend)


class TiCoLoss(nn.Module):
    """TiCo loss with lightly's semantics; the running covariance ``C`` is a registered buffer.

    ``C`` is saved in ``state_dict`` (lightly keeps it as a plain attribute). It is allocated at
    the first forward (zeros, D×D, fp32 or fp64 for fp64 inputs) unless ``dim`` is given, and
    updated in place, so a compiled step has no graph break on the update.
    """

    def __init__(
        self,
        beta: float = 0.9,
        rho: float = 8.0,
        gather_distributed: bool = False,
        backend: str = "auto",
        dim: int | None = None,
    ):
        super().__init__()
        self.beta = check_prob(beta, "beta")
        self.rho = check_nonnegative(rho, "rho")
        self.gather_distributed = check_gather_distributed(gather_distributed)
        self.backend = check_backend(backend)
        size = 0 if check_int(dim, "dim", allow_none=True) is None else dim
        self.register_buffer("C", torch.zeros(size, size))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        saved = state_dict.get(prefix + "C")
        if saved is not None and saved.shape != self.C.shape:
            self.C = torch.zeros_like(saved, device=self.C.device)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, z_a: torch.Tensor, z_b: torch.Tensor, update_covariance_matrix: bool = True) -> torch.Tensor:
        d = z_a.shape[-1] if isinstance(z_a, torch.Tensor) else None
        if self.C.numel() and d is not None and z_a.dim() == 2 and d != self.C.shape[0]:
            raise ValueError(
                f"TiCoLoss holds a {self.C.shape[0]}x{self.C.shape[0]} covariance C (dim={self.C.shape[0]}, or the "
                f"first batch it saw), got z_a with D={d}; use one TiCoLoss per embedding width"
            )
        if self.C.numel() == 0 and d is not None:
            dtype = torch.float64 if z_a.dtype == torch.float64 else torch.float32
            self.C = torch.zeros(d, d, device=z_a.device, dtype=dtype)
        loss, new_cov = tico_loss(
            z_a,
            z_b,
            self.C,
            beta=self.beta,
            rho=self.rho,
            gather_distributed=self.gather_distributed,
            backend=self.backend,
        )
        if update_covariance_matrix:
            with torch.no_grad():
                self.C.copy_(new_cov)
        return loss


def tico_loss_reference(
    z_a: torch.Tensor, z_b: torch.Tensor, cov: torch.Tensor, beta: float = 0.9, rho: float = 8.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """TiCo with lightly's TiCoLoss semantics (textbook). Returns ``(loss, new_cov)``;
    ``cov`` is the running (D, D) covariance (zeros at the start)."""
    z_a = F.normalize(z_a, dim=1)
    z_b = F.normalize(z_b, dim=1)
    b = torch.mm(z_a.T, z_a).detach() / z_a.shape[0]
    c = beta * cov + (1 - beta) * b
    invariance = 1.0 - (z_a * z_b).sum(dim=1).mean()
    contrast = rho * (torch.mm(z_a, c) * z_a).sum(dim=1).mean()
    return invariance + contrast, c.detach()
