"""InfoNCE family: NT-Xent (lightly drop-in), MoCo memory bank, multi-crop SimCLR, GenView weights.

Ground truth: float64 — lightly 1.6.0's NTXentLoss (two views, with and without a memory bank),
sslfast.reference (solo-learn's index-mask formulation) and, independently, a row-by-row loop
below. The torch backend runs the full (B, V, D, T) grid; the Triton path (CPU interpreter here)
a representative subset, also with tiles forced to 16 so that grids have several partial tiles.
"""

import itertools
import re

import pytest
import torch
from helpers import DEVICE, ON_GPU, close, rel_err
from lightly_compat import lightly_loss

import sslfast
from sslfast import functional as F
from sslfast import reference as R

BS, VS, DS, TS = (1, 2, 5, 64), (2, 3, 8), (1, 3, 128, 257), (0.05, 0.1, 0.5)
GRAD_OUT = 1.7


def loop_loss(z: torch.Tensor, temperature: float, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Independent formulation: one row at a time, positives by `j ≡ i (mod B)`, float64."""
    v, b, d = z.shape
    x = z.reshape(v * b, d)
    u = x / x.norm(dim=1, keepdim=True).clamp_min(1e-12)
    idx = torch.arange(v * b, device=z.device)
    total, wsum = 0.0, 0.0
    for i in range(v * b):
        logits = (u @ u[i]) / temperature
        others = idx != i
        pos = others & (idx % b == i % b)
        li = torch.logsumexp(logits[others], 0) - torch.logsumexp(logits[pos], 0)
        w = 1.0 if weights is None else weights.expand(v, b).reshape(-1)[i]
        total = total + w * li
        wsum = wsum + w
    return total / wsum


def run(fn, *xs):
    """Value and gradients of fn(*xs) * GRAD_OUT (grad_output ≠ 1)."""
    xs = [x.detach().clone().requires_grad_() for x in xs]
    loss = fn(*xs)
    (GRAD_OUT * loss).backward()
    return loss.detach(), [x.grad for x in xs]


def make(v, b, d, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(v, b, d, generator=g, dtype=torch.float64).to(DEVICE, dtype)


@pytest.fixture
def small_tiles(monkeypatch):
    import sslfast.kernels.infonce as K

    monkeypatch.setattr(K, "TILES", (16, 16, 4))


# ---------------------------------------------------------------- multi-crop: value and gradient (fp64)


@pytest.mark.parametrize("b,v,d,t", list(itertools.product(BS, VS, DS, TS)))
def test_multicrop_torch_full_grid(b, v, d, t):
    z = make(v, b, d, seed=b * 1000 + v * 100 + d)
    ref, (gref,) = run(lambda x: R.multicrop_infonce_loss_reference(x, t), z)
    out, (g,) = run(lambda x: F.multicrop_infonce_loss(x, temperature=t, backend="torch"), z)
    assert close(out, ref, 1e-12) and close(g, gref, 1e-10)


@pytest.mark.parametrize(
    "b,v,d,t",
    [
        (1, 2, 3, 0.5),
        (2, 3, 1, 0.1),
        (5, 8, 3, 0.05),
        (5, 3, 128, 0.1),
        (64, 2, 128, 0.5),
        (64, 2, 3, 0.05),
        (2, 8, 257, 0.1),
    ],
)
def test_reference_matches_row_loop(b, v, d, t):
    z = make(v, b, d, seed=7 + b)
    ref, (gref,) = run(lambda x: R.multicrop_infonce_loss_reference(x, t), z)
    loop, (gloop,) = run(lambda x: loop_loss(x, t), z)
    assert close(ref, loop, 1e-12) and close(gref, gloop, 1e-10)


TRITON_SUBSET = [
    (1, 2, 3, 0.5),
    (2, 3, 1, 0.1),
    (5, 3, 3, 0.05),
    (5, 8, 128, 0.1),
    (64, 2, 128, 0.05),
    (2, 3, 257, 0.5),
    (5, 2, 257, 0.1),
]


@pytest.mark.parametrize("b,v,d,t", TRITON_SUBSET)
def test_multicrop_triton_fp64(b, v, d, t):
    z = make(v, b, d, seed=b + v + d)
    ref, (gref,) = run(lambda x: R.multicrop_infonce_loss_reference(x, t), z)
    out, (g,) = run(lambda x: F.multicrop_infonce_loss(x, temperature=t, backend="triton"), z)
    assert close(out, ref, 1e-12) and close(g, gref, 1e-10)


def test_dot_precision_per_dtype_and_setting(monkeypatch):
    """fp32: tf32x3 at torch's "highest" (≈fp32 on tensor cores), tf32 at "high"/"medium", exact
    "ieee" only on request (FP32_DOTS); bf16/fp16 operands in their own dtype; fp64 "ieee"."""
    import sslfast.kernels.infonce as K

    before = torch.get_float32_matmul_precision()
    try:
        torch.set_float32_matmul_precision("highest")
        assert K._precision(torch.float32) == "tf32x3"
        for setting in ("high", "medium"):
            torch.set_float32_matmul_precision(setting)
            assert K._precision(torch.float32) == "tf32"
        monkeypatch.setattr(K, "FP32_DOTS", "ieee")
        assert K._precision(torch.float32) == "ieee"
        plan = K._plan(64, torch.float32, True)
        assert plan.bm * plan.bn <= 32 * 32 and plan.kbm * plan.kbn <= 32 * 32  # exact FMA dots: small tiles
        monkeypatch.setattr(K, "FP32_DOTS", "fast")
        with pytest.raises(ValueError, match="FP32_DOTS must be 'auto' or 'ieee', got 'fast'"):
            K._precision(torch.float32)
        monkeypatch.setattr(K, "FP32_DOTS", "auto")
        assert K._precision(torch.float64) == "ieee"
        for dtype in (torch.bfloat16, torch.float16):
            assert K._precision(dtype) == "ieee"  # the operands are 16-bit: input_precision is moot
        assert K._operand_dtype(torch.float16) == torch.float16
        assert K._operand_dtype(torch.float32) == torch.float32 and K._operand_dtype(torch.float64) == torch.float64
    finally:
        torch.set_float32_matmul_precision(before)


@pytest.mark.parametrize("b,v,d,t", [(5, 8, 3, 0.1), (64, 2, 33, 0.05), (7, 3, 20, 0.5)])
def test_multicrop_triton_multitile(small_tiles, b, v, d, t):
    """16-row tiles: several query and key tiles, the last one partial, positives across tiles."""
    z = make(v, b, d, dtype=torch.float32, seed=3)
    ref, (gref,) = run(lambda x: R.multicrop_infonce_loss_reference(x, t), z.double())
    out, (g,) = run(lambda x: F.multicrop_infonce_loss(x, temperature=t, backend="triton"), z)
    assert close(out, ref, 1e-5) and close(g, gref, 1e-5)


# Low precision: compared with the fp64 reference on the *rounded* inputs. The loss is fp32 (fp32
# accumulation: ~1e-7 here; the bound leaves room for tf32 dots on GPU); the gradient comes back in
# the input dtype, so its error is that dtype's rounding (bf16 ≈ 3e-3, fp16 ≈ 3e-4 measured).
TOLS = {torch.float32: (1e-5, 1e-5), torch.bfloat16: (1e-3, 1e-2), torch.float16: (1e-3, 3e-3)}


@pytest.mark.parametrize("backend", ["torch", "triton"])
@pytest.mark.parametrize("dtype", list(TOLS))
@pytest.mark.parametrize("v,b,d,t", [(2, 64, 128, 0.05), (8, 5, 33, 0.1), (3, 5, 257, 0.5)])
def test_multicrop_dtypes(backend, dtype, v, b, d, t):
    z = make(v, b, d, dtype=dtype, seed=11)
    ref, (gref,) = run(lambda x: R.multicrop_infonce_loss_reference(x, t), z.double())
    out, (g,) = run(lambda x: F.multicrop_infonce_loss(x, temperature=t, backend=backend), z)
    assert out.dtype == torch.float32 and g.dtype == dtype
    tol_loss, tol_grad = TOLS[dtype]
    assert rel_err(out, ref) < tol_loss and rel_err(g, gref) < tol_grad


@pytest.mark.parametrize("backend", ["torch", "triton"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_stable_at_small_temperature(backend, dtype):
    """T = 0.01, every row near one direction: all logits near 1/T = 100 (a raw exp(100) overflows
    fp32/bf16), while their differences, and so the loss, stay O(1)."""
    common = make(1, 1, 64, dtype=torch.float64, seed=5)
    images = 0.1 * make(1, 16, 64, seed=6)
    z = (common + images + 0.03 * make(4, 16, 64, seed=7)).to(dtype)
    ref, (gref,) = run(lambda x: R.multicrop_infonce_loss_reference(x, 0.01), z.double())
    out, (g,) = run(lambda x: F.multicrop_infonce_loss(x, temperature=0.01, backend=backend), z)
    assert torch.isfinite(out) and torch.isfinite(g).all()
    assert 0.5 < float(ref) < 10
    tol_loss, tol_grad = TOLS[dtype]
    assert rel_err(out, ref) < tol_loss and rel_err(g, gref) < tol_grad


# ---------------------------------------------------------------- NT-Xent: lightly drop-in


@pytest.mark.parametrize("b,d,t", list(itertools.product(BS, DS, TS)))
def test_nt_xent_matches_lightly_torch(b, d, t):
    LL = lightly_loss()
    z = make(2, b, d, seed=b + d)
    ref, gref = run(lambda a, c: LL.NTXentLoss(temperature=t)(a, c), z[0], z[1])
    out, g = run(lambda a, c: sslfast.NTXentLoss(temperature=t, backend="torch")(a, c), z[0], z[1])
    assert close(out, ref, 1e-12)
    assert all(close(x, y, 1e-10) for x, y in zip(g, gref))


@pytest.mark.parametrize("b,d,t", [(1, 3, 0.5), (2, 1, 0.1), (5, 257, 0.05), (64, 128, 0.1)])
@pytest.mark.parametrize("backend", ["triton", "reference"])
def test_nt_xent_matches_lightly(backend, b, d, t):
    LL = lightly_loss()
    z = make(2, b, d, seed=b * d)
    ref, gref = run(lambda a, c: LL.NTXentLoss(temperature=t)(a, c), z[0], z[1])
    out, g = run(lambda a, c: F.nt_xent_loss(a, c, temperature=t, backend=backend), z[0], z[1])
    assert close(out, ref, 1e-12)
    assert all(close(x, y, 1e-10) for x, y in zip(g, gref))


@pytest.mark.parametrize("backend", ["torch", "triton", "reference"])
def test_memory_bank_matches_lightly(backend):
    """Several MoCo steps: loss, both gradients, bank contents and pointer, including the step where
    the batch runs past the end of the bank (lightly fills to the end, drops the rest, resets to 0)."""
    LL = lightly_loss()
    b, d, k, t = 6, 8, 20, 0.2
    theirs = LL.NTXentLoss(temperature=t, memory_bank_size=(k, d))
    theirs.memory_bank.bank = theirs.memory_bank.bank.double()  # fp64 oracle (lightly's bank is fp32)
    ours = sslfast.NTXentLoss(temperature=t, memory_bank_size=(k, d), backend=backend).double()
    ours.bank.copy_(theirs.memory_bank.bank)
    ptrs = []
    for step in range(6):
        out0, out1 = make(2, b, d, seed=100 + step).unbind(0)
        ref, gref = run(theirs, out0, out1)
        out, g = run(ours, out0, out1)
        assert close(out, ref, 1e-12), step
        assert all(close(x, y, 1e-10) for x, y in zip(g, gref)), step
        assert close(ours.bank, theirs.memory_bank.bank, 1e-15) and int(ours.bank_ptr) == int(
            theirs.memory_bank.bank_ptr
        )
        ptrs.append(int(ours.bank_ptr))
    assert ptrs == [6, 12, 18, 0, 6, 12]
    # Without grad (evaluation), lightly leaves the bank alone; so do we.
    before = ours.bank.clone()
    with torch.no_grad():
        ours(*make(2, b, d, seed=1).unbind(0))
    assert torch.equal(before, ours.bank) and int(ours.bank_ptr) == 12


@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_memory_bank_fp32_and_multitile(backend, monkeypatch):
    import sslfast.kernels.infonce as K

    monkeypatch.setattr(K, "TILES", (16, 16, 4))
    b, d, k, t = 20, 24, 50, 0.1
    bank = torch.nn.functional.normalize(make(1, k, d, seed=2)[0], dim=1).float()
    z = make(2, b, d, dtype=torch.float32, seed=9)
    ref, gref = run(
        lambda a, c: R.nt_xent_loss_reference(a, c, t, negatives=bank.double()), z[0].double(), z[1].double()
    )
    out, g = run(lambda a, c: F.nt_xent_loss(a, c, temperature=t, memory_bank=bank, backend=backend), z[0], z[1])
    assert rel_err(out, ref) < 1e-5 and all(rel_err(x, y) < 1e-5 for x, y in zip(g, gref))


def test_memory_bank_state_dict_round_trip():
    b, d, k = 4, 6, 10
    a = sslfast.NTXentLoss(memory_bank_size=(k, d), backend="torch")
    steps = [make(2, b, d, dtype=torch.float32, seed=s).unbind(0) for s in range(6)]
    for out0, out1 in steps[:2]:
        a(out0.requires_grad_(), out1)
    state = a.state_dict()
    assert set(state) == {"bank", "bank_ptr"} and int(state["bank_ptr"]) == 8
    resumed = sslfast.NTXentLoss(memory_bank_size=(k, d), backend="torch", bank_seed=123)
    assert not torch.equal(resumed.bank, a.bank)
    resumed.load_state_dict(state)
    for out0, out1 in steps[2:]:  # the first of these runs past the end of the bank
        la = a(out0.clone().requires_grad_(), out1)
        lb = resumed(out0.clone().requires_grad_(), out1)
        assert torch.equal(la, lb)
    assert torch.equal(a.bank, resumed.bank) and torch.equal(a.bank_ptr, resumed.bank_ptr)


def test_memory_bank_init_is_seeded_and_normalised():
    a, b = sslfast.NTXentLoss(memory_bank_size=(32, 8)), sslfast.NTXentLoss(memory_bank_size=(32, 8))
    c = sslfast.NTXentLoss(memory_bank_size=(32, 8), bank_seed=1)
    assert torch.equal(a.bank, b.bank) and not torch.equal(a.bank, c.bank)
    assert torch.allclose(a.bank.norm(dim=1), torch.ones(32)) and a.bank.dtype == torch.float32


# ---------------------------------------------------------------- weights, list input, grad_output


@pytest.mark.parametrize("backend", ["torch", "triton", "reference"])
def test_weights(backend):
    v, b, d, t = 3, 5, 16, 0.1
    z = make(v, b, d, seed=21)
    w = torch.rand(v, b, generator=torch.Generator().manual_seed(0), dtype=torch.float64).to(DEVICE) + 0.1
    loss = lambda x, ww=None: F.multicrop_infonce_loss(x, ww, temperature=t, backend=backend)  # noqa: E731
    plain, (g_plain,) = run(loss, z)
    ones, (g_ones,) = run(lambda x: loss(x, torch.ones(b, dtype=torch.float64, device=DEVICE)), z)
    assert close(ones, plain, 1e-13) and close(g_ones, g_plain, 1e-12)
    ref, (gref,) = run(lambda x: loop_loss(x, t, w), z)
    out, (g,) = run(lambda x: loss(x, w), z)
    assert close(out, ref, 1e-12) and close(g, gref, 1e-10)
    assert not close(out, plain, 1e-3)  # the weights matter
    scaled, _ = run(lambda x: loss(x, 3.0 * w), z)  # normalised to mean 1: scale-free
    assert close(scaled, out, 1e-13)
    wb = w[0]  # (B,) broadcasts over views
    out_b, _ = run(lambda x: loss(x, wb), z)
    out_vb, _ = run(lambda x: loss(x, wb.expand(v, b)), z)
    assert close(out_b, out_vb, 1e-14)
    wg = w.clone().requires_grad_()  # weights are detached
    x = z.clone().requires_grad_()
    loss(x, wg).backward()
    assert wg.grad is None and x.grad is not None


@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_list_equals_stacked(backend):
    z = make(3, 5, 8, dtype=torch.float32, seed=4)
    views = [z[i].clone().requires_grad_() for i in range(3)]
    stacked = z.clone().requires_grad_()
    a = F.multicrop_infonce_loss(views, temperature=0.1, backend=backend)
    c = sslfast.MultiCropInfoNCELoss(temperature=0.1, backend=backend)(stacked)
    (GRAD_OUT * a).backward()
    (GRAD_OUT * c).backward()
    assert torch.equal(a, c)
    assert all(torch.equal(views[i].grad, stacked.grad[i]) for i in range(3))


@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_grad_output_scales(backend):
    z = make(2, 5, 8, dtype=torch.float32, seed=8)
    x1, x2 = z.clone().requires_grad_(), z.clone().requires_grad_()
    F.multicrop_infonce_loss(x1, backend=backend).backward()
    (-2.5 * F.multicrop_infonce_loss(x2, backend=backend)).backward()
    assert torch.allclose(x2.grad, -2.5 * x1.grad, rtol=1e-6, atol=0)


# ---------------------------------------------------------------- degenerate and non-finite inputs


@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_all_zero_rows_finite(backend):
    z = make(3, 4, 8, dtype=torch.float32, seed=1)
    z[1, 2] = 0.0
    ref, (gref,) = run(lambda x: R.multicrop_infonce_loss_reference(x, 0.1), z.double())
    out, (g,) = run(lambda x: F.multicrop_infonce_loss(x, temperature=0.1, backend=backend), z)
    assert torch.isfinite(out) and torch.isfinite(g).all()
    assert rel_err(out, ref) < 1e-5 and rel_err(g, gref) < 1e-5
    zeros, (gz,) = run(lambda x: F.multicrop_infonce_loss(x, backend=backend), torch.zeros(2, 3, 4, device=DEVICE))
    assert torch.isfinite(zeros) and torch.isfinite(gz).all()


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")  # the interpreter's numpy makes the NaN
@pytest.mark.parametrize("backend", ["torch", "triton"])
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_gives_non_finite(backend, bad):
    z = make(2, 4, 8, dtype=torch.float32, seed=1)
    z[0, 1, 3] = bad
    assert not torch.isfinite(F.multicrop_infonce_loss(z, backend=backend))
    bank = torch.nn.functional.normalize(torch.randn(10, 8, device=DEVICE), dim=1)
    assert not torch.isfinite(F.nt_xent_loss(z[0], z[1], memory_bank=bank, backend=backend))


# ---------------------------------------------------------------- memory: never an N×N tensor


def test_triton_path_allocates_no_n_by_n_tensor():
    """Record every tensor torch allocates during the forward+backward: the tiled path stays O(N·D)."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Largest(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.bytes = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            for t in out if isinstance(out, (tuple, list)) else (out,):
                if isinstance(t, torch.Tensor):
                    self.bytes = max(self.bytes, t.numel() * t.element_size())
            return out

    import sslfast.kernels.infonce as K

    from sslfast.losses.infonce import multicrop_infonce_fwd_torch

    # The registered op runs its body with dispatch modes popped, so call the undecorated launcher.
    tiled = getattr(K.multicrop_infonce_fwd, "_init_fn", K.multicrop_infonce_fwd)
    v, b, d = 2, 64, 16  # N = 128 rows: N² = 16384 ≫ N·D = 2048
    n = v * b
    z = make(v, b, d, dtype=torch.float32)
    scale = torch.full((v, b), 1.0 / n, device=DEVICE)
    sizes = {}
    for name, fn in (("torch", multicrop_infonce_fwd_torch), ("triton", tiled)):
        with Largest() as mode:
            loss, grad = fn(z, scale, 0.1, 0, b, True)
        assert grad.shape == z.shape
        sizes[name] = mode.bytes
    assert sizes["torch"] >= 4 * n * n  # the detector sees the dense path's fp32 logits
    assert sizes["triton"] <= 4 * n * d  # (the interpreter copies each buffer as bytes: measure bytes)


# ---------------------------------------------------------------- bad input


def test_bad_inputs():
    z = torch.randn(3, 4, 8)
    with pytest.raises(ValueError, match=r"V >= 2.*\(1, 4, 8\)"):
        F.multicrop_infonce_loss(torch.randn(1, 4, 8))
    with pytest.raises(ValueError, match="V >= 2"):
        F.multicrop_infonce_loss([torch.randn(4, 8)])
    with pytest.raises(ValueError, match=r"\(4, 8\).*\(5, 8\)"):
        F.multicrop_infonce_loss([torch.randn(4, 8), torch.randn(5, 8)])  # mismatched B
    with pytest.raises(ValueError, match=r"\(4, 8\).*\(4, 9\)"):
        F.multicrop_infonce_loss([torch.randn(4, 8), torch.randn(4, 9)])  # mismatched D
    for shape in [(5,), (3, 5), (2, 4), (4, 1), (3, 4, 1)]:
        with pytest.raises(
            ValueError,
            match=r"weights must have shape \(B,\) = \(4,\) or \(V, B\) = \(3, 4\).*" + re.escape(str(shape)),
        ):
            F.multicrop_infonce_loss(z, torch.ones(shape))
    for t in (0, 0.0, -0.1):
        with pytest.raises(ValueError, match="temperature must be a positive number"):
            F.multicrop_infonce_loss(z, temperature=t)
        with pytest.raises(ValueError, match="temperature"):
            F.nt_xent_loss(z[0], z[1], temperature=t)
        with pytest.raises(ValueError, match="temperature"):
            sslfast.NTXentLoss(temperature=t)
        with pytest.raises(ValueError, match="temperature"):
            sslfast.MultiCropInfoNCELoss(temperature=t)
    with pytest.raises(TypeError, match=r"floating-point.*torch.int64"):
        F.multicrop_infonce_loss(torch.ones(2, 4, 8, dtype=torch.long))
    with pytest.raises(TypeError, match=r"out0 must be a floating-point.*torch.int32"):
        F.nt_xent_loss(torch.ones(4, 8, dtype=torch.int32), torch.ones(4, 8, dtype=torch.int32))
    with pytest.raises(TypeError, match="weights must be a floating-point"):
        F.multicrop_infonce_loss(z, torch.ones(4, dtype=torch.long))
    meta = torch.device("meta")  # a second device, also on CPU-only machines
    with pytest.raises(ValueError, match="one device"):
        F.multicrop_infonce_loss([torch.randn(4, 8), torch.randn(4, 8, device=meta)])
    with pytest.raises(ValueError, match="same device"):
        F.nt_xent_loss(torch.randn(4, 8), torch.randn(4, 8, device=meta))
    with pytest.raises(ValueError, match="weights must be on z's device"):
        F.multicrop_infonce_loss(z, torch.ones(4, device=meta))
    with pytest.raises(ValueError, match="memory_bank must be on out0's device"):
        F.nt_xent_loss(z[0], z[1], memory_bank=torch.randn(10, 8, device=meta))
    with pytest.raises(ValueError, match=r"out0 and out1 must have the same shape.*\(4, 8\).*\(5, 8\)"):
        F.nt_xent_loss(torch.randn(4, 8), torch.randn(5, 8))
    with pytest.raises(ValueError, match=r"memory_bank must have shape \(K, D\) with D = 8.*\(10, 7\)"):
        F.nt_xent_loss(z[0], z[1], memory_bank=torch.randn(10, 7))
    with pytest.raises(ValueError, match=r"bare int 4096.*memory_bank_size=\(4096, dim\)"):
        sslfast.NTXentLoss(memory_bank_size=4096)
    for bad in [(-1, 8), (4, 0), (4,), (4, 8, 2), "4096", 2.5, True]:
        with pytest.raises(ValueError, match=r"memory_bank_size must be 0 .* \(K, dim\)"):
            sslfast.NTXentLoss(memory_bank_size=bad)
    with pytest.raises(ValueError, match=r"memory_bank_size=\(16, 4\), got out0 with D=8"):
        sslfast.NTXentLoss(memory_bank_size=(16, 4))(torch.randn(4, 8, requires_grad=True), torch.randn(4, 8))
    with pytest.raises(ValueError, match="backend must be one of"):
        F.multicrop_infonce_loss(z, backend="cuda")
    assert sslfast.NTXentLoss(memory_bank_size=(0, 128)).bank is None  # lightly: K = 0 disables the bank


def test_auto_crossover():
    """`auto` on CUDA tensors: dense torch below INFONCE_TILED_MIN_ENTRIES similarities, the kernel above."""
    cuda = torch.device("cuda")
    from sslfast.losses import infonce

    n = F.INFONCE_TILED_MIN_ENTRIES
    assert infonce._infonce_backend("auto", cuda, n - 1) == "torch"
    assert infonce._infonce_backend("auto", cuda, n) == "triton"
    assert infonce._infonce_backend("triton", cuda, 4) == "triton"  # explicit choices are kept
    assert infonce._infonce_backend("auto", torch.device("cpu"), 10 * n) == "torch"


# ---------------------------------------------------------------- GPU only


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_gpu_large_n_bounded_memory(dtype):
    """N = 32768, D = 128: the tiled path's extra memory is O(N·D), far below one N×N fp32 matrix (4 GiB)."""
    v, b, d = 2, 16384, 128
    z = torch.randn(v, b, d, device="cuda", dtype=dtype, requires_grad=True)
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    loss = F.multicrop_infonce_loss(z, temperature=0.1, backend="triton")
    loss.backward()
    torch.cuda.synchronize()
    extra = torch.cuda.max_memory_allocated() - base
    assert torch.isfinite(loss)
    assert extra < 128 * 2**20, f"peak extra memory {extra / 2**20:.1f} MiB"


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", list(TOLS))
def test_gpu_mid_size_matches_reference(dtype):
    v, b, d, t = 8, 512, 256, 0.1
    z = make(v, b, d, dtype=dtype, seed=0)
    ref, (gref,) = run(lambda x: R.multicrop_infonce_loss_reference(x, t), z.double())
    out, (g,) = run(lambda x: F.multicrop_infonce_loss(x, temperature=t, backend="triton"), z)
    tol_loss, tol_grad = TOLS[dtype]
    assert rel_err(out, ref) < tol_loss and rel_err(g, gref) < tol_grad
    assert ON_GPU
