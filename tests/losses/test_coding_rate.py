"""Total coding rate: the conformance suite and the value against lightly's tcr_loss."""

import pytest
import torch
from conformance import Conformance
from helpers import DEVICE, rel_err
from lightly_compat import lightly_loss

import sslfast

BACKENDS = ["torch", "triton", "reference"]


class TestCodingRate(Conformance):
    loss = "coding_rate"


@pytest.mark.parametrize("backend", BACKENDS)
def test_coding_rate_is_minus_lightly_tcr(backend):
    """lightly's tcr_loss is +½·mean logdet (the sign its EMPSSLLoss minimises); ours is the
    official −½·logdet. Same magnitude, opposite sign: an independent check of the value."""
    L = lightly_loss()
    from lightly.loss.emp_ssl_loss import tcr_loss

    z = torch.nn.functional.normalize(torch.randn(4, 24, 40, dtype=torch.float64), dim=-1).to(DEVICE)
    ours = sslfast.TotalCodingRate(eps=0.2, backend=backend)(z)
    assert L is not None
    assert rel_err(ours, -tcr_loss(z, eps=0.2)) <= 1e-10
