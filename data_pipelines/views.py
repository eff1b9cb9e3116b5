"""View specifications: one frozen ``ViewSpec`` per view, and the published presets.

A ``ViewSpec`` describes the torchvision-style pipeline that SSL reference code applies to
each view, in this order (SimCLR/BYOL/solo-learn order):

    RandomResizedCrop -> RandomHorizontalFlip -> RandomApply(ColorJitter, p)
    -> RandomGrayscale -> RandomApply(GaussianBlur, p) -> RandomSolarize -> Normalize

Every backend (fused GPU kernel, its pure-torch twin, DALI, the PIL baseline) reads the same
spec. The exact per-op formulas are documented in ``sslfast.data_pipelines.gpu_augment``.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field, replace

# Normalisation constants. CIFAR-10: per-channel mean/std of the 50k training images
# (the values used by solo-learn and most CIFAR SSL code). ImageNet: torchvision's.
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# EMP-SSL's official code normalises patches with 0.5/0.5 (tsb0601/EMP-SSL, dataset/aug.py).
HALF = (0.5, 0.5, 0.5)


def _numbers(value, name: str, n: int, what: str) -> tuple[float, ...]:
    """``value`` as a tuple of ``n`` finite floats, or a clear error naming the field.

    Strings are refused even though they are iterable ("abc" is not three numbers), and so are
    NaN and infinities: a NaN mean or jitter factor would turn every view into NaN or garbage.
    """
    form = f"ViewSpec.{name} must be {what}, got {value!r}"
    if isinstance(value, (str, bytes)):
        raise TypeError(form)
    try:
        items = tuple(value)
    except TypeError:
        raise TypeError(form) from None
    if len(items) != n or any(isinstance(v, bool) or not isinstance(v, numbers.Real) for v in items):
        raise (ValueError if len(items) != n else TypeError)(form)
    out = tuple(float(v) for v in items)
    if not all(math.isfinite(v) for v in out):
        raise ValueError(f"{form} (NaN and infinities are refused)")
    return out


def _pair(value, name: str) -> tuple[float, float]:
    return _numbers(value, name, 2, "a pair (low, high) of finite numbers")


def _prob(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 <= value <= 1.0:
        raise ValueError(f"ViewSpec.{name} must be a probability in [0, 1], got {value!r}")
    return float(value)


@dataclass(frozen=True)
class ViewSpec:
    """One augmented view. Frozen and hashable, so equal specs can share a kernel launch.

    size: output side (square views).
    crop_scale, crop_ratio: RandomResizedCrop area fraction in (0, 1] and aspect ratio w/h.
    flip_p: horizontal-flip probability.
    jitter: ColorJitter (brightness, contrast, saturation, hue); factors are drawn from
        [max(0, 1-x), 1+x] for the first three and [-h, h] for hue (h <= 0.5).
    jitter_p: probability that the jitter is applied at all (RandomApply).
    jitter_random_order: torchvision applies the four jitter ops in a random order per
        sample; False uses the fixed order brightness, contrast, saturation, hue.
    grayscale_p: RandomGrayscale probability (ITU-R 601-2 luma, torchvision's weights).
    blur_p, blur_sigma: Gaussian blur probability and sigma range (pixels of the output view).
    blur_kernel: odd window size; None means 2*ceil(3*sigma_max)+1, capped at the view size.
    solarize_p, solarize_threshold: invert pixels >= threshold (threshold on the [0, 1] scale).
    mean, std: per-channel normalisation applied last.
    """

    size: int = 32
    crop_scale: tuple[float, float] = (0.08, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip_p: float = 0.5
    jitter: tuple[float, float, float, float] = (0.4, 0.4, 0.4, 0.1)
    jitter_p: float = 0.8
    jitter_random_order: bool = True
    grayscale_p: float = 0.2
    blur_p: float = 0.0
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    blur_kernel: int | None = None
    solarize_p: float = 0.0
    solarize_threshold: float = 0.5
    mean: tuple[float, float, float] = CIFAR10_MEAN
    std: tuple[float, float, float] = CIFAR10_STD
    name: str = field(default="", compare=False)

    def __post_init__(self):
        if isinstance(self.size, bool) or not isinstance(self.size, int) or self.size < 1:
            raise ValueError(f"ViewSpec.size must be a positive int, got {self.size!r}")
        lo, hi = _pair(self.crop_scale, "crop_scale")
        if not 0.0 < lo <= hi <= 1.0:
            raise ValueError(f"ViewSpec.crop_scale must satisfy 0 < low <= high <= 1, got {self.crop_scale!r}")
        lo, hi = _pair(self.crop_ratio, "crop_ratio")
        if not 0.0 < lo <= hi:
            raise ValueError(f"ViewSpec.crop_ratio must satisfy 0 < low <= high < inf, got {self.crop_ratio!r}")
        for name in ("flip_p", "jitter_p", "grayscale_p", "blur_p", "solarize_p"):
            _prob(getattr(self, name), name)
        jit = _numbers(self.jitter, "jitter", 4, "4 finite numbers (brightness, contrast, saturation, hue)")
        if any(v < 0 for v in jit) or jit[3] > 0.5:
            raise ValueError(
                "ViewSpec.jitter must be 4 non-negative numbers (brightness, contrast, saturation, hue) "
                f"with hue <= 0.5, got {self.jitter!r}"
            )
        lo, hi = _pair(self.blur_sigma, "blur_sigma")
        if not 0.0 < lo <= hi:
            raise ValueError(f"ViewSpec.blur_sigma must satisfy 0 < low <= high, got {self.blur_sigma!r}")
        if self.blur_kernel is not None and (
            isinstance(self.blur_kernel, bool) or not isinstance(self.blur_kernel, int)
            or self.blur_kernel < 1 or self.blur_kernel % 2 == 0
        ):
            raise ValueError(f"ViewSpec.blur_kernel must be None or an odd positive int, got {self.blur_kernel!r}")
        thr = self.solarize_threshold
        if isinstance(thr, bool) or not isinstance(thr, numbers.Real) or not 0.0 <= thr <= 1.0:
            raise ValueError(f"ViewSpec.solarize_threshold must be a number in [0, 1], got {thr!r}")
        mean = _numbers(self.mean, "mean", 3, "3 finite numbers (R, G, B)")
        std = _numbers(self.std, "std", 3, "3 finite positive numbers (R, G, B)")
        if any(v <= 0 for v in std):
            raise ValueError(f"ViewSpec.std must be positive, got {self.std!r}")
        # Normalise sequences to tuples of floats so that equal specs hash equally.
        object.__setattr__(self, "crop_scale", _pair(self.crop_scale, "crop_scale"))
        object.__setattr__(self, "crop_ratio", _pair(self.crop_ratio, "crop_ratio"))
        object.__setattr__(self, "jitter", jit)
        object.__setattr__(self, "blur_sigma", _pair(self.blur_sigma, "blur_sigma"))
        object.__setattr__(self, "solarize_threshold", float(thr))
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "std", std)

    @property
    def kernel_size(self) -> int:
        """Blur window actually used (odd, at most the view size)."""
        if self.blur_kernel is not None:
            k = self.blur_kernel
        else:
            k = 2 * math.ceil(3 * self.blur_sigma[1]) + 1
        cap = self.size if self.size % 2 == 1 else self.size - 1
        return max(1, min(k, cap))

    def replace(self, **changes) -> ViewSpec:
        return replace(self, **changes)


# ---------------------------------------------------------------------------------------------
# Presets. Each returns the list of ViewSpecs for one method; numbers cite their source.
# ---------------------------------------------------------------------------------------------

_DATASETS = ("cifar10", "cifar100", "imagenet")


def _norm(dataset: str) -> dict:
    if dataset not in _DATASETS:
        raise ValueError(f"dataset must be one of {_DATASETS}, got {dataset!r}")
    if dataset == "imagenet":
        return {"mean": IMAGENET_MEAN, "std": IMAGENET_STD, "size": 224}
    return {"mean": CIFAR10_MEAN, "std": CIFAR10_STD, "size": 32}


def simclr(dataset: str = "cifar10") -> list[ViewSpec]:
    """SimCLR (Chen et al. 2020, Appendix A and B.9; google-research/simclr data_util.py).

    Colour distortion of strength s: jitter (0.8s, 0.8s, 0.8s, 0.2s) with p=0.8, grayscale
    p=0.2. ImageNet: s=1, blur p=0.5 with sigma in [0.1, 2.0]. CIFAR: s=0.5 and no blur.
    """
    kw = _norm(dataset)
    if dataset == "imagenet":
        spec = ViewSpec(crop_scale=(0.08, 1.0), jitter=(0.8, 0.8, 0.8, 0.2), jitter_p=0.8,
                        grayscale_p=0.2, blur_p=0.5, blur_sigma=(0.1, 2.0), blur_kernel=23, **kw)
    else:
        spec = ViewSpec(crop_scale=(0.08, 1.0), jitter=(0.4, 0.4, 0.4, 0.1), jitter_p=0.8,
                        grayscale_p=0.2, **kw)
    return [spec.replace(name="simclr-1"), spec.replace(name="simclr-2")]


def byol(dataset: str = "cifar10") -> list[ViewSpec]:
    """BYOL (Grill et al. 2020, Table 6): asymmetric views.

    Both: crop scale (0.08, 1), flip 0.5, jitter (0.4, 0.4, 0.2, 0.1) p=0.8, grayscale 0.2.
    ImageNet: view 1 blur p=1.0, solarize 0; view 2 blur p=0.1, solarize 0.2 (sigma 0.1-2.0,
    kernel 23). CIFAR follows solo-learn's scripts/pretrain/cifar/augmentations/asymmetric.yaml,
    which disables blur on 32x32 images and keeps the solarize asymmetry (0.0 / 0.2).
    """
    kw = _norm(dataset)
    base = ViewSpec(crop_scale=(0.08, 1.0), jitter=(0.4, 0.4, 0.2, 0.1), jitter_p=0.8, grayscale_p=0.2, **kw)
    if dataset == "imagenet":
        return [base.replace(blur_p=1.0, blur_kernel=23, solarize_p=0.0, name="byol-1"),
                base.replace(blur_p=0.1, blur_kernel=23, solarize_p=0.2, name="byol-2")]
    return [base.replace(solarize_p=0.0, name="byol-1"), base.replace(solarize_p=0.2, name="byol-2")]


def vicreg(dataset: str = "cifar10") -> list[ViewSpec]:
    """VICReg (Bardes et al. 2022, Appendix C.1: BYOL's augmentations).

    ImageNet: crop (0.08, 1), jitter (0.4, 0.4, 0.2, 0.1) p=0.8, grayscale 0.2, blur 1.0 / 0.1,
    solarize 0.0 / 0.2. CIFAR follows solo-learn's scripts/pretrain/cifar/vicreg.yaml: crop
    scale (0.2, 1.0), no blur, solarize 0.1 on both views.
    """
    kw = _norm(dataset)
    if dataset == "imagenet":
        base = ViewSpec(crop_scale=(0.08, 1.0), jitter=(0.4, 0.4, 0.2, 0.1), jitter_p=0.8, grayscale_p=0.2, **kw)
        return [base.replace(blur_p=1.0, blur_kernel=23, solarize_p=0.0, name="vicreg-1"),
                base.replace(blur_p=0.1, blur_kernel=23, solarize_p=0.2, name="vicreg-2")]
    base = ViewSpec(crop_scale=(0.2, 1.0), jitter=(0.4, 0.4, 0.2, 0.1), jitter_p=0.8, grayscale_p=0.2,
                    solarize_p=0.1, **kw)
    return [base.replace(name="vicreg-1"), base.replace(name="vicreg-2")]


def multicrop(n_global: int = 2, n_local: int = 6, global_size: int = 224, local_size: int = 96) -> list[ViewSpec]:
    """SwAV multi-crop (Caron et al. 2020; facebookresearch/swav main_swav.py defaults).

    2 x 224 with scale (0.14, 1) + 6 x 96 with scale (0.05, 0.14); colour distortion s=1
    (jitter 0.8/0.8/0.8/0.2, p=0.8), grayscale 0.2, Gaussian blur p=0.5 (sigma 0.1-2.0).
    """
    common = dict(jitter=(0.8, 0.8, 0.8, 0.2), jitter_p=0.8, grayscale_p=0.2, blur_p=0.5,
                  mean=IMAGENET_MEAN, std=IMAGENET_STD)
    g = ViewSpec(size=global_size, crop_scale=(0.14, 1.0), blur_kernel=23, **common)
    loc = ViewSpec(size=local_size, crop_scale=(0.05, 0.14), **common)
    return [g.replace(name=f"global-{i + 1}") for i in range(n_global)] + \
           [loc.replace(name=f"local-{i + 1}") for i in range(n_local)]


def emp_ssl(n_patches: int = 20, size: int = 32) -> list[ViewSpec]:
    """EMP-SSL (Tong et al. 2023; tsb0601/EMP-SSL dataset/aug.py, ContrastiveLearningViewGenerator).

    n fixed-scale patches: RandomResizedCrop(32, scale=(0.25, 0.25), ratio=(1, 1)) — a
    quarter-area square resized to 32x32 — flip 0.5, jitter (0.4, 0.4, 0.4, 0.2) p=0.8,
    grayscale 0.2, blur p=0.1 (sigma uniform in [0.1, 2.0]), solarize p=0.1, normalise 0.5/0.5.
    """
    if isinstance(n_patches, bool) or not isinstance(n_patches, int) or n_patches < 1:
        raise ValueError(f"n_patches must be a positive int, got {n_patches!r}")
    spec = ViewSpec(size=size, crop_scale=(0.25, 0.25), crop_ratio=(1.0, 1.0), flip_p=0.5,
                    jitter=(0.4, 0.4, 0.4, 0.2), jitter_p=0.8, grayscale_p=0.2, blur_p=0.1,
                    blur_sigma=(0.1, 2.0), solarize_p=0.1, mean=HALF, std=HALF)
    return [spec.replace(name=f"patch-{i + 1}") for i in range(n_patches)]


def eval_spec(dataset: str = "cifar10", size: int | None = None) -> list[ViewSpec]:
    """No augmentation: the full image (square images) or its central square, resized and normalised.

    scale=(1, 1) and ratio=(1, 1) make RandomResizedCrop deterministic: on a square image
    the crop is the whole image; otherwise every attempt fails and torchvision's fallback
    takes the central crop of aspect ratio 1.
    """
    kw = _norm(dataset)
    if size is not None:
        kw["size"] = size
    return [ViewSpec(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), flip_p=0.0, jitter_p=0.0,
                     grayscale_p=0.0, blur_p=0.0, solarize_p=0.0, name="eval", **kw)]


PRESETS = {
    "simclr": simclr,
    "byol": byol,
    "vicreg": vicreg,
    "multicrop": multicrop,
    "emp_ssl": emp_ssl,
    "eval": eval_spec,
}


def preset(name: str, *args, **kwargs) -> list[ViewSpec]:
    """``preset("simclr", "cifar10")``, ``preset("emp_ssl", n_patches=20)``, ..."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    return PRESETS[name](*args, **kwargs)
