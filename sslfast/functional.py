"""Functional forms of the losses. Every one takes ``backend="auto" | "triton" | "torch" | "reference"``.

``auto``: the fused Triton kernels for CUDA tensors, the plain-PyTorch implementation of the
same algorithms elsewhere; ``reference``: the textbook code (``sslfast.reference``).
Low-precision inputs (bf16/fp16) are accumulated in fp32 and the loss is returned in fp32;
gradients come back in the input dtype. Non-finite inputs give a non-finite loss (NaN or inf),
never a finite number. Each is defined in its loss's module under ``sslfast.losses``.
"""

from .losses.barlow_twins import barlow_twins_loss
from .losses.coding_rate import total_coding_rate
from .losses.emp_ssl import emp_ssl_loss
from .losses.infonce import INFONCE_TILED_MIN_ENTRIES, multicrop_infonce_loss, nt_xent_loss
from .losses.tico import tico_loss
from .losses.vicreg import vicreg_loss

__all__ = [
    "INFONCE_TILED_MIN_ENTRIES",
    "barlow_twins_loss",
    "emp_ssl_loss",
    "multicrop_infonce_loss",
    "nt_xent_loss",
    "tico_loss",
    "total_coding_rate",
    "vicreg_loss",
]
