"""EMP-SSL forward + gradient: the view-invariance term as one Triton kernel, plus the coding rate.

The coding rate is a batched Gram (cuBLAS) and a batched Cholesky (cuSOLVER); there is no
Triton kernel to write for a factorisation, so ``emp_ssl_fwd`` runs the shared batched path
(``sslfast._numerics.coding_rates``). The invariance term −mean_{v,b} cos(z_vb, z̄_b) and its
gradient (z̄ not detached) are one kernel: a program per sample walks its V views in chunks of
at most MAX_BLOCK_V views (reduce, then write), with no (V, B, D) temporaries.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from sslfast._numerics import COS_EPS, acc_dtype, coding_rates, max_abs, pow2_scale

from ._op import kernel_op, launch
from ._scalars import f64_arg, f64_bits

BLOCK_D = 64
MAX_BLOCK_V = 16  # views per tile: a (16, 64) tile keeps V = 256 free of register spills


@triton.jit
def _view_tile(z_ptr, v0, b, cols, V, D, stride_v, stride_b, inv, BLOCK_V: tl.constexpr):
    """Views v0..v0+BLOCK_V of sample b over ``cols``, in units of the sample's scale (× ``inv``)."""
    vs = v0 + tl.arange(0, BLOCK_V)
    mask = (vs < V)[:, None] & (cols < D)[None, :]
    x = tl.load(z_ptr + vs.to(tl.int64)[:, None] * stride_v + b * stride_b + cols[None, :], mask=mask, other=0.0)
    return x.to(inv.dtype) * inv, vs, mask


@triton.jit
def _emp_ssl_fwd_kernel(z_ptr, inv_ptr, g_ptr, cos_ptr, work_ptr, V, B, D, stride_v, stride_b,
                        eps_bits, scale_bits,
                        COMPUTE_GRAD: tl.constexpr, BLOCK_V: tl.constexpr, BLOCK_D: tl.constexpr):
    """Program b: cos(z_vb, z̄_b) for every view and (COMPUTE_GRAD) d(scale·Σ_v cos)/dz_vb.

    Views are walked in chunks of BLOCK_V (V up to 256 and beyond without spills); the per-view
    ‖y_v‖² and ⟨y_v, ȳ⟩ accumulate in row b of ``work_ptr`` (B, 2, V), which only this program
    touches; the cosines go to row b of ``cos_ptr`` (B, V).
    Data are in units of the sample's power-of-two scale s (``inv_ptr`` = 1/s): no norm overflows,
    the eps clamps become eps/s and the gradient (degree −1 in z) is multiplied by 1/s at the end.
    """
    ACC = cos_ptr.dtype.element_ty
    eps = f64_arg(eps_bits, ACC)
    grad_scale = f64_arg(scale_bits, ACC)
    b = tl.program_id(0).to(tl.int64)
    inv = tl.load(inv_ptr + b)
    eps_y = eps * inv
    # per-sample rows of the (B, V) cosines and the (B, 2, V) scratch: no per-view multiply
    cos_b = cos_ptr + b * V
    sq_ptr = work_ptr + b * 2 * V
    dot_ptr = sq_ptr + V
    for v0 in range(0, V, BLOCK_V):
        vs = v0 + tl.arange(0, BLOCK_V)
        tl.store(sq_ptr + vs, tl.zeros([BLOCK_V], ACC), mask=vs < V)
        tl.store(dot_ptr + vs, tl.zeros([BLOCK_V], ACC), mask=vs < V)
    mean_sq = tl.zeros([BLOCK_D], ACC)
    for d0 in range(0, D, BLOCK_D):
        cols = d0 + tl.arange(0, BLOCK_D)
        total = tl.zeros([BLOCK_D], ACC)
        for v0 in range(0, V, BLOCK_V):
            x, vs, mask = _view_tile(z_ptr, v0, b, cols, V, D, stride_v, stride_b, inv, BLOCK_V)
            total += tl.sum(x, 0)
        mean = total / V
        mean_sq += mean * mean
        for v0 in range(0, V, BLOCK_V):
            x, vs, mask = _view_tile(z_ptr, v0, b, cols, V, D, stride_v, stride_b, inv, BLOCK_V)
            vmask = vs < V
            tl.store(sq_ptr + vs, tl.load(sq_ptr + vs, mask=vmask, other=0.0) + tl.sum(x * x, 1), mask=vmask)
            tl.store(dot_ptr + vs, tl.load(dot_ptr + vs, mask=vmask, other=0.0) + tl.sum(x * mean[None, :], 1),
                     mask=vmask)
    nm = tl.maximum(tl.sqrt(tl.sum(mean_sq, 0)), eps_y)
    cos_sum = tl.zeros([BLOCK_V], ACC)
    for v0 in range(0, V, BLOCK_V):
        vs = v0 + tl.arange(0, BLOCK_V)
        vmask = vs < V
        nz = tl.maximum(tl.sqrt(tl.load(sq_ptr + vs, mask=vmask, other=1.0)), eps_y)
        cos = tl.load(dot_ptr + vs, mask=vmask, other=0.0) / (nz * nm)
        cos_sum += tl.where(vmask, cos, 0.0)
        tl.store(cos_b + vs, cos, mask=vmask)
        tl.store(sq_ptr + vs, nz, mask=vmask)  # from here on: the clamped norm
    if COMPUTE_GRAD:
        total_cos = tl.sum(cos_sum, 0)
        for d0 in range(0, D, BLOCK_D):
            cols = d0 + tl.arange(0, BLOCK_D)
            total = tl.zeros([BLOCK_D], ACC)
            total_u = tl.zeros([BLOCK_D], ACC)
            for v0 in range(0, V, BLOCK_V):
                x, vs, mask = _view_tile(z_ptr, v0, b, cols, V, D, stride_v, stride_b, inv, BLOCK_V)
                nz = tl.load(sq_ptr + vs, mask=vs < V, other=1.0)
                total += tl.sum(x, 0)
                total_u += tl.sum(x / nz[:, None], 0)
            w = (total / V) / nm
            # Σ_v (u_v − cos_v·w) / (‖z̄‖·V): the path through the (not detached) mean
            through_mean = (total_u - total_cos * w) / (nm * V)
            for v0 in range(0, V, BLOCK_V):
                x, vs, mask = _view_tile(z_ptr, v0, b, cols, V, D, stride_v, stride_b, inv, BLOCK_V)
                vmask = vs < V
                nz = tl.load(sq_ptr + vs, mask=vmask, other=1.0)
                cos = tl.load(cos_b + vs, mask=vmask, other=0.0)
                direct = (w[None, :] - cos[:, None] * (x / nz[:, None])) / nz[:, None]
                g = (grad_scale * (direct + through_mean[None, :])) * inv
                offs = (vs.to(tl.int64)[:, None] * B + b) * D + cols[None, :]
                tl.store(g_ptr + offs, g.to(g_ptr.dtype.element_ty), mask=mask)


