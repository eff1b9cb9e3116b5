"""Total coding rate (Ma et al., TPAMI 2007; MCR², Yu et al., NeurIPS 2020): ``−½·logdet(I + D/(N·eps)·ZᵀZ)``.

Minimising it *expands* the representation (it is the negative coding rate, as EMP-SSL uses it).
There is no Triton kernel: the work is a batched Gram (cuBLAS) and a batched Cholesky
(cuSOLVER), so every backend runs ``coding_rate_fwd_torch`` — Sylvester's identity
logdet(I_D + a·ZᵀZ) = logdet(I_N + a·ZZᵀ) on the smaller side, all views in one Cholesky.

Layers, in order: ``coding_rate_fwd_torch``, ``CodingRateFunction``, ``total_coding_rate``,
``TotalCodingRate``, ``total_coding_rate_reference``.
"""

from __future__ import annotations

import torch
from torch import nn

from .._checks import check_matrix, check_positive, stack_views
from .._numerics import acc_dtype, coding_rates
from ..backend import check_backend, resolve_backend
from ._common import creating_graph, differentiable_grads

__all__ = ["TotalCodingRate", "total_coding_rate", "total_coding_rate_reference"]


def coding_rate_fwd_torch(z: torch.Tensor, eps: float, compute_grad: bool):
    """Per-view coding rates (V,) of (V, N, D) ``z`` and (if ``compute_grad``) d rate_v/dZ_v."""
    return coding_rates(z, eps, compute_grad)


class CodingRateFunction(torch.autograd.Function):
    """Per-view coding rates (V,) of a (V, N, D) tensor."""

    @staticmethod
    def forward(ctx, z, eps):
        rates, grad = coding_rate_fwd_torch(z, eps, ctx.needs_input_grad[0])
        ctx.save_for_backward(grad, z)  # z: for the double-backward path only
        ctx.eps = eps
        return rates

    @staticmethod
    def backward(ctx, grad_out):
        grad, z = ctx.saved_tensors
        if not ctx.needs_input_grad[0]:
            return None, None
        if creating_graph():  # create_graph=True: a gradient that is itself differentiable
            acc, eps = acc_dtype(z.dtype), ctx.eps
            (dz,) = differentiable_grads(lambda x: coding_rates_differentiable(x.to(acc), eps), (z,), grad_out, (True,))
            return dz, None
        return grad_out.to(grad.dtype)[:, None, None] * grad, None


def coding_rates_differentiable(z: torch.Tensor, eps: float) -> torch.Tensor:
    """Per-view rates of (V, N, D) ``z`` with differentiable torch ops (the double-backward path).

    −½·logdet(I + a·G), a = D/(N·eps), G the smaller of ZZᵀ (N×N) and ZᵀZ (D×D) — Sylvester's
    identity, as the fused path; ``torch.logdet`` is twice differentiable.
    """
    _, n, d = z.shape
    gram = z @ z.mT if n <= d else z.mT @ z
    eye = torch.eye(gram.shape[-1], dtype=z.dtype, device=z.device)
    return -0.5 * torch.logdet(eye + (d / (n * eps)) * gram)


def total_coding_rate(z: torch.Tensor, *, eps: float = 0.2, backend: str = "auto") -> torch.Tensor:
    """Total coding rate ``−½·logdet(I + D/(N·eps)·ZᵀZ)`` (Ma et al. 2007; MCR², Yu et al. 2020).

    ``z`` is one (N, D) view, or (V, N, D) views, whose coding rates are averaged. Computed as
    logdet(I_N + a·ZZᵀ) when N ≤ D (Sylvester's identity), all views in one batched Cholesky.
    Minimising it *expands* the representation (it is the negative coding rate).
    """
    if isinstance(z, torch.Tensor) and z.dim() == 2:
        views = check_matrix(z, "z", min_rows=1)[None]
    else:
        views = stack_views(z, "z")
    check_positive(eps, "eps")
    if resolve_backend(backend, views.device) == "reference":
        return torch.stack([total_coding_rate_reference(view, eps) for view in views]).mean()
    return CodingRateFunction.apply(views, float(eps)).mean()


class TotalCodingRate(nn.Module):
    """``−½·logdet(I + D/(N·eps)·ZᵀZ)``; see ``total_coding_rate``. As ``−lightly``'s ``tcr_loss``."""

    def __init__(self, eps: float = 0.2, backend: str = "auto"):
        super().__init__()
        self.eps = check_positive(eps, "eps")
        self.backend = check_backend(backend)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return total_coding_rate(z, eps=self.eps, backend=self.backend)


def total_coding_rate_reference(z: torch.Tensor, eps: float = 0.2) -> torch.Tensor:
    """Total coding rate −½·logdet(I_D + D/(N·eps)·ZᵀZ) of one (N, D) view (textbook D×D logdet).

    As in tsb0601/EMP-SSL main.py::TotalCodingRate (which takes W = Zᵀ).
    """
    w = z.T
    p, m = w.shape
    identity = torch.eye(p, device=z.device, dtype=z.dtype)
    scalar = p / (m * eps)
    return -torch.logdet(identity + scalar * w.matmul(w.T)) / 2.0
