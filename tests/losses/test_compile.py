"""torch.compile(fullgraph=True) traces a training step that uses every loss, with no graph break."""
import pytest
import torch
from helpers import DEVICE, rel_err

import sslfast


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_compiled_step_equals_eager(backend):
    torch.manual_seed(0)
    losses = [sslfast.VICRegLoss(backend=backend), sslfast.BarlowTwinsLoss(backend=backend),
              sslfast.TiCoLoss(backend=backend), sslfast.TotalCodingRate(backend=backend),
              sslfast.EMPSSLLoss(backend=backend)]
    vic, barlow, tico, tcr, emp = losses
    projector = torch.nn.Linear(8, 16).to(DEVICE)

    def step(x_a, x_b, x_views):
        z_a, z_b, z_views = projector(x_a), projector(x_b), projector(x_views)
        return vic(z_a, z_b) + barlow(z_a, z_b) + tico(z_a, z_b) + tcr(z_a) + emp(z_views)

    x_a, x_b, x_views = torch.randn(12, 8), torch.randn(12, 8), torch.randn(3, 12, 8)
    inputs = [t.to(DEVICE) for t in (x_a, x_b, x_views)]
    compiled = torch.compile(step, fullgraph=True)
    loss_c = compiled(*inputs)
    loss_c.backward()
    grad_c = projector.weight.grad.clone()
    cov_c = tico.C.clone()

    projector.weight.grad = None
    tico.C.zero_()  # replay the same first step eagerly
    loss_e = step(*inputs)
    loss_e.backward()
    assert rel_err(loss_c, loss_e) <= 1e-5
    assert rel_err(grad_c, projector.weight.grad) <= 1e-4
    assert rel_err(cov_c, tico.C) <= 1e-5
