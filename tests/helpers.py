"""Helpers shared by the tests, imported as ``from helpers import ...`` (conftest.py keeps only
fixtures and hooks). The one error measure of the suite is ``rel_err``."""

import torch

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
ON_GPU = DEVICE.type == "cuda"


def rel_err(out: torch.Tensor, ref: torch.Tensor) -> float:
    """||out - ref|| / ||ref|| in float64 (the suite's one error measure)."""
    out, ref = out.detach().double().cpu(), ref.detach().double().cpu()
    denom = ref.norm()
    if denom == 0:
        return float(out.norm())
    return float((out - ref).norm() / denom)


def close(out: torch.Tensor, ref: torch.Tensor, rtol: float) -> bool:
    """``rel_err(out, ref) <= rtol`` with a round-off floor: where the exact value is 0 (a D = 1
    gradient), both sides are round-off of size ~1e-12 per element."""
    out, ref = out.detach().double().cpu(), ref.detach().double().cpu()
    return float((out - ref).norm()) <= rtol * float(ref.norm()) + 1e-12 * out.numel() ** 0.5
