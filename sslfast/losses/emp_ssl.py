"""EMP-SSL (Tong, Chen, Ma & LeCun, 2023, arXiv:2304.03977), the official semantics.

``inv_coef·(−mean_v mean_b cos(z_vb, z̄_b)) + mean_v TCR(z_v)`` with z̄ the (not detached) mean
over views. Minimising it maximises each view's coding rate; lightly 1.6's EMPSSLLoss has the
sign of this term inverted (it rewards collapse).

Layers, in order: ``emp_ssl_fwd_torch`` (torch backend; contract of
``sslfast.kernels.emp_ssl.emp_ssl_fwd``, whose Triton kernel fuses the invariance term),
``EMPSSLFunction``, ``emp_ssl_loss``, ``EMPSSLLoss``, ``emp_ssl_loss_reference``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .._checks import check_nonnegative, check_positive, stack_views
from .._numerics import COS_EPS, acc_dtype, coding_rates, max_abs, pow2_scale, scaled_norm
from ..backend import check_backend, resolve_backend
from ._common import creating_graph, differentiable_grads, scaled
from .coding_rate import total_coding_rate_reference

__all__ = ["EMPSSLLoss", "emp_ssl_loss", "emp_ssl_loss_reference"]


def emp_ssl_invariance_torch(z: torch.Tensor, compute_grad: bool):
    """EMP-SSL invariance −mean_{v,b} cos(z_vb, z̄_b), z̄ = mean over views (not detached); z: (V, B, D)."""
    acc = acc_dtype(z.dtype)
    x = z.to(acc)
    v, b, _ = x.shape
    # Overflow-safe: each sample's views are divided by one power-of-two scale (the max over its
    # views) so neither the view mean nor any squared norm overflows; the eps clamps move to
    # scaled units (eps/s) and the gradient, homogeneous of degree −1, is divided by s at the end.
    scale = pow2_scale(max_abs(x, (0, 2)))[:, None]  # (B, 1)
    y = x / scale
    mean = y.mean(0)
    _, nz = scaled_norm(y, scale, COS_EPS)
    _, nm = scaled_norm(mean, scale, COS_EPS)
    u, w = y / nz, mean / nm
    cos = (u * w).sum(-1, keepdim=True)
    loss = -cos.mean()
    if not compute_grad:
        return loss, z.new_empty(0)
    direct = (w - cos * u) / nz
    through_mean = (u - cos * w).sum(0) / (nm * v)
    grad = (-(direct + through_mean) / (v * b)) / scale
    return loss, grad.to(z.dtype)


def emp_ssl_fwd_torch(z: torch.Tensor, tcr_eps: float, inv_coef: float, compute_grad: bool):
    """EMP-SSL loss of (V, B, D) ``z`` and (if ``compute_grad``) dL/dz; an empty tensor otherwise."""
    inv, g_inv = emp_ssl_invariance_torch(z, compute_grad)
    rates, g_tcr = coding_rates(z, tcr_eps, compute_grad)
    loss = inv_coef * inv + rates.mean()
    if not compute_grad:
        return loss, z.new_empty(0)
    v = z.shape[0]
    return loss, (inv_coef * g_inv.to(g_tcr.dtype) + g_tcr / v).to(z.dtype)


def _emp_ssl_fwd(backend: str):
    """The forward+gradient launcher of a resolved backend: the Triton op or its torch twin."""
    if backend == "triton":
        from sslfast.kernels.emp_ssl import emp_ssl_fwd  # triton is optional: imported on first use

        return emp_ssl_fwd
    return emp_ssl_fwd_torch


class EMPSSLFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z, tcr_eps, inv_coef, backend):
        loss, grad = _emp_ssl_fwd(backend)(z, tcr_eps, inv_coef, ctx.needs_input_grad[0])
        ctx.save_for_backward(grad, z)  # z: for the double-backward path only
        ctx.params = (tcr_eps, inv_coef)
        return loss

    @staticmethod
    def backward(ctx, grad_out):
        grad, z = ctx.saved_tensors
        if creating_graph() and ctx.needs_input_grad[0]:  # create_graph=True: a differentiable gradient
            acc, (tcr_eps, inv_coef) = acc_dtype(z.dtype), ctx.params
            (dz,) = differentiable_grads(
                lambda x: emp_ssl_loss_reference(list(x.to(acc)), tcr_eps, inv_coef), (z,), grad_out, (True,)
            )
            return dz, None, None, None
        return scaled(grad_out, grad, ctx.needs_input_grad[0]), None, None, None


def emp_ssl_loss(z_views, *, tcr_eps: float = 0.2, inv_coef: float = 200.0, backend: str = "auto") -> torch.Tensor:
    """EMP-SSL loss (Tong, Chen, Ma & LeCun, 2023, arXiv:2304.03977), the official semantics.

    ``z_views``: a list of V (B, D) tensors or a (V, B, D) tensor. ``inv_coef·(−mean_v mean_b
    cos(z_vb, z̄_b)) + mean_v TCR(z_v)`` with z̄ the (not detached) mean over views. Minimising it
    maximises each view's coding rate; lightly 1.6's EMPSSLLoss has the sign of this term inverted.
    The official projector L2-normalises the embeddings before this loss; do so upstream.
    """
    views = stack_views(z_views, "z_views", min_views=2)
    check_positive(tcr_eps, "tcr_eps")
    check_nonnegative(inv_coef, "inv_coef")
    backend = resolve_backend(backend, views.device)
    if backend == "reference":
        return emp_ssl_loss_reference(list(views), tcr_eps, inv_coef)
    return EMPSSLFunction.apply(views, float(tcr_eps), float(inv_coef), backend)


class EMPSSLLoss(nn.Module):
    """EMP-SSL loss with the official sign (maximises the coding rate); see ``emp_ssl_loss``."""

    def __init__(self, tcr_eps: float = 0.2, inv_coef: float = 200.0, backend: str = "auto"):
        super().__init__()
        self.tcr_eps = check_positive(tcr_eps, "tcr_eps")
        self.inv_coef = check_nonnegative(inv_coef, "inv_coef")
        self.backend = check_backend(backend)

    def forward(self, z_views) -> torch.Tensor:
        return emp_ssl_loss(z_views, tcr_eps=self.tcr_eps, inv_coef=self.inv_coef, backend=self.backend)


def emp_ssl_loss_reference(z_views: list[torch.Tensor], tcr_eps: float = 0.2, inv_coef: float = 200.0) -> torch.Tensor:
    """EMP-SSL as in tsb0601/EMP-SSL main.py (textbook, one D×D logdet per view).

    ``inv_coef·(−mean_v mean_b cos(z_v, z̄)) + mean_v TCR(z_v)``, z̄ the (not detached) mean over
    views. Minimising it *maximises* the coding rate (lightly 1.6 has this sign inverted).
    """
    z_list = torch.stack(list(z_views), dim=0)
    z_avg = z_list.mean(dim=0)
    z_sim = 0
    for i in range(len(z_views)):
        z_sim = z_sim + F.cosine_similarity(z_list[i], z_avg, dim=1).mean()
    z_sim = z_sim / len(z_views)
    tcr = sum(total_coding_rate_reference(z, tcr_eps) for z in z_views) / len(z_views)
    return inv_coef * (-z_sim) + tcr
