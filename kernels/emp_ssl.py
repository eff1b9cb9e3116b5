"""EMP-SSL forward + gradient: the view-invariance term as one Triton kernel, plus the coding rate.

The coding rate is a batched Gram (cuBLAS) and a batched Cholesky (cuSOLVER); there is no
Triton kernel to write for a factorisation, so ``emp_ssl_fwd`` runs the shared batched path
(``sslfast._numerics.coding_rates``). The invariance term −mean_{v,b} cos(z_vb, z̄_b) and its
gradient (z̄ not detached) are one kernel: a program per sample walks its V views twice
(reduce, then write), with no (V, B, D) temporaries.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from sslfast._numerics import COS_EPS, acc_dtype, coding_rates

from ._op import kernel_op, launch

BLOCK_D = 64


@triton.jit
def _emp_ssl_fwd_kernel(z_ptr, g_ptr, cos_ptr, V, B, D, stride_v, stride_b, eps, grad_scale,
                            COMPUTE_GRAD: tl.constexpr, VP: tl.constexpr, BLOCK_D: tl.constexpr):
    ACC = cos_ptr.dtype.element_ty
    b = tl.program_id(0)
    vs = tl.arange(0, VP)
    vmask = vs < V
    sq = tl.zeros([VP], ACC)
    dots = tl.zeros([VP], ACC)
    mean_sq = tl.zeros([BLOCK_D], ACC)
    for d0 in range(0, D, BLOCK_D):
        cols = d0 + tl.arange(0, BLOCK_D)
        mask = vmask[:, None] & (cols < D)[None, :]
        x = tl.load(z_ptr + vs[:, None] * stride_v + b * stride_b + cols[None, :], mask=mask, other=0.0).to(ACC)
        mean = tl.sum(x, 0) / V
        sq += tl.sum(x * x, 1)
        dots += tl.sum(x * mean[None, :], 1)
        mean_sq += mean * mean
    nz = tl.maximum(tl.sqrt(sq), eps)
    nm = tl.maximum(tl.sqrt(tl.sum(mean_sq, 0)), eps)
    cos = dots / (nz * nm)
    tl.store(cos_ptr + vs * B + b, cos, mask=vmask)
    if COMPUTE_GRAD:
        for d0 in range(0, D, BLOCK_D):
            cols = d0 + tl.arange(0, BLOCK_D)
            mask = vmask[:, None] & (cols < D)[None, :]
            x = tl.load(z_ptr + vs[:, None] * stride_v + b * stride_b + cols[None, :], mask=mask, other=0.0).to(ACC)
            w = (tl.sum(x, 0) / V) / nm
            u = x / nz[:, None]
            direct = (w[None, :] - cos[:, None] * u) / nz[:, None]
            through_mean = tl.sum(tl.where(mask, u - cos[:, None] * w[None, :], 0.0), 0) / (nm * V)
            g = grad_scale * (direct + through_mean[None, :])
            tl.store(g_ptr + vs[:, None] * (B * D) + b * D + cols[None, :], g.to(g_ptr.dtype.element_ty), mask=mask)


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
    cos = torch.empty((v, b), device=z.device, dtype=acc_dtype(z.dtype))
    grad = torch.empty((v, b, d), device=z.device, dtype=z.dtype) if compute_grad else z.new_empty(0)
    # the invariance gradient is written pre-scaled by inv_coef: d(inv_coef·(−mean cos))/dz
    launch(_emp_ssl_fwd_kernel)[(b,)](
        z, grad if compute_grad else cos, cos, v, b, d, z.stride(0), z.stride(1), COS_EPS, -inv_coef / (v * b),
        COMPUTE_GRAD=compute_grad, VP=triton.next_power_of_2(v), BLOCK_D=BLOCK_D,
    )
    rates, g_tcr = coding_rates(z, tcr_eps, compute_grad)
    loss = -inv_coef * cos.mean() + rates.mean()
    if compute_grad:
        grad = (grad.to(g_tcr.dtype) + g_tcr / v).to(z.dtype)
    return loss, grad
