"""Import lightly 1.6.0 (installed with --no-deps) without torchvision.

lightly.loss imports ``torchvision.ops.roi_align`` for a loss we never use; the benchmark's stub
(``sslfast.benchmarks.lightly_ref.stub_torchvision``: raises if called) keeps the oracle importable
on machines with no torchvision build.
"""

import importlib
import importlib.util

import pytest

from sslfast.benchmarks.lightly_ref import stub_torchvision as _stub_torchvision


def lightly_loss():
    """The ``lightly.loss`` module, or skip with the install line when lightly is absent."""
    if importlib.util.find_spec("lightly") is None:
        pytest.skip("lightly is not installed: pip install --no-deps lightly==1.6.0 (make test does)")
    _stub_torchvision()
    return importlib.import_module("lightly.loss")


def import_lightly_loss():
    """``lightly.loss`` without pytest (for subprocess workers); raises ImportError when absent."""
    _stub_torchvision()
    return importlib.import_module("lightly.loss")


def values_and_grads(module, z_a, z_b, *args):
    a = z_a.detach().clone().requires_grad_()
    b = z_b.detach().clone().requires_grad_()
    value = module(a, b, *args)
    value.backward()
    return value.detach(), a.grad, b.grad
