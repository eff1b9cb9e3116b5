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

Every collective here names itself when it fails: a rank that is stuck or gone makes the others
wait until the process group's timeout (``TrainConfig.dist_timeout_s``, ``--dist-timeout-s``), and
the error then says which collective of which loss step was waiting, instead of a bare backend
message.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from ._checks import check_bool

__all__ = [
    "CollectiveError",
    "check_gather_distributed",
    "gather",
    "gather_pair",
    "is_distributed",
    "rank",
    "world_size",
]


class CollectiveError(RuntimeError):
    """A collective did not complete: another rank is stuck (timeout) or has exited."""


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def check_gather_distributed(flag, check_available: bool = True) -> bool:
    """``gather_distributed`` is a bool and, when True, torch.distributed exists (as lightly checks)."""
    check_bool(flag, "gather_distributed")
    if flag and check_available and not dist.is_available():
        raise ValueError(
            "gather_distributed=True needs torch.distributed, which this torch build does not provide "
            "(torch.distributed.is_available() is False); pass gather_distributed=False"
        )
    return flag


def _timeout_s() -> float | None:
    """The default process group's timeout in seconds, when the backend exposes it."""
    try:
        backend = dist.group.WORLD._get_backend(torch.device("cpu"))
        return backend.options._timeout.total_seconds()
    except Exception:  # noqa: BLE001 - private API, best effort: the message works without it
        return None


_LOST_PEER = ("timed out", "timeout", "connection closed", "connection reset", "broken pipe", "peer")


def _collective(name: str, fn, *args):
    """Run ``fn(*args)``; a timeout or a lost peer becomes a ``CollectiveError`` naming ``name``."""
    try:
        return fn(*args)
    except RuntimeError as e:  # DistBackendError / DistNetworkError are RuntimeErrors
        text = str(e).lower()
        if not any(k in text for k in _LOST_PEER):
            raise
        t = _timeout_s()
        after = f"the process group's timeout ({t:g} s)" if t else "the process group's timeout"
        raise CollectiveError(
            f"{name} (rank {dist.get_rank()} of {dist.get_world_size()}) did not complete within {after}: "
            "another rank is stuck before this collective (a hang, a slow data loader, a different code path) "
            "or has exited. Every rank must reach the same collectives in the same order; the timeout is "
            f"TrainConfig.dist_timeout_s (sslfast train --dist-timeout-s). Backend error: {str(e).strip()[:400]}"
        ) from e


class _GatherWithGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, dim: int) -> torch.Tensor:
        ctx.dim = dim
        ctx.sizes = [None] * dist.get_world_size()
        x = x.contiguous()
        sizes = torch.tensor([x.shape[dim]], device=x.device)
        all_sizes = [torch.empty_like(sizes) for _ in ctx.sizes]
        _collective("all_gather of the batch sizes (gather_distributed=True)", dist.all_gather, all_sizes, sizes)
        ctx.sizes = [int(s) for s in all_sizes]
        if len(set(ctx.sizes)) != 1:
            raise ValueError(f"gather_distributed needs the same batch size on every rank, got {ctx.sizes}")
        parts = [torch.empty_like(x) for _ in ctx.sizes]
        _collective(
            f"all_gather of the embeddings of shape {tuple(x.shape)} (gather_distributed=True)",
            dist.all_gather,
            parts,
            x,
        )
        return torch.cat(parts, dim=dim)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        if torch.is_grad_enabled():
            # The all-reduce below runs outside autograd: a gradient of this gradient would miss it.
            raise RuntimeError(
                "higher-order gradients (create_graph=True: a Hessian, a gradient penalty) through "
                "gather_distributed=True are not supported; compute them without gathering "
                "(gather_distributed=False) or on one process"
            )
        grad = grad.contiguous()
        _collective(
            f"all_reduce of the embedding gradients of shape {tuple(grad.shape)} (backward of gather_distributed=True)",
            dist.all_reduce,
            grad,
            dist.ReduceOp.SUM,
        )
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
