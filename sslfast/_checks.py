"""Input validation shared by every loss: clear errors instead of silent wrong numbers."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def check_tensor(x, name: str) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor (float32, bfloat16, float16, float64), got {x.dtype}")
    return x


def check_matrix(x, name: str, min_rows: int = 2) -> torch.Tensor:
    """A (N, D) embedding batch with N >= ``min_rows`` and D >= 1."""
    check_tensor(x, name)
    if x.dim() != 2:
        raise ValueError(f"{name} must have shape (N, D), got a {x.dim()}-d tensor of shape {tuple(x.shape)}")
    if x.shape[0] < min_rows:
        raise ValueError(f"{name} needs N >= {min_rows} rows (batch statistics), got shape {tuple(x.shape)}")
    if x.shape[1] < 1:
        raise ValueError(f"{name} needs D >= 1 columns, got shape {tuple(x.shape)}")
    return x


def check_pair(z_a, z_b, names: tuple[str, str] = ("z_a", "z_b"), min_rows: int = 2) -> None:
    """Two views of one batch: same shape, dtype and device."""
    check_matrix(z_a, names[0], min_rows)
    check_matrix(z_b, names[1], min_rows)
    if z_a.shape != z_b.shape:
        raise ValueError(
            f"{names[0]} and {names[1]} must have the same shape (N, D), got {tuple(z_a.shape)} and {tuple(z_b.shape)}"
        )
    if z_a.device != z_b.device:
        raise ValueError(f"{names[0]} and {names[1]} must be on the same device, got {z_a.device} and {z_b.device}")
    if z_a.dtype != z_b.dtype:
        raise TypeError(f"{names[0]} and {names[1]} must have the same dtype, got {z_a.dtype} and {z_b.dtype}")


def stack_views(z, name: str = "z", min_views: int = 1, min_batch: int = 1) -> torch.Tensor:
    """Accept a (V, B, D) tensor or a list of V tensors of shape (B, D); return (V, B, D)."""
    if isinstance(z, torch.Tensor):
        check_tensor(z, name)
        if z.dim() != 3:
            raise ValueError(
                f"{name} must be a (V, B, D) tensor or a list of (B, D) tensors, got shape {tuple(z.shape)}"
            )
        views = z
    elif isinstance(z, Sequence) and not isinstance(z, (str, bytes)):
        if len(z) == 0:
            raise ValueError(f"{name} must hold at least {min_views} views, got an empty list")
        for i, v in enumerate(z):
            check_tensor(v, f"{name}[{i}]")
            if v.dim() != 2:
                raise ValueError(f"{name}[{i}] must have shape (B, D), got shape {tuple(v.shape)}")
            if v.shape != z[0].shape:
                raise ValueError(
                    f"every view must share (B, D): {name}[0] has shape {tuple(z[0].shape)}, "
                    f"{name}[{i}] has shape {tuple(v.shape)}"
                )
            if v.device != z[0].device:
                raise ValueError(
                    f"every view must be on one device: {name}[0] on {z[0].device}, {name}[{i}] on {v.device}"
                )
            if v.dtype != z[0].dtype:
                raise TypeError(f"every view must share a dtype: {name}[0] is {z[0].dtype}, {name}[{i}] is {v.dtype}")
        views = torch.stack(list(z))
    else:
        raise TypeError(f"{name} must be a (V, B, D) tensor or a list of (B, D) tensors, got {type(z).__name__}")
    if views.shape[0] < min_views:
        raise ValueError(f"{name} needs V >= {min_views} views, got shape {tuple(views.shape)}")
    if views.shape[1] < min_batch:
        raise ValueError(f"{name} needs B >= {min_batch} samples per view, got shape {tuple(views.shape)}")
    if views.shape[2] < 1:
        raise ValueError(f"{name} needs D >= 1, got shape {tuple(views.shape)}")
    return views


def check_positive(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"{name} must be a positive number, got {value!r}")
    return float(value)


def check_nonnegative(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise ValueError(f"{name} must be a non-negative number, got {value!r}")
    return float(value)
