"""Textbook pure-PyTorch references: the ground truth for tests and benchmarks.

Each follows the official code's semantics step by step, with no fusion and no algorithmic
shortcut; run them in float64 to get the numbers every backend is tested against. Each is
defined at the end of its loss's module under ``sslfast.losses``.
"""

from .losses.barlow_twins import barlow_twins_loss_reference
from .losses.coding_rate import total_coding_rate_reference
from .losses.emp_ssl import emp_ssl_loss_reference
from .losses.infonce import multicrop_infonce_loss_reference, nt_xent_loss_reference
from .losses.tico import tico_loss_reference
from .losses.vicreg import vicreg_loss_reference

__all__ = [
    "barlow_twins_loss_reference",
    "emp_ssl_loss_reference",
    "multicrop_infonce_loss_reference",
    "nt_xent_loss_reference",
    "tico_loss_reference",
    "total_coding_rate_reference",
    "vicreg_loss_reference",
]
