"""Shared pieces of the covariance-family kernels.

``pair_column_stats`` computes the column statistics of two (N, D) views at once, overflow-safe and
with enough programs to fill a GPU:

- scales: per column the power-of-two scale s of max |z| (``sslfast._numerics.pow2_scale``, one
  torch reduction); the kernels work on y = z/s (|y| < 2), so no sum or square overflows for any
  finite input, and the scales are folded back analytically by the callers;
- pass 1 (``_pair_column_sums_kernel``): Σ y_a, Σ y_b and (centring) Σ ((a − b)/max(s_a, s_b))²;
- pass 2 (``_pair_centre_kernel``): Σ (y − ȳ)² per column; centring also writes yc = y − ȳ;
- pass 3, standardising only (``_pair_standardise_kernel``): writes ẑ = yc/hypot(σ_y, √eps/s)
  (BatchNorm1d(affine=False)) and Σ ẑ_a·ẑ_b per column.

Split-N grid: program (i, j) owns BLOCK_D columns and one chunk of rows; its partial sums go to a
(chunks, k, D) buffer that torch reduces (deterministic, no atomics, no host sync). The chunk count
comes from ``split_rows``, a size rule aiming at ``TARGET_PROGRAMS`` (two waves of a 132-SM H100):
D = 2048 alone gives only 32 column blocks. Offsets are int64 (N·D may pass 2³¹).
"""
from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

from sslfast._numerics import acc_dtype, max_abs, pow2_scale

from ._op import cdiv, launch

BLOCK_N = 32
BLOCK_D = 64
TARGET_PROGRAMS = 264  # ≥ one full wave on 132 SMs; tests lower it (module-level hook)


def split_rows(n: int, col_blocks: int, block_n: int) -> tuple[int, int]:
    """``(rows_per_chunk, chunks)``: rows split so that col_blocks·chunks ≥ TARGET_PROGRAMS where N allows.

    rows_per_chunk is a multiple of ``block_n``; every chunk is non-empty.
    """
    want = max(1, min(cdiv(n, block_n), cdiv(TARGET_PROGRAMS, col_blocks)))
    rows = cdiv(cdiv(n, want), block_n) * block_n
    return rows, cdiv(n, rows)


@triton.jit
def _tile(ptr, stride, rows, cols, mask, ACC: tl.constexpr):
    """A (rows, cols) tile of a row-strided matrix in ``ACC``; ``rows`` are int64."""
    return tl.load(ptr + rows[:, None] * stride + cols[None, :], mask=mask, other=0.0).to(ACC)


@triton.jit
def _chunk(N, ROWS):
    """First and end row of this program's chunk (axis 1 of the grid)."""
    r0 = tl.program_id(1) * ROWS
    return r0, tl.minimum(r0 + ROWS, N)


@triton.jit
def _pair_column_sums_kernel(
    a_ptr, b_ptr, inv_ptr, part_ptr, N, D, stride_a, stride_b, ROWS,
    DIFF: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
):
    ACC = inv_ptr.dtype.element_ty  # fp32, or fp64 for fp64 inputs
    cols = tl.program_id(0) * BLOCK_D + tl.arange(0, BLOCK_D)
    cmask = cols < D
    inv_a = tl.load(inv_ptr + cols, mask=cmask, other=1.0)
    inv_b = tl.load(inv_ptr + D + cols, mask=cmask, other=1.0)
    inv_ab = tl.minimum(inv_a, inv_b)  # 1/max(s_a, s_b): |a − b|·inv_ab < 4
    r0, r1 = _chunk(N, ROWS)
    sum_a = tl.zeros([BLOCK_D], ACC)
    sum_b = tl.zeros([BLOCK_D], ACC)
    sq_diff = tl.zeros([BLOCK_D], ACC)
    for n0 in range(r0, r1, BLOCK_N):
        rows = (n0 + tl.arange(0, BLOCK_N)).to(tl.int64)
        mask = (rows[:, None] < r1) & cmask[None, :]
        a = _tile(a_ptr, stride_a, rows, cols, mask, ACC)
        b = _tile(b_ptr, stride_b, rows, cols, mask, ACC)
        sum_a += tl.sum(a * inv_a[None, :], 0)
        sum_b += tl.sum(b * inv_b[None, :], 0)
        if DIFF:
            diff = (a - b) * inv_ab[None, :]
            sq_diff += tl.sum(diff * diff, 0)
    out = part_ptr + tl.program_id(1).to(tl.int64) * 3 * D + cols
    tl.store(out, sum_a, mask=cmask)
    tl.store(out + D, sum_b, mask=cmask)
    tl.store(out + 2 * D, sq_diff, mask=cmask)


