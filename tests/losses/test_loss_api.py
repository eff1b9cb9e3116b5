"""The loss API across losses: modules equal functional forms, backend selection, result dtypes,
and clear errors for bad input."""

import pytest
import torch
from covariance_cases import make_pair
from helpers import DEVICE

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
