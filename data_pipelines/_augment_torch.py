"""Pure-torch implementation of a view: the ground truth the Triton kernel is tested against.

Runs on any device. Per-op semantics follow torchvision's tensor functional ops on float
images in [0, 1] (torchvision/transforms/_functional_tensor.py), without the uint8 rounding
between ops that PIL pipelines do:

- crop + resize: crop the box, then bilinear resize with half-pixel centres and edge clamping
  inside the box (``F.interpolate(mode="bilinear", align_corners=False, antialias=False)``).
  No antialiasing: downscaling by more than 2x aliases slightly (a GPU-friendly choice, also
  DALI's linear mode without antialias).
- flip: horizontal, after the resize.
- brightness b: ``clamp(b * x, 0, 1)``; contrast c: ``clamp(c * x + (1 - c) * m, 0, 1)`` with
  m the per-image mean of the grayscale image; saturation s: ``clamp(s * x + (1 - s) * gray)``;
  hue h: RGB -> HSV (torchvision's ``_rgb2hsv``), hue ``(H + h) mod 1``, HSV -> RGB.
  Ops run in a random per-sample order (torchvision ColorJitter) unless the spec fixes it.
- grayscale: ``0.2989 R + 0.587 G + 0.114 B`` in all three channels.
- blur: separable Gaussian, window ``spec.kernel_size``, reflect padding (torchvision).
- solarize: ``where(x >= threshold, 1 - x, x)``; normalise: ``(x - mean) / std``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ._params import ViewParams
from .views import ViewSpec

GRAY_WEIGHTS = (0.2989, 0.587, 0.114)  # torchvision _rgb_to_grayscale (ITU-R 601-2)


def check_images(images, name: str = "images") -> torch.Tensor:
    if not isinstance(images, torch.Tensor):
        raise TypeError(
            f"{name} must be a torch.Tensor of shape (N, 3, H, W) and dtype uint8, got {type(images).__name__}"
        )
    if images.dtype != torch.uint8:
        raise TypeError(f"{name} must have dtype torch.uint8 (raw pixels 0-255), got {images.dtype}")
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"{name} must have shape (N, 3, H, W) (NCHW, RGB), got shape {tuple(images.shape)}")
    if images.shape[0] < 1:
        raise ValueError(f"{name} must hold at least one image, got shape {tuple(images.shape)}")
    return images


def check_params(params: ViewParams, images: torch.Tensor) -> None:
    if not isinstance(params, ViewParams):
        raise TypeError(f"params must be ViewParams (from sample_params), got {type(params).__name__}")
    n = len(params)
    if n % images.shape[0] != 0:
        raise ValueError(
            f"params hold {n} samples, which is not a multiple of the batch size {images.shape[0]}; "
            "sample k is drawn from image k % N"
        )
    if params.crop.device != images.device:
        raise ValueError(f"params are on {params.crop.device} but images are on {images.device}")


def gray(x: torch.Tensor) -> torch.Tensor:
    r, g, b = x.unbind(dim=1)
    return (GRAY_WEIGHTS[0] * r + GRAY_WEIGHTS[1] * g + GRAY_WEIGHTS[2] * b).unsqueeze(1)


def _axis(start: torch.Tensor, length: torch.Tensor, out: int, flip: torch.Tensor | None = None):
    """Source indices and weights for a half-pixel bilinear resize of [start, start+length) to ``out``."""
    o = torch.arange(out, device=start.device, dtype=torch.float32).unsqueeze(0)
    if flip is not None:
        o = torch.where(flip.unsqueeze(1), (out - 1) - o, o)
    length = length.unsqueeze(1)
    scale = length.float() / out
    src = (scale * (o + 0.5) - 0.5).clamp_min(0.0)
    i0 = src.to(torch.int32)  # src >= 0, so truncation is floor
    i0 = torch.minimum(i0, length - 1)
    i1 = i0 + (i0 < length - 1).to(torch.int32)
    lam1 = src - i0.float()
    lam0 = 1.0 - lam1
    s = start.unsqueeze(1)
    return (s + i0).long(), (s + i1).long(), lam0, lam1


def crop_resize_flip(images: torch.Tensor, spec: ViewSpec, params: ViewParams) -> torch.Tensor:
    """(n, 3, S, S) float32 in [0, 1]: crop box, bilinear resize, horizontal flip."""
    n, size = len(params), spec.size
    src = images[torch.arange(n, device=images.device) % images.shape[0]]
    top, left, h, w = params.crop.unbind(dim=1)
    y0, y1, ly0, ly1 = _axis(top, h, size)
    x0, x1, lx0, lx1 = _axis(left, w, size, params.flip)
    width = images.shape[3]
    src = src.float() / 255.0

    def rows(idx):  # (n, 3, S, W)
        return src.gather(2, idx[:, None, :, None].expand(n, 3, size, width))

    def cols(r, idx):  # (n, 3, S, S)
        return r.gather(3, idx[:, None, None, :].expand(n, 3, size, size))

    r0, r1 = rows(y0), rows(y1)
    wx0, wx1 = lx0[:, None, None, :], lx1[:, None, None, :]
    top_row = wx0 * cols(r0, x0) + wx1 * cols(r0, x1)
    bot_row = wx0 * cols(r1, x0) + wx1 * cols(r1, x1)
    return ly0[:, None, :, None] * top_row + ly1[:, None, :, None] * bot_row


def rgb_to_hsv(x: torch.Tensor) -> torch.Tensor:
    """torchvision ``_rgb2hsv`` (float, channel dim 1)."""
    r, g, b = x.unbind(dim=1)
    maxc = x.amax(dim=1)
    minc = x.amin(dim=1)
    eqc = maxc == minc
    cr = maxc - minc
    ones = torch.ones_like(maxc)
    s = cr / torch.where(eqc, ones, maxc)
    crd = torch.where(eqc, ones, cr)
    rc, gc, bc = (maxc - r) / crd, (maxc - g) / crd, (maxc - b) / crd
    hr = (maxc == r) * (bc - gc)
    hg = ((maxc == g) & (maxc != r)) * (2.0 + rc - bc)
    hb = ((maxc != g) & (maxc != r)) * (4.0 + gc - rc)
    h = torch.fmod((hr + hg + hb) / 6.0 + 1.0, 1.0)
    return torch.stack((h, s, maxc), dim=1)


def hsv_to_rgb(x: torch.Tensor) -> torch.Tensor:
    """torchvision ``_hsv2rgb`` (float, channel dim 1)."""
    h, s, v = x.unbind(dim=1)
    i = torch.floor(h * 6.0)
    f = h * 6.0 - i
    i = i.to(torch.int32) % 6
    p = (v * (1.0 - s)).clamp(0.0, 1.0)
    q = (v * (1.0 - s * f)).clamp(0.0, 1.0)
    t = (v * (1.0 - s * (1.0 - f))).clamp(0.0, 1.0)
    sel = [i == k for k in range(6)]

    def pick(a):
        out = a[5]
        for k in range(4, -1, -1):
            out = torch.where(sel[k], a[k], out)
        return out

    return torch.stack((pick((v, q, p, p, t, v)), pick((t, v, v, q, p, p)), pick((p, p, t, v, v, q))), dim=1)


def _shift_hue(x: torch.Tensor, hue: torch.Tensor) -> torch.Tensor:
    hsv = rgb_to_hsv(x)
    h = hsv[:, 0] + hue[:, None, None]
    h = h - torch.floor(h)  # (H + h) mod 1, torch's float remainder
    return hsv_to_rgb(torch.stack((h, hsv[:, 1], hsv[:, 2]), dim=1))


def _jitter_op(x: torch.Tensor, op: int, f: torch.Tensor) -> torch.Tensor:
    f4 = f[:, None, None, None]
    if op == 0:
        return (f4 * x).clamp(0.0, 1.0)
    if op == 1:
        m = gray(x).mean(dim=(1, 2, 3), keepdim=True)
        return (f4 * x + (1.0 - f4) * m).clamp(0.0, 1.0)
    if op == 2:
        return (f4 * x + (1.0 - f4) * gray(x)).clamp(0.0, 1.0)
    return _shift_hue(x, f)


def color_jitter(x: torch.Tensor, params: ViewParams) -> torch.Tensor:
    """Applies each sample's jitter ops in its own order; samples without jitter pass through."""
    x = x.clone()
    for k in range(4):
        for op in range(4):
            sel = (params.order[:, k] == op) & params.jitter
            if sel.any():
                idx = sel.nonzero().squeeze(1)
                x[idx] = _jitter_op(x[idx], op, params.factors[idx, op])
    return x