@triton.jit
def _pair_centre_kernel(
    a_ptr, b_ptr, inv_ptr, mean_ptr, ca_ptr, cb_ptr, part_ptr, N, D, stride_a, stride_b, ROWS,
    STORE: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
):
    ACC = inv_ptr.dtype.element_ty
    cols = tl.program_id(0) * BLOCK_D + tl.arange(0, BLOCK_D)
    cmask = cols < D
    inv_a = tl.load(inv_ptr + cols, mask=cmask, other=1.0)
    inv_b = tl.load(inv_ptr + D + cols, mask=cmask, other=1.0)
    mean_a = tl.load(mean_ptr + cols, mask=cmask, other=0.0)
    mean_b = tl.load(mean_ptr + D + cols, mask=cmask, other=0.0)
    r0, r1 = _chunk(N, ROWS)
    ss_a = tl.zeros([BLOCK_D], ACC)
    ss_b = tl.zeros([BLOCK_D], ACC)
    for n0 in range(r0, r1, BLOCK_N):
        rows = (n0 + tl.arange(0, BLOCK_N)).to(tl.int64)
        mask = (rows[:, None] < r1) & cmask[None, :]
        # Second pass on centred values: avoids E[y²] − E[y]² cancellation.
        ya = tl.where(mask, _tile(a_ptr, stride_a, rows, cols, mask, ACC) * inv_a[None, :] - mean_a[None, :], 0.0)
        yb = tl.where(mask, _tile(b_ptr, stride_b, rows, cols, mask, ACC) * inv_b[None, :] - mean_b[None, :], 0.0)
        ss_a += tl.sum(ya * ya, 0)
        ss_b += tl.sum(yb * yb, 0)
        if STORE:
            offs = rows[:, None] * D + cols[None, :]
            tl.store(ca_ptr + offs, ya, mask=mask)
            tl.store(cb_ptr + offs, yb, mask=mask)
    out = part_ptr + tl.program_id(1).to(tl.int64) * 2 * D + cols
    tl.store(out, ss_a, mask=cmask)
    tl.store(out + D, ss_b, mask=cmask)


@triton.jit
def _pair_standardise_kernel(
    a_ptr, b_ptr, inv_ptr, mean_ptr, k_ptr, ha_ptr, hb_ptr, part_ptr, N, D, stride_a, stride_b, ROWS,
    BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
):
    ACC = inv_ptr.dtype.element_ty
    cols = tl.program_id(0) * BLOCK_D + tl.arange(0, BLOCK_D)
    cmask = cols < D
    inv_a = tl.load(inv_ptr + cols, mask=cmask, other=1.0)
    inv_b = tl.load(inv_ptr + D + cols, mask=cmask, other=1.0)
    mean_a = tl.load(mean_ptr + cols, mask=cmask, other=0.0)
    mean_b = tl.load(mean_ptr + D + cols, mask=cmask, other=0.0)
    k_a = tl.load(k_ptr + cols, mask=cmask, other=1.0)
    k_b = tl.load(k_ptr + D + cols, mask=cmask, other=1.0)
    r0, r1 = _chunk(N, ROWS)
    cross = tl.zeros([BLOCK_D], ACC)
    for n0 in range(r0, r1, BLOCK_N):
        rows = (n0 + tl.arange(0, BLOCK_N)).to(tl.int64)
        mask = (rows[:, None] < r1) & cmask[None, :]
        ha = _tile(a_ptr, stride_a, rows, cols, mask, ACC) * inv_a[None, :] - mean_a[None, :]
        hb = _tile(b_ptr, stride_b, rows, cols, mask, ACC) * inv_b[None, :] - mean_b[None, :]
        ha = tl.where(mask, ha / k_a[None, :], 0.0)
        hb = tl.where(mask, hb / k_b[None, :], 0.0)
        cross += tl.sum(ha * hb, 0)
        offs = rows[:, None] * D + cols[None, :]
        tl.store(ha_ptr + offs, ha, mask=mask)
        tl.store(hb_ptr + offs, hb, mask=mask)
    tl.store(part_ptr + tl.program_id(1).to(tl.int64) * D + cols, cross, mask=cmask)


