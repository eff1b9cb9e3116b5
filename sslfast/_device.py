"""Device helpers shared by evaluation, training and benchmarks."""

from __future__ import annotations

import torch


def default_device(device=None) -> torch.device:
    """``device`` as a torch.device; None means CUDA when available, else the CPU."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def sync(device: torch.device) -> None:
    """Wait for queued work on ``device`` (a no-op on the CPU): before reading a host clock."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
