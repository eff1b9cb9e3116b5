"""Weighted kNN evaluation (InstDisc, Wu et al., CVPR 2018; k=200, T=0.1 as in DINO and solo-learn),
and ``KNNMonitor``, the one kNN evaluator of the trainer and the speed run."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from .._checks import check_features, check_int, check_labels, check_num_classes, check_positive
from .._device import default_device
from .features import extract_features

__all__ = ["KNNMonitor", "KNNResult", "knn_classify"]


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
    check_features(train_feats, "train_feats")
    check_features(test_feats, "test_feats")
    n_train = train_feats.shape[0]
    check_labels(train_labels, "train_labels", n_train, "train_feats")
    if test_labels is not None:
        check_labels(test_labels, "test_labels", test_feats.shape[0], "test_feats")
    if train_feats.shape[1] != test_feats.shape[1]:
        raise ValueError(
            "train_feats and test_feats must share D, got shapes "
            f"{tuple(train_feats.shape)} and {tuple(test_feats.shape)}"
        )
    check_int(k, f"k (N_train={n_train})", max=n_train)
    check_positive(temperature, "temperature")
    c = check_num_classes(num_classes, train_labels, *([] if test_labels is None else [test_labels]))
    if chunk_size is None:
        chunk_size = max(1, 2**26 // n_train)
    else:
        check_int(chunk_size, "chunk_size")

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
        check_int(every, "every")
        for imgs, y, name in ((train_images, train_labels, "train"), (test_images, test_labels, "test")):
            if isinstance(imgs, torch.Tensor):
                check_labels(y, f"{name}_labels", imgs.shape[0], f"{name}_images")
        self.device = default_device(device)
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