def row_major(z: torch.Tensor) -> torch.Tensor:
    """Kernels index rows by stride and assume unit column stride."""
    return z if z.stride(1) == 1 else z.contiguous()


def column_grid(n: int, d: int) -> tuple[tuple[int, int], int]:
    """Grid and rows per chunk of the split-N column kernels."""
    col_blocks = cdiv(d, BLOCK_D)
    rows, chunks = split_rows(n, col_blocks, BLOCK_N)
    return (col_blocks, chunks), rows


def pair_column_stats(a: torch.Tensor, b: torch.Tensor, acc: torch.dtype, standardise: bool, eps: float = 0.0):
    """Column statistics of two (N, D) views in scaled units; returns a dict of tensors in ``acc``.

    Always: ``scale`` (2, D) power-of-two column scales and ``ss`` (2, D) = Σ (y − ȳ)² (y = z/scale).
    Centring (``standardise=False``): ``yc`` (2 × (N, D)) the centred scaled views and ``sq_diff``
    (D,) = Σ ((a − b)/max(s_a, s_b))² with ``diff_scale`` (D,) = max(s_a, s_b).
    Standardising: ``h`` (2 × (N, D)) = BatchNorm1d(affine=False) of each view (biased variance,
    ``eps``), ``rstd`` (2, D) and ``cross`` (D,) = Σ ĥ_a·ĥ_b.
    """
    n, d = a.shape
    a, b = row_major(a), row_major(b)
    scale = pow2_scale(torch.stack([max_abs(a, 0), max_abs(b, 0)]).to(acc))
    inv = 1 / scale  # exact: powers of two in [2^-126, 2^127] (fp32)
    grid, rows = column_grid(n, d)
    part = torch.empty((grid[1], 3, d), device=a.device, dtype=acc)
    launch(_pair_column_sums_kernel)[grid](
        a, b, inv, part, n, d, a.stride(0), b.stride(0), rows,
        DIFF=not standardise, BLOCK_N=BLOCK_N, BLOCK_D=BLOCK_D,
    )
    sums = part.sum(0)
    mean = sums[:2] / n
    out = {"scale": scale}
    ca = torch.empty((n, d), device=a.device, dtype=acc) if not standardise else a.new_empty(0, dtype=acc)
    cb = torch.empty((n, d), device=a.device, dtype=acc) if not standardise else a.new_empty(0, dtype=acc)
    part2 = torch.empty((grid[1], 2, d), device=a.device, dtype=acc)
    launch(_pair_centre_kernel)[grid](
        a, b, inv, mean, ca, cb, part2, n, d, a.stride(0), b.stride(0), rows,
        STORE=not standardise, BLOCK_N=BLOCK_N, BLOCK_D=BLOCK_D,
    )
    ss = part2.sum(0)
    out["ss"] = ss
    if not standardise:
        out.update(yc=(ca, cb), sq_diff=sums[2], diff_scale=torch.maximum(scale[0], scale[1]))
        return out
    sd_y = (ss / n).sqrt()
    root_eps = ss.new_full((), math.sqrt(eps))  # on the device: no host-to-device copy
    k = torch.hypot(sd_y, root_eps / scale)  # std/s: ẑ = yc/k
    ha = torch.empty((n, d), device=a.device, dtype=acc)
    hb = torch.empty((n, d), device=a.device, dtype=acc)
    part3 = torch.empty((grid[1], d), device=a.device, dtype=acc)
    launch(_pair_standardise_kernel)[grid](
        a, b, inv, mean, k, ha, hb, part3, n, d, a.stride(0), b.stride(0), rows,
        BLOCK_N=BLOCK_N, BLOCK_D=BLOCK_D,
    )
    out.update(h=(ha, hb), rstd=1 / torch.hypot(scale * sd_y, root_eps), cross=part3.sum(0))
    return out


def pair_loss_fake(z_a: torch.Tensor, z_b: torch.Tensor, compute_grad: bool):
    """Output shapes of a pair-loss launcher: fp32/fp64 scalar loss and two (N, D) gradients
    (or empty tensors when no gradient is asked for)."""
    shape = tuple(z_a.shape) if compute_grad else (0,)
    return z_a.new_empty((), dtype=acc_dtype(z_a.dtype)), z_a.new_empty(shape), z_b.new_empty(shape)
