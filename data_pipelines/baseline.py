"""The CPU baseline the benchmark compares against: per-image PIL/numpy transforms in a
torch DataLoader, the way reference SSL code (torchvision transforms on PIL images) runs.

torchvision has no CPU build here, so the transforms are written with PIL and numpy,
following torchvision's PIL code paths: RandomResizedCrop (same box sampling, PIL bilinear
resize), ImageEnhance for brightness/contrast/saturation, hue through PIL's HSV mode with
uint8 wrap-around, ``convert("L")`` for grayscale, ``ImageFilter.GaussianBlur(sigma)`` as in
SimCLR/BYOL/solo-learn, ``ImageOps.solarize`` and ToTensor + Normalize in numpy.
"""
from __future__ import annotations

import math
import random
from collections.abc import Sequence

import numpy as np
import torch

from ._params import fallback_crop_size
from .views import ViewSpec


def _crop_box(spec: ViewSpec, width: int, height: int, rng: random.Random):
    area = height * width
    log_lo, log_hi = math.log(spec.crop_ratio[0]), math.log(spec.crop_ratio[1])
    for _ in range(10):
        target = area * rng.uniform(*spec.crop_scale)
        aspect = math.exp(rng.uniform(log_lo, log_hi))
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            return rng.randint(0, height - h), rng.randint(0, width - w), h, w
    h, w = fallback_crop_size(height, width, spec.crop_ratio)
    return (height - h) // 2, (width - w) // 2, h, w


def pil_view(img, spec: ViewSpec, rng: random.Random) -> np.ndarray:
    """One view of a PIL RGB image: float32 (3, S, S), normalised."""
    from PIL import Image, ImageEnhance, ImageFilter, ImageOps

    top, left, h, w = _crop_box(spec, img.width, img.height, rng)
    img = img.resize((spec.size, spec.size), Image.BILINEAR, box=(left, top, left + w, top + h))
    if rng.random() < spec.flip_p:
        img = img.transpose(Image.FLIP_LEFT_RIGHT)
    if rng.random() < spec.jitter_p:
        b, c, s, hue = spec.jitter
        ops = [0, 1, 2, 3]
        if spec.jitter_random_order:
            rng.shuffle(ops)
        for op in ops:
            if op == 0 and b > 0:
                img = ImageEnhance.Brightness(img).enhance(rng.uniform(max(0, 1 - b), 1 + b))
            elif op == 1 and c > 0:
                img = ImageEnhance.Contrast(img).enhance(rng.uniform(max(0, 1 - c), 1 + c))
            elif op == 2 and s > 0:
                img = ImageEnhance.Color(img).enhance(rng.uniform(max(0, 1 - s), 1 + s))
            elif op == 3 and hue > 0:
                hsv = np.array(img.convert("HSV"))
                hsv[..., 0] = (hsv[..., 0].astype(np.int16) + int(rng.uniform(-hue, hue) * 255)).astype(np.uint8)
                img = Image.fromarray(hsv, "HSV").convert("RGB")
    if rng.random() < spec.grayscale_p:
        img = img.convert("L").convert("RGB")
    if rng.random() < spec.blur_p:
        img = img.filter(ImageFilter.GaussianBlur(radius=rng.uniform(*spec.blur_sigma)))
    if rng.random() < spec.solarize_p:
        img = ImageOps.solarize(img, threshold=round(256 * spec.solarize_threshold))
    x = np.asarray(img, dtype=np.float32) / 255.0
    x = (x - np.asarray(spec.mean, np.float32)) / np.asarray(spec.std, np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1))


class PILViewDataset(torch.utils.data.Dataset):
    """Item i: (list of views as float tensors (3, S, S), label), one per spec."""

    def __init__(self, images: torch.Tensor | np.ndarray, labels, specs: Sequence[ViewSpec], seed: int = 0):
        arr = images.numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
        self.images = np.ascontiguousarray(arr.transpose(0, 2, 3, 1))  # HWC for PIL
        self.labels = np.asarray(labels)
        self.specs = list(specs)
        self.seed = seed
        self._rng = None

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, i: int):
        from PIL import Image

        if self._rng is None:
            # one stream per worker process (torch seeds Python's `random` in each worker)
            self._rng = random.Random(random.getrandbits(64) ^ self.seed)
        img = Image.fromarray(self.images[i])
        return [torch.from_numpy(pil_view(img, s, self._rng)) for s in self.specs], int(self.labels[i])
