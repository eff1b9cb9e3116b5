"""Barlow Twins forward + gradient.

stats kernel (standardise both views, Σ â·b̂ per column) -> Gram or D×D GEMMs
(sslfast._numerics) -> one column-blocked kernel that forms dL/dÂ from the GEMM output and the
diagonal term, reduces it over the batch and applies the BatchNorm backward in place.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from sslfast._numerics import acc_dtype, offdiag_cross

from ._covariance import pair_column_stats, pair_loss_fake, row_major
from ._op import cdiv, kernel_op, launch

BLOCK_N = 32
BLOCK_D = 64


@triton.jit
def _dhat(ha, hb, ma, mb, diag, on, off_coef, GRAM: tl.constexpr):
    """dL/dÂ and dL/dB̂ for one tile (Gram route: remove the diagonal of AᵀB here)."""
    if GRAM:
        ma = ma - hb * diag[None, :]
        mb = mb - ha * diag[None, :]
    return off_coef * ma + on[None, :] * hb, off_coef * mb + on[None, :] * ha


@triton.jit
def _load_dhat(ha_ptr, hb_ptr, ma_ptr, mb_ptr, offs, mask, diag, on, off_coef, GRAM: tl.constexpr):
    ha = tl.load(ha_ptr + offs, mask=mask, other=0.0)
    hb = tl.load(hb_ptr + offs, mask=mask, other=0.0)
    da, db = _dhat(ha, hb, tl.load(ma_ptr + offs, mask=mask, other=0.0),
                   tl.load(mb_ptr + offs, mask=mask, other=0.0), diag, on, off_coef, GRAM)
    return ha, hb, da, db


@triton.jit
def _barlow_twins_fwd_kernel(
    ha_ptr, hb_ptr, ma_ptr, mb_ptr, stats_ptr, ga_ptr, gb_ptr,
    N, D, inv_n, off_coef,
    GRAM: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
):
    ACC = ha_ptr.dtype.element_ty
    cols = tl.program_id(0) * BLOCK_D + tl.arange(0, BLOCK_D)
    cmask = cols < D
    rstd_a = tl.load(stats_ptr + cols, mask=cmask, other=0.0)
    rstd_b = tl.load(stats_ptr + D + cols, mask=cmask, other=0.0)
    diag = tl.load(stats_ptr + 2 * D + cols, mask=cmask, other=0.0)
    on = -2.0 * inv_n * (1.0 - diag * inv_n)  # d/dĉ of Σ(1 − c_ii)², c = Σ â·b̂ / N
    sa = tl.zeros([BLOCK_D], ACC)
    sb = tl.zeros([BLOCK_D], ACC)
    saa = tl.zeros([BLOCK_D], ACC)
    sbb = tl.zeros([BLOCK_D], ACC)
    for n0 in range(0, N, BLOCK_N):
        rows = n0 + tl.arange(0, BLOCK_N)
        mask = (rows[:, None] < N) & cmask[None, :]
        offs = rows[:, None] * D + cols[None, :]
        ha, hb, da, db = _load_dhat(ha_ptr, hb_ptr, ma_ptr, mb_ptr, offs, mask, diag, on, off_coef, GRAM)
        sa += tl.sum(da, 0)
        sb += tl.sum(db, 0)
        saa += tl.sum(da * ha, 0)
        sbb += tl.sum(db * hb, 0)
    sa *= inv_n
    sb *= inv_n
    saa *= inv_n
    sbb *= inv_n
    for n0 in range(0, N, BLOCK_N):
        rows = n0 + tl.arange(0, BLOCK_N)
        mask = (rows[:, None] < N) & cmask[None, :]
        offs = rows[:, None] * D + cols[None, :]
        ha, hb, da, db = _load_dhat(ha_ptr, hb_ptr, ma_ptr, mb_ptr, offs, mask, diag, on, off_coef, GRAM)
        # BatchNorm1d(affine=False) backward: rstd·(g − mean g − x̂·mean(g·x̂))
        ga = rstd_a[None, :] * (da - sa[None, :] - ha * saa[None, :])
        gb = rstd_b[None, :] * (db - sb[None, :] - hb * sbb[None, :])
        tl.store(ga_ptr + offs, ga.to(ga_ptr.dtype.element_ty), mask=mask)
        tl.store(gb_ptr + offs, gb.to(gb_ptr.dtype.element_ty), mask=mask)


def _barlow_twins_fwd_fake(z_a, z_b, lambda_param, compute_grad):
    return pair_loss_fake(z_a, z_b, compute_grad)


@kernel_op("barlow_twins_fwd", fake=_barlow_twins_fwd_fake)
def barlow_twins_fwd(z_a: torch.Tensor, z_b: torch.Tensor, lambda_param: float,
                     compute_grad: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Barlow Twins loss and (if ``compute_grad``) its input gradients.

    Contract of ``sslfast.losses.barlow_twins.barlow_twins_fwd_torch``.
    """
    n, d = z_a.shape
    acc = acc_dtype(z_a.dtype)
    z_a, z_b = row_major(z_a), row_major(z_b)
    ha, hb, stats = pair_column_stats(z_a, z_b, acc, standardise=True, eps=1e-5)
    off, diag, ma, mb, gram = offdiag_cross(ha, hb)
    if gram:
        stats[2] = diag  # the fp64-accumulated diagonal, consistent with the Gram matrices
    loss = (1 - stats[2] / n).square().sum() + (lambda_param / n**2) * off.to(acc)
    if not compute_grad:
        return loss, z_a.new_empty(0), z_b.new_empty(0)
    ga = torch.empty((n, d), device=z_a.device, dtype=z_a.dtype)
    gb = torch.empty((n, d), device=z_b.device, dtype=z_b.dtype)
    launch(_barlow_twins_fwd_kernel)[(cdiv(d, BLOCK_D),)](
        ha, hb, ma, mb, stats, ga, gb, n, d, 1.0 / n, 2 * lambda_param / n**2,
        GRAM=gram, BLOCK_N=BLOCK_N, BLOCK_D=BLOCK_D,
    )
    return loss, ga, gb
