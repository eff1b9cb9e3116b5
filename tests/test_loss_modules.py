"""Modules == functional forms, TiCo's buffer, EMP-SSL's sign, backend selection."""

import io

import pytest
import torch
from conftest import DEVICE, rel_err
from covariance_cases import make_pair

import sslfast
import sslfast.functional as F
from sslfast.backend import auto_backend, resolve_backend


@pytest.mark.parametrize("backend", ["torch", "triton", "reference"])
def test_modules_equal_functional(backend):
    z_a, z_b = (t.float().to(DEVICE) for t in make_pair(17, 64, seed=7))
    views = torch.stack([z_a, z_b, z_a - z_b])
    kw = dict(backend=backend)
    pairs = [
        (
            sslfast.VICRegLoss(lambda_param=3.0, mu_param=2.0, nu_param=0.5, eps=1e-3, **kw)(z_a, z_b),
            F.vicreg_loss(z_a, z_b, lambda_param=3.0, mu_param=2.0, nu_param=0.5, eps=1e-3, **kw),
        ),
        (
            sslfast.BarlowTwinsLoss(lambda_param=0.01, **kw)(z_a, z_b),
            F.barlow_twins_loss(z_a, z_b, lambda_param=0.01, **kw),
        ),
        (
            sslfast.TiCoLoss(beta=0.5, rho=2.0, **kw)(z_a, z_b),
            F.tico_loss(z_a, z_b, torch.zeros(64, 64, device=DEVICE), beta=0.5, rho=2.0, **kw)[0],
        ),
        (sslfast.TotalCodingRate(eps=0.5, **kw)(views), F.total_coding_rate(views, eps=0.5, **kw)),
        (
            sslfast.EMPSSLLoss(tcr_eps=0.5, inv_coef=10.0, **kw)(list(views)),
            F.emp_ssl_loss(views, tcr_eps=0.5, inv_coef=10.0, **kw),
        ),
    ]
    for module_value, functional_value in pairs:
        assert torch.equal(module_value, functional_value)


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


def test_auto_backend_resolution():
    assert auto_backend("cpu") == "torch"
    assert resolve_backend("auto", "cpu") == "torch"
    with pytest.raises(ValueError, match="backend must be one of"):
        resolve_backend("cuda", "cpu")
    with pytest.raises(ValueError, match="backend must be one of"):
        sslfast.VICRegLoss(backend="fast")


def test_loss_dtype_follows_accumulation():
    z_a, z_b = (t.to(torch.bfloat16) for t in make_pair(8, 16))
    assert F.vicreg_loss(z_a, z_b, backend="torch").dtype == torch.float32
    z_a, z_b = make_pair(8, 16)
    assert F.vicreg_loss(z_a, z_b, backend="torch").dtype == torch.float64
