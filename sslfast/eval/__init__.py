"""Evaluation of frozen representations: feature extraction, weighted kNN, linear probe, ``sslfast eval``."""

from .features import (
    KNNMonitor,
    KNNResult,
    extract_features,
    extract_patch_features,
    knn_classify,
    linear_probe,
    normalizer,
)

__all__ = [
    "KNNMonitor",
    "KNNResult",
    "extract_features",
    "extract_patch_features",
    "knn_classify",
    "linear_probe",
    "normalizer",
]
