"""Linear probe on frozen features (multinomial logistic regression), and ``LinearProbeEvaluator``,
which holds an evaluation split and probes a backbone (the speed run's accuracy measure)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .._checks import (
    check_choice,
    check_features,
    check_int,
    check_labels,
    check_num_classes,
    check_number,
    check_tensor,
)
from .._device import default_device, sync

__all__ = ["LinearProbeEvaluator", "linear_probe"]


# --------------------------------------------------------------------------------------------


def _probe_input(x, name: str, average_patches: bool) -> torch.Tensor:
    check_tensor(x, name)
    if average_patches:
        if x.dim() != 3:
            raise ValueError(f"with average_patches=True, {name} must have shape (P, N, D), got shape {tuple(x.shape)}")
        return x.float().mean(dim=0)
    if x.dim() == 3:
        raise ValueError(
            f"{name} has shape {tuple(x.shape)}: pass average_patches=True to average (P, N, D) patch features"
        )
    return check_features(x, name)


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
    check_labels(train_labels, "train_labels", x_tr.shape[0], "train_feats")
    check_labels(test_labels, "test_labels", x_te.shape[0], "test_feats")
    if x_tr.shape[1] != x_te.shape[1]:
        raise ValueError(f"train_feats and test_feats must share D, got {x_tr.shape[1]} and {x_te.shape[1]}")
    check_int(epochs, "epochs")
    check_choice(optimizer, "optimizer", ("adamw", "lbfgs"))
    check_int(batch_size, "batch_size", allow_none=True)
    if optimizer == "lbfgs" and batch_size is not None:
        raise ValueError("optimizer='lbfgs' is full-batch: leave batch_size=None")
    check_number(weight_decay, "weight_decay", min=0)
    lr = (0.1 if optimizer == "adamw" else 1.0) if lr is None else lr
    check_number(lr, "lr", min=0, min_open=True)
    c = check_num_classes(num_classes, train_labels, test_labels)

    dev = default_device(device) if device is not None else x_tr.device
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

    sync(dev)
    t0 = time.perf_counter()
    if optimizer == "adamw":
        final_loss, steps = _train_adamw(head, x_tr, y_tr, epochs, lr, weight_decay, batch_size, gen)
    else:
        final_loss, steps = _train_lbfgs(head, x_tr, y_tr, epochs, lr, weight_decay)
    sync(dev)
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


class LinearProbeEvaluator:
    """Holds an evaluation split and returns the linear-probe top-1 (percent) of a backbone.

    Features are whole images (``transform``, e.g. ``normalizer(mean, std)``), or, with
    ``patch_views`` (a ``ViewSpec`` list), EMP-SSL's bag-of-patches features: the mean embedding
    of ``len(patch_views)`` random views per image (``extract_patch_features``; seeded, so every
    call sees the same patches). ``probe_kw`` go to ``linear_probe``.
    """

    def __init__(
        self,
        train_images: torch.Tensor,
        train_labels: torch.Tensor,
        test_images: torch.Tensor,
        test_labels: torch.Tensor,
        *,
        transform: Callable | None = None,
        patch_views: list | None = None,
        batch_size: int = 1024,
        device=None,
        autocast_dtype: torch.dtype | None = None,
        **probe_kw,
    ):
        check_labels(train_labels, "train_labels", train_images.shape[0], "train_images")
        check_labels(test_labels, "test_labels", test_images.shape[0], "test_images")
        self.device = default_device(device)
        self.train_images, self.test_images = train_images, test_images
        self.train_labels, self.test_labels = train_labels, test_labels
        self.transform, self.patch_views = transform, patch_views or None
        self.batch_size, self.autocast_dtype, self.probe_kw = batch_size, autocast_dtype, probe_kw

    @property
    def protocol(self) -> str:
        if self.patch_views:
            return f"mean embedding of {len(self.patch_views)} random patches per image (EMP-SSL bag-of-features)"
        return "whole image"

    def features(self, model: nn.Module, images: torch.Tensor, seed: int) -> torch.Tensor:
        from .features import extract_features, extract_patch_features

        if self.patch_views:
            return extract_patch_features(
                model, images, self.patch_views, seed=seed, device=self.device, autocast_dtype=self.autocast_dtype
            )
        return extract_features(
            model,
            images,
            transform=self.transform,
            batch_size=self.batch_size,
            device=self.device,
            autocast_dtype=self.autocast_dtype,
        )

    def __call__(self, model: nn.Module) -> float:
        train = self.features(model, self.train_images, seed=0)
        test = self.features(model, self.test_images, seed=1)
        return float(linear_probe(train, self.train_labels, test, self.test_labels, **self.probe_kw)["top1"])
