"""Shared pieces of the covariance-family kernels.

``pair_column_stats`` makes one pass-pair over the columns of two views at once:
- centring (VICReg): writes Zc = Z − mean and per column Σ Zc², and Σ (a − b)²;
- standardising (Barlow Twins, BatchNorm1d(affine=False)): writes Ẑ = (Z − mean)·rstd
  with the biased variance, and per column rstd and Σ â·b̂.
Each program owns BLOCK_D columns and walks the N rows, so every reduction is a plain
in-register sum (deterministic, no atomics) and row loads are coalesced.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from sslfast._numerics import acc_dtype

from ._op import cdiv, launch

BLOCK_N = 32
BLOCK_D = 64


@triton.jit
def _pair_column_stats_kernel(
    a_ptr, b_ptr, ca_ptr, cb_ptr, stats_ptr,
    N, D, stride_a, stride_b, inv_n, eps,
    STANDARDISE: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
):
    ACC = ca_ptr.dtype.element_ty  # fp32, or fp64 for fp64 inputs
    cols = tl.program_id(0) * BLOCK_D + tl.arange(0, BLOCK_D)
    cmask = cols < D
    sum_a = tl.zeros([BLOCK_D], ACC)
    sum_b = tl.zeros([BLOCK_D], ACC)
    sq_diff = tl.zeros([BLOCK_D], ACC)
    for n0 in range(0, N, BLOCK_N):
        rows = n0 + tl.arange(0, BLOCK_N)
        mask = (rows[:, None] < N) & cmask[None, :]
        a = tl.load(a_ptr + rows[:, None] * stride_a + cols[None, :], mask=mask, other=0.0).to(ACC)
        b = tl.load(b_ptr + rows[:, None] * stride_b + cols[None, :], mask=mask, other=0.0).to(ACC)
        sum_a += tl.sum(a, 0)
        sum_b += tl.sum(b, 0)
        if not STANDARDISE:
            diff = a - b
            sq_diff += tl.sum(diff * diff, 0)
    mean_a = sum_a * inv_n
    mean_b = sum_b * inv_n
    # Second pass on centred values: avoids E[x²] − E[x]² cancellation.
    ss_a = tl.zeros([BLOCK_D], ACC)
    ss_b = tl.zeros([BLOCK_D], ACC)
    for n0 in range(0, N, BLOCK_N):
        rows = n0 + tl.arange(0, BLOCK_N)
        mask = (rows[:, None] < N) & cmask[None, :]
        a = tl.load(a_ptr + rows[:, None] * stride_a + cols[None, :], mask=mask, other=0.0).to(ACC)
        b = tl.load(b_ptr + rows[:, None] * stride_b + cols[None, :], mask=mask, other=0.0).to(ACC)
        ca = tl.where(mask, a - mean_a[None, :], 0.0)
        cb = tl.where(mask, b - mean_b[None, :], 0.0)
        ss_a += tl.sum(ca * ca, 0)
        ss_b += tl.sum(cb * cb, 0)
        if not STANDARDISE:
            tl.store(ca_ptr + rows[:, None] * D + cols[None, :], ca, mask=mask)
            tl.store(cb_ptr + rows[:, None] * D + cols[None, :], cb, mask=mask)
    if STANDARDISE:
        rstd_a = 1.0 / tl.sqrt(ss_a * inv_n + eps)
        rstd_b = 1.0 / tl.sqrt(ss_b * inv_n + eps)
        cross = tl.zeros([BLOCK_D], ACC)
        for n0 in range(0, N, BLOCK_N):
            rows = n0 + tl.arange(0, BLOCK_N)
            mask = (rows[:, None] < N) & cmask[None, :]
            a = tl.load(a_ptr + rows[:, None] * stride_a + cols[None, :], mask=mask, other=0.0).to(ACC)
            b = tl.load(b_ptr + rows[:, None] * stride_b + cols[None, :], mask=mask, other=0.0).to(ACC)
            ha = tl.where(mask, (a - mean_a[None, :]) * rstd_a[None, :], 0.0)
            hb = tl.where(mask, (b - mean_b[None, :]) * rstd_b[None, :], 0.0)
            cross += tl.sum(ha * hb, 0)
            tl.store(ca_ptr + rows[:, None] * D + cols[None, :], ha, mask=mask)
            tl.store(cb_ptr + rows[:, None] * D + cols[None, :], hb, mask=mask)
        tl.store(stats_ptr + cols, rstd_a, mask=cmask)
        tl.store(stats_ptr + D + cols, rstd_b, mask=cmask)
        tl.store(stats_ptr + 2 * D + cols, cross, mask=cmask)
    else:
        tl.store(stats_ptr + cols, ss_a, mask=cmask)
        tl.store(stats_ptr + D + cols, ss_b, mask=cmask)
        tl.store(stats_ptr + 2 * D + cols, sq_diff, mask=cmask)


def row_major(z: torch.Tensor) -> torch.Tensor:
    """Kernels index rows by stride and assume unit column stride."""
    return z if z.stride(1) == 1 else z.contiguous()


def pair_column_stats(a: torch.Tensor, b: torch.Tensor, acc: torch.dtype, standardise: bool, eps: float = 0.0):
    """Returns ``(ca, cb, stats)``: the centred (or standardised) views in ``acc`` and a (3, D) stats tensor.

    centring: stats = [Σ ca², Σ cb², Σ (a − b)²]; standardising: stats = [rstd_a, rstd_b, Σ â·b̂].
    """
    n, d = a.shape
    a, b = row_major(a), row_major(b)
    ca = torch.empty((n, d), device=a.device, dtype=acc)
    cb = torch.empty((n, d), device=a.device, dtype=acc)
    stats = torch.empty((3, d), device=a.device, dtype=acc)
    launch(_pair_column_stats_kernel)[(cdiv(d, BLOCK_D),)](
        a, b, ca, cb, stats, n, d, a.stride(0), b.stride(0), 1.0 / n, eps,
        STANDARDISE=standardise, BLOCK_N=BLOCK_N, BLOCK_D=BLOCK_D,
    )
    return ca, cb, stats


def pair_loss_fake(z_a: torch.Tensor, z_b: torch.Tensor, compute_grad: bool):
    """Output shapes of a pair-loss launcher: fp32/fp64 scalar loss and two (N, D) gradients
    (or empty tensors when no gradient is asked for)."""
    shape = tuple(z_a.shape) if compute_grad else (0,)
    return z_a.new_empty((), dtype=acc_dtype(z_a.dtype)), z_a.new_empty(shape), z_b.new_empty(shape)
