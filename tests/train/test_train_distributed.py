"""2 CPU processes under gloo + DDP: one training step equals the single-process step on the
concatenated batch (float64, parameters within 1e-10).

SyncBatchNorm needs CUDA, so the model here has no BatchNorm: a 1-block ViT backbone (LayerNorm)
and BN-free heads. With BN, per-rank batch statistics would differ from the global ones
unless ``--sync-bn`` is used on GPUs.
"""

import datetime
import tempfile

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from sslfast.data_pipelines import make_synthetic
from train_helpers import tiny_step

from sslfast.train.models import VisionTransformer

WORLD, B = 2, 8
METHODS = ("vicreg", "mocov3")  # the library loss's gather_distributed; MoCo v3's own key gather + EMA


def _backbone():
    torch.manual_seed(0)  # identical initial weights in every process
    return VisionTransformer(embed_dim=16, depth=1, num_heads=2, patch_size=4, img_size=16)


def _step(method, world_size=1, rank=0, wrap=None):
    return tiny_step(
        method,
        backbone=_backbone(),
        dtype=torch.float64,
        world_size=world_size,
        rank=rank,
        wrap=wrap,
        proj_batch_norm=False,
        proj_last_bn=False,
    )


def _worker(rank, init_file, results):
    dist.init_process_group(
        "gloo",
        init_method=f"file://{init_file}",
        rank=rank,
        world_size=WORLD,
        timeout=datetime.timedelta(seconds=60),
    )
    try:
        images = make_synthetic(WORLD * B, 10, 16, seed=4).images
        out = {}
        for method in METHODS:
            model, _, step = _step(method, WORLD, rank, wrap=torch.nn.parallel.DistributedDataParallel)
            loss = step(images[rank * B : (rank + 1) * B])["loss"]
            out[method] = (loss, {k: v.clone() for k, v in model.state_dict().items()})
        results[rank] = out
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_distributed_step_equals_single_process(tmp_path):
    manager = mp.Manager()
    results = manager.dict()
    init_file = tempfile.mktemp(dir=tmp_path)
    mp.start_processes(_worker, args=(init_file, results), nprocs=WORLD, join=True, start_method="spawn")
    images = make_synthetic(WORLD * B, 10, 16, seed=4).images
    for method in METHODS:
        model, _, step = _step(method)
        before = {k: v.clone() for k, v in model.state_dict().items()}
        loss = step(images)["loss"]
        single = model.state_dict()
        # VICReg: every rank computes the global loss; MoCo v3: the mean of the local losses is global
        r_losses = torch.stack([results[r][method][0] for r in range(WORLD)])
        torch.testing.assert_close(r_losses.mean(), loss, rtol=1e-10, atol=1e-10)
        for rank in range(WORLD):
            r_state = results[rank][method][1]
            moved = 0
            for k, v in single.items():
                torch.testing.assert_close(r_state[k], v, rtol=1e-10, atol=1e-10, msg=f"{method} rank {rank}: {k}")
                moved += not torch.equal(v, before[k])
            assert moved > len(single) // 2  # the step changed the parameters (and EMA copies)


def _failing_worker(rank, port, results):
    import os
    import time

    from sslfast.train.config import TrainConfig
    from sslfast.train.setup import setup_distributed as _setup_distributed

    os.environ.update(
        WORLD_SIZE=str(WORLD),
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )
    _setup_distributed(TrainConfig(device="cpu", dist_timeout_s=5))
    if rank == 1:
        os._exit(0)  # this rank dies without taking part in the next collective
    t0 = time.monotonic()
    try:
        dist.all_reduce(torch.ones(1))
        results[rank] = ("no error", time.monotonic() - t0)
    except Exception as e:  # gloo: connection closed, or the 5 s timeout
        results[rank] = (type(e).__name__, time.monotonic() - t0)
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_failing_rank_errors_instead_of_hanging():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    results = mp.Manager().dict()
    mp.start_processes(_failing_worker, args=(port, results), nprocs=WORLD, join=True, start_method="spawn")
    error, seconds = results[0]
    assert error != "no error" and seconds < 30, (error, seconds)
