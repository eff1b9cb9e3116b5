"""VICReg (Bardes, Ponce & LeCun, ICLR 2022, arXiv:2105.04906).

``λ·MSE(z_a, z_b) + μ·½·Σ_v mean_d relu(1 − sqrt(Var_d(z_v) + eps)) + ν·Σ_v Σ_{i≠j} Cov(z_v)_ij² / D``
with unbiased variance and (N−1)-normalised covariance, as the official code and lightly.
(N, ..., D) inputs (VICRegL's local features, Bardes et al., NeurIPS 2022, arXiv:2210.01571) follow
lightly's ``VICRegLoss``: the mean over the middle positions of the per-position (N, D) loss.

Layers, in order: ``vicreg_fwd_torch`` (the torch backend: loss and dL/dz in one pass, the
contract of the Triton launcher ``sslfast.kernels.vicreg.vicreg_fwd``), ``VICRegFunction``,
``vicreg_loss`` (functional), ``VICRegLoss`` (module), ``vicreg_loss_reference`` (float64 truth).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .._checks import check_nonnegative, check_pair, check_positive
from .._numerics import acc_dtype, column_scale, offdiag_self, sum_squares
from ..backend import check_backend, resolve_backend
from ..distributed import check_gather_distributed, gather_pair
from ._common import creating_graph, differentiable_grads, off_diagonal, scaled

__all__ = ["VICRegLoss", "vicreg_loss", "vicreg_loss_reference"]


def scaled_centre(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(yc, s)`` with ``Z − mean(Z) = yc·s``: ``s`` the per-column power-of-two scale of max |Z|.

    Summing Z/s instead of Z keeps the mean finite for any finite input (Σ of 256 values of 3e38
    overflows fp32), and yc has |yc| < 4, so its squares and Gram entries never overflow.
    """
    s = column_scale(z)
    y = z / s
    return y.sub_(y.mean(0)), s


def column_std(yc: torch.Tensor, s: torch.Tensor, eps: float) -> torch.Tensor:
    """sqrt(Var_d + eps) (unbiased) of ``Zc = yc·s`` as hypot(s·σ_y, √eps): finite unless it is
    truly beyond the dtype (Σ zc² overflows fp32 from |z| ≈ 1e18)."""
    n = yc.shape[0]
    return torch.hypot(s * (yc.square().sum(0) / (n - 1)).sqrt(), yc.new_full((), math.sqrt(eps)))


def vicreg_fwd_torch(z_a, z_b, lambda_param: float, mu_param: float, nu_param: float, eps: float,
                     compute_grad: bool):
    """VICReg loss and (if ``compute_grad``) dL/dz_a, dL/dz_b; empty tensors otherwise.

    Overflow-safe: every statistic is formed from power-of-two-scaled data and the scales are folded
    back where the result is representable (``sslfast._numerics``): the loss is the fp64 value, or
    inf when that is beyond the accumulation dtype; never a NaN or a finite wrong value for finite
    inputs.
    """
    acc = acc_dtype(z_a.dtype)
    za, zb = z_a.to(acc), z_b.to(acc)
    n, d = za.shape
    diff = za - zb
    loss = sum_squares(diff, lambda_param / (n * d)) if lambda_param else diff.new_zeros(())
    cov_coef = nu_param / (d * (n - 1) ** 2)
    grads = []
    for z in (za, zb):
        yc, scale = scaled_centre(z)
        off, m, s, zc = offdiag_self(yc, scale, compute_grad)
        std = column_std(yc, scale, eps)
        loss = loss + 0.5 * mu_param * torch.relu(1 - std).mean()
        if nu_param:  # 0·inf would be NaN where the (unused) covariance overflows
            loss = loss + (cov_coef * off).to(acc)
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


def _vicreg_groups(fwd, z_a, z_b, lambda_param, mu_param, nu_param, eps, compute_grad):
    """(N, M, D) inputs: the mean over the M positions of the (N, D) loss, one launch per position.

    The weights are divided by M before each launch (the loss is linear in them), so the sum of the
    launches is the mean and each gradient slice comes out already scaled, in the accumulation dtype.
    Slices ``z[:, m]`` are row-strided views: the launchers take a row stride, so nothing is copied in.
    """
    m = z_a.shape[1]
    w = (lambda_param / m, mu_param / m, nu_param / m)
    ga = torch.empty_like(z_a) if compute_grad else z_a.new_empty(0)
    gb = torch.empty_like(z_b) if compute_grad else z_b.new_empty(0)
    loss = None
    for i in range(m):
        part, ga_i, gb_i = fwd(z_a[:, i], z_b[:, i], *w, eps, compute_grad)
        loss = part if loss is None else loss + part
        if compute_grad:
            ga[:, i] = ga_i
            gb[:, i] = gb_i
    return loss, ga, gb


