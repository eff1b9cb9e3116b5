"""What every fused loss's autograd Function shares."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch


def scaled(grad_out: torch.Tensor, grad: torch.Tensor, needed: bool) -> torch.Tensor | None:
    """``grad_out · grad`` (the forward already produced dL/dz) or None when autograd does not need it."""
    return grad_out.to(grad.dtype) * grad if needed else None


def creating_graph() -> bool:
    """True inside ``backward`` when autograd records the backward itself (``create_graph=True``:
    ``torch.autograd.grad(..., create_graph=True)``, ``torch.autograd.functional.hessian``, a
    gradient penalty). The fused gradient saved by the forward is a constant with no graph, so its
    derivative would silently be zero: the Functions then recompute the gradient differentiably."""
    return torch.is_grad_enabled()


def differentiable_grads(
    loss_fn: Callable[..., torch.Tensor],
    inputs: Sequence[torch.Tensor],
    grad_out: torch.Tensor,
    needs: Sequence[bool],
) -> list[torch.Tensor | None]:
    """``grad_out · d loss_fn(*inputs) / d inputs`` as a differentiable function of the inputs.

    The double-backward path of the fused Functions: ``loss_fn`` is the loss written with
    differentiable torch ops (the float64-truth reference, evaluated in the accumulation dtype), and
    ``inputs`` are the tensors the forward saved, so the gradient returned here carries a graph back
    to them and further derivatives (Hessians, gradient penalties) are exact rather than zero.
    ``needs``: which inputs autograd wants a gradient for (None is returned for the others).
    """
    if not any(needs):
        return [None] * len(needs)
    with torch.enable_grad():
        # Fresh alias nodes (identity views) so that each gradient is the *partial* derivative for its
        # input: when one input is computed from another (loss(a, a.flip(0))), differentiating with
        # respect to the saved tensors themselves would add the paths through the other input.
        aliases = [x.view_as(x) if need else x for x, need in zip(inputs, needs)]
        loss = loss_fn(*aliases)
        wrt = [x for x, need in zip(aliases, needs) if need]
        grads = iter(torch.autograd.grad(loss, wrt, grad_out.to(loss.dtype), create_graph=True))
    return [next(grads) if need else None for need in needs]


def off_diagonal(x: torch.Tensor) -> torch.Tensor:
    """The off-diagonal entries of a square matrix, flattened (the official references' helper)."""
    n = x.shape[0]
    return x.flatten()[:-1].view(n - 1, n + 1)[:, 1:].flatten()
