"""The conformance suite of the covariance family: every backend against the float64 reference
(value and gradient) over an N × D grid, dtypes, grad_output scaling, the no-grad path, non-finite
and non-contiguous inputs. Each loss's test file subclasses ``Conformance`` with its ``loss``:

    class TestVICReg(Conformance):
        loss = "vicreg"
"""

import math

import pytest
import torch
from covariance_cases import call, loss_and_grads, make_pair
from helpers import DEVICE, rel_err

NS = (2, 3, 17, 256)
DS = (1, 7, 64, 300, 2048)

# Relative tolerances vs the fp64 reference evaluated on the same (rounded) inputs.
# fp32: fp32 accumulation. bf16/fp16: fp32 accumulation, gradients rounded to the input dtype
# (bf16 has an 8-bit mantissa: 2^-8 ≈ 4e-3 per element).
TOL = {
    torch.float64: (1e-10, 1e-9),
    torch.float32: (2e-5, 2e-4),
    torch.bfloat16: (2e-3, 2e-2),
    torch.float16: (5e-4, 4e-3),
}


LOSS_FLOOR = 1e-4


def grad_scale(value, z_a, z_b):
    """A natural gradient magnitude |L|/‖z‖: the floor for cases whose true gradient is ~0
    (e.g. Barlow Twins at N=2 or TiCo at D=1, where normalised inputs are constant)."""
    return max(abs(float(value)), LOSS_FLOOR) / float(torch.cat([z_a.flatten(), z_b.flatten()]).double().norm())


def check_against_reference(loss, n, d, backend, dtype, grad_out=1.0):
    z_a, z_b = make_pair(n, d, seed=n * 1000 + d)
    z_a, z_b = z_a.to(DEVICE, dtype), z_b.to(DEVICE, dtype)
    ref = loss_and_grads(loss, z_a.double(), z_b.double(), "reference", grad_out)
    out = loss_and_grads(loss, z_a, z_b, backend, grad_out)
    loss_tol, grad_tol = TOL[dtype]
    assert out[1].dtype == dtype and out[2].dtype == dtype
    assert math.isfinite(float(out[0]))
    # Losses within LOSS_FLOOR of zero (Barlow Twins at N=2: c_ii = ±1 up to BN's eps) are compared
    # in absolute terms: their relative error only measures cancellation in 1 − c.
    assert abs(float(out[0]) - float(ref[0])) <= loss_tol * max(abs(float(ref[0])), LOSS_FLOOR), (
        float(out[0]),
        float(ref[0]),
    )
    floor = grad_scale(ref[0], z_a, z_b)
    for g, r in zip(out[1:], ref[1:]):
        err = float((g.double() - r).norm())
        assert err <= grad_tol * max(float(r.norm()), floor), (err, float(r.norm()), floor)


class Conformance:
    """Subclass with ``loss = "<name>"`` (a name of ``covariance_cases.LOSSES``)."""

    loss: str

    @pytest.mark.parametrize("n", NS)
    @pytest.mark.parametrize("d", DS)
    def test_torch_backend_fp32(self, n, d):
        loss = self.loss
        check_against_reference(loss, n, d, "torch", torch.float32)

    @pytest.mark.parametrize("n", NS)
    @pytest.mark.parametrize("d", DS)
    def test_triton_backend_fp32(self, n, d):
        """The whole grid, on the CPU interpreter too (about a minute and a half there)."""
        loss = self.loss
        check_against_reference(loss, n, d, "triton", torch.float32)

    @pytest.mark.parametrize("backend", ["torch", "triton"])
    def test_fp64_inputs_are_exact(self, backend):
        loss = self.loss
        check_against_reference(loss, 17, 64, backend, torch.float64)

    @pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
    @pytest.mark.parametrize("backend", ["torch", "triton"])
    @pytest.mark.parametrize("n,d", [(17, 64), (256, 7), (17, 300)])
    def test_low_precision(self, backend, dtype, n, d):
        loss = self.loss
        check_against_reference(loss, n, d, backend, dtype)

    @pytest.mark.parametrize("backend", ["torch", "triton", "reference"])
    def test_grad_output_scales_gradient(self, backend):
        """backward must scale by grad_output (here 0.37), not assume 1."""
        loss = self.loss
        check_against_reference(loss, 17, 64, backend, torch.float32, grad_out=0.37)

    @pytest.mark.parametrize("backend", ["torch", "triton"])
    def test_no_grad_path_matches(self, backend):
        """Without requires_grad the launchers skip the gradient: the value must not change."""
        loss = self.loss
        z_a, z_b = make_pair(17, 64, seed=3, dtype=torch.float32)
        z_a, z_b = z_a.to(DEVICE), z_b.to(DEVICE)
        with_grad = loss_and_grads(loss, z_a, z_b, backend)[0]
        with torch.no_grad():
            without = call(loss, z_a, z_b, backend)
        assert rel_err(without, with_grad) <= 1e-6

    @pytest.mark.parametrize("backend", ["torch", "triton"])
    @pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
    def test_non_finite_input_gives_non_finite_loss(self, backend, bad):
        loss = self.loss
        z_a, z_b = make_pair(17, 64, seed=4, dtype=torch.float32)
        z_a[5, 7] = bad
        value = call(loss, z_a.to(DEVICE), z_b.to(DEVICE), backend)
        assert not torch.isfinite(value), f"{loss}/{backend} turned a {bad} input into the finite loss {float(value)}"

    def test_non_contiguous_inputs(self):
        """Row-strided views (e.g. halves of a concatenated batch) and transposes give the same result."""
        loss = self.loss
        z_a, z_b = make_pair(17, 64, seed=5, dtype=torch.float32)
        big = torch.cat([z_a, z_b], dim=1)
        strided_a, strided_b = big[:, :64], big[:, 64:]
        transposed_a = z_a.T.contiguous().T
        for backend in ("torch", "triton"):
            ref = call(loss, z_a, z_b, backend)
            assert rel_err(call(loss, strided_a, strided_b, backend), ref) <= 1e-6
            assert rel_err(call(loss, transposed_a, z_b, backend), ref) <= 1e-6
