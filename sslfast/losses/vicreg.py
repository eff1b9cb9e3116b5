"""VICReg (Bardes, Ponce & LeCun, ICLR 2022, arXiv:2105.04906).

``λ·MSE(z_a, z_b) + μ·½·Σ_v mean_d relu(1 − sqrt(Var_d(z_v) + eps)) + ν·Σ_v Σ_{i≠j} Cov(z_v)_ij² / D``
with unbiased variance and (N−1)-normalised covariance, as the official code and lightly.

Layers, in order: ``vicreg_fwd_torch`` (the torch backend: loss and dL/dz in one pass, the
contract of the Triton launcher ``sslfast.kernels.vicreg.vicreg_fwd``), ``VICRegFunction``,
``vicreg_loss`` (functional), ``VICRegLoss`` (module), ``vicreg_loss_reference`` (float64 truth).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .._checks import check_nonnegative, check_pair, check_positive
from .._numerics import acc_dtype, offdiag_self
from ..backend import check_backend, resolve_backend
from ..distributed import gather_pair
from ._common import off_diagonal, scaled

__all__ = ["VICRegLoss", "vicreg_loss", "vicreg_loss_reference"]


def vicreg_fwd_torch(z_a, z_b, lambda_param: float, mu_param: float, nu_param: float, eps: float,
                     compute_grad: bool):
    """VICReg loss and (if ``compute_grad``) dL/dz_a, dL/dz_b; empty tensors otherwise."""
    acc = acc_dtype(z_a.dtype)
    za, zb = z_a.to(acc), z_b.to(acc)
    n, d = za.shape
    diff = za - zb
    flat = diff.reshape(-1)
    loss = (lambda_param / (n * d)) * torch.dot(flat, flat)  # one pass, no temporary
    cov_coef = nu_param / (d * (n - 1) ** 2)
    grads = []
    for z in (za, zb):
        zc = z - z.mean(0)
        off, m, s = offdiag_self(zc)
        sq = s if s is not None else zc.square().sum(0)
        std = torch.sqrt(sq / (n - 1) + eps)
        loss = loss + 0.5 * mu_param * torch.relu(1 - std).mean() + cov_coef * off.to(acc)
        if compute_grad:
            # 4ν/(D(N−1)²)·Zc·Off(C) + var term, in place on m (a fresh GEMM output), one pass:
            # k·(m − zc·s) + zc·v = k·m + zc·(v − k·s) on the Gram route
            k = 4 * cov_coef
            per_col = torch.where(std < 1, -0.5 * mu_param / (d * (n - 1) * std), 0.0)
            if s is not None:
                per_col = per_col - k * s
            grads.append(m.mul_(k).addcmul_(zc, per_col))
    if not compute_grad:
        return loss, z_a.new_empty(0), z_b.new_empty(0)
    inv_coef = 2 * lambda_param / (n * d)
    return loss, grads[0].add_(diff, alpha=inv_coef).to(z_a.dtype), grads[1].sub_(diff, alpha=inv_coef).to(z_b.dtype)


def _vicreg_fwd(backend: str):
    """The forward+gradient launcher of a resolved backend: the Triton op or its torch twin."""
    if backend == "triton":
        from sslfast.kernels.vicreg import vicreg_fwd  # triton is optional: imported on first use

        return vicreg_fwd
    return vicreg_fwd_torch


class VICRegFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z_a, z_b, lambda_param, mu_param, nu_param, eps, backend):
        compute_grad = ctx.needs_input_grad[0] or ctx.needs_input_grad[1]
        loss, ga, gb = _vicreg_fwd(backend)(z_a, z_b, lambda_param, mu_param, nu_param, eps, compute_grad)
        ctx.save_for_backward(ga, gb)
        return loss

    @staticmethod
    def backward(ctx, grad_out):
        ga, gb = ctx.saved_tensors
        need = ctx.needs_input_grad
        return scaled(grad_out, ga, need[0]), scaled(grad_out, gb, need[1]), None, None, None, None, None


def vicreg_loss(
    z_a: torch.Tensor, z_b: torch.Tensor, *, lambda_param: float = 25.0, mu_param: float = 25.0,
    nu_param: float = 1.0, eps: float = 1e-4, gather_distributed: bool = False, backend: str = "auto",
) -> torch.Tensor:
    """VICReg loss (Bardes, Ponce & LeCun, ICLR 2022, arXiv:2105.04906).

    ``λ·MSE(z_a, z_b) + μ·½·Σ_v mean_d relu(1 − sqrt(Var_d(z_v) + eps)) + ν·Σ_v Σ_{i≠j} Cov(z_v)_ij² / D``
    with unbiased variance and (N−1)-normalised covariance, as the official code and lightly.
    For N < D the off-diagonal sum uses the N×N Gram matrix, never a D×D one.
    """
    check_pair(z_a, z_b)
    for value, name in ((lambda_param, "lambda_param"), (mu_param, "mu_param"), (nu_param, "nu_param")):
        check_nonnegative(value, name)
    check_positive(eps, "eps")
    z_a, z_b = gather_pair(z_a, z_b, gather_distributed)
    backend = resolve_backend(backend, z_a.device)
    if backend == "reference":
        return vicreg_loss_reference(z_a, z_b, lambda_param, mu_param, nu_param, eps)
    return VICRegFunction.apply(z_a, z_b, float(lambda_param), float(mu_param), float(nu_param), float(eps), backend)


class VICRegLoss(nn.Module):
    """VICReg loss; arguments and value as ``lightly.loss.VICRegLoss``. See ``vicreg_loss``."""

    def __init__(
        self,
        lambda_param: float = 25.0,
        mu_param: float = 25.0,
        nu_param: float = 1.0,
        gather_distributed: bool = False,
        eps: float = 1e-4,
        backend: str = "auto",
    ):
        super().__init__()
        for value, name in ((lambda_param, "lambda_param"), (mu_param, "mu_param"), (nu_param, "nu_param")):
            check_nonnegative(value, name)
        check_positive(eps, "eps")
        self.lambda_param, self.mu_param, self.nu_param, self.eps = lambda_param, mu_param, nu_param, eps
        self.gather_distributed = gather_distributed
        self.backend = check_backend(backend)

    def forward(self, z_a: torch.Tensor, z_b: torch.Tensor) -> torch.Tensor:
        return vicreg_loss(
            z_a,
            z_b,
            lambda_param=self.lambda_param,
            mu_param=self.mu_param,
            nu_param=self.nu_param,
            eps=self.eps,
            gather_distributed=self.gather_distributed,
            backend=self.backend,
        )


def vicreg_loss_reference(
    z_a: torch.Tensor, z_b: torch.Tensor, lambda_param: float = 25.0, mu_param: float = 25.0,
    nu_param: float = 1.0, eps: float = 1e-4,
) -> torch.Tensor:
    """VICReg, as in facebookresearch/vicreg main_vicreg.py::VICReg.forward (textbook, D×D)."""
    n, d = z_a.shape
    repr_loss = F.mse_loss(z_a, z_b)
    x = z_a - z_a.mean(dim=0)
    y = z_b - z_b.mean(dim=0)
    std_x = torch.sqrt(x.var(dim=0) + eps)
    std_y = torch.sqrt(y.var(dim=0) + eps)
    std_loss = torch.mean(F.relu(1 - std_x)) / 2 + torch.mean(F.relu(1 - std_y)) / 2
    cov_x = (x.T @ x) / (n - 1)
    cov_y = (y.T @ y) / (n - 1)
    cov_loss = off_diagonal(cov_x).pow(2).sum().div(d) + off_diagonal(cov_y).pow(2).sum().div(d)
    return lambda_param * repr_loss + mu_param * std_loss + nu_param * cov_loss
