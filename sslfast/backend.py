"""The one place that resolves ``backend=`` for every loss.

``"auto"`` means the fused Triton kernels for CUDA tensors and the plain-PyTorch
implementation of the same algorithms everywhere else. ``"triton"`` on CPU tensors is
allowed only under ``TRITON_INTERPRET=1`` (how CI proves the kernels correct).
"""
from __future__ import annotations

import contextvars
import importlib.util
import os

import torch

BACKENDS = ("auto", "triton", "torch", "reference")


def interpreting() -> bool:
    """True when Triton kernels run on the CPU interpreter (``TRITON_INTERPRET=1``)."""
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


# Set by sslfast.kernels._op.capture_launches: launchers record their Triton launches instead of
# running them, on meta tensors (the static GPU gate), so backend="triton" is allowed on "meta".
_CAPTURING: contextvars.ContextVar[bool] = contextvars.ContextVar("sslfast_capturing", default=False)


def capturing() -> bool:
    """True inside ``sslfast.kernels._op.capture_launches()``."""
    return _CAPTURING.get()


# find_spec locates the package without importing it; a constant keeps compiled code free of lookups.
_TRITON_FOUND = importlib.util.find_spec("triton") is not None


def triton_available() -> bool:
    return _TRITON_FOUND


def auto_backend(device: torch.device | str) -> str:
    """What ``backend="auto"`` resolves to for tensors on ``device``."""
    device = torch.device(device)
    if (device.type == "cuda" or (capturing() and device.type == "meta")) and triton_available():
        return "triton"
    return "torch"


def check_backend(backend: str) -> str:
    if not isinstance(backend, str) or backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    return backend


def resolve_backend(backend: str, device: torch.device | str) -> str:
    """Validate ``backend`` and resolve ``"auto"`` for tensors on ``device``."""
    check_backend(backend)
    if backend == "auto":
        return auto_backend(device)
    if backend == "triton":
        if not triton_available():
            raise ImportError(
                "backend='triton' needs the triton package: pip install 'sslfast[triton]' "
                "(CUDA builds of torch ship it)"
            )
        device = torch.device(device)
        if device.type != "cuda" and not interpreting() and not (capturing() and device.type == "meta"):
            raise ValueError(
                f"backend='triton' needs CUDA tensors (got device {device}); "
                "set TRITON_INTERPRET=1 to run the kernels on the CPU interpreter, or use backend='torch'"
            )
    return backend
