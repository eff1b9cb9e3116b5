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

from sslfast._numerics import NORM_EPS, acc_dtype

from ._covariance import row_major
from ._op import cdiv, kernel_op, launch

BLOCK_N = 16
BLOCK_D = 64


@triton.jit
def _normalize_pair_kernel(a_ptr, b_ptr, ua_ptr, ub_ptr, rows_ptr, N, D, stride_a, stride_b, eps,
                           BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr):
    ACC = ua_ptr.dtype.element_ty
    rows = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    rmask = rows < N
    sa = tl.zeros([BLOCK_N], ACC)
    sb = tl.zeros([BLOCK_N], ACC)
    for d0 in range(0, D, BLOCK_D):
        cols = d0 + tl.arange(0, BLOCK_D)
        mask = rmask[:, None] & (cols < D)[None, :]
        a = tl.load(a_ptr + rows[:, None] * stride_a + cols[None, :], mask=mask, other=0.0).to(ACC)
        b = tl.load(b_ptr + rows[:, None] * stride_b + cols[None, :], mask=mask, other=0.0).to(ACC)
        sa += tl.sum(a * a, 1)
        sb += tl.sum(b * b, 1)
    na = tl.sqrt(sa)
    nb = tl.sqrt(sb)
    inv_a = 1.0 / tl.maximum(na, eps)
    inv_b = 1.0 / tl.maximum(nb, eps)
    dots = tl.zeros([BLOCK_N], ACC)
    for d0 in range(0, D, BLOCK_D):
        cols = d0 + tl.arange(0, BLOCK_D)
        mask = rmask[:, None] & (cols < D)[None, :]
        ua = tl.load(a_ptr + rows[:, None] * stride_a + cols[None, :], mask=mask, other=0.0).to(ACC) * inv_a[:, None]
        ub = tl.load(b_ptr + rows[:, None] * stride_b + cols[None, :], mask=mask, other=0.0).to(ACC) * inv_b[:, None]
        dots += tl.sum(ua * ub, 1)
        tl.store(ua_ptr + rows[:, None] * D + cols[None, :], ua, mask=mask)
        tl.store(ub_ptr + rows[:, None] * D + cols[None, :], ub, mask=mask)
    tl.store(rows_ptr + rows, na, mask=rmask)
    tl.store(rows_ptr + N + rows, nb, mask=rmask)
    tl.store(rows_ptr + 2 * N + rows, dots, mask=rmask)


@triton.jit
def _tico_fwd_kernel(ua_ptr, ub_ptr, p_ptr, rows_ptr, ga_ptr, gb_ptr, N, D, inv_n, two_rho, eps,
                      BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr):
    ACC = ua_ptr.dtype.element_ty
    rows = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
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
    grid = (cdiv(n, BLOCK_N),)
    launch(_normalize_pair_kernel)[grid](z_a, z_b, ua, ub, per_row, n, d, z_a.stride(0), z_b.stride(0), NORM_EPS,
                                         BLOCK_N=BLOCK_N, BLOCK_D=BLOCK_D)
    new_cov = torch.addmm(cov.to(acc), ua.T, ua, beta=beta, alpha=(1 - beta) / n)
    p = ua @ new_cov
    if compute_grad:
        ga = torch.empty((n, d), device=z_a.device, dtype=z_a.dtype)
        gb = torch.empty((n, d), device=z_b.device, dtype=z_b.dtype)
        launch(_tico_fwd_kernel)[grid](ua, ub, p, per_row, ga, gb, n, d, 1.0 / n, 2.0 * rho, NORM_EPS,
                                        BLOCK_N=BLOCK_N, BLOCK_D=BLOCK_D)
        quad = per_row[3].sum()
    else:
        ga, gb = z_a.new_empty(0), z_b.new_empty(0)
        quad = (p * ua).sum()
    loss = 1 - per_row[2].sum() / n + (rho / n) * quad
    return loss, ga, gb, new_cov.to(cov.dtype)
