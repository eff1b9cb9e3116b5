"""NVIDIA DALI multi-view pipelines built from the same ViewSpecs.

    loader = DaliViewLoader(preset("simclr"), images=cifar.images, labels=cifar.labels, batch_size=256)
    for views, labels in loader: ...

Sources: in-memory uint8 arrays (``external_source``) or an image folder (``readers.file`` and
``decoders.image``, ``device="mixed"`` on a GPU). Without a GPU (``device_id=None``) the
pipeline runs on DALI's CPU backend, which is how CI tests it.

Op mapping (DALI's fused ops differ from torchvision in two documented ways):
- ``random_resized_crop`` with the spec's area/ratio ranges and 10 attempts; linear resize.
- ``color_twist`` applies brightness, contrast, saturation and hue in one fixed order, with
  contrast centred on mid-grey instead of the image mean and hue as a YIQ rotation in
  degrees (360 * h). Jitter is skipped with probability 1 - p by setting identity factors.
- grayscale: torchvision's luma (0.2989, 0.587, 0.114) computed with arithmetic ops and
  blended in by a per-sample coin (exactly equal channels).
- blur: ``gaussian_blur`` blended by a per-sample coin; solarize: ``x >= 128 -> 255 - x``.
- flip and normalisation: ``crop_mirror_normalize``; output NHWC memory, returned as NCHW
  tensors in channels_last, like ``make_views``.

DALI is optional: ``pip install 'sslfast[dali]'``. Nothing here imports it until used.
"""
from __future__ import annotations

import math
import os
from collections.abc import Sequence

import numpy as np
import torch

from .views import ViewSpec

INSTALL = "pip install 'sslfast[dali]'"


def require_dali():
    """Import nvidia.dali or raise an ImportError that names the install line."""
    try:
        import nvidia.dali as dali  # noqa: F401
        import nvidia.dali.fn  # noqa: F401
        import nvidia.dali.types  # noqa: F401
    except ImportError as e:
        raise ImportError(f"the DALI backend needs NVIDIA DALI: {INSTALL} (nvidia-dali-cuda130); {e}") from e
    return dali


