"""Fixtures and hooks. Kernels run on the Triton CPU interpreter when no GPU is present.

Shared helpers live in ``helpers.py`` (``from helpers import DEVICE, rel_err``), not here.
"""

import os

import torch

if not torch.cuda.is_available():
    # Must happen before triton is imported anywhere.
    os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402
from helpers import DEVICE, ON_GPU  # noqa: E402


def pytest_collection_modifyitems(config, items):
    skip_gpu = pytest.mark.skip(reason="needs CUDA (runs whenever a GPU is present)")
    for item in items:
        if "gpu" in item.keywords and not ON_GPU:
            item.add_marker(skip_gpu)


@pytest.fixture
def device():
    return DEVICE
