"""All-gather with gradient, for losses that need the global batch.

The backward of the gather sums the incoming gradients over ranks (all-reduce) and keeps this
rank's slice. Two loss layouts use it, with one guarantee:
- covariance family (VICReg, Barlow Twins, TiCo): every rank computes the loss of the *global*
  batch, so every rank returns the single-process loss;
- InfoNCE family: each rank's queries are its own rows against every rank's keys (as lightly
  and solo-learn), so each rank returns its share and the mean over ranks is the
  single-process loss.
Either way each rank holds ``world_size`` times its slice of the single-process input
gradient, and DDP's gradient averaging yields exactly the single-process parameter gradient
on the concatenated batch.
"""
from __future__ import annotations

import torch
import torch.distributed as dist


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


class _GatherWithGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, dim: int) -> torch.Tensor:
        ctx.dim = dim
        ctx.sizes = [None] * dist.get_world_size()
        x = x.contiguous()
        sizes = torch.tensor([x.shape[dim]], device=x.device)
        all_sizes = [torch.empty_like(sizes) for _ in ctx.sizes]
        dist.all_gather(all_sizes, sizes)
        ctx.sizes = [int(s) for s in all_sizes]
        if len(set(ctx.sizes)) != 1:
            raise ValueError(f"gather_distributed needs the same batch size on every rank, got {ctx.sizes}")
        parts = [torch.empty_like(x) for _ in ctx.sizes]
        dist.all_gather(parts, x)
        return torch.cat(parts, dim=dim)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        grad = grad.contiguous()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad.narrow(ctx.dim, dist.get_rank() * ctx.sizes[0], ctx.sizes[0]), None


def gather(x: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """Concatenate ``x`` from all ranks along ``dim``, keeping the graph. No-op on one process."""
    if not is_distributed():
        return x
    return _GatherWithGrad.apply(x, dim)


def gather_pair(z_a: torch.Tensor, z_b: torch.Tensor, enabled: bool) -> tuple[torch.Tensor, torch.Tensor]:
    if not enabled:
        return z_a, z_b
    return gather(z_a), gather(z_b)
