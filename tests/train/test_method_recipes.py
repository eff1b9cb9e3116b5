"""A short run of every method's default recipe keeps a finite loss (issue 12, item 6).

Real CIFAR-10 (skipped, with the reason, when the binary files are absent): 256 images, ResNet-18
at width 4, 2 epochs, each method's published heads, loss weights, optimiser, lr rule and warm-up.
The batch is 64 (the recipes use 256, which would leave one step per epoch on 256 images); EMP-SSL
keeps its own batch of 100 and its 20 patches. The trainer's divergence guard would stop a run
whose loss became non-finite (``TrainingDiverged``), so a finished run here means every loss of
every step was finite: the guard read the device-side flag at the end of each epoch.
"""

import json
import math
import os
from pathlib import Path

import pytest

from sslfast.train.config import TrainConfig
from sslfast.train.loop import train
from sslfast.train.methods import METHODS

CIFAR = Path(os.environ.get("SSLFAST_DATA") or Path(__file__).resolve().parents[3] / "shared" / "data")
pytestmark = pytest.mark.skipif(
    not (CIFAR / "cifar-10-batches-bin").is_dir(),
    reason=f"CIFAR-10 binary data not found at {CIFAR} (set SSLFAST_DATA)",
)


@pytest.mark.parametrize("method", sorted(METHODS))
def test_default_recipe_keeps_a_finite_loss(tmp_path, method):
    cfg = TrainConfig(
        method=method,
        data="cifar10",
        data_root=str(CIFAR),
        subset=256,
        width=4,
        epochs=2,
        batch_size=None if method == "emp_ssl" else 64,
        log_every=1,
        tensorboard=False,
        progress=False,
        out=str(tmp_path / "run"),
        device="cpu",
    )
    summary = train(cfg)
    assert summary["finished"] and not summary["diverged"], summary
    recs = [json.loads(x) for x in (tmp_path / "run" / "summary.json").parent.joinpath("metrics.jsonl").open()]
    losses = [r["loss"] for r in recs if "loss" in r]
    assert len(losses) == summary["total_steps"] >= 4
    assert all(math.isfinite(v) for v in losses), losses
