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
from hypothesis import settings  # noqa: E402

# `make test` and CI must not turn red on a new random draw: by default each property test replays
# the examples derived from its name (derandomize). HYPOTHESIS_PROFILE=explore draws fresh ones
# (run it when touching a kernel or a loss); add what it finds as an explicit case.
settings.register_profile("repro", derandomize=True)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "repro"))


def pytest_collection_modifyitems(config, items):
    skip_gpu = pytest.mark.skip(reason="needs CUDA (runs whenever a GPU is present)")
    for item in items:
        if "gpu" in item.keywords and not ON_GPU:
            item.add_marker(skip_gpu)


@pytest.fixture
def device():
    return DEVICE
