"""Barlow Twins: the conformance suite, lightly parity (single process) and precision near whitening."""

import pytest
import torch
from conformance import Conformance
from covariance_cases import make_pair, near_whitened
from helpers import DEVICE, rel_err
from lightly_compat import lightly_loss, values_and_grads

import sslfast
import sslfast.functional as F

BACKENDS = ["torch", "triton", "reference"]


class TestBarlowTwins(Conformance):
    loss = "barlow_twins"


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("n,d", [(17, 64), (64, 7), (32, 300)])
def test_barlow_twins_matches_lightly_single_process(backend, n, d):
    L = lightly_loss()
    z_a, z_b = (t.to(DEVICE) for t in make_pair(n, d, seed=d))
    ours = values_and_grads(sslfast.BarlowTwinsLoss(lambda_param=5e-3, backend=backend), z_a, z_b)
    theirs = values_and_grads(L.BarlowTwinsLoss(lambda_param=5e-3), z_a, z_b)
    for o, t in zip(ours, theirs):
        assert rel_err(o, t) <= 1e-10


@pytest.mark.parametrize("backend", ["torch", "triton"])
@pytest.mark.parametrize("n,d", [(300, 64), (128, 32)])
def test_barlow_off_diagonal_term_near_whitened(backend, n, d):
    """Barlow standardises columns, so near-whitened (off ≤ 1e-4·diag) needs N ≥ D (rank)."""
    z_a = near_whitened(n, d, 2e-4, seed=3)
    z_b = z_a + 1e-4 * torch.randn(n, d, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    a32, b32 = z_a.float(), z_b.float()
    ref = F.barlow_twins_loss(a32.double(), b32.double(), lambda_param=1.0, backend="reference") - F.barlow_twins_loss(
        a32.double(), b32.double(), lambda_param=0.0, backend="reference"
    )
    ours = F.barlow_twins_loss(a32.to(DEVICE), b32.to(DEVICE), lambda_param=1.0, backend=backend) - F.barlow_twins_loss(
        a32.to(DEVICE), b32.to(DEVICE), lambda_param=0.0, backend=backend
    )
    assert rel_err(ours, ref) <= 1e-4, (float(ours), float(ref))
