"""Per-sample random parameters of a view, drawn on the device as tensors.

Drawing the parameters once and handing the same tensors to every backend is what lets the
tests compare the Triton kernel with the torch implementation exactly.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields

import torch

from .views import ViewSpec

# torchvision's RandomResizedCrop tries 10 random boxes before its central fallback.
CROP_ATTEMPTS = 10


@dataclass
class ViewParams:
    """Random parameters for ``n`` samples of one view (all tensors on one device).

    crop:    (n, 4) int32  top, left, height, width of the crop box in the source image
    flip:    (n,)   bool   horizontal flip
    jitter:  (n,)   bool   whether colour jitter is applied (RandomApply)
    factors: (n, 4) f32    brightness, contrast, saturation multipliers and hue shift
    order:   (n, 4) int32  jitter op order: 0 brightness, 1 contrast, 2 saturation, 3 hue
    gray:    (n,)   bool   grayscale
    blur:    (n,)   bool   Gaussian blur
    sigma:   (n,)   f32    blur sigma (pixels of the output view)
    solarize:(n,)   bool   solarize
    """

    crop: torch.Tensor
    flip: torch.Tensor
    jitter: torch.Tensor
    factors: torch.Tensor
    order: torch.Tensor
    gray: torch.Tensor
    blur: torch.Tensor
    sigma: torch.Tensor
    solarize: torch.Tensor

    def __len__(self) -> int:
        return self.crop.shape[0]

    @staticmethod
    def cat(parts: list[ViewParams]) -> ViewParams:
        return ViewParams(**{f.name: torch.cat([getattr(p, f.name) for p in parts]) for f in fields(ViewParams)})

    def to(self, device) -> ViewParams:
        return ViewParams(**{f.name: getattr(self, f.name).to(device) for f in fields(ViewParams)})


def fallback_crop_size(height: int, width: int, ratio: tuple[float, float]) -> tuple[int, int]:
    """RandomResizedCrop's fallback after 10 failed draws: the whole image clamped to the
    aspect-ratio range, centred (torchvision semantics). Returns (h, w)."""
    in_ratio = width / height
    if in_ratio < ratio[0]:
        return int(round(width / ratio[0])), width
    if in_ratio > ratio[1]:
        return height, int(round(height * ratio[1]))
    return height, width


def _uniform(lo: float, hi: float, shape, generator, device) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(shape, generator=generator, device=device, dtype=torch.float32)


def _bernoulli(p: float, n: int, generator, device) -> torch.Tensor:
    return torch.rand(n, generator=generator, device=device) < p


def sample_crop(spec: ViewSpec, n: int, height: int, width: int, generator, device) -> torch.Tensor:
    """torchvision ``RandomResizedCrop.get_params``, vectorised over samples.

    Per attempt: area = H*W*U(scale), aspect = exp(U(log ratio)), w = round(sqrt(area*aspect)),
    h = round(sqrt(area/aspect)); the first box with 0 < w <= W and 0 < h <= H wins and its
    corner is uniform over the valid positions. If all 10 fail, the central crop clamped to
    the ratio range (torchvision's fallback).
    """
    area = float(height * width)
    target = area * _uniform(*spec.crop_scale, (n, CROP_ATTEMPTS), generator, device)
    log_r = _uniform(math.log(spec.crop_ratio[0]), math.log(spec.crop_ratio[1]), (n, CROP_ATTEMPTS), generator, device)
    aspect = torch.exp(log_r)
    w = torch.round(torch.sqrt(target * aspect))
    h = torch.round(torch.sqrt(target / aspect))
    ok = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    # index of the first valid attempt (argmax of a bool picks the first True)
    first = ok.to(torch.int8).argmax(dim=1, keepdim=True)
    any_ok = ok.any(dim=1)
    w = w.gather(1, first).squeeze(1)
    h = h.gather(1, first).squeeze(1)

    fh, fw = fallback_crop_size(height, width, spec.crop_ratio)
    w = torch.where(any_ok, w, torch.full_like(w, fw))
    h = torch.where(any_ok, h, torch.full_like(h, fh))
    u = torch.rand((n, 2), generator=generator, device=device, dtype=torch.float64)
    top = torch.floor(u[:, 0] * (height - h + 1).double()).float()
    left = torch.floor(u[:, 1] * (width - w + 1).double()).float()
    top = torch.where(any_ok, top, torch.div(height - h, 2, rounding_mode="floor"))
    left = torch.where(any_ok, left, torch.div(width - w, 2, rounding_mode="floor"))
    return torch.stack([top, left, h, w], dim=1).to(torch.int32)


def sample_params(spec: ViewSpec, n: int, generator: torch.Generator | None = None,
                  device: torch.device | str = "cpu", image_size: tuple[int, int] = (32, 32)) -> ViewParams:
    """Draw the parameters of ``n`` samples of ``spec`` on ``device`` from ``generator``.

    The draws happen in a fixed order, so one seed gives one set of parameters whichever
    backend then applies them. ``image_size`` is the (H, W) of the source images.
    """
    if not isinstance(spec, ViewSpec):
        raise TypeError(f"spec must be a ViewSpec, got {type(spec).__name__}")
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"n must be a non-negative int, got {n!r}")
    height, width = (int(v) for v in image_size)
    if height < 1 or width < 1:
        raise ValueError(f"image_size must be positive (H, W), got {image_size!r}")
    device = torch.device(device)
    if generator is not None and generator.device.type != device.type:
        raise ValueError(f"generator is on {generator.device} but the parameters are drawn on {device}")

    crop = sample_crop(spec, n, height, width, generator, device)
    flip = _bernoulli(spec.flip_p, n, generator, device)
    jitter = _bernoulli(spec.jitter_p, n, generator, device)
    b, c, s, h = spec.jitter
    factors = torch.stack([
        _uniform(max(0.0, 1 - b), 1 + b, n, generator, device),
        _uniform(max(0.0, 1 - c), 1 + c, n, generator, device),
        _uniform(max(0.0, 1 - s), 1 + s, n, generator, device),
        _uniform(-h, h, n, generator, device),
    ], dim=1)
    if spec.jitter_random_order:
        # a uniform random permutation per sample, as torch.randperm(4) in ColorJitter.get_params
        order = torch.rand((n, 4), generator=generator, device=device).argsort(dim=1)
    else:
        order = torch.arange(4, device=device).expand(n, 4)
    gray = _bernoulli(spec.grayscale_p, n, generator, device)
    blur = _bernoulli(spec.blur_p, n, generator, device)
    sigma = _uniform(*spec.blur_sigma, n, generator, device)
    solarize = _bernoulli(spec.solarize_p, n, generator, device)
    return ViewParams(crop=crop, flip=flip, jitter=jitter, factors=factors.float(),
                      order=order.to(torch.int32).contiguous(), gray=gray, blur=blur,
                      sigma=sigma.float(), solarize=solarize)
