"""TiCo: the conformance suite, lightly parity over steps, the covariance buffer."""

import io

import pytest
import torch
from conformance import Conformance
from covariance_cases import make_pair
from helpers import DEVICE, rel_err
from lightly_compat import lightly_loss, values_and_grads

import sslfast

BACKENDS = ["torch", "triton", "reference"]


class TestTiCo(Conformance):
    loss = "tico"


@pytest.mark.parametrize("backend", BACKENDS)
def test_tico_matches_lightly_over_steps(backend):
    """Three steps: the running covariance must evolve as lightly's does."""
    L = lightly_loss()
    ours, theirs = sslfast.TiCoLoss(backend=backend), L.TiCoLoss()
    for step in range(3):
        z_a, z_b = (t.to(DEVICE) for t in make_pair(16, 32, seed=step))
        o = values_and_grads(ours, z_a, z_b)
        t = values_and_grads(theirs, z_a, z_b)
        for x, y in zip(o, t):
            assert rel_err(x, y) <= 1e-10
        assert rel_err(ours.C, theirs.C) <= 1e-12


def test_tico_buffer_update_and_state_dict_round_trip():
    z = [make_pair(16, 32, seed=s) for s in range(4)]
    loss = sslfast.TiCoLoss(beta=0.8, rho=4.0)
    assert "C" in loss.state_dict()
    loss(*z[0])
    u = torch.nn.functional.normalize(z[0][0], dim=1)
    assert rel_err(loss.C, 0.2 * u.T @ u / 16) <= 1e-12  # C₁ = β·0 + (1−β)·B₁
    before = loss.C.clone()
    loss(*z[1], update_covariance_matrix=False)
    assert torch.equal(loss.C, before)
    loss(*z[1])

    buffer = io.BytesIO()
    torch.save(loss.state_dict(), buffer)
    buffer.seek(0)
    resumed = sslfast.TiCoLoss(beta=0.8, rho=4.0)  # fresh: C not yet allocated
    resumed.load_state_dict(torch.load(buffer, weights_only=True))
    assert torch.equal(resumed.C, loss.C)
    for step in (2, 3):
        assert torch.equal(resumed(*z[step]), loss(*z[step]))
