"""sslfast: fused kernels, GPU augmentation and fast training for self-supervised learning.

Importing sslfast imports torch only; triton, DALI and plotting libraries load on first use.
"""
from . import functional
from .losses import BarlowTwinsLoss, EMPSSLLoss, TiCoLoss, TotalCodingRate, VICRegLoss

__version__ = "0.1.0"

__all__ = ["VICRegLoss", "BarlowTwinsLoss", "TiCoLoss", "TotalCodingRate", "EMPSSLLoss", "functional", "__version__"]

# InfoNCE family (issue 3)
from .losses import MultiCropInfoNCELoss, NTXentLoss  # noqa: E402

__all__ += ["NTXentLoss", "MultiCropInfoNCELoss"]
