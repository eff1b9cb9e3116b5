"""What every fused loss's autograd Function shares."""

from __future__ import annotations

import torch


def scaled(grad_out: torch.Tensor, grad: torch.Tensor, needed: bool) -> torch.Tensor | None:
    """``grad_out · grad`` (the forward already produced dL/dz) or None when autograd does not need it."""
    return grad_out.to(grad.dtype) * grad if needed else None


def off_diagonal(x: torch.Tensor) -> torch.Tensor:
    """The off-diagonal entries of a square matrix, flattened (the official references' helper)."""
    n = x.shape[0]
    return x.flatten()[:-1].view(n - 1, n + 1)[:, 1:].flatten()
