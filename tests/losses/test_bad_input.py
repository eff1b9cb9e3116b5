"""Bad input gets a clear ValueError/TypeError naming the argument, what was seen and what was expected."""

import pytest
import torch

import sslfast
import sslfast.functional as F

Z = torch.randn(8, 16)


def pair_losses():
    return [
        ("vicreg", lambda a, b: F.vicreg_loss(a, b)),
        ("barlow", lambda a, b: F.barlow_twins_loss(a, b)),
        ("tico", lambda a, b: F.tico_loss(a, b, torch.zeros(16, 16))),
        ("vicreg_module", lambda a, b: sslfast.VICRegLoss()(a, b)),
        ("barlow_module", lambda a, b: sslfast.BarlowTwinsLoss()(a, b)),
        ("tico_module", lambda a, b: sslfast.TiCoLoss()(a, b)),
    ]


@pytest.mark.parametrize("name,fn", pair_losses())
def test_pair_losses_reject_bad_input(name, fn):
    with pytest.raises(ValueError, match=r"z_a and z_b must have the same shape.*\(8, 16\).*\(8, 15\)"):
        fn(Z, torch.randn(8, 15))
    with pytest.raises(ValueError, match=r"z_a needs N >= 2 rows.*\(1, 16\)"):
        fn(Z[:1], Z[:1])
    if name.startswith("vicreg"):  # (N, ..., D) is lightly's VICReg contract (VICRegL local features)
        with pytest.raises(ValueError, match=r"z_a must have shape \(N, \.\.\., D\), got a 1-d tensor of shape \(8,\)"):
            fn(Z[:, 0], Z[:, 0])
    else:
        with pytest.raises(ValueError, match=r"z_a must have shape \(N, D\), got a 3-d tensor of shape \(2, 8, 16\)"):
            fn(Z[None].expand(2, 8, 16), Z[None].expand(2, 8, 16))
    with pytest.raises(TypeError, match=r"z_a must be a floating-point tensor.*torch.int64"):
        fn(torch.ones(8, 16, dtype=torch.long), Z)
    with pytest.raises(TypeError, match=r"z_b must be a floating-point tensor.*torch.int32"):
        fn(Z, torch.ones(8, 16, dtype=torch.int32))
    with pytest.raises(TypeError, match=r"z_a must be a torch.Tensor, got list"):
        fn([[1.0, 2.0]], Z)
    with pytest.raises(ValueError, match=r"same device, got cpu and meta"):
        fn(Z, torch.empty(8, 16, device="meta"))
    with pytest.raises(TypeError, match=r"same dtype, got torch.float32 and torch.float64"):
        fn(Z, Z.double())


def test_hyperparameters_are_checked():
    with pytest.raises(ValueError, match="lambda_param must be a non-negative number, got -1"):
        sslfast.VICRegLoss(lambda_param=-1)
    with pytest.raises(ValueError, match="eps must be a positive number, got 0"):
        F.vicreg_loss(Z, Z, eps=0)
    with pytest.raises(ValueError, match=r"beta must be a number in \[0, 1\], got 1.5"):
        sslfast.TiCoLoss(beta=1.5)
    with pytest.raises(ValueError, match=r"cov must be a \(16, 16\) tensor matching z_a's D=16, got \(15, 15\)"):
        F.tico_loss(Z, Z, torch.zeros(15, 15))
    with pytest.raises(ValueError, match="tcr_eps must be a positive number"):
        sslfast.EMPSSLLoss(tcr_eps=-0.2)


def test_view_losses_reject_bad_input():
    with pytest.raises(ValueError, match=r"z_views needs V >= 2 views, got shape \(1, 8, 16\)"):
        F.emp_ssl_loss([Z])
    with pytest.raises(ValueError, match=r"every view must share \(B, D\).*\(8, 16\).*\(8, 15\)"):
        F.emp_ssl_loss([Z, torch.randn(8, 15)])
    with pytest.raises(TypeError, match=r"z_views\[1\] must be a floating-point tensor.*torch.int64"):
        F.emp_ssl_loss([Z, torch.ones(8, 16, dtype=torch.long)])
    with pytest.raises(ValueError, match=r"one device.*cpu.*meta"):
        F.emp_ssl_loss([Z, torch.empty(8, 16, device="meta")])
    with pytest.raises(
        ValueError, match=r"must be a \(V, B, D\) tensor or a list of \(B, D\) tensors, got shape \(2, 2, 8, 16\)"
    ):
        F.total_coding_rate(torch.randn(2, 2, 8, 16))
    with pytest.raises(TypeError, match="z must be a floating-point tensor"):
        F.total_coding_rate(torch.ones(8, 16, dtype=torch.uint8))


def test_triton_backend_needs_cuda_or_interpreter(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(ValueError, match=r"backend='triton' needs CUDA tensors \(got device cpu\).*TRITON_INTERPRET=1"):
        F.vicreg_loss(Z, Z, backend="triton")


def test_module_state_width_mismatch_names_the_argument():
    tico = sslfast.TiCoLoss(dim=16)
    with pytest.raises(ValueError, match=r"TiCoLoss holds a 16x16 covariance C .* got z_a with D=8"):
        tico(torch.randn(4, 8), torch.randn(4, 8))
    moco = sslfast.NTXentLoss(memory_bank_size=(32, 2))
    with pytest.raises(ValueError, match=r"memory_bank_size=\(32, 2\), got out0 with D=16.*\(32, 16\)"):
        moco(torch.randn(4, 16), torch.randn(4, 16))
