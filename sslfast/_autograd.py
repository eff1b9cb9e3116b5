"""Where kernels meet autograd: one autograd.Function per fused loss.

Each forward calls a launcher that returns the loss *and* its input gradients (the
Triton op from ``sslfast.kernels`` or the plain-PyTorch twin from ``torch_impl``);
backward only scales the saved gradients by grad_output.
"""

from __future__ import annotations

import torch

from . import torch_impl


def _kernel_launchers() -> dict:
    # Imported on first use (triton is optional on CPU); plain import statements, not importlib,
    # so that torch.compile can trace a first call that happens inside a compiled step.
    from sslfast.kernels import barlow, coding_rate, infonce, tico, vicreg

    return {
        "multicrop_infonce": infonce.multicrop_infonce_fwd,
        "nt_xent_bank": infonce.nt_xent_bank_fwd,
        "vicreg": vicreg.vicreg_fwd,
        "barlow_twins": barlow.barlow_twins_fwd,
        "tico": tico.tico_fwd,
        "coding_rate": coding_rate.coding_rate_fwd,
        "view_invariance": coding_rate.view_invariance_fwd,
    }


def launcher(loss: str, backend: str):
    """The forward+gradient function of ``loss`` for a resolved backend ("torch" | "triton")."""
    if backend == "torch":
        return getattr(torch_impl, f"{loss}_fwd_torch")
    return _kernel_launchers()[loss]


def _scaled(grad_out: torch.Tensor, grad: torch.Tensor, needed: bool):
    return grad_out.to(grad.dtype) * grad if needed else None


class VICRegFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z_a, z_b, lambda_param, mu_param, nu_param, eps, backend):
        compute_grad = ctx.needs_input_grad[0] or ctx.needs_input_grad[1]
        loss, ga, gb = launcher("vicreg", backend)(z_a, z_b, lambda_param, mu_param, nu_param, eps, compute_grad)
        ctx.save_for_backward(ga, gb)
        return loss

    @staticmethod
    def backward(ctx, grad_out):
        ga, gb = ctx.saved_tensors
        return (
            _scaled(grad_out, ga, ctx.needs_input_grad[0]),
            _scaled(grad_out, gb, ctx.needs_input_grad[1]),
            None,
            None,
            None,
            None,
            None,
        )


class BarlowTwinsFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z_a, z_b, lambda_param, backend):
        compute_grad = ctx.needs_input_grad[0] or ctx.needs_input_grad[1]
        loss, ga, gb = launcher("barlow_twins", backend)(z_a, z_b, lambda_param, compute_grad)
        ctx.save_for_backward(ga, gb)
        return loss

    @staticmethod
    def backward(ctx, grad_out):
        ga, gb = ctx.saved_tensors
        return (
            _scaled(grad_out, ga, ctx.needs_input_grad[0]),
            _scaled(grad_out, gb, ctx.needs_input_grad[1]),
            None,
            None,
        )


class TiCoFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z_a, z_b, cov, beta, rho, backend):
        compute_grad = ctx.needs_input_grad[0] or ctx.needs_input_grad[1]
        loss, ga, gb, new_cov = launcher("tico", backend)(z_a, z_b, cov, beta, rho, compute_grad)
        ctx.save_for_backward(ga, gb)
        ctx.mark_non_differentiable(new_cov)
        return loss, new_cov

    @staticmethod
    def backward(ctx, grad_out, _grad_cov):
        ga, gb = ctx.saved_tensors
        return (
            _scaled(grad_out, ga, ctx.needs_input_grad[0]),
            _scaled(grad_out, gb, ctx.needs_input_grad[1]),
            None,
            None,
            None,
            None,
        )


class CodingRateFunction(torch.autograd.Function):
    """Per-view coding rates (V,) of a (V, N, D) tensor."""

    @staticmethod
    def forward(ctx, z, eps, backend):
        rates, grad = launcher("coding_rate", backend)(z, eps, ctx.needs_input_grad[0])
        ctx.save_for_backward(grad)
        return rates

    @staticmethod
    def backward(ctx, grad_out):
        (grad,) = ctx.saved_tensors
        if not ctx.needs_input_grad[0]:
            return None, None, None
        return grad_out.to(grad.dtype)[:, None, None] * grad, None, None


class ViewInvarianceFunction(torch.autograd.Function):
    """EMP-SSL's −mean cos(z_v, z̄) of a (V, B, D) tensor."""

    @staticmethod
    def forward(ctx, z, backend):
        loss, grad = launcher("view_invariance", backend)(z, ctx.needs_input_grad[0])
        ctx.save_for_backward(grad)
        return loss

    @staticmethod
    def backward(ctx, grad_out):
        (grad,) = ctx.saved_tensors
        return _scaled(grad_out, grad, ctx.needs_input_grad[0]), None


# ---------------------------------------------------------------------------------------------
# InfoNCE family (issue 3)
# ---------------------------------------------------------------------------------------------


class MultiCropInfoNCEFunction(torch.autograd.Function):
    """Multi-crop InfoNCE of (V, B_g, D) keys; queries are images q_start .. q_start+q_count."""

    @staticmethod
    def forward(ctx, z, row_scale, temperature, q_start, q_count, backend):
        loss, grad = launcher("multicrop_infonce", backend)(
            z, row_scale, temperature, q_start, q_count, ctx.needs_input_grad[0]
        )
        ctx.save_for_backward(grad)
        return loss

    @staticmethod
    def backward(ctx, grad_out):
        (grad,) = ctx.saved_tensors
        return _scaled(grad_out, grad, ctx.needs_input_grad[0]), None, None, None, None, None


class NTXentBankFunction(torch.autograd.Function):
    """MoCo-form NT-Xent: queries out0, positives out1, negatives the (constant) bank."""

    @staticmethod
    def forward(ctx, out0, out1, bank, temperature, backend):
        compute_grad = ctx.needs_input_grad[0] or ctx.needs_input_grad[1]
        loss, grad = launcher("nt_xent_bank", backend)(out0, out1, bank, temperature, compute_grad)
        ctx.save_for_backward(grad)
        return loss

    @staticmethod
    def backward(ctx, grad_out):
        (grad,) = ctx.saved_tensors
        if not (ctx.needs_input_grad[0] or ctx.needs_input_grad[1]):
            return None, None, None, None, None
        return (
            _scaled(grad_out, grad[0], ctx.needs_input_grad[0]),
            _scaled(grad_out, grad[1], ctx.needs_input_grad[1]),
            None,
            None,
            None,
        )
