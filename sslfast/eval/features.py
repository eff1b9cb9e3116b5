"""Feature extraction from frozen backbones: whole images, and EMP-SSL's bag of patches."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import nn

from .._checks import check_int
from .._device import default_device

__all__ = ["extract_features", "extract_patch_features", "normalizer"]


# --------------------------------------------------------------------------------------------


def normalizer(mean: Iterable[float], std: Iterable[float], *, channels_last: bool = True) -> Callable:
    """uint8 (N, C, H, W) -> float32 ``(x / 255 - mean) / std`` on the batch's device.

    E.g. CIFAR-10: ``normalizer((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))``.
    """
    mean_t = torch.tensor(list(mean), dtype=torch.float32).view(1, -1, 1, 1)
    std_t = torch.tensor(list(std), dtype=torch.float32).view(1, -1, 1, 1)
    if (std_t <= 0).any():
        raise ValueError(f"std must be positive, got {std_t.flatten().tolist()}")

    def fn(x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != mean_t.shape[1]:
            raise ValueError(f"images must have shape (N, {mean_t.shape[1]}, H, W), got {tuple(x.shape)}")
        scale = 255.0 if x.dtype == torch.uint8 else 1.0
        m, s = mean_t.to(x.device), std_t.to(x.device)
        out = (x.float() / scale - m) / s
        return out.contiguous(memory_format=torch.channels_last) if channels_last else out

    return fn


def _default_transform(x: torch.Tensor) -> torch.Tensor:
    return x.float().div_(255.0) if x.dtype == torch.uint8 else x


@torch.no_grad()
def extract_features(
    model: nn.Module,
    data,
    *,
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    batch_size: int = 512,
    device=None,
    autocast_dtype: torch.dtype | None = None,
    return_labels: bool = False,
):
    """Features ``model(transform(x))`` for every image, as float32 (N, D) on ``device``.

    ``data`` is an image tensor (N, C, H, W) (uint8 or float; sliced into ``batch_size``
    batches) or an iterable of batches (a non-shuffling DataLoader), each an image tensor or an
    ``(images, labels, ...)`` tuple. ``transform`` runs on the device (default: uint8 / 255,
    floats unchanged); pass the training normalisation, e.g. ``normalizer(mean, std)``.
    The model runs in eval mode (its previous mode is restored) under ``torch.no_grad`` rather
    than inference_mode, so the features can later train a probe. ``autocast_dtype``
    (e.g. torch.bfloat16) enables autocast. With ``return_labels`` the labels of an
    ``(images, labels)`` iterable are returned too: ``(features, labels)``.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    check_int(batch_size, "batch_size")
    dev = default_device(device)
    transform = transform or _default_transform
    if isinstance(data, torch.Tensor):
        if data.dim() != 4:
            raise ValueError(f"data must be an image tensor (N, C, H, W), got shape {tuple(data.shape)}")
        if return_labels:
            raise ValueError("return_labels needs an iterable of (images, labels) batches, got a tensor")
        batches: Iterable = data.split(batch_size)
    elif isinstance(data, Iterable):
        batches = data
    else:
        raise TypeError(f"data must be an image tensor or an iterable of batches, got {type(data).__name__}")

    was_training = model.training
    model.eval()
    feats, labels = [], []
    try:
        for i, batch in enumerate(batches):
            if isinstance(batch, (tuple, list)):
                if return_labels:
                    if len(batch) < 2:
                        raise ValueError(
                            f"return_labels needs (images, labels) batches, batch {i} has {len(batch)} items"
                        )
                    labels.append(torch.as_tensor(batch[1]).to(dev, non_blocking=True))
                batch = batch[0]
            elif return_labels:
                raise ValueError(f"return_labels needs (images, labels) batches, batch {i} is a {type(batch).__name__}")
            if not isinstance(batch, torch.Tensor):
                raise TypeError(f"batch {i} must hold an image tensor, got {type(batch).__name__}")
            x = transform(batch.to(dev, non_blocking=True))
            if autocast_dtype is not None:
                with torch.autocast(device_type=dev.type, dtype=autocast_dtype):
                    f = model(x)
            else:
                f = model(x)
            if not isinstance(f, torch.Tensor) or f.dim() != 2 or f.shape[0] != x.shape[0]:
                shape = tuple(f.shape) if isinstance(f, torch.Tensor) else type(f).__name__
                raise ValueError(f"model must return (batch, D) features, got {shape} for a batch of {x.shape[0]}")
            feats.append(f.float())
    finally:
        model.train(was_training)
    if not feats:
        raise ValueError("data is empty: no batches to extract features from")
    out = torch.cat(feats)
    return (out, torch.cat(labels)) if return_labels else out


class _PatchMean(nn.Module):
    """uint8 images -> mean embedding of their random views (one forward over all of them)."""

    def __init__(self, model: nn.Module, views: list, generator: torch.Generator):
        super().__init__()
        self.model, self.views, self.generator = model, views, generator

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        from sslfast.data_pipelines import make_views

        with torch.autocast(images.device.type, enabled=False):  # views in fp32, as in training
            crops = make_views(images, self.views, self.generator)
        z = self.model(torch.cat(crops))
        if not isinstance(z, torch.Tensor) or z.dim() != 2 or z.shape[0] != len(crops) * images.shape[0]:
            shape = tuple(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__
            raise ValueError(f"model must return (batch, D) features, got {shape} for a batch of {len(crops)} views")
        return z.float().reshape(len(crops), images.shape[0], -1).mean(0)


def extract_patch_features(
    model: nn.Module,
    images: torch.Tensor,
    views,
    *,
    views_per_batch: int = 4096,
    seed: int = 0,
    device=None,
    autocast_dtype: torch.dtype | None = None,
) -> torch.Tensor:
    r"""Bag-of-patches features (EMP-SSL, Tong et al. 2023): :math:`f(x) = \frac1P\sum_p g(v_p(x))`.

    Each uint8 image (N, C, H, W) gets P random views drawn by ``make_views`` from ``views``
    (a list of ``ViewSpec``, e.g. ``preset("emp_ssl", n_patches=128)`` as in the official
    evaluation), and its feature is the mean of the model's embeddings of those views. The
    average is taken on the fly, so memory is O(N·D), not O(P·N·D). Seeded: the same ``seed``
    gives the same patches. Returns float32 (N, D) on ``device``.
    """
    from sslfast.data_pipelines import check_images

    check_images(images)  # make_views' own check, before the batch is split and moved
    views = list(views)
    if not views:
        raise ValueError("views must hold at least one ViewSpec, got none")
    check_int(views_per_batch, "views_per_batch")
    dev = default_device(device)
    gen = torch.Generator(device=dev).manual_seed(seed)
    wrapper = _PatchMean(model, views, gen).train(model.training)  # extract_features restores this mode
    return extract_features(
        wrapper,
        images,
        transform=lambda x: x,  # make_views takes the uint8 images and normalises them itself
        batch_size=max(1, views_per_batch // len(views)),
        device=dev,
        autocast_dtype=autocast_dtype,
    )
