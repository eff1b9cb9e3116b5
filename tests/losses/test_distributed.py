"""2-process gloo: gathered losses equal the single-process result on the concatenated batch.

Each rank holds half the batch. The loss value equals the single-process loss; each rank's
input gradient is world_size × its slice of the single-process gradient (the gather's backward
all-reduces), so that DDP's averaging yields exactly the single-process parameter gradient,
which is checked on a DDP-wrapped projector.
"""

import os
import tempfile

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import sslfast

WORLD = 2
N, D_IN, D = 12, 6, 10


def _data():
    g = torch.Generator().manual_seed(0)
    return torch.randn(N, D_IN, generator=g, dtype=torch.float64), torch.randn(
        N, D_IN, generator=g, dtype=torch.float64
    )


def _losses(backend):
    return {
        "vicreg": lambda: sslfast.VICRegLoss(gather_distributed=True, backend=backend),
        "barlow_twins": lambda: sslfast.BarlowTwinsLoss(gather_distributed=True, backend=backend),
        "tico": lambda: sslfast.TiCoLoss(gather_distributed=True, backend=backend),
    }


def _projector():
    torch.manual_seed(1)
    return torch.nn.Linear(D_IN, D).double()


def _worker(rank, init_file, backend, results):
    os.environ.setdefault("TRITON_INTERPRET", "1")
    dist.init_process_group(
        "gloo",
        init_method=f"file://{init_file}",
        rank=rank,
        world_size=WORLD,
        timeout=__import__("datetime").timedelta(seconds=60),
    )
    try:
        x_a, x_b = _data()
        rows = slice(rank * N // WORLD, (rank + 1) * N // WORLD)
        out = {}
        for name, make in _losses(backend).items():
            model = torch.nn.parallel.DistributedDataParallel(_projector())
            z_a = model(x_a[rows]).detach().requires_grad_()
            z_b = model(x_b[rows]).detach().requires_grad_()
            loss = make()(z_a, z_b)
            loss.backward()
            # a second pass through DDP for the parameter gradients
            loss_p = make()(model(x_a[rows]), model(x_b[rows]))
            loss_p.backward()
            out[name] = (loss.detach(), z_a.grad, z_b.grad, model.module.weight.grad.clone())
        results[rank] = out
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_gathered_losses_equal_single_process(backend, tmp_path):
    manager = mp.Manager()
    results = manager.dict()
    init_file = tempfile.mktemp(dir=tmp_path)
    mp.start_processes(_worker, args=(init_file, backend, results), nprocs=WORLD, join=True, start_method="spawn")
    x_a, x_b = _data()
    for name, make in _losses(backend).items():
        model = _projector()
        z_a = model(x_a).detach().requires_grad_()
        z_b = model(x_b).detach().requires_grad_()
        single = make()(z_a, z_b)
        single.backward()
        make()(model(x_a), model(x_b)).backward()
        for rank in range(WORLD):
            loss, ga, gb, wgrad = results[rank][name]
            rows = slice(rank * N // WORLD, (rank + 1) * N // WORLD)
            torch.testing.assert_close(loss, single.detach(), rtol=1e-12, atol=0)
            torch.testing.assert_close(ga, WORLD * z_a.grad[rows], rtol=1e-10, atol=1e-14)
            torch.testing.assert_close(gb, WORLD * z_b.grad[rows], rtol=1e-10, atol=1e-14)
            torch.testing.assert_close(wgrad, model.weight.grad, rtol=1e-10, atol=1e-14)
