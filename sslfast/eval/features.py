"""Evaluation of frozen representations: feature extraction, weighted kNN, linear probe.

- Weighted kNN: Wu et al., "Unsupervised Feature Learning via Non-Parametric Instance
  Discrimination" (InstDisc, CVPR 2018), with k=200, T=0.1 as in DINO and solo-learn.
- Linear probe on precomputed features, trained on the device (full batch by default);
  patch-averaged features as in EMP-SSL (Tong et al., 2023).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from .._checks import check_tensor

__all__ = [
    "KNNMonitor",
    "KNNResult",
    "extract_features",
    "extract_patch_features",
    "knn_classify",
    "linear_probe",
    "normalizer",
]


def _device(device) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _check_labels(y, name: str, n: int, n_name: str) -> torch.Tensor:
    if not isinstance(y, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of class indices, got {type(y).__name__}")
    if y.dtype.is_floating_point or y.dtype.is_complex or y.dtype == torch.bool:
        raise TypeError(f"{name} must be an integer tensor of class indices, got {y.dtype}")
    if y.dim() != 1:
        raise ValueError(f"{name} must have shape (N,), got shape {tuple(y.shape)}")
    if y.shape[0] != n:
        raise ValueError(f"{name} has {y.shape[0]} labels but {n_name} has {n} rows")
    return y


def _check_feats(x, name: str) -> torch.Tensor:
    check_tensor(x, name)
    if x.dim() != 2:
        raise ValueError(f"{name} must have shape (N, D), got a {x.dim()}-d tensor of shape {tuple(x.shape)}")
    if x.shape[0] < 1 or x.shape[1] < 1:
        raise ValueError(f"{name} must be non-empty (N, D), got shape {tuple(x.shape)}")
    return x


def _num_classes(num_classes, *labels: torch.Tensor) -> int:
    lo = min(int(y.min()) for y in labels)
    hi = max(int(y.max()) for y in labels)
    if lo < 0:
        raise ValueError(f"labels must be >= 0, got a minimum of {lo}")
    if num_classes is None:
        return hi + 1
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
    if hi >= num_classes:
        raise ValueError(f"labels must be < num_classes={num_classes}, got a maximum of {hi}")
    return num_classes


# --------------------------------------------------------------------------------------------
# Feature extraction
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
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    dev = _device(device)
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
                raise ValueError(
                    f"return_labels needs (images, labels) batches, batch {i} is a {type(batch).__name__}"
                )
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
                raise ValueError(
                    f"model must return (batch, D) features, got {shape} for a batch of {x.shape[0]}"
                )
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
    from sslfast.data_pipelines._augment_torch import check_images

    check_images(images)  # make_views' own check, before the batch is split and moved
    views = list(views)
    if not views:
        raise ValueError("views must hold at least one ViewSpec, got none")
    if isinstance(views_per_batch, bool) or not isinstance(views_per_batch, int) or views_per_batch < 1:
        raise ValueError(f"views_per_batch must be a positive int, got {views_per_batch!r}")
    dev = _device(device)
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


# --------------------------------------------------------------------------------------------
# Weighted kNN
# --------------------------------------------------------------------------------------------


class KNNResult(NamedTuple):
    predictions: torch.Tensor  # (N_test,) int64 on the features' device
    top1: float | None  # percent; None when no test labels were given


@torch.no_grad()
def knn_classify(
    train_feats: torch.Tensor,
    train_labels: torch.Tensor,
    test_feats: torch.Tensor,
    test_labels: torch.Tensor | None = None,
    *,
    k: int = 200,
    temperature: float = 0.1,
    num_classes: int | None = None,
    chunk_size: int | None = None,
) -> KNNResult:
    r"""Weighted kNN on cosine similarity (InstDisc; k=200, T=0.1 as in DINO / solo-learn).

    For each test feature, with L2-normalised features and its k most similar training
    features :math:`s_1..s_k` (labels :math:`y_j`), the vote for class c is
    :math:`\sum_j [y_j = c] \exp(s_j / T)`; the prediction is the argmax. Test rows are
    processed ``chunk_size`` at a time, so memory is O(chunk_size * N_train); the default
    chunk keeps the similarity block near 2**26 elements (256 MB in float32).
    Returns ``KNNResult(predictions, top1)`` with top1 in percent (None without test_labels).
    """
    _check_feats(train_feats, "train_feats")
    _check_feats(test_feats, "test_feats")
    n_train = train_feats.shape[0]
    _check_labels(train_labels, "train_labels", n_train, "train_feats")
    if test_labels is not None:
        _check_labels(test_labels, "test_labels", test_feats.shape[0], "test_feats")
    if train_feats.shape[1] != test_feats.shape[1]:
        raise ValueError(
            "train_feats and test_feats must share D, got shapes "
            f"{tuple(train_feats.shape)} and {tuple(test_feats.shape)}"
        )
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= n_train:
        raise ValueError(f"k must be an int in [1, N_train={n_train}], got {k!r}")
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not temperature > 0:
        raise ValueError(f"temperature must be a positive number, got {temperature!r}")
    c = _num_classes(num_classes, train_labels, *([] if test_labels is None else [test_labels]))
    if chunk_size is None:
        chunk_size = max(1, 2**26 // n_train)
    elif isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive int, got {chunk_size!r}")

    dev = test_feats.device
    train_n = F.normalize(train_feats.to(dev, torch.float32), dim=1)
    test_n = F.normalize(test_feats.to(torch.float32), dim=1)
    train_y = train_labels.to(dev, torch.int64)
    preds = torch.empty(test_n.shape[0], dtype=torch.int64, device=dev)
    for start in range(0, test_n.shape[0], chunk_size):
        q = test_n[start : start + chunk_size]
        sim, idx = (q @ train_n.T).topk(k, dim=1)  # (c, k)
        votes = torch.zeros(q.shape[0], c, device=dev, dtype=torch.float32)
        votes.scatter_add_(1, train_y[idx], (sim / temperature).exp_())
        preds[start : start + q.shape[0]] = votes.argmax(dim=1)
    top1 = None
    if test_labels is not None:
        top1 = 100.0 * float((preds == test_labels.to(dev)).float().mean())
    return KNNResult(preds, top1)


class KNNMonitor:
    """Holds an evaluation split and returns kNN top-1 (percent) of a model, every ``every`` epochs.

    ``monitor(model)`` extracts features of the train (memory bank) and test images with
    ``extract_features`` and runs ``knn_classify``; ``monitor.due(epoch)`` says whether the
    1-based ``epoch`` is a multiple of ``every``. Results accumulate in ``history``.
    """

    def __init__(
        self,
        train_images,
        train_labels: torch.Tensor,
        test_images,
        test_labels: torch.Tensor,
        *,
        transform: Callable | None = None,
        k: int = 200,
        temperature: float = 0.1,
        every: int = 1,
        batch_size: int = 512,
        device=None,
        autocast_dtype: torch.dtype | None = None,
        num_classes: int | None = None,
    ):
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"every must be a positive int, got {every!r}")
        for imgs, y, name in ((train_images, train_labels, "train"), (test_images, test_labels, "test")):
            if isinstance(imgs, torch.Tensor):
                _check_labels(y, f"{name}_labels", imgs.shape[0], f"{name}_images")
        self.device = _device(device)
        self.train_images, self.test_images = train_images, test_images
        self.train_labels = train_labels.to(self.device)
        self.test_labels = test_labels.to(self.device)
        self.knn_kw = dict(k=k, temperature=temperature, num_classes=num_classes)
        self.extract_kw = dict(
            transform=transform, batch_size=batch_size, device=self.device, autocast_dtype=autocast_dtype
        )
        self.every = every
        self.history: list[tuple[int | None, float]] = []

    def due(self, epoch: int) -> bool:
        return epoch % self.every == 0

    def __call__(self, model: nn.Module, epoch: int | None = None) -> float:
        train_f = extract_features(model, self.train_images, **self.extract_kw)
        test_f = extract_features(model, self.test_images, **self.extract_kw)
        top1 = knn_classify(train_f, self.train_labels, test_f, self.test_labels, **self.knn_kw).top1
        self.history.append((epoch, top1))
        return top1


# --------------------------------------------------------------------------------------------
# Linear probe
# --------------------------------------------------------------------------------------------


def _probe_input(x, name: str, average_patches: bool) -> torch.Tensor:
    check_tensor(x, name)
    if average_patches:
        if x.dim() != 3:
            raise ValueError(
                f"with average_patches=True, {name} must have shape (P, N, D), got shape {tuple(x.shape)}"
            )
        return x.float().mean(dim=0)
    if x.dim() == 3:
        raise ValueError(
            f"{name} has shape {tuple(x.shape)}: "
            "pass average_patches=True to average (P, N, D) patch features"
        )
    return _check_feats(x, name)


def linear_probe(
    train_feats: torch.Tensor,
    train_labels: torch.Tensor,
    test_feats: torch.Tensor,
    test_labels: torch.Tensor,
    *,
    epochs: int = 100,
    lr: float | None = None,
    weight_decay: float = 0.0,
    batch_size: int | None = None,
    optimizer: str = "lbfgs",
    standardise: bool = True,
    l2_normalise: bool = False,
    average_patches: bool = False,
    num_classes: int | None = None,
    device=None,
    seed: int = 0,
) -> dict:
    r"""Multinomial logistic regression on frozen features; returns top-1 and timings.

    Preprocessing: optional L2 normalisation, then standardisation with the *train* mean and
    std (the affine-free BatchNorm before MAE's linear head computes the same thing).
    ``average_patches``: inputs (P, N, D) are averaged over the P patches first (EMP-SSL).

    Optimisers (both minimise mean cross-entropy, full batch by default, on the device):
    - ``"lbfgs"`` (default, lr 1): L-BFGS with strong-Wolfe line search for at most ``epochs``
      iterations on CE + (weight_decay / 2) * ||W||^2: the sklearn-style logistic-regression
      probe of CLIP. It converged fastest and best on our synthetic checks; its line search
      reads the loss on the host a few times per iteration.
    - ``"adamw"`` (lr 0.1): ``epochs`` passes, full batch (``batch_size=None``) or shuffled
      mini-batches (then lower lr), cosine-decayed lr, decoupled ``weight_decay``; fixed cost
      and no host syncs per step.

    Returns ``{"top1", "train_top1", "train_time_s", "eval_time_s", "final_loss", ...}``,
    accuracies in percent; times exclude preprocessing and are measured after a device sync.
    """
    x_tr = _probe_input(train_feats, "train_feats", average_patches)
    x_te = _probe_input(test_feats, "test_feats", average_patches)
    _check_labels(train_labels, "train_labels", x_tr.shape[0], "train_feats")
    _check_labels(test_labels, "test_labels", x_te.shape[0], "test_feats")
    if x_tr.shape[1] != x_te.shape[1]:
        raise ValueError(f"train_feats and test_feats must share D, got {x_tr.shape[1]} and {x_te.shape[1]}")
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be a positive int, got {epochs!r}")
    if optimizer not in ("adamw", "lbfgs"):
        raise ValueError(f"optimizer must be 'adamw' or 'lbfgs', got {optimizer!r}")
    if batch_size is not None and (
        isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1
    ):
        raise ValueError(f"batch_size must be None (full batch) or a positive int, got {batch_size!r}")
    if optimizer == "lbfgs" and batch_size is not None:
        raise ValueError("optimizer='lbfgs' is full-batch: leave batch_size=None")
    if isinstance(weight_decay, bool) or not isinstance(weight_decay, (int, float)) or weight_decay < 0:
        raise ValueError(f"weight_decay must be a non-negative number, got {weight_decay!r}")
    lr = (0.1 if optimizer == "adamw" else 1.0) if lr is None else lr
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not lr > 0:
        raise ValueError(f"lr must be a positive number, got {lr!r}")
    c = _num_classes(num_classes, train_labels, test_labels)

    dev = _device(device) if device is not None else x_tr.device
    x_tr, x_te = x_tr.to(dev, torch.float32), x_te.to(dev, torch.float32)
    y_tr, y_te = train_labels.to(dev, torch.int64), test_labels.to(dev, torch.int64)
    if l2_normalise:
        x_tr, x_te = F.normalize(x_tr, dim=1), F.normalize(x_te, dim=1)
    if standardise:
        mean, std = x_tr.mean(0, keepdim=True), x_tr.std(0, keepdim=True).clamp_min(1e-6)
        x_tr, x_te = (x_tr - mean) / std, (x_te - mean) / std

    gen = torch.Generator(device=dev).manual_seed(seed)
    head = nn.Linear(x_tr.shape[1], c, device=dev)
    with torch.no_grad():  # seeded init, independent of the global RNG
        bound = 1.0 / math.sqrt(x_tr.shape[1])
        head.weight.copy_(torch.rand(head.weight.shape, generator=gen, device=dev) * 2 * bound - bound)
        head.bias.zero_()

    _sync(dev)
    t0 = time.perf_counter()
    if optimizer == "adamw":
        final_loss, steps = _train_adamw(head, x_tr, y_tr, epochs, lr, weight_decay, batch_size, gen)
    else:
        final_loss, steps = _train_lbfgs(head, x_tr, y_tr, epochs, lr, weight_decay)
    _sync(dev)
    train_time = time.perf_counter() - t0

    t0 = time.perf_counter()
    with torch.no_grad():
        test_pred = head(x_te).argmax(1)
        top1 = 100.0 * float((test_pred == y_te).float().mean())
    eval_time = time.perf_counter() - t0  # float() above synchronised
    with torch.no_grad():
        train_top1 = 100.0 * float((head(x_tr).argmax(1) == y_tr).float().mean())
    return {
        "top1": top1,
        "train_top1": train_top1,
        "train_time_s": train_time,
        "eval_time_s": eval_time,
        "final_loss": float(final_loss),
        "optimizer": optimizer,
        "steps": steps,
        "num_classes": c,
        "n_train": x_tr.shape[0],
        "n_test": x_te.shape[0],
        "feat_dim": x_tr.shape[1],
    }


def _train_adamw(head, x, y, epochs, lr, weight_decay, batch_size, gen):
    from ..train.optim import warmup_cosine

    n = x.shape[0]
    bs = n if batch_size is None else min(batch_size, n)
    per_epoch = math.ceil(n / bs)
    total = epochs * per_epoch
    opt = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=weight_decay, foreach=True)
    step = 0
    loss = torch.zeros((), device=x.device)
    for _ in range(epochs):
        order = None if bs == n else torch.randperm(n, generator=gen, device=x.device)
        for start in range(0, n, bs):
            for g in opt.param_groups:
                g["lr"] = warmup_cosine(step, total, 0, lr, 0.0)
            xb, yb = (x, y) if order is None else (x[order[start : start + bs]], y[order[start : start + bs]])
            loss = F.cross_entropy(head(xb), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
    with torch.no_grad():
        final = F.cross_entropy(head(x), y)
    return final, step


def _train_lbfgs(head, x, y, max_iter, lr, weight_decay):
    opt = torch.optim.LBFGS(
        head.parameters(),
        lr=lr,
        max_iter=max_iter,
        history_size=20,
        tolerance_grad=1e-7,
        tolerance_change=1e-10,
        line_search_fn="strong_wolfe",
    )
    n_evals = 0

    def closure():
        nonlocal n_evals
        n_evals += 1
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(head(x), y) + 0.5 * weight_decay * head.weight.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        final = F.cross_entropy(head(x), y)
    return final, n_evals