class VICRegFunction(torch.autograd.Function):
    """VICReg of (N, D) or (N, M, D) inputs; the forward launch also produces dL/dz."""

    @staticmethod
    def forward(ctx, z_a, z_b, lambda_param, mu_param, nu_param, eps, backend):
        compute_grad = ctx.needs_input_grad[0] or ctx.needs_input_grad[1]
        fwd = _vicreg_fwd(backend)
        if z_a.dim() == 2:
            loss, ga, gb = fwd(z_a, z_b, lambda_param, mu_param, nu_param, eps, compute_grad)
        else:
            loss, ga, gb = _vicreg_groups(fwd, z_a, z_b, lambda_param, mu_param, nu_param, eps, compute_grad)
        # The inputs are kept for the double-backward path only (references, no copy).
        ctx.save_for_backward(ga, gb, z_a, z_b)
        ctx.params = (lambda_param, mu_param, nu_param, eps)
        return loss

    @staticmethod
    def backward(ctx, grad_out):
        ga, gb, z_a, z_b = ctx.saved_tensors
        need = ctx.needs_input_grad
        if creating_graph():
            acc = acc_dtype(z_a.dtype)
            lam, mu, nu, eps = ctx.params
            da, db = differentiable_grads(
                lambda a, b: vicreg_loss_reference(a.to(acc), b.to(acc), lam, mu, nu, eps),
                (z_a, z_b),
                grad_out,
                need[:2],
            )
            return da, db, None, None, None, None, None
        return scaled(grad_out, ga, need[0]), scaled(grad_out, gb, need[1]), None, None, None, None, None


def _check_weights(lambda_param, mu_param, nu_param, eps) -> None:
    for value, name in ((lambda_param, "lambda_param"), (mu_param, "mu_param"), (nu_param, "nu_param")):
        check_nonnegative(value, name)
    check_positive(eps, "eps")


def vicreg_loss(
    z_a: torch.Tensor, z_b: torch.Tensor, *, lambda_param: float = 25.0, mu_param: float = 25.0,
    nu_param: float = 1.0, eps: float = 1e-4, gather_distributed: bool = False, backend: str = "auto",
) -> torch.Tensor:
    """VICReg loss (Bardes, Ponce & LeCun, ICLR 2022, arXiv:2105.04906).

    ``λ·MSE(z_a, z_b) + μ·½·Σ_v mean_d relu(1 − sqrt(Var_d(z_v) + eps)) + ν·Σ_v Σ_{i≠j} Cov(z_v)_ij² / D``
    with unbiased variance and (N−1)-normalised covariance, as the official code and lightly.
    For N < D the off-diagonal sum uses the N×N Gram matrix, never a D×D one.

    ``z_a``, ``z_b``: (N, D), or (N, ..., D) as lightly's ``VICRegLoss`` (VICRegL's local features):
    the MSE over every element, the variance of every (..., d) column over the batch, the
    covariance per middle position — i.e. the mean over the middle positions of the (N, D) loss.
    """
    check_pair(z_a, z_b, middle=True)
    _check_weights(lambda_param, mu_param, nu_param, eps)
    check_gather_distributed(gather_distributed, check_available=False)
    z_a, z_b = gather_pair(z_a, z_b, gather_distributed)
    backend = resolve_backend(backend, z_a.device)
    if backend == "reference":
        return vicreg_loss_reference(z_a, z_b, lambda_param, mu_param, nu_param, eps)
    if z_a.dim() > 2:  # the fused launchers take (N, D): one launch per middle position
        n, d = z_a.shape[0], z_a.shape[-1]
        z_a, z_b = z_a.reshape(n, -1, d), z_b.reshape(n, -1, d)
    return VICRegFunction.apply(z_a, z_b, float(lambda_param), float(mu_param), float(nu_param), float(eps), backend)


class VICRegLoss(nn.Module):
    """VICReg loss; arguments and value as ``lightly.loss.VICRegLoss``, (N, ..., D) inputs included.
    See ``vicreg_loss``."""

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
        _check_weights(lambda_param, mu_param, nu_param, eps)
        self.lambda_param, self.mu_param, self.nu_param, self.eps = lambda_param, mu_param, nu_param, eps
        self.gather_distributed = check_gather_distributed(gather_distributed)
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
    """VICReg, as in facebookresearch/vicreg main_vicreg.py::VICReg.forward (textbook, D×D).

    (N, ..., D) inputs: the covariance term per middle position, averaged, as VICRegL's
    main_vicregl.py covariance and lightly's ``covariance_loss`` (the MSE and variance terms are
    already elementwise / per column).
    """
    n, d = z_a.shape[0], z_a.shape[-1]
    repr_loss = F.mse_loss(z_a, z_b)
    x = z_a - z_a.mean(dim=0)
    y = z_b - z_b.mean(dim=0)
    std_x = torch.sqrt(x.var(dim=0) + eps)
    std_y = torch.sqrt(y.var(dim=0) + eps)
    std_loss = torch.mean(F.relu(1 - std_x)) / 2 + torch.mean(F.relu(1 - std_y)) / 2
    if z_a.dim() == 2:
        cov_x = (x.T @ x) / (n - 1)
        cov_y = (y.T @ y) / (n - 1)
        cov_loss = off_diagonal(cov_x).pow(2).sum().div(d) + off_diagonal(cov_y).pow(2).sum().div(d)
    else:
        off = ~torch.eye(d, dtype=torch.bool, device=z_a.device)
        cov_loss = 0
        for v in (x, y):
            cov = torch.einsum("n...c,n...e->...ce", v, v) / (n - 1)  # (..., D, D), one per position
            cov_loss = cov_loss + (cov[..., off].pow(2).sum(-1) / d).mean()
    return lambda_param * repr_loss + mu_param * std_loss + nu_param * cov_loss
