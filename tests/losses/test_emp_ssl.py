"""EMP-SSL: the conformance suite and the official sign (diverse embeddings score better)."""

import torch
from conformance import Conformance

import sslfast


class TestEMPSSL(Conformance):
    loss = "emp_ssl"


def test_emp_ssl_prefers_diverse_embeddings():
    """With the official sign, spread-out embeddings score lower (better) than collapsed ones
    with the same view agreement. lightly 1.6 inverts this."""
    g = torch.Generator().manual_seed(0)
    diverse = torch.nn.functional.normalize(torch.randn(64, 32, generator=g), dim=1)
    collapsed = torch.nn.functional.normalize(torch.randn(1, 32, generator=g).expand(64, 32).clone(), dim=1)
    loss = sslfast.EMPSSLLoss()
    for backend in ("torch", "triton", "reference"):
        loss.backend = backend
        assert loss([diverse] * 4) < loss([collapsed] * 4)
    # and gradient descent from near-collapse increases the coding rate
    z = (collapsed + 0.01 * torch.randn(64, 32, generator=g)).requires_grad_()
    opt = torch.optim.SGD([z], lr=0.05)
    rate0 = -float(sslfast.TotalCodingRate()(z.detach()))
    for _ in range(20):
        opt.zero_grad()
        views = [torch.nn.functional.normalize(z + 0.01 * torch.randn(64, 32, generator=g), dim=1) for _ in range(4)]
        loss(views).backward()
        opt.step()
    assert -float(sslfast.TotalCodingRate()(z.detach())) > rate0
