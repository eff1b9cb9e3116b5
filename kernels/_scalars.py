"""Float hyperparameters for Triton kernels, exact in fp64.

The Triton JIT types every Python float argument as fp32, so an fp64 kernel given ``1/T`` or
``eps`` would compute with the fp32-rounded value (≈6e-8 relative error on a GPU; the interpreter
keeps the Python float, so CPU tests never see it). Launchers pass ``f64_bits(x)``, the IEEE-754
bit pattern as an int (typed int64 by the JIT), and kernels read it back with ``f64_arg`` in
their accumulation dtype: exact, no device tensor, no host-to-device copy, nothing for a CUDA
graph to capture.
"""

from __future__ import annotations

import struct
import sys

import triton
import triton.language as tl


def f64_bits(x: float) -> int:
    """The fp64 bit pattern of ``x`` as a Python int, for ``f64_arg``.

    Subnormals are flushed to 0 so the only pattern small enough for the JIT to type as int32 is
    ±0 (``f64_arg`` widens before the bitcast) and none equals 1 (which the JIT would specialise
    into a constant).
    """
    x = float(x)
    if x != 0.0 and abs(x) < sys.float_info.min:
        x = 0.0
    return struct.unpack("<q", struct.pack("<d", x))[0]


@triton.jit
def f64_arg(bits, ACC: tl.constexpr):
    """A float passed as ``f64_bits(x)``, as a scalar of dtype ``ACC``."""
    return bits.to(tl.int64).to(tl.float64, bitcast=True).to(ACC)