def dist_shard() -> tuple[int, int]:
    """(shard_id, num_shards) from torchrun's RANK / WORLD_SIZE; (0, 1) outside torchrun."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def _default_device_id():
    return torch.cuda.current_device() if torch.cuda.is_available() else None


def _coin(fn, types, p: float):
    return fn.cast(fn.random.coin_flip(probability=float(p)), dtype=types.FLOAT)


def _view(fn, types, x, spec: ViewSpec, gpu: bool, out_dtype):
    """One ViewSpec as DALI ops on a batch of HWC uint8 images."""
    from nvidia.dali import math as dmath

    x = fn.random_resized_crop(x, size=(spec.size, spec.size), random_area=list(spec.crop_scale),
                               random_aspect_ratio=list(spec.crop_ratio), num_attempts=10,
                               interp_type=types.INTERP_LINEAR, antialias=False)
    b, c, s, h = spec.jitter
    jit = _coin(fn, types, spec.jitter_p)
    gray = _coin(fn, types, spec.grayscale_p)

    def factor(lo, hi, identity):
        u = fn.random.uniform(range=[lo, hi]) if hi > lo else lo
        return jit * (u - identity) + identity

    x = fn.color_twist(
        x,
        brightness=factor(max(0.0, 1 - b), 1 + b, 1.0),
        contrast=factor(max(0.0, 1 - c), 1 + c, 1.0),
        saturation=factor(max(0.0, 1 - s), 1 + s, 1.0),
        hue=factor(-360.0 * h, 360.0 * h, 0.0),
        dtype=types.FLOAT,
    )
    # color_twist does not saturate float output; torchvision clamps after every op
    x = dmath.clamp(x, 0.0, 255.0)
    if spec.grayscale_p > 0:
        luma = 0.2989 * x[:, :, 0] + 0.587 * x[:, :, 1] + 0.114 * x[:, :, 2]
        x = gray * fn.stack(luma, luma, luma, axis=2) + (1.0 - gray) * x
    if spec.blur_p > 0 and spec.kernel_size > 1:
        lo, hi = spec.blur_sigma
        blurred = fn.gaussian_blur(x, sigma=fn.random.uniform(range=[lo, hi]) if hi > lo else lo,
                                   window_size=spec.kernel_size, dtype=types.FLOAT)
        coin = _coin(fn, types, spec.blur_p)
        x = coin * blurred + (1.0 - coin) * x
    if spec.solarize_p > 0:
        thr = 255.0 * spec.solarize_threshold
        sol = _coin(fn, types, spec.solarize_p) * fn.cast(x >= thr, dtype=types.FLOAT)
        x = x + sol * (255.0 - 2.0 * x)
    return fn.crop_mirror_normalize(
        x, dtype=out_dtype, output_layout="HWC",
        mean=[255.0 * m for m in spec.mean], std=[255.0 * sd for sd in spec.std],
        mirror=fn.random.coin_flip(probability=float(spec.flip_p)),
    )


def build_pipeline(specs: Sequence[ViewSpec], *, batch_size: int, file_root=None, device_id="auto",
                   num_threads: int | None = None, seed: int = 0, shard_id: int = 0, num_shards: int = 1,
                   shuffle: bool = True, out_dtype: torch.dtype = torch.float32):
    """A DALI pipeline with outputs (view_1, ..., view_V, labels).

    Without ``file_root`` the images come from an ``external_source`` named "images" (HWC uint8)
    and labels from one named "labels"; with it, from ``readers.file`` (name "Reader").
    """
    require_dali()
    from nvidia.dali import fn, pipeline_def, types

    specs = [specs] if isinstance(specs, ViewSpec) else list(specs)
    if not specs or not all(isinstance(s, ViewSpec) for s in specs):
        raise TypeError(f"specs must be a non-empty list of ViewSpec, got {specs!r}")
    if device_id == "auto":
        device_id = _default_device_id()
    gpu = device_id is not None
    dali_dtype = {torch.float32: types.FLOAT, torch.float16: types.FLOAT16}.get(out_dtype)
    if dali_dtype is None:
        raise TypeError(f"out_dtype must be torch.float32 or torch.float16 for DALI, got {out_dtype}")

    # feed_input drives the array source one batch per run(), so that pipeline runs synchronously;
    # the file reader prefetches.
    sync = file_root is None
    @pipeline_def(batch_size=batch_size, num_threads=num_threads or max(1, os.cpu_count() or 1),
                  device_id=device_id, seed=seed, prefetch_queue_depth=1 if sync else 2,
                  exec_async=not sync, exec_pipelined=not sync)
    def pipe():
        if file_root is not None:
            jpegs, labels = fn.readers.file(file_root=str(file_root), shard_id=shard_id, num_shards=num_shards,
                                            random_shuffle=shuffle, pad_last_batch=True, name="Reader", seed=seed)
            images = fn.decoders.image(jpegs, device="mixed" if gpu else "cpu", output_type=types.RGB)
        else:
            images = fn.external_source(name="images", layout="HWC", dtype=types.UINT8, no_copy=False)
            labels = fn.external_source(name="labels", dtype=types.INT64)
            if gpu:
                images = images.gpu()
        views = [_view(fn, types, images, s, gpu, dali_dtype) for s in specs]
        return (*views, labels)

    return pipe()


def _to_torch(tl) -> torch.Tensor:
    """A dense DALI TensorList (CPU or GPU) as a torch tensor on the same device."""
    from nvidia.dali import types
    from nvidia.dali.plugin.pytorch import feed_ndarray

    t = tl.as_tensor()
    if not type(tl).__name__.endswith("GPU"):
        return torch.from_numpy(np.array(t))
    dtype = {types.FLOAT: torch.float32, types.FLOAT16: torch.float16,
             types.INT64: torch.int64, types.INT32: torch.int32}[t.dtype]
    out = torch.empty(t.shape(), dtype=dtype, device=torch.device("cuda", torch.cuda.current_device()))
    feed_ndarray(t, out, cuda_stream=torch.cuda.current_stream())
    return out


class DaliViewLoader:
    """Iterate (views, labels) over a dataset with DALI, epoch by epoch, one shard per rank.

    ``images``: uint8 (N, 3, H, W) tensor or array (the ``ImageDataset`` layout), fed through
    ``external_source``; each epoch is a seeded permutation (``seed + epoch``) split into
    ``num_shards`` equal parts, like DistributedSampler. Or ``file_root``: an image folder
    read by DALI's file reader (sharded and shuffled by DALI). ``shard_id``/``num_shards``
    default to torchrun's RANK/WORLD_SIZE. Views are float (N, 3, S, S) channels_last tensors.
    """

    def __init__(self, specs, *, images=None, labels=None, file_root=None, batch_size: int = 256,
                 device_id="auto", num_threads: int | None = None, seed: int = 0, shard_id: int | None = None,
                 num_shards: int | None = None, shuffle: bool = True, drop_last: bool = True,
                 out_dtype: torch.dtype = torch.float32):
        require_dali()
        if (images is None) == (file_root is None):
            raise ValueError("pass exactly one source: images=(N, 3, H, W) uint8 or file_root=<image folder>")
        rank, world = dist_shard()
        self.shard_id = rank if shard_id is None else int(shard_id)
        self.num_shards = world if num_shards is None else int(num_shards)
        if not 0 <= self.shard_id < self.num_shards:
            raise ValueError(f"shard_id must be in [0, num_shards={self.num_shards}), got {self.shard_id}")
        self.specs = [specs] if isinstance(specs, ViewSpec) else list(specs)
        self.batch_size, self.seed, self.shuffle, self.drop_last = int(batch_size), seed, shuffle, drop_last
        self.epoch = 0
        self.file_root = file_root
        if images is not None:
            arr = images.cpu().numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
            if arr.dtype != np.uint8 or arr.ndim != 4 or arr.shape[1] != 3:
                raise ValueError(f"images must be uint8 of shape (N, 3, H, W), got {arr.dtype} {arr.shape}")
            self._hwc = np.ascontiguousarray(arr.transpose(0, 2, 3, 1))
            n = arr.shape[0]
            lab = np.zeros(n, np.int64) if labels is None else (
                labels.cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)).astype(np.int64)
            if lab.shape != (n,):
                raise ValueError(f"labels must have shape ({n},), got {lab.shape}")
            self._labels = lab
            self._per_shard = n // self.num_shards
        self.pipe = build_pipeline(self.specs, batch_size=self.batch_size, file_root=file_root, device_id=device_id,
                                   num_threads=num_threads, seed=seed, shard_id=self.shard_id,
                                   num_shards=self.num_shards, shuffle=shuffle, out_dtype=out_dtype)
        self.pipe.build()
        if file_root is not None:
            self._per_shard = math.ceil(self.pipe.epoch_size("Reader") / self.num_shards)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        n = self._per_shard
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def _shard_indices(self) -> np.ndarray:
        n = self._hwc.shape[0]
        order = (np.random.default_rng(self.seed + self.epoch).permutation(n) if self.shuffle else np.arange(n))
        return order[self.shard_id * self._per_shard:(self.shard_id + 1) * self._per_shard]

    def __iter__(self):
        nv = len(self.specs)
        idx = self._shard_indices() if self.file_root is None else None
        for step in range(len(self)):
            take = self.batch_size
            if idx is not None:
                sel = idx[step * self.batch_size:(step + 1) * self.batch_size]
                take = len(sel)
                # DALI batches have a fixed size: pad a short last batch, then trim the outputs.
                sel = np.concatenate([sel, np.resize(sel, self.batch_size - take)]) if take < self.batch_size else sel
                self.pipe.feed_input("images", [self._hwc[i] for i in sel], layout="HWC")
                self.pipe.feed_input("labels", [self._labels[i:i + 1] for i in sel])
            else:
                take = min(self.batch_size, self._per_shard - step * self.batch_size)
            outs = self.pipe.run()
            views = [_to_torch(outs[v])[:take].permute(0, 3, 1, 2) for v in range(nv)]
            labels = _to_torch(outs[nv]).reshape(self.batch_size, -1)[:take, 0]
            yield views, labels
        self.epoch += 1