def _emp_ssl_fwd_fake(z, tcr_eps, inv_coef, compute_grad):
    return z.new_empty((), dtype=acc_dtype(z.dtype)), (torch.empty_like(z) if compute_grad else z.new_empty(0))


@kernel_op("emp_ssl_fwd", fake=_emp_ssl_fwd_fake)
def emp_ssl_fwd(
    z: torch.Tensor, tcr_eps: float, inv_coef: float, compute_grad: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """EMP-SSL loss and (if ``compute_grad``) dL/dz of (V, B, D) ``z``.

    Contract of ``sslfast.losses.emp_ssl.emp_ssl_fwd_torch``.
    """
    v, b, d = z.shape
    if z.stride(2) != 1:
        z = z.contiguous()
    acc = acc_dtype(z.dtype)
    cos = torch.empty((b, v), device=z.device, dtype=acc)
    work = torch.empty((b, 2, v), device=z.device, dtype=acc)
    inv = 1 / pow2_scale(max_abs(z, (0, 2)).to(acc))  # per sample; exact: powers of two
    grad = torch.empty((v, b, d), device=z.device, dtype=z.dtype) if compute_grad else z.new_empty(0)
    # the invariance gradient is written pre-scaled by inv_coef: d(inv_coef·(−mean cos))/dz
    launch(_emp_ssl_fwd_kernel)[(b,)](
        z, inv, grad if compute_grad else cos, cos, work, v, b, d, z.stride(0), z.stride(1),
        f64_bits(COS_EPS), f64_bits(-inv_coef / (v * b)),
        COMPUTE_GRAD=compute_grad, BLOCK_V=min(MAX_BLOCK_V, triton.next_power_of_2(v)), BLOCK_D=BLOCK_D,
    )
    rates, g_tcr = coding_rates(z, tcr_eps, compute_grad)
    loss = -inv_coef * cos.mean() + rates.mean()
    if compute_grad:
        grad = (grad.to(g_tcr.dtype) + g_tcr / v).to(z.dtype)
    return loss, grad
