"""Barlow Twins forward + gradient.

stats kernel (standardise both views, Σ â·b̂ per column) -> Gram or D×D GEMMs
(sslfast._numerics) -> a split-N kernel that forms dL/dÂ from the GEMM output and the diagonal
term and reduces it over each chunk of rows -> a 2-D-grid kernel that applies the BatchNorm backward.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from sslfast._numerics import acc_dtype, offdiag_cross

from . import _covariance as cov
from ._covariance import column_grid, pair_column_stats, pair_loss_fake, row_major
from ._op import cdiv, kernel_op, launch
from ._scalars import f64_arg, f64_bits


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
def _barlow_twins_fwd_sums_kernel(
    ha_ptr, hb_ptr, ma_ptr, mb_ptr, col_ptr, part_ptr, N, D, ROWS, off_bits,
    GRAM: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
):
    """Per chunk of rows: Σ dL/dÂ, Σ dL/dB̂, Σ dL/dÂ·Â, Σ dL/dB̂·B̂ per column (split-N partials)."""
    ACC = ha_ptr.dtype.element_ty
    off_coef = f64_arg(off_bits, ACC)
    cols = tl.program_id(0) * BLOCK_D + tl.arange(0, BLOCK_D)
    cmask = cols < D
    diag = tl.load(col_ptr + 2 * D + cols, mask=cmask, other=0.0)
    on = tl.load(col_ptr + 3 * D + cols, mask=cmask, other=0.0)
    r0 = tl.program_id(1) * ROWS
    r1 = tl.minimum(r0 + ROWS, N)
    sa = tl.zeros([BLOCK_D], ACC)
    sb = tl.zeros([BLOCK_D], ACC)
    saa = tl.zeros([BLOCK_D], ACC)
    sbb = tl.zeros([BLOCK_D], ACC)
    for n0 in range(r0, r1, BLOCK_N):
        rows = (n0 + tl.arange(0, BLOCK_N)).to(tl.int64)
        mask = (rows[:, None] < r1) & cmask[None, :]
        offs = rows[:, None] * D + cols[None, :]
        ha, hb, da, db = _load_dhat(ha_ptr, hb_ptr, ma_ptr, mb_ptr, offs, mask, diag, on, off_coef, GRAM)
        sa += tl.sum(da, 0)
        sb += tl.sum(db, 0)
        saa += tl.sum(da * ha, 0)
        sbb += tl.sum(db * hb, 0)
    out = part_ptr + tl.program_id(1).to(tl.int64) * 4 * D + cols
    tl.store(out, sa, mask=cmask)
    tl.store(out + D, sb, mask=cmask)
    tl.store(out + 2 * D, saa, mask=cmask)
    tl.store(out + 3 * D, sbb, mask=cmask)


@triton.jit
def _barlow_twins_fwd_kernel(
    ha_ptr, hb_ptr, ma_ptr, mb_ptr, col_ptr, mean_ptr, ga_ptr, gb_ptr, N, D, off_bits,
    GRAM: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
):
    """BatchNorm1d(affine=False) backward on a (row block, column block) tile:
    rstd·(g − mean g − x̂·mean(g·x̂)), the column means from ``_barlow_twins_fwd_sums_kernel``."""
    ACC = ha_ptr.dtype.element_ty
    off_coef = f64_arg(off_bits, ACC)
    rows = (tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)).to(tl.int64)
    cols = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
    cmask = cols < D
    mask = (rows[:, None] < N) & cmask[None, :]
    rstd_a = tl.load(col_ptr + cols, mask=cmask, other=0.0)
    rstd_b = tl.load(col_ptr + D + cols, mask=cmask, other=0.0)
    diag = tl.load(col_ptr + 2 * D + cols, mask=cmask, other=0.0)
    on = tl.load(col_ptr + 3 * D + cols, mask=cmask, other=0.0)
    sa = tl.load(mean_ptr + cols, mask=cmask, other=0.0)
    sb = tl.load(mean_ptr + D + cols, mask=cmask, other=0.0)
    saa = tl.load(mean_ptr + 2 * D + cols, mask=cmask, other=0.0)
    sbb = tl.load(mean_ptr + 3 * D + cols, mask=cmask, other=0.0)
    offs = rows[:, None] * D + cols[None, :]
    ha, hb, da, db = _load_dhat(ha_ptr, hb_ptr, ma_ptr, mb_ptr, offs, mask, diag, on, off_coef, GRAM)
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
    st = pair_column_stats(z_a, z_b, acc, standardise=True, eps=1e-5)
    ha, hb = st["h"]
    off, diag, ma, mb, gram = offdiag_cross(ha, hb, compute_grad)
    if not gram:  # the Gram route's diagonal is fp64-accumulated, consistent with its Gram matrices
        diag = st["cross"]
    loss = (1 - diag / n).square().sum() + (lambda_param / n**2) * off.to(acc)
    if not compute_grad:
        return loss, z_a.new_empty(0), z_b.new_empty(0)
    # per column: rstd_a, rstd_b, diag(ÂᵀB̂), d/dĉ of Σ(1 − c_ii)² with c = Σ â·b̂ / N
    per_col = torch.cat([st["rstd"], diag[None], ((-2.0 / n) * (1 - diag / n))[None]]).contiguous()
    off_coef = f64_bits(2 * lambda_param / n**2)
    grid, rows = column_grid(n, d)
    part = torch.empty((grid[1], 4, d), device=z_a.device, dtype=acc)
    launch(_barlow_twins_fwd_sums_kernel)[grid](
        ha, hb, ma, mb, per_col, part, n, d, rows, off_coef, GRAM=gram, BLOCK_N=cov.BLOCK_N, BLOCK_D=cov.BLOCK_D,
    )
    means = part.sum(0) / n
    ga = torch.empty((n, d), device=z_a.device, dtype=z_a.dtype)
    gb = torch.empty((n, d), device=z_b.device, dtype=z_b.dtype)
    launch(_barlow_twins_fwd_kernel)[(cdiv(n, cov.BLOCK_N), cdiv(d, cov.BLOCK_D))](
        ha, hb, ma, mb, per_col, means, ga, gb, n, d, off_coef, GRAM=gram, BLOCK_N=cov.BLOCK_N, BLOCK_D=cov.BLOCK_D,
    )
    return loss, ga, gb
