"""lightly 1.6 as a second reference column of `sslfast bench losses`.

sslfast's losses are drop-in replacements for lightly's, so lightly is the implementation a user
would otherwise run. lightly is optional and is installed here with ``--no-deps``: it is imported
lazily, and ``lightly.loss`` imports ``torchvision.ops`` for a loss not benchmarked here, so when
torchvision is missing a stub package stands in for it (any use of it raises). No lightly, no
column: ``lightly_fns`` returns None and the runner says so in the notes.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import types
from collections.abc import Callable

LIGHTLY_VERSION = "1.6"


class _Unavailable:
    """Any torchvision attribute: fails loudly if lightly ever calls it in a benchmarked loss."""

    def __init__(self, *args, **kwargs):
        raise RuntimeError("torchvision is not installed; sslfast bench losses stubbed it for lightly.loss")

    def __class_getitem__(cls, item):
        return cls


class _StubPackage(types.ModuleType):
    __path__: list[str] = []

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return _Unavailable


class _TorchvisionStub(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname, path=None, target=None):
        if fullname.split(".")[0] == "torchvision":
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec):
        return _StubPackage(spec.name)

    def exec_module(self, module):
        module.__version__ = "0.0.0+sslfast-stub"


def stub_torchvision() -> None:
    """Make ``import torchvision`` resolve to a stub (once) where no torchvision is installed."""
    if "torchvision" not in sys.modules and importlib.util.find_spec("torchvision") is None:
        if not any(isinstance(f, _TorchvisionStub) for f in sys.meta_path):
            sys.meta_path.append(_TorchvisionStub())


def lightly_loss_module():
    """``lightly.loss``, or None when lightly is not installed."""
    if importlib.util.find_spec("lightly") is None:
        return None
    stub_torchvision()
    try:
        return importlib.import_module("lightly.loss")
    except ImportError:
        return None


def lightly_version() -> str | None:
    from importlib import metadata

    try:
        return metadata.version("lightly")
    except metadata.PackageNotFoundError:
        return None


def lightly_fn(loss: str, params: dict, device="cpu") -> Callable | None:
    """A callable with the case's input signature that runs lightly's loss, or None when lightly
    has no such loss (coding rate, EMP-SSL: lightly's EMPSSLLoss has the opposite sign; multi-crop
    with V > 2: lightly's NTXentLoss takes two views) or is not installed."""
    # The callables use ``forward`` rather than the module call: FlopCounterMode's module tracker
    # hooks every module call, and its backward hooks refuse torch.autograd.grad on leaf inputs.
    mod = lightly_loss_module()
    if mod is None:
        return None
    if loss == "vicreg":
        fn = mod.VICRegLoss().to(device)
        return lambda z_a, z_b: fn.forward(z_a, z_b)
    if loss == "barlow_twins":
        fn = mod.BarlowTwinsLoss().to(device)
        return lambda z_a, z_b: fn.forward(z_a, z_b)
    if loss == "tico":
        fn = mod.TiCoLoss().to(device)
        return lambda z_a, z_b: fn.forward(z_a, z_b)
    if loss == "multicrop_infonce" and params.get("V") == 2:
        fn = mod.NTXentLoss(temperature=params["T"]).to(device)
        return lambda z: fn.forward(z[0], z[1])
    if loss == "moco":
        # lightly keeps its own bank (random unit rows, updated every call): the case's bank is unused.
        fn = mod.NTXentLoss(temperature=params["T"], memory_bank_size=(params["K"], params["D"])).to(device)
        return lambda out0, out1, bank: fn.forward(out0, out1)
    return None
