"""sslfast: fused kernels, GPU augmentation and fast training for self-supervised learning.

Importing sslfast imports torch only; triton, DALI and plotting libraries load on first use.
"""
__version__ = "0.1.0"
