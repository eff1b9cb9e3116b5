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
