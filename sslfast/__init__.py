"""sslfast: fused kernels, GPU augmentation and fast training for self-supervised learning.

Importing sslfast imports torch only; triton, DALI and plotting libraries load on first use.
"""

from . import functional
from .losses import (
    BarlowTwinsLoss,
    EMPSSLLoss,
    MultiCropInfoNCELoss,
    NTXentLoss,
    TiCoLoss,
    TotalCodingRate,
    VICRegLoss,
)

__version__ = "0.1.0"

__all__ = [
    "VICRegLoss",
    "BarlowTwinsLoss",
    "TiCoLoss",
    "TotalCodingRate",
    "EMPSSLLoss",
    "NTXentLoss",
    "MultiCropInfoNCELoss",
    "functional",
    "__version__",
]


def __getattr__(name: str):
    # The training step is application code (sslfast.train.step); it stays reachable as
    # sslfast.make_train_step without importing the training stack with the losses.
    if name == "make_train_step":
        from .train.step import make_train_step

        return make_train_step
    raise AttributeError(f"module 'sslfast' has no attribute {name!r}")
