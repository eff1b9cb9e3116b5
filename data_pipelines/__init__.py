"""Datasets, view specifications, GPU augmentation and DALI pipelines.

Importing this package imports torch and numpy only: triton loads on the first Triton launch
and DALI only through ``sslfast.data_pipelines.dali``.
"""
from ._augment_torch import check_images
from .datasets import ImageDataset, ImageFolder, load_cifar10, load_cifar100, make_synthetic
from .gpu_augment import ViewParams, apply_views_torch, apply_views_triton, make_views, sample_params
from .views import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    IMAGENET_MEAN,
    IMAGENET_STD,
    PRESETS,
    ViewSpec,
    byol,
    emp_ssl,
    eval_spec,
    multicrop,
    preset,
    simclr,
    vicreg,
)

__all__ = [
    "ImageDataset", "ImageFolder", "load_cifar10", "load_cifar100", "make_synthetic",
    "ViewParams", "apply_views_torch", "check_images", "apply_views_triton", "make_views", "sample_params",
    "CIFAR10_MEAN", "CIFAR10_STD", "IMAGENET_MEAN", "IMAGENET_STD", "PRESETS", "ViewSpec",
    "byol", "emp_ssl", "eval_spec", "multicrop", "preset", "simclr", "vicreg",
]