def pre_blur(images: torch.Tensor, spec: ViewSpec, params: ViewParams) -> torch.Tensor:
    """Crop, resize, flip, colour jitter and grayscale: float32 (n, 3, S, S) in [0, 1]."""
    x = crop_resize_flip(images, spec, params)
    if params.jitter.any():
        x = color_jitter(x, params)
    x = torch.where(params.gray[:, None, None, None], gray(x).expand_as(x), x)
    return x


def gaussian_kernels(sigma: torch.Tensor, size: int) -> torch.Tensor:
    """(n, size) normalised 1-d Gaussians (torchvision ``_get_gaussian_kernel1d``)."""
    half = (size - 1) * 0.5
    t = torch.linspace(-half, half, size, device=sigma.device, dtype=torch.float32)
    pdf = torch.exp(-0.5 * (t[None, :] / sigma[:, None]) ** 2)
    return pdf / pdf.sum(dim=1, keepdim=True)


def blur(x: torch.Tensor, spec: ViewSpec, params: ViewParams) -> torch.Tensor:
    """Separable Gaussian blur of the samples whose ``params.blur`` is set (grouped conv, reflect pad).

    On CUDA every sample is convolved and the unblurred ones get a delta kernel, which is
    exact and avoids a host sync; elsewhere only the selected samples are convolved.
    """
    k = spec.kernel_size
    if k <= 1:
        return x
    if x.is_cuda:
        idx = None
        sub = x.float()
        delta = torch.zeros(k, device=x.device, dtype=torch.float32)
        delta[k // 2] = 1.0
        ker = torch.where(params.blur[:, None], gaussian_kernels(params.sigma.float(), k), delta)
    else:
        if not params.blur.any():
            return x
        idx = params.blur.nonzero().squeeze(1)
        sub = x[idx].float()
        ker = gaussian_kernels(params.sigma[idx].float(), k)
    m = sub.shape[0]
    ker = ker.repeat_interleave(3, dim=0)  # (m*3, k): one filter per (sample, channel)
    pad = k // 2
    y = sub.reshape(1, m * 3, spec.size, spec.size)
    y = F.conv2d(F.pad(y, (0, 0, pad, pad), mode="reflect"), ker[:, None, :, None], groups=m * 3)
    y = F.conv2d(F.pad(y, (pad, pad, 0, 0), mode="reflect"), ker[:, None, None, :], groups=m * 3)
    y = y.reshape(m, 3, spec.size, spec.size).to(x.dtype)
    if idx is None:
        return y
    out = x.clone()
    out[idx] = y
    return out


def finish(x: torch.Tensor, spec: ViewSpec, params: ViewParams, out_dtype: torch.dtype) -> torch.Tensor:
    """Solarize, normalise, cast; returns a channels_last tensor."""
    sol = params.solarize[:, None, None, None] & (x >= spec.solarize_threshold)
    x = torch.where(sol, 1.0 - x, x)
    mean = torch.tensor(spec.mean, device=x.device, dtype=torch.float32)[None, :, None, None]
    std = torch.tensor(spec.std, device=x.device, dtype=torch.float32)[None, :, None, None]
    x = (x - mean) / std
    return x.to(dtype=out_dtype, memory_format=torch.channels_last)


def apply_views_torch(
    images: torch.Tensor, spec: ViewSpec, params: ViewParams, out_dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """One view of ``spec`` for every sample of ``params`` (sample k uses image k % N).

    Returns (n, 3, size, size) in ``out_dtype``, normalised, channels_last.
    """
    check_images(images)
    check_params(params, images)
    x = pre_blur(images, spec, params)
    x = blur(x, spec, params)
    return finish(x, spec, params, out_dtype)
