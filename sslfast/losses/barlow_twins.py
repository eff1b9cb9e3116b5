"""Barlow Twins (Zbontar, Jing, Misra, LeCun & Deny, ICML 2021, arXiv:2103.03230).

Each view is standardised with batch statistics (BatchNorm1d(affine=False): biased variance,
eps 1e-5); ``C = ẑ_aᵀẑ_b / N``; loss ``Σ_i (1 − C_ii)² + λ·Σ_{i≠j} C_ij²``.

Layers, in order: ``barlow_twins_fwd_torch`` (torch backend; contract of
``sslfast.kernels.barlow_twins.barlow_twins_fwd``), ``BarlowTwinsFunction``,
``barlow_twins_loss``, ``BarlowTwinsLoss``, ``barlow_twins_loss_reference``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .._checks import check_nonnegative, check_pair
from .._numerics import acc_dtype, column_scale, offdiag_cross
from ..backend import check_backend, resolve_backend
from ..distributed import check_gather_distributed, gather_pair
from ._common import creating_graph, differentiable_grads, off_diagonal, scaled

__all__ = ["BarlowTwinsLoss", "barlow_twins_loss", "barlow_twins_loss_reference"]

BN_EPS = 1e-5  # BatchNorm1d's default, as the official code


def standardise(z: torch.Tensor, eps: float = BN_EPS) -> tuple[torch.Tensor, torch.Tensor]:
    """BatchNorm1d(affine=False) in training mode: ``(ẑ, rstd)`` with the biased variance.

    Overflow-safe: with s the column's power-of-two scale and y = z/s (|y| < 2), std = hypot(s·σ_y, √eps)
    and ẑ = (y − ȳ)/hypot(σ_y, √eps/s): no square of z is formed, so 1e20 inputs in fp32 standardise
    as in fp64 (the variance 1e40 overflowed, rows collapsed to 0 and the loss became D).
    """
    s = column_scale(z)
    yc = z / s
    yc = yc.sub_(yc.mean(0))
    sd_y = yc.square().mean(0).sqrt()
    root_eps = z.new_full((), math.sqrt(eps))
    rstd = 1 / torch.hypot(s * sd_y, root_eps)
    return yc.div_(torch.hypot(sd_y, root_eps / s)), rstd


def standardise_backward(g: torch.Tensor, zhat: torch.Tensor, rstd: torch.Tensor) -> torch.Tensor:
    """Backward of ``standardise`` with batch statistics: rstd·(g − mean g − ẑ·mean(g·ẑ))."""
    return rstd * (g - g.mean(0) - zhat * (g * zhat).mean(0))


def barlow_twins_fwd_torch(z_a, z_b, lambda_param: float, compute_grad: bool):
    """Barlow Twins loss and (if ``compute_grad``) dL/dz_a, dL/dz_b; empty tensors otherwise."""
    acc = acc_dtype(z_a.dtype)
    n = z_a.shape[0]
    a, ra = standardise(z_a.to(acc))
    b, rb = standardise(z_b.to(acc))
    off, diag, ma, mb, gram = offdiag_cross(a, b, compute_grad)
    c = diag / n
    loss = (1 - c).square().sum() + (lambda_param / n**2) * off.to(acc)
    if not compute_grad:
        return loss, z_a.new_empty(0), z_b.new_empty(0)
    if gram:
        ma, mb = ma - b * diag, mb - a * diag
    on = (-2.0 / n) * (1 - c)
    ga = (2 * lambda_param / n**2) * ma + on * b
    gb = (2 * lambda_param / n**2) * mb + on * a
    return loss, standardise_backward(ga, a, ra).to(z_a.dtype), standardise_backward(gb, b, rb).to(z_b.dtype)


def _barlow_twins_fwd(backend: str):
    """The forward+gradient launcher of a resolved backend: the Triton op or its torch twin."""
    if backend == "triton":
        from sslfast.kernels.barlow_twins import barlow_twins_fwd  # triton is optional: imported on first use

        return barlow_twins_fwd
    return barlow_twins_fwd_torch


class BarlowTwinsFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z_a, z_b, lambda_param, backend):
        compute_grad = ctx.needs_input_grad[0] or ctx.needs_input_grad[1]
        loss, ga, gb = _barlow_twins_fwd(backend)(z_a, z_b, lambda_param, compute_grad)
        ctx.save_for_backward(ga, gb, z_a, z_b)  # inputs: for the double-backward path only
        ctx.lambda_param = lambda_param
        return loss

    @staticmethod
    def backward(ctx, grad_out):
        ga, gb, z_a, z_b = ctx.saved_tensors
        need = ctx.needs_input_grad
        if creating_graph():  # create_graph=True: a gradient that is itself differentiable
            acc, lam = acc_dtype(z_a.dtype), ctx.lambda_param
            da, db = differentiable_grads(
                lambda a, b: barlow_twins_loss_reference(a.to(acc), b.to(acc), lam), (z_a, z_b), grad_out, need[:2]
            )
            return da, db, None, None
        return scaled(grad_out, ga, need[0]), scaled(grad_out, gb, need[1]), None, None


def barlow_twins_loss(
    z_a: torch.Tensor, z_b: torch.Tensor, *, lambda_param: float = 5e-3, gather_distributed: bool = False,
    backend: str = "auto",
) -> torch.Tensor:
    """Barlow Twins loss (Zbontar et al., ICML 2021, arXiv:2103.03230).

    Each view is standardised with batch statistics (BatchNorm1d(affine=False): biased variance,
    eps 1e-5); ``C = ẑ_aᵀẑ_b / N``; loss ``Σ_i (1 − C_ii)² + λ·Σ_{i≠j} C_ij²``.
    With ``gather_distributed=True`` the statistics and C are over the *global* batch (the
    official SyncBatchNorm semantics), so gradients equal single-process gradients on the
    concatenated batch. lightly instead standardises per rank and averages C across ranks.
    """
    check_pair(z_a, z_b)
    check_nonnegative(lambda_param, "lambda_param")
    check_gather_distributed(gather_distributed, check_available=False)
    z_a, z_b = gather_pair(z_a, z_b, gather_distributed)
    backend = resolve_backend(backend, z_a.device)
    if backend == "reference":
        return barlow_twins_loss_reference(z_a, z_b, lambda_param)
    return BarlowTwinsFunction.apply(z_a, z_b, float(lambda_param), backend)


class BarlowTwinsLoss(nn.Module):
    """Barlow Twins loss; arguments as ``lightly.loss.BarlowTwinsLoss``. See ``barlow_twins_loss``."""

    def __init__(self, lambda_param: float = 5e-3, gather_distributed: bool = False, backend: str = "auto"):
        super().__init__()
        check_nonnegative(lambda_param, "lambda_param")
        self.lambda_param = lambda_param
        self.gather_distributed = check_gather_distributed(gather_distributed)
        self.backend = check_backend(backend)

    def forward(self, z_a: torch.Tensor, z_b: torch.Tensor) -> torch.Tensor:
        return barlow_twins_loss(
            z_a, z_b, lambda_param=self.lambda_param, gather_distributed=self.gather_distributed, backend=self.backend
        )


def barlow_twins_loss_reference(z_a: torch.Tensor, z_b: torch.Tensor, lambda_param: float = 5e-3) -> torch.Tensor:
    """Barlow Twins, as in facebookresearch/barlowtwins main.py::BarlowTwins (textbook, D×D).

    ``bn`` is BatchNorm1d(affine=False) in training mode: batch mean, biased variance, eps 1e-5.
    """
    n = z_a.shape[0]
    bn = lambda z: F.batch_norm(z, None, None, training=True, eps=BN_EPS)  # noqa: E731
    c = bn(z_a).T @ bn(z_b)
    c = c / n
    on_diag = torch.diagonal(c).add(-1).pow(2).sum()
    off_diag = off_diagonal(c).pow(2).sum()
    return on_diag + lambda_param * off_diag
