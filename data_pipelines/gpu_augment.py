"""Fused multi-view augmentation: one Triton kernel per view size, plus its pure-torch twin.

    views = make_views(images_uint8_nchw, preset("simclr", "cifar10"), generator=g)

Design, in three steps with one set of semantics (documented in ``_augment_torch``):

1. ``sample_params(spec, n, generator, device, image_size)`` draws every random choice of a
   view per sample, as tensors on the device (crop box, flip, jitter flag/factors/order,
   grayscale, blur flag/sigma, solarize).
2. ``apply_views_torch(images, spec, params)``: the pure-torch implementation (any device).
3. ``apply_views_triton(images, spec, params)``: one program per output view reads the uint8
   source once and does crop + bilinear resize + flip + colour jitter (random order, contrast
   mean included) + grayscale + solarize + normalisation, writing channels_last float/bf16.
   Contrast needs the per-image grayscale mean of the *jittered* crop, so the program makes
   two passes over its pixels when jitter is on (pass one reduces the mean; recomputing the
   taps is cheaper than a second kernel).

Gaussian blur sits between grayscale and solarize in the published pipelines, so a spec with
``blur_p > 0`` runs the kernel up to grayscale, then a separable grouped-conv blur in torch,
then solarize + normalisation in torch. Specs with ``blur_p == 0`` (SimCLR/BYOL/VICReg on
CIFAR) are a single kernel launch.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch

from ..backend import resolve_backend
from ._augment_torch import apply_views_torch, blur, check_images, check_params, finish
from ._params import ViewParams, sample_params
from .views import ViewSpec

__all__ = ["make_views", "sample_params", "apply_views_torch", "apply_views_triton", "ViewParams"]

_FLIP, _JITTER, _GRAY, _SOLARIZE = 1, 2, 4, 8

def _get_kernel():
    """The Triton kernel, imported on first use so that importing this module never imports triton."""
    from sslfast.kernels._op import direct  # recorded, not run, under the static GPU gate's capture

    from ._augment_triton import _views_kernel

    return direct(_views_kernel)


def _pack_flags(params: ViewParams) -> torch.Tensor:
    return (params.flip.to(torch.int32) * _FLIP + params.jitter.to(torch.int32) * _JITTER
            + params.gray.to(torch.int32) * _GRAY + params.solarize.to(torch.int32) * _SOLARIZE).contiguous()


def _needs_blur(spec: ViewSpec) -> bool:
    return spec.blur_p > 0 and spec.kernel_size > 1


def apply_views_triton(images: torch.Tensor, spec: ViewSpec, params: ViewParams,
                       out_dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Fused Triton version of ``apply_views_torch`` (same params, same semantics).

    Needs CUDA tensors, or ``TRITON_INTERPRET=1`` for CPU tensors.
    """
    check_images(images)
    check_params(params, images)
    resolve_backend("triton", images.device)
    if out_dtype not in (torch.float32, torch.bfloat16, torch.float16):
        raise TypeError(f"out_dtype must be torch.float32, torch.bfloat16 or torch.float16, got {out_dtype}")
    n, size = len(params), spec.size
    fused = not _needs_blur(spec)
    dtype = out_dtype if fused else torch.float32
    out = torch.empty((n, 3, size, size), device=images.device, dtype=dtype, memory_format=torch.channels_last)
    if n == 0:
        return out.to(out_dtype)
    block = min(1024, triton_next_pow2(size * size))
    kernel = _get_kernel()
    kernel[(n,)](
        images, out, params.crop.to(torch.int32).contiguous(), _pack_flags(params),
        params.factors.float().contiguous(), params.order.to(torch.int32).contiguous(),
        images.shape[0], size, *images.stride(), *out.stride(),
        *spec.mean, *spec.std, float(spec.solarize_threshold),
        FINISH=fused, BLOCK=block, num_warps=4 if block >= 512 else 2,
    )
    if fused:
        return out
    return finish(blur(out, spec, params), spec, params, out_dtype)


def triton_next_pow2(n: int) -> int:
    return 1 << max(0, (int(n) - 1).bit_length())


def _group_key(spec: ViewSpec):
    # Specs that differ only in probabilities (e.g. BYOL's two views) share a launch:
    # every random choice is per sample in the params.
    return (spec.size, spec.mean, spec.std, spec.solarize_threshold, spec.kernel_size if _needs_blur(spec) else 0)


def make_views(images: torch.Tensor, specs: ViewSpec | Sequence[ViewSpec], generator: torch.Generator | None = None,
               backend: str = "auto", out_dtype: torch.dtype = torch.float32,
               params: Sequence[ViewParams] | None = None, return_params: bool = False):
    """All views of a uint8 NCHW batch: one normalised channels_last tensor per spec.

    Parameters are drawn per spec, in order, from ``generator`` on the images' device
    (``sample_params``), so a seed fixes the output whichever backend runs. ``backend``:
    "auto" (Triton on CUDA, torch elsewhere), "triton" or "torch". Specs that share size,
    normalisation and blur window go through one kernel launch. Pass ``params`` to reuse
    drawn parameters; ``return_params=True`` returns ``(views, params)``.
    """
    check_images(images)
    single = isinstance(specs, ViewSpec)
    specs = [specs] if single else list(specs)
    if not specs:
        raise ValueError("specs must hold at least one ViewSpec, got an empty list")
    for i, s in enumerate(specs):
        if not isinstance(s, ViewSpec):
            raise TypeError(f"specs[{i}] must be a ViewSpec, got {type(s).__name__}")
    if backend == "reference":
        backend = "torch"
    backend = resolve_backend(backend, images.device)
    if out_dtype not in (torch.float32, torch.bfloat16, torch.float16):
        raise TypeError(f"out_dtype must be torch.float32, torch.bfloat16 or torch.float16, got {out_dtype}")
    n = images.shape[0]
    if params is None:
        params = [sample_params(s, n, generator, images.device, image_size=images.shape[2:]) for s in specs]
    else:
        params = list(params)
        if len(params) != len(specs):
            raise ValueError(f"params must hold one ViewParams per spec ({len(specs)}), got {len(params)}")
    apply = apply_views_triton if backend == "triton" else apply_views_torch

    groups: dict = {}
    for i, s in enumerate(specs):
        groups.setdefault(_group_key(s), []).append(i)
    views: list[torch.Tensor | None] = [None] * len(specs)
    for idx in groups.values():
        head = specs[idx[0]]
        if len(idx) > 1 and _needs_blur(head):
            head = head.replace(blur_p=max(specs[i].blur_p for i in idx))
        out = apply(images, head, ViewParams.cat([params[i] for i in idx]) if len(idx) > 1 else params[idx[0]],
                    out_dtype=out_dtype)
        for j, i in enumerate(idx):
            views[i] = out[j * n:(j + 1) * n]
    result = views[0] if single else views
    return (result, params) if return_params else result
