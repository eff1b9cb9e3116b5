"""Import lightly 1.6.0 (installed with --no-deps) without torchvision.

lightly.loss imports ``torchvision.ops.roi_align`` for a loss we never use; a stub module
that raises if called keeps the oracle importable on machines with no torchvision build.
"""

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import types

import pytest


class _Placeholder:
    """Stands in for any torchvision class or function; fails loudly if actually used."""

    def __init__(self, *args, **kwargs):
        raise RuntimeError("torchvision stub: not available in these tests")

    def __class_getitem__(cls, item):
        return cls


class _StubModule(types.ModuleType):
    __path__ = []  # a package, so `torchvision.ops` etc. resolve through the finder

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return _Placeholder


class _StubFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname, path=None, target=None):
        if fullname == "torchvision" or fullname.startswith("torchvision."):
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec):
        return _StubModule(spec.name)

    def exec_module(self, module):
        module.__version__ = "0.0.0+stub"


def _stub_torchvision():
    if "torchvision" in sys.modules or importlib.util.find_spec("torchvision") is not None:
        return
    sys.meta_path.append(_StubFinder())


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
