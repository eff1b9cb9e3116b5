"""Evaluation of frozen representations: feature extraction, weighted kNN, linear probe, ``sslfast eval``."""

from .features import extract_features, extract_patch_features, normalizer
from .knn import KNNMonitor, KNNResult, knn_classify
from .probe import LinearProbeEvaluator, linear_probe

__all__ = [
    "KNNMonitor",
    "KNNResult",
    "LinearProbeEvaluator",
    "extract_features",
    "extract_patch_features",
    "knn_classify",
    "linear_probe",
    "normalizer",
]
