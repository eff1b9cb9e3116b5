"""TiCo forward + gradient.

row kernel (L2-normalise both views, ⟨ẑ_a, ẑ_b⟩ per row) -> two cuBLAS calls
(C' = β·C + (1−β)/N·ẐaᵀẐa as one addmm, P = Ẑa·C') -> row kernel that forms the gradient
through the normalisation and the per-row quadratic form. TiCo's C is D×D state by
definition, so its cost is the two O(N·D²) GEMMs; the kernels remove the elementwise passes.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from sslfast._numerics import NORM_EPS, acc_dtype, max_abs, pow2_scale

from ._covariance import _tile, row_major
from ._op import cdiv, kernel_op, launch
from ._scalars import f64_arg, f64_bits

MAX_BLOCK_N = 16
ROW_TILE = 1024  # elements of one (BLOCK_N, BLOCK_D) tile
TARGET_PROGRAMS = 132  # one wave of a 132-SM H100/H200; tests may lower it


def row_blocks(n: int, d: int) -> tuple[int, int]:
    """``(BLOCK_N, BLOCK_D)``: the largest power-of-two row block ≤ MAX_BLOCK_N that still gives
    ≥ TARGET_PROGRAMS programs (one per row block; N = 256 → 1 row each), and a column block
    filling ROW_TILE elements."""
    block_n = MAX_BLOCK_N
    while block_n > 1 and cdiv(n, block_n) < TARGET_PROGRAMS:
        block_n //= 2
    block_d = max(16, min(triton.next_power_of_2(d), ROW_TILE // block_n))
    return block_n, block_d


@triton.jit
def _normalize_pair_kernel(a_ptr, b_ptr, inv_ptr, ua_ptr, ub_ptr, rows_ptr, N, D, stride_a, stride_b,
                           eps_bits, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr):
    """u = x/max(‖x‖, eps) per row, in units of the row's power-of-two scale s (``inv_ptr`` = 1/s):
    y = x/s, u = y/max(‖y‖, eps/s), so ‖x‖² is never formed (it overflows fp32 from |x| ≈ 1e19)."""
    ACC = ua_ptr.dtype.element_ty
    eps = f64_arg(eps_bits, ACC)
    rows = (tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)).to(tl.int64)
    rmask = rows < N
    inv_a = tl.load(inv_ptr + rows, mask=rmask, other=1.0)
    inv_b = tl.load(inv_ptr + N + rows, mask=rmask, other=1.0)
    sa = tl.zeros([BLOCK_N], ACC)
    sb = tl.zeros([BLOCK_N], ACC)
    for d0 in range(0, D, BLOCK_D):
        cols = d0 + tl.arange(0, BLOCK_D)
        mask = rmask[:, None] & (cols < D)[None, :]
        a = _tile(a_ptr, stride_a, rows, cols, mask, ACC) * inv_a[:, None]
        b = _tile(b_ptr, stride_b, rows, cols, mask, ACC) * inv_b[:, None]
        sa += tl.sum(a * a, 1)
        sb += tl.sum(b * b, 1)
    na = tl.sqrt(sa)
    nb = tl.sqrt(sb)
    inv_a_n = inv_a / tl.maximum(na, eps * inv_a)
    inv_b_n = inv_b / tl.maximum(nb, eps * inv_b)
    dots = tl.zeros([BLOCK_N], ACC)
    for d0 in range(0, D, BLOCK_D):
        cols = d0 + tl.arange(0, BLOCK_D)
        mask = rmask[:, None] & (cols < D)[None, :]
        ua = _tile(a_ptr, stride_a, rows, cols, mask, ACC) * inv_a_n[:, None]
        ub = _tile(b_ptr, stride_b, rows, cols, mask, ACC) * inv_b_n[:, None]
        dots += tl.sum(ua * ub, 1)
        tl.store(ua_ptr + rows[:, None] * D + cols[None, :], ua, mask=mask)
        tl.store(ub_ptr + rows[:, None] * D + cols[None, :], ub, mask=mask)
    tl.store(rows_ptr + rows, na / inv_a, mask=rmask)  # ‖x‖: inf only where it is beyond the dtype
    tl.store(rows_ptr + N + rows, nb / inv_b, mask=rmask)
    tl.store(rows_ptr + 2 * N + rows, dots, mask=rmask)


@triton.jit
def _tico_fwd_kernel(ua_ptr, ub_ptr, p_ptr, rows_ptr, ga_ptr, gb_ptr, N, D, inv_n_bits,
                     two_rho_bits, eps_bits, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr):
    ACC = ua_ptr.dtype.element_ty
    inv_n = f64_arg(inv_n_bits, ACC)
    two_rho = f64_arg(two_rho_bits, ACC)
    eps = f64_arg(eps_bits, ACC)
    rows = (tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)).to(tl.int64)
    rmask = rows < N
    na = tl.load(rows_ptr + rows, mask=rmask, other=1.0)
    nb = tl.load(rows_ptr + N + rows, mask=rmask, other=1.0)
    quad = tl.zeros([BLOCK_N], ACC)
    proj_a = tl.zeros([BLOCK_N], ACC)
    proj_b = tl.zeros([BLOCK_N], ACC)
    for d0 in range(0, D, BLOCK_D):
        cols = d0 + tl.arange(0, BLOCK_D)
        mask = rmask[:, None] & (cols < D)[None, :]
        offs = rows[:, None] * D + cols[None, :]
        ua = tl.load(ua_ptr + offs, mask=mask, other=0.0)
        ub = tl.load(ub_ptr + offs, mask=mask, other=0.0)
        p = tl.load(p_ptr + offs, mask=mask, other=0.0)
        quad += tl.sum(p * ua, 1)
        proj_a += tl.sum(ua * (two_rho * p - ub), 1)
        proj_b -= tl.sum(ub * ua, 1)
    proj_a *= inv_n
    proj_b *= inv_n
    tl.store(rows_ptr + 3 * N + rows, quad, mask=rmask)
    for d0 in range(0, D, BLOCK_D):
        cols = d0 + tl.arange(0, BLOCK_D)
        mask = rmask[:, None] & (cols < D)[None, :]
        offs = rows[:, None] * D + cols[None, :]
        ua = tl.load(ua_ptr + offs, mask=mask, other=0.0)
        ub = tl.load(ub_ptr + offs, mask=mask, other=0.0)
        gua = (two_rho * tl.load(p_ptr + offs, mask=mask, other=0.0) - ub) * inv_n
        gub = -ua * inv_n
        # backward of u = x / max(‖x‖, eps): (g − u⟨u, g⟩)/‖x‖ above eps, g/eps below it
        ga = tl.where(na[:, None] > eps, (gua - ua * proj_a[:, None]) / tl.maximum(na, eps)[:, None], gua / eps)
        gb = tl.where(nb[:, None] > eps, (gub - ub * proj_b[:, None]) / tl.maximum(nb, eps)[:, None], gub / eps)
        tl.store(ga_ptr + offs, ga.to(ga_ptr.dtype.element_ty), mask=mask)
        tl.store(gb_ptr + offs, gb.to(gb_ptr.dtype.element_ty), mask=mask)


def _tico_fwd_fake(z_a, z_b, cov, beta, rho, compute_grad):
    acc = torch.promote_types(acc_dtype(z_a.dtype), cov.dtype)
    n, d = z_a.shape
    shape = (n, d) if compute_grad else (0,)
    return z_a.new_empty((), dtype=acc), z_a.new_empty(shape), z_b.new_empty(shape), torch.empty_like(cov)


@kernel_op("tico_fwd", fake=_tico_fwd_fake)
def tico_fwd(z_a: torch.Tensor, z_b: torch.Tensor, cov: torch.Tensor, beta: float, rho: float,
             compute_grad: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """TiCo loss, gradients and updated covariance; contract of ``sslfast.losses.tico.tico_fwd_torch``."""
    n, d = z_a.shape
    acc = torch.promote_types(acc_dtype(z_a.dtype), cov.dtype)
    z_a, z_b = row_major(z_a), row_major(z_b)
    ua = torch.empty((n, d), device=z_a.device, dtype=acc)
    ub = torch.empty((n, d), device=z_a.device, dtype=acc)
    per_row = torch.empty((4, n), device=z_a.device, dtype=acc)  # ‖a‖, ‖b‖, ⟨ûa, ûb⟩, ûa·C'·ûaᵀ
    inv = 1 / pow2_scale(torch.stack([max_abs(z_a, 1), max_abs(z_b, 1)]).to(acc))  # exact: powers of two
    block_n, block_d = row_blocks(n, d)
    grid = (cdiv(n, block_n),)
    eps = f64_bits(NORM_EPS)
    launch(_normalize_pair_kernel)[grid](z_a, z_b, inv, ua, ub, per_row, n, d, z_a.stride(0), z_b.stride(0), eps,
                                         BLOCK_N=block_n, BLOCK_D=block_d)
    new_cov = torch.addmm(cov.to(acc), ua.T, ua, beta=beta, alpha=(1 - beta) / n)
    p = ua @ new_cov
    if compute_grad:
        ga = torch.empty((n, d), device=z_a.device, dtype=z_a.dtype)
        gb = torch.empty((n, d), device=z_b.device, dtype=z_b.dtype)
        launch(_tico_fwd_kernel)[grid](ua, ub, p, per_row, ga, gb, n, d, f64_bits(1.0 / n), f64_bits(2.0 * rho),
                                        eps, BLOCK_N=block_n, BLOCK_D=block_d)
        quad = per_row[3].sum()
    else:
        ga, gb = z_a.new_empty(0), z_b.new_empty(0)
        quad = (p * ua).sum()
    loss = 1 - per_row[2].sum() / n + (rho / n) * quad
    return loss, ga, gb, new_cov.to(cov.dtype)
