"""2-process gloo == single process, for the multi-crop loss, NT-Xent and the MoCo bank.

What is guaranteed with ``gather_distributed=True`` (each rank's queries are its own rows, the
keys are every rank's rows, as lightly and solo-learn):
- the mean over ranks of the returned losses equals the single-process loss on the
  concatenated batch, and each rank's value is its rows' share (weights normalised globally);
- each rank's input gradient is world_size × its slice of the single-process gradient, so DDP's
  gradient averaging gives exactly the single-process parameter gradient;
- NT-Xent: value and gradient equal lightly's NTXentLoss(gather_distributed=True) rank by rank;
- MoCo bank: the loss is local (lightly), and every rank enqueues the gathered keys, so the
  banks stay identical across ranks and equal the single-process bank fed the whole batch.
"""
import os
import socket
import subprocess
import sys

import pytest
import torch
from helpers import rel_err

import sslfast
from sslfast import functional as F
from sslfast import reference as R

WORLD = 2
WORKER = os.path.join(os.path.dirname(__file__), "_infonce_dist_worker.py")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _grads(fn, *xs):
    xs = [x.detach().clone().requires_grad_() for x in xs]
    loss = fn(*xs)
    loss.backward()
    return loss.detach(), [x.grad for x in xs]


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dist")
    g = torch.Generator().manual_seed(0)
    v, b, d, k = 3, 4, 8, 20  # B per rank; K not a multiple of world·B: the bank wraps with a drop
    data = {
        "z": torch.randn(v, WORLD * b, d, generator=g, dtype=torch.float64),
        "w": torch.rand(v, WORLD * b, generator=g, dtype=torch.float64) + 0.2,
        "t": 0.2,
        "k": k,
        "bank_steps": [torch.randn(2, WORLD * b, d, generator=g, dtype=torch.float64) for _ in range(3)],
    }
    torch.save(data, tmp / "inputs.pt")
    port = str(_free_port())
    env = dict(os.environ, TRITON_INTERPRET="1", OMP_NUM_THREADS="1")
    procs = [subprocess.Popen([sys.executable, WORKER, str(r), str(WORLD), port, str(tmp / "inputs.pt"),
                               str(tmp / f"rank{r}.pt")], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
             for r in range(WORLD)]
    logs = []
    try:
        for p in procs:
            logs.append(p.communicate(timeout=240)[0].decode(errors="replace"))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for p, log in zip(procs, logs):
        assert p.returncode == 0, log[-3000:]
    return data, [torch.load(tmp / f"rank{r}.pt") for r in range(WORLD)]


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["torch", "triton", "reference"])
def test_multicrop_two_ranks_equal_single_process(ranks, backend):
    data, res = ranks
    z, w, t = data["z"], data["w"], data["t"]
    v, n, _ = z.shape
    b = n // WORLD
    full, (g_full,) = _grads(lambda x: F.multicrop_infonce_loss(x, w, temperature=t, backend="reference"), z)
    rows = R.multicrop_infonce_loss_reference(z, t, reduction="none")
    c = w / (w.mean() * v * b)
    losses = [res[r][f"multicrop_{backend}"][0] for r in range(WORLD)]
    assert rel_err(sum(losses) / WORLD, full) < 1e-12
    for r in range(WORLD):
        sl = slice(r * b, (r + 1) * b)
        loss, g = res[r][f"multicrop_{backend}"]
        assert rel_err(loss, (rows[:, sl] * c[:, sl]).sum()) < 1e-12
        assert rel_err(g, WORLD * g_full[:, sl]) < 1e-10


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["torch", "triton", "reference"])
def test_nt_xent_two_ranks_equal_lightly_and_single_process(ranks, backend):
    data, res = ranks
    z, t = data["z"], data["t"]
    b = z.shape[1] // WORLD
    full, g_full = _grads(lambda a, c: sslfast.NTXentLoss(temperature=t, backend="reference")(a, c), z[0], z[1])
    losses = []
    for r in range(WORLD):
        sl = slice(r * b, (r + 1) * b)
        loss, g0, g1 = res[r][f"ntxent_{backend}"]
        if "ntxent_lightly" in res[r]:  # absent only where lightly is not installed (the GPU image)
            l_loss, l0, l1 = res[r]["ntxent_lightly"]
            assert rel_err(loss, l_loss) < 1e-12 and rel_err(g0, l0) < 1e-10 and rel_err(g1, l1) < 1e-10
        assert rel_err(g0, WORLD * g_full[0][sl]) < 1e-10 and rel_err(g1, WORLD * g_full[1][sl]) < 1e-10
        losses.append(loss)
    assert rel_err(sum(losses) / WORLD, full) < 1e-12


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["torch", "triton", "reference"])
def test_memory_bank_two_ranks_equal_single_process(ranks, backend):
    data, res = ranks
    d, k = data["z"].shape[2], data["k"]
    single = sslfast.NTXentLoss(temperature=data["t"], memory_bank_size=(k, d), backend="reference").double()
    n = data["bank_steps"][0].shape[1]
    b = n // WORLD
    for step, (o0, o1) in enumerate(data["bank_steps"]):
        full, g_full = _grads(single, o0, o1)
        losses = [res[r][f"bank_{backend}"][0][step][0] for r in range(WORLD)]
        assert rel_err(sum(losses) / WORLD, full) < 1e-12, step
        for r in range(WORLD):
            sl = slice(r * b, (r + 1) * b)
            _, g0, g1 = res[r][f"bank_{backend}"][0][step]
            assert rel_err(g0, WORLD * g_full[0][sl]) < 1e-10 and rel_err(g1, WORLD * g_full[1][sl]) < 1e-10
    for r in range(WORLD):
        _, bank, ptr = res[r][f"bank_{backend}"]
        assert torch.equal(bank, single.bank) and torch.equal(ptr, single.bank_ptr)
    assert int(single.bank_ptr) == 0  # 8, 16, then 16 + 8 ≥ 20: rows 16–19 filled, 4 keys dropped, back to 0
