"""One guarded helper to register host launchers with torch.library, and launch capture.

On GPU a launcher becomes a ``triton_op`` and launches through ``wrap_triton``, so
torch.compile/inductor sees the Triton kernels themselves. Under ``TRITON_INTERPRET=1``
``triton_op`` would run the kernels on FakeTensors during tracing, so the launcher becomes
an opaque ``custom_op`` with an explicit fake (shape) function instead.

``capture_launches()`` is how the static GPU gate (``sslfast.benchmarks.gpu_gate``) sees what a
GPU launch would compile without a GPU: while it is active, ``launch(kernel)[grid](...)`` records
the kernel, grid, arguments and launch options and runs nothing, so the real launchers (and the
loss dispatchers above them) can be driven with ``meta`` tensors at any size.
"""
from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from sslfast.backend import _CAPTURING, interpreting

_SINK: contextvars.ContextVar[list | None] = contextvars.ContextVar("sslfast_launch_sink", default=None)


@dataclass
class Launch:
    """One recorded ``kernel[grid](*args, **kwargs)`` (kwargs hold constexprs and num_warps/num_stages)."""

    kernel: Any
    grid: tuple[int, ...]
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)


class _Recorder:
    def __init__(self, kernel, sink: list):
        self.kernel, self.sink = kernel, sink

    def __getitem__(self, grid):
        def record(*args, **kwargs):
            g = grid(kwargs) if callable(grid) else grid
            self.sink.append(Launch(self.kernel, tuple(int(x) for x in g), args, dict(kwargs)))

        return record


@contextlib.contextmanager
def capture_launches():
    """Record every Triton launch made inside the block (nothing runs); yields the list of ``Launch``."""
    sink: list[Launch] = []
    token, flag = _SINK.set(sink), _CAPTURING.set(True)
    try:
        yield sink
    finally:
        _CAPTURING.reset(flag)
        _SINK.reset(token)


def launch(kernel):
    """The kernel, made launchable inside a registered op (or a recorder inside ``capture_launches``)."""
    sink = _SINK.get()
    if sink is not None:
        return _Recorder(kernel, sink)
    if interpreting():
        return kernel
    from torch.library import wrap_triton

    return wrap_triton(kernel)


def direct(kernel):
    """The kernel itself for launchers outside a registered op (the view kernel), or a recorder
    inside ``capture_launches``."""
    sink = _SINK.get()
    return kernel if sink is None else _Recorder(kernel, sink)


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
