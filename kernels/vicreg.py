"""VICReg forward + gradient in one launch sequence.

split-N stats kernels (_covariance.py) -> Gram or D×D GEMMs (sslfast._numerics, cuBLAS) -> one fused
gradient kernel (2-D grid over row and column blocks) that adds the invariance, variance and
covariance terms and writes dL/dZ in the input dtype. The loss is assembled from per-column vectors:
no N×N or D×D elementwise pass.
"""
from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

from sslfast._numerics import acc_dtype, offdiag_self

from . import _covariance as cov
from ._covariance import pair_column_stats, pair_loss_fake, row_major
from ._op import cdiv, kernel_op, launch
from ._scalars import f64_arg, f64_bits


@triton.jit
def _vicreg_fwd_kernel(
    a_ptr, b_ptr, ca_ptr, cb_ptr, ma_ptr, mb_ptr, pc_ptr, ga_ptr, gb_ptr,
    N, D, stride_a, stride_b, inv_bits, cov_bits,
    BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
):
    """dL/dZ = inv·(a − b) + cov·M + Zc·pc, pc the per-column variance (and Gram-diagonal) coefficients."""
    ACC = ca_ptr.dtype.element_ty
    inv_coef = f64_arg(inv_bits, ACC)
    cov_coef = f64_arg(cov_bits, ACC)
    rows = (tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)).to(tl.int64)
    cols = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
    cmask = cols < D
    mask = (rows[:, None] < N) & cmask[None, :]
    pc_a = tl.load(pc_ptr + cols, mask=cmask, other=0.0)
    pc_b = tl.load(pc_ptr + D + cols, mask=cmask, other=0.0)
    offs = rows[:, None] * D + cols[None, :]
    a = tl.load(a_ptr + rows[:, None] * stride_a + cols[None, :], mask=mask, other=0.0).to(ACC)
    b = tl.load(b_ptr + rows[:, None] * stride_b + cols[None, :], mask=mask, other=0.0).to(ACC)
    ca = tl.load(ca_ptr + offs, mask=mask, other=0.0)
    cb = tl.load(cb_ptr + offs, mask=mask, other=0.0)
    ma = tl.load(ma_ptr + offs, mask=mask, other=0.0)
    mb = tl.load(mb_ptr + offs, mask=mask, other=0.0)
    diff = inv_coef * (a - b)
    ga = diff + pc_a[None, :] * ca + cov_coef * ma
    gb = -diff + pc_b[None, :] * cb + cov_coef * mb
    tl.store(ga_ptr + offs, ga.to(ga_ptr.dtype.element_ty), mask=mask)
    tl.store(gb_ptr + offs, gb.to(gb_ptr.dtype.element_ty), mask=mask)


def _vicreg_fwd_fake(z_a, z_b, lambda_param, mu_param, nu_param, eps, compute_grad):
    return pair_loss_fake(z_a, z_b, compute_grad)


@kernel_op("vicreg_fwd", fake=_vicreg_fwd_fake)
def vicreg_fwd(z_a: torch.Tensor, z_b: torch.Tensor, lambda_param: float, mu_param: float, nu_param: float,
               eps: float, compute_grad: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """VICReg loss and (if ``compute_grad``) dL/dz_a, dL/dz_b.

    Contract of ``sslfast.losses.vicreg.vicreg_fwd_torch`` (overflow-safe the same way: the stats
    kernels work in power-of-two column scales, folded back in float64 for the loss).
    """
    n, d = z_a.shape
    acc = acc_dtype(z_a.dtype)
    z_a, z_b = row_major(z_a), row_major(z_b)
    st = pair_column_stats(z_a, z_b, acc, standardise=False)
    scale, ss = st["scale"], st["ss"]
    # λ/(ND)·Σ(a − b)², the column scales folded back in float64 (no overflow for fp32 inputs)
    loss = ((lambda_param / (n * d)) * (st["sq_diff"].double() * st["diff_scale"].double().square()).sum()).to(acc) \
        if lambda_param else ss.new_zeros(())
    std = torch.hypot(scale * (ss / (n - 1)).sqrt(), ss.new_full((), math.sqrt(eps)))
    loss = loss + (0.5 * mu_param) * torch.relu(1 - std).mean(1).sum()
    cov_scale = nu_param / (d * (n - 1) ** 2)
    directions, per_col = [], torch.where(std < 1, -0.5 * mu_param / (d * (n - 1) * std), 0.0)
    for i, yc in enumerate(st["yc"]):
        off, m, s, zc = offdiag_self(yc, scale[i], compute_grad)
        if nu_param:  # 0·inf would be NaN where the (unused) covariance overflows
            loss = loss + (cov_scale * off).to(acc)
        if s is not None:  # Gram route: Zc·Off(C) = G·Zc − Zc·diag(C)
            per_col[i] -= 4 * cov_scale * s
        directions.append((zc, m))
    if not compute_grad:
        return loss, z_a.new_empty(0), z_b.new_empty(0)
    ga = torch.empty((n, d), device=z_a.device, dtype=z_a.dtype)
    gb = torch.empty((n, d), device=z_b.device, dtype=z_b.dtype)
    grid = (cdiv(n, cov.BLOCK_N), cdiv(d, cov.BLOCK_D))
    (ca, ma), (cb, mb) = directions
    launch(_vicreg_fwd_kernel)[grid](
        z_a, z_b, ca, cb, ma, mb, per_col.contiguous(), ga, gb, n, d, z_a.stride(0), z_b.stride(0),
        f64_bits(2 * lambda_param / (n * d)), f64_bits(4 * cov_scale),
        BLOCK_N=cov.BLOCK_N, BLOCK_D=cov.BLOCK_D,
    )
    return loss, ga, gb
