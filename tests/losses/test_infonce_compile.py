"""torch.compile(fullgraph=True) traces a step's forward through the InfoNCE losses (no graph breaks).

On CPU the torch backend is inlined by inductor, and the Triton launcher is an opaque registered
op (custom_op under the interpreter, triton_op on GPU); the MoCo bank update is an in-place
buffer write inside the graph. ~20–30 s each on a 2-core CPU.
"""
import pytest
import torch
from helpers import DEVICE

import sslfast


def _forward(model, loss_fn, x, *extra):
    v, b, d = x.shape
    return loss_fn(model(x.reshape(v * b, d)).reshape(v, b, -1), *extra)


def _step(forward, model, *args):
    """fullgraph covers the forward; backward runs through the compiled autograd graph."""
    model.zero_grad(set_to_none=True)
    loss = forward(*args)
    loss.backward()
    return loss.detach()


@pytest.mark.slow
def test_compile_multicrop_weighted_step():
    torch.manual_seed(0)
    model = torch.nn.Linear(16, 8).to(DEVICE)
    loss_fn = sslfast.MultiCropInfoNCELoss(temperature=0.1, backend="torch")
    x = torch.randn(3, 6, 16, device=DEVICE)
    w = torch.rand(6, device=DEVICE) + 0.5
    eager = _step(lambda x, w: _forward(model, loss_fn, x, w), model, x, w)
    g_eager = [p.grad.clone() for p in model.parameters()]
    compiled = torch.compile(lambda x, w: _forward(model, loss_fn, x, w), fullgraph=True)
    out = _step(compiled, model, x, w)
    torch.testing.assert_close(out, eager, rtol=1e-5, atol=1e-6)
    for p, g in zip(model.parameters(), g_eager):
        torch.testing.assert_close(p.grad, g, rtol=1e-4, atol=1e-6)


@pytest.mark.slow
def test_compile_moco_bank_step_kernel_op():
    torch.manual_seed(0)
    model = torch.nn.Linear(16, 8).to(DEVICE)
    x = torch.randn(2, 4, 16, device=DEVICE)
    eager_loss = sslfast.NTXentLoss(temperature=0.2, memory_bank_size=(10, 8), backend="triton").to(DEVICE)
    comp_loss = sslfast.NTXentLoss(temperature=0.2, memory_bank_size=(10, 8), backend="triton").to(DEVICE)
    both = lambda z, fn: fn(z[0], z[1])  # noqa: E731
    compiled = torch.compile(lambda x: _forward(model, lambda z: both(z, comp_loss), x), fullgraph=True)
    for step in range(3):  # the third step runs past the end of the bank (4 + 4 + 4 > 10)
        xs = x + step
        eager = _step(lambda x: _forward(model, lambda z: both(z, eager_loss), x), model, xs)
        g_eager = [p.grad.clone() for p in model.parameters()]
        out = _step(compiled, model, xs)
        torch.testing.assert_close(out, eager, rtol=1e-5, atol=1e-6)
        for p, g in zip(model.parameters(), g_eager):
            torch.testing.assert_close(p.grad, g, rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(comp_loss.bank, eager_loss.bank)
        assert torch.equal(comp_loss.bank_ptr, eager_loss.bank_ptr)
    assert int(comp_loss.bank_ptr) == 0
