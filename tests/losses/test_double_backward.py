"""Higher-order gradients through the fused losses (issue 13, item 3): never a silent zero.

The fused Functions return a gradient computed in the forward launch. Under create_graph=True
their backward recomputes it through the differentiable float64-truth formula, so Hessians and
gradient penalties are exact. Checked three ways, in float64 at tiny sizes, on both fused backends:
- the Hessian equals the *finite differences of the fused first-order gradient* (independent of
  the recompute path: it only uses the ordinary backward; torch backend);
- the Hessian equals the reference backend's Hessian;
- a gradient penalty on (loss + ½‖z‖²) has the reference's value and parameter gradient.
Plain first-order backward must keep the fused gradient (the recompute path is never taken).
"""

import pytest
import torch

import sslfast
import sslfast.functional as F
from sslfast.losses import vicreg as vicreg_module

BACKENDS = ["torch", "triton"]
N, D = 5, 3


def _bank():
    return torch.randn(4, D, dtype=torch.float64, generator=torch.Generator().manual_seed(9))


def _views(a, b):
    return torch.stack([a, b, a * b])


# name -> f(z_a, z_b, backend): a scalar loss of two (N, D) tensors
LOSSES = {
    "vicreg": lambda a, b, be: F.vicreg_loss(a, b, lambda_param=3.0, mu_param=2.0, nu_param=1.5, backend=be),
    "vicreg_middle_dims": lambda a, b, be: F.vicreg_loss(
        a.reshape(N, 1, D).expand(N, 2, D) * torch.tensor([1.0, -0.5], dtype=a.dtype)[:, None],
        b.reshape(N, 1, D).expand(N, 2, D),
        backend=be,
    ),
    "barlow_twins": lambda a, b, be: F.barlow_twins_loss(a, b, lambda_param=0.3, backend=be),
    "tico": lambda a, b, be: F.tico_loss(a, b, 0.1 * torch.eye(D, dtype=a.dtype), beta=0.5, rho=2.0, backend=be)[0],
    # β = 1: C' is the given constant. With β < 1, C' depends on z_a through a *detached* batch term,
    # so the gradient field is not the derivative of one function and finite differences of it are not
    # autograd's Hessian (which holds C' constant, as the reference's .detach() says).
    "tico_beta_1": lambda a, b, be: F.tico_loss(
        a, b, 0.1 * torch.eye(D, dtype=a.dtype) + 0.05, beta=1.0, rho=2.0, backend=be
    )[0],
    "nt_xent": lambda a, b, be: F.nt_xent_loss(a, b, temperature=0.7, backend=be),
    "moco": lambda a, b, be: F.nt_xent_loss(a, b, temperature=0.7, memory_bank=_bank(), backend=be),
    "multicrop_weighted": lambda a, b, be: F.multicrop_infonce_loss(
        _views(a, b), torch.tensor([1.0, 2.0, 0.5, 1.0, 3.0], dtype=a.dtype), temperature=0.5, backend=be
    ),
    "coding_rate": lambda a, b, be: F.total_coding_rate(_views(a, b), eps=0.3, backend=be),
    "emp_ssl": lambda a, b, be: F.emp_ssl_loss(_views(a, b), tcr_eps=0.3, inv_coef=3.0, backend=be),
}


# "tico" (β = 0.5) has C' depend on z_a through a detached term: see "tico_beta_1".
FD_LOSSES = [name for name in LOSSES if name != "tico"]


def _inputs(seed=0):
    g = torch.Generator().manual_seed(seed)
    # scale 0.5: every column's std is below 1, away from VICReg's relu kink (finite differences)
    a = 0.5 * torch.randn(N, D, generator=g, dtype=torch.float64)
    b = 0.5 * torch.randn(N, D, generator=g, dtype=torch.float64) + 0.3 * a
    return a, b


def _hessian(fn, a, b):
    h = torch.autograd.functional.hessian(fn, (a, b))
    return torch.cat([torch.cat([h[i][j].reshape(N * D, N * D) for j in range(2)], 1) for i in range(2)], 0)


def _fused_gradient(fn, x):
    """First-order gradient only (no create_graph): the fused path."""
    a = x[: N * D].reshape(N, D).clone().requires_grad_()
    b = x[N * D :].reshape(N, D).clone().requires_grad_()
    ga, gb = torch.autograd.grad(fn(a, b), (a, b))
    return torch.cat([ga.flatten(), gb.flatten()])


