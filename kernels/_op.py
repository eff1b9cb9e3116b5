"""One guarded helper to register host launchers with torch.library.

On GPU a launcher becomes a ``triton_op`` and launches through ``wrap_triton``, so
torch.compile/inductor sees the Triton kernels themselves. Under ``TRITON_INTERPRET=1``
``triton_op`` would run the kernels on FakeTensors during tracing, so the launcher becomes
an opaque ``custom_op`` with an explicit fake (shape) function instead.
"""
from __future__ import annotations

from collections.abc import Callable

import torch

from sslfast.backend import interpreting


def launch(kernel):
    """The kernel, made launchable inside a registered op."""
    if interpreting():
        return kernel
    from torch.library import wrap_triton

    return wrap_triton(kernel)


def kernel_op(name: str, fake: Callable, mutates_args: tuple[str, ...] = ()):
    """Register ``fn`` as ``torch.ops.sslfast.<name>``; ``fake`` gives output shapes/dtypes."""

    def register(fn):
        qualname = f"sslfast::{name}"
        if interpreting():
            op = torch.library.custom_op(qualname, fn, mutates_args=mutates_args)
            op.register_fake(fake)
        else:
            op = torch.library.triton_op(qualname, fn, mutates_args=mutates_args)
        return op

    return register


def cdiv(a: int, b: int) -> int:
    return (a + b - 1) // b
