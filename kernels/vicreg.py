"""VICReg forward + gradient in one launch sequence.

stats kernel (_covariance.py) -> Gram or D×D GEMMs (sslfast._numerics, cuBLAS) -> one fused gradient
kernel that adds the invariance, variance and covariance terms and writes dL/dZ in the
input dtype. The loss is assembled from per-column vectors: no N×N or D×D elementwise pass.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from sslfast._numerics import acc_dtype, offdiag_self

from ._covariance import pair_column_stats, pair_loss_fake, row_major
from ._op import cdiv, kernel_op, launch

BLOCK_N = 32
BLOCK_D = 64


@triton.jit
def _vicreg_fwd_kernel(
    a_ptr, b_ptr, ca_ptr, cb_ptr, ma_ptr, mb_ptr, stats_ptr, sa_ptr, sb_ptr, ga_ptr, gb_ptr,
    N, D, stride_a, stride_b, inv_coef, var_coef, cov_coef, inv_nm1, eps,
    SUB_DIAG: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
):
    ACC = ca_ptr.dtype.element_ty
    rows = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    cols = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
    cmask = cols < D
    mask = (rows[:, None] < N) & cmask[None, :]
    ss_a = tl.load(stats_ptr + cols, mask=cmask, other=1.0)
    ss_b = tl.load(stats_ptr + D + cols, mask=cmask, other=1.0)
    std_a = tl.sqrt(ss_a * inv_nm1 + eps)
    std_b = tl.sqrt(ss_b * inv_nm1 + eps)
    # d/dZc of relu(1 − std): active only below unit std (relu'(0) = 0, as torch).
    ka = tl.where(std_a < 1.0, var_coef / std_a, 0.0)
    kb = tl.where(std_b < 1.0, var_coef / std_b, 0.0)
    offs = rows[:, None] * D + cols[None, :]
    a = tl.load(a_ptr + rows[:, None] * stride_a + cols[None, :], mask=mask, other=0.0).to(ACC)
    b = tl.load(b_ptr + rows[:, None] * stride_b + cols[None, :], mask=mask, other=0.0).to(ACC)
    ca = tl.load(ca_ptr + offs, mask=mask, other=0.0)
    cb = tl.load(cb_ptr + offs, mask=mask, other=0.0)
    ma = tl.load(ma_ptr + offs, mask=mask, other=0.0)
    mb = tl.load(mb_ptr + offs, mask=mask, other=0.0)
    if SUB_DIAG:  # Gram route: Zc·Off(C) = G·Zc − Zc·diag(C)
        ma -= ca * tl.load(sa_ptr + cols, mask=cmask, other=0.0)[None, :]
        mb -= cb * tl.load(sb_ptr + cols, mask=cmask, other=0.0)[None, :]
    diff = inv_coef * (a - b)
    ga = diff + ka[None, :] * ca + cov_coef * ma
    gb = -diff + kb[None, :] * cb + cov_coef * mb
    tl.store(ga_ptr + offs, ga.to(ga_ptr.dtype.element_ty), mask=mask)
    tl.store(gb_ptr + offs, gb.to(gb_ptr.dtype.element_ty), mask=mask)


def _vicreg_fwd_fake(z_a, z_b, lambda_param, mu_param, nu_param, eps, compute_grad):
    return pair_loss_fake(z_a, z_b, compute_grad)


@kernel_op("vicreg_fwd", fake=_vicreg_fwd_fake)
def vicreg_fwd(z_a: torch.Tensor, z_b: torch.Tensor, lambda_param: float, mu_param: float, nu_param: float,
               eps: float, compute_grad: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """VICReg loss and (if ``compute_grad``) dL/dz_a, dL/dz_b.

    Contract of ``sslfast.losses.vicreg.vicreg_fwd_torch``.
    """
    n, d = z_a.shape
    acc = acc_dtype(z_a.dtype)
    z_a, z_b = row_major(z_a), row_major(z_b)
    ca, cb, stats = pair_column_stats(z_a, z_b, acc, standardise=False)
    off_a, ma, sa = offdiag_self(ca)
    off_b, mb, sb = offdiag_self(cb)
    std = torch.sqrt(stats[:2] / (n - 1) + eps)
    cov_scale = nu_param / (d * (n - 1) ** 2)
    loss = (lambda_param / (n * d)) * stats[2].sum() + (0.5 * mu_param) * torch.relu(1 - std).mean(1).sum() \
        + cov_scale * (off_a + off_b).to(acc)
    if not compute_grad:
        return loss, z_a.new_empty(0), z_b.new_empty(0)
    ga = torch.empty((n, d), device=z_a.device, dtype=z_a.dtype)
    gb = torch.empty((n, d), device=z_b.device, dtype=z_b.dtype)
    gram = sa is not None
    grid = (cdiv(n, BLOCK_N), cdiv(d, BLOCK_D))
    launch(_vicreg_fwd_kernel)[grid](
        z_a, z_b, ca, cb, ma, mb, stats, sa if gram else stats, sb if gram else stats, ga, gb,
        n, d, z_a.stride(0), z_b.stride(0),
        2 * lambda_param / (n * d), -0.5 * mu_param / (d * (n - 1)), 4 * cov_scale, 1.0 / (n - 1), eps,
        SUB_DIAG=gram, BLOCK_N=BLOCK_N, BLOCK_D=BLOCK_D,
    )
    return loss, ga, gb