@pytest.mark.parametrize("name", FD_LOSSES)
def test_hessian_equals_finite_differences_of_fused_gradient(name):
    """On the torch backend: the triton backend's fused gradient equals it (the conformance suites),
    and its Hessian equals the reference's (below), so a second finite-difference sweep under the
    interpreter would add a minute and no coverage."""
    backend = "torch"
    fn = lambda a, b: LOSSES[name](a, b, backend)  # noqa: E731
    a, b = _inputs()
    h = _hessian(fn, a, b)
    x, step = torch.cat([a.flatten(), b.flatten()]), 1e-5
    fd = torch.stack(
        [
            (_fused_gradient(fn, x + step * e) - _fused_gradient(fn, x - step * e)) / (2 * step)
            for e in torch.eye(x.numel(), dtype=x.dtype)
        ],
        1,
    )
    scale = float(h.abs().max())
    assert scale > 1e-3, "a zero Hessian would pass trivially"
    assert float((h - fd).abs().max()) <= 1e-6 * scale
    assert float((h - h.T).abs().max()) <= 1e-10 * scale


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", list(LOSSES))
def test_hessian_equals_reference_hessian(name, backend):
    a, b = _inputs(1)
    h = _hessian(lambda x, y: LOSSES[name](x, y, backend), a, b)
    ref = _hessian(lambda x, y: LOSSES[name](x, y, "reference"), a, b)
    assert float((h - ref).abs().max()) <= 1e-9 * float(ref.abs().max())


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", list(LOSSES))
def test_gradient_penalty_matches_reference(name, backend):
    """penalty = ‖∇(loss + ½‖z‖²)‖²; its value and d penalty / dz against the reference backend."""
    a0, b0 = _inputs(2)
    out = {}
    for be in (backend, "reference"):
        a, b = a0.clone().requires_grad_(), b0.clone().requires_grad_()
        f = LOSSES[name](a, b, be) + 0.5 * (a.square().sum() + b.square().sum())
        ga, gb = torch.autograd.grad(f, (a, b), create_graph=True)
        penalty = ga.square().sum() + gb.square().sum()
        penalty.backward()
        out[be] = (penalty.detach(), a.grad, b.grad)
    for ours, ref in zip(out[backend], out["reference"]):
        torch.testing.assert_close(ours, ref, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", ["vicreg", "barlow_twins", "nt_xent", "moco"])
def test_hessian_when_one_input_is_computed_from_the_other(name, backend):
    """z_b = f(z_a): the recompute must return partial derivatives per input, not total ones."""
    a = _inputs(7)[0]
    related = lambda x, be: LOSSES[name](x, x.flip(0) * 0.5 + x.square(), be)  # noqa: E731
    h = torch.autograd.functional.hessian(lambda x: related(x, backend), a)
    ref = torch.autograd.functional.hessian(lambda x: related(x, "reference"), a)
    assert float(ref.abs().max()) > 1e-3
    torch.testing.assert_close(h, ref, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
def test_grad_of_grad_with_grad_output_and_a_detached_input(backend):
    """create_graph with grad_output ≠ 1 and only one input requiring grad (z_b constant)."""
    a0, b = _inputs(3)
    grads = {}
    for be in (backend, "reference"):
        a = a0.clone().requires_grad_()
        loss = F.vicreg_loss(a, b, backend=be)
        (g,) = torch.autograd.grad(loss, a, grad_outputs=torch.tensor(0.37, dtype=loss.dtype), create_graph=True)
        (gg,) = torch.autograd.grad(g.sin().sum(), a)
        grads[be] = (g.detach(), gg)
    for ours, ref in zip(grads[backend], grads["reference"]):
        torch.testing.assert_close(ours, ref, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
def test_first_order_backward_keeps_the_fused_gradient(backend, monkeypatch):
    """The recompute path is for create_graph=True only: an ordinary backward never runs it."""

    def forbidden(*args, **kwargs):
        raise AssertionError("the differentiable recompute ran during a first-order backward")

    monkeypatch.setattr(vicreg_module, "vicreg_loss_reference", forbidden)
    a, b = (t.clone().requires_grad_() for t in _inputs(4))
    F.vicreg_loss(a, b, backend=backend).backward()
    assert a.grad is not None and torch.isfinite(a.grad).all()


def test_low_precision_inputs_recompute_in_fp32():
    """bf16 inputs: the second-order path runs in the accumulation dtype (fp32), its result in bf16."""
    a0, b0 = (t.to(torch.bfloat16) for t in _inputs(5))
    a = a0.clone().requires_grad_()
    loss = F.barlow_twins_loss(a, b0, lambda_param=0.3, backend="torch")
    (g,) = torch.autograd.grad(loss, a, create_graph=True)
    (gg,) = torch.autograd.grad(g.square().sum(), a)
    assert g.dtype == gg.dtype == torch.bfloat16
    a64 = a0.double().requires_grad_()
    (g64,) = torch.autograd.grad(
        F.barlow_twins_loss(a64, b0.double(), lambda_param=0.3, backend="reference"), a64, create_graph=True
    )
    (gg64,) = torch.autograd.grad(g64.square().sum(), a64)
    assert float((gg.double() - gg64).norm() / gg64.norm()) <= 2e-2


def test_moco_module_bank_updated_before_create_graph_is_a_clear_error():
    """NTXentLoss enqueues into its bank after the forward: the bank the loss used is gone, so a
    higher-order gradient is refused with a clear message (the functional form with a cloned bank works)."""
    loss_fn = sslfast.NTXentLoss(memory_bank_size=(8, D))
    a, b = (t.clone().requires_grad_() for t in _inputs(6))
    loss = loss_fn(a, b)
    with pytest.raises(RuntimeError, match="bank this loss used, but it was updated in place"):
        torch.autograd.grad(loss, a, create_graph=True)
    bank = loss_fn.bank.clone()
    (g,) = torch.autograd.grad(F.nt_xent_loss(a, b, memory_bank=bank, backend="torch"), a, create_graph=True)
    (gg,) = torch.autograd.grad(g.square().sum(), a)
    assert gg.abs().max() > 0
