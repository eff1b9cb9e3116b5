"""Trainer and CLIs: resume == uninterrupted, SIGKILL + --resume, kNN above chance, clear errors."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from train_helpers import tiny_cfg

from sslfast.cli import main as cli
from sslfast.train.checkpoint import CheckpointError, load_checkpoint
from sslfast.train.config import ConfigError, load_config
from sslfast.train.loop import train

CIFAR = Path(os.environ.get("SSLFAST_DATA") or Path(__file__).resolve().parents[3] / "shared" / "data")


def _losses(out) -> dict[int, float]:
    recs = [json.loads(line) for line in (Path(out) / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in recs if "loss" in r}  # a replayed step overwrites its first record


@pytest.mark.parametrize("method", ["tico", "byol"])  # covariance buffer; EMA + predictor
def test_resume_equals_uninterrupted(tmp_path, method):
    kw = dict(method=method, synthetic_size=64, epochs=2)  # 4 steps per epoch, 8 in all
    full = train(tiny_cfg(tmp_path / "a", **kw))
    part = train(tiny_cfg(tmp_path / "b", stop_after_steps=3, **kw))  # stops mid-epoch 1
    assert part["steps"] == 3 and not part["finished"]
    resumed = train(tiny_cfg(tmp_path / "b", **kw), resume=True)
    assert full["finished"] and resumed["finished"] and resumed["steps"] == 8
    la, lb = _losses(tmp_path / "a" / "run"), _losses(tmp_path / "b" / "run")
    assert sorted(la) == sorted(lb) == list(range(1, 9))
    for s in la:
        assert abs(la[s] - lb[s]) <= 1e-6 * max(1.0, abs(la[s])), f"step {s}: {la[s]} vs {lb[s]}"
    sa = load_checkpoint(tmp_path / "a" / "run" / "checkpoint.pt")["model"]
    sb = load_checkpoint(tmp_path / "b" / "run" / "checkpoint.pt")["model"]
    assert sa.keys() == sb.keys()
    for k in sa:
        torch.testing.assert_close(sb[k], sa[k], rtol=1e-6, atol=1e-6, msg=f"state {k}")
    if method == "tico":
        assert sa["loss.C"].abs().sum() > 0  # the covariance buffer is in the checkpoint


def test_sigkill_then_resume_completes(tmp_path):
    out = tmp_path / "run"
    args = [
        "train",
        "--method",
        "vicreg",
        "--data",
        "synthetic",
        "--synthetic-size",
        "128",
        "--image-size",
        "16",
        "--view-size",
        "16",
        "--width",
        "8",
        "--proj-hidden",
        "32",
        "--proj-out",
        "32",
        "--batch-size",
        "16",
        "--epochs",
        "3",
        "--warmup-epochs",
        "0",
        "--log-every",
        "1",
        "--checkpoint-every",
        "1",
        "--no-tensorboard",
        "--no-progress",
        "--out",
        str(out),
    ]
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "sslfast.cli", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    metrics = out / "metrics.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if metrics.exists() and len(metrics.read_text().splitlines()) >= 5:
            break
        time.sleep(0.05)
    assert proc.poll() is None, f"the run ended before it could be killed:\n{proc.stdout.read().decode()}"
    os.kill(proc.pid, signal.SIGKILL)  # mid-epoch 1 of 3 (8 steps per epoch), possibly mid-write
    proc.wait()
    killed_at = load_checkpoint(out / "checkpoint.pt")["step"]
    assert 1 <= killed_at < 24
    assert cli([*args, "--resume"]) == 0
    ckpt = load_checkpoint(out / "checkpoint.pt")
    assert (ckpt["epoch"], ckpt["step"], ckpt["step_in_epoch"]) == (3, 24, 0)
    assert not list(out.glob("*.tmp")) and not list(out.glob(".*.tmp")), "a temporary file was left behind"
    assert sorted(_losses(out)) == list(range(1, 25))
    assert json.loads((out / "summary.json").read_text())["finished"] is True


@pytest.mark.skipif(
    not (CIFAR / "cifar-10-batches-bin").is_dir(),
    reason=f"CIFAR-10 binary data not found at {CIFAR} (set SSLFAST_DATA)",
)
def test_knn_above_chance_on_cifar_subset(tmp_path):
    # Chance is 10%; with 1000 test images its standard error is ~1%, so 15% is > 5 sigma above it.
    # (Runs this short barely move kNN beyond a random-init network's ~20%: this checks the monitor
    # wiring and that the features carry class information, not SSL progress.)
    cfg = tiny_cfg(
        tmp_path,
        data="cifar10",
        data_root=str(CIFAR),
        subset=1024,
        view_size=None,
        image_size=32,
        batch_size=64,
        epochs=2,
        knn_every=1,
        knn_k=20,
        knn_train_size=1024,
        knn_test_size=1000,
        log_every=8,
    )
    summary = train(cfg)
    recs = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    knn = [r["knn_top1"] for r in recs if "knn_top1" in r]
    assert len(knn) == 2 and summary["knn_top1"] == knn[-1]
    assert knn[-1] > 15.0, f"kNN top-1 {knn[-1]:.1f}% is not above chance (10%)"
    res_path = tmp_path / "eval.json"
    assert (
        cli(
            [
                "eval",
                "--checkpoint",
                str(tmp_path / "run" / "checkpoint.pt"),
                "--probe",
                "knn",
                "--k",
                "20",
                "--train-size",
                "1024",
                "--test-size",
                "1000",
                "--out",
                str(res_path),
            ]
        )
        == 0
    )
    res = json.loads(res_path.read_text())
    assert res["method"] == "vicreg" and res["n_test"] == 1000
    assert res["top1"] == pytest.approx(knn[-1], abs=1e-6)  # same features, same kNN as the monitor


def test_eval_cli_linear_probe(tmp_path, capsys):
    train(tiny_cfg(tmp_path, synthetic_size=64, epochs=1))
    assert (
        cli(
            [
                "eval",
                "--checkpoint",
                str(tmp_path / "run" / "checkpoint.pt"),
                "--probe",
                "linear",
                "--epochs",
                "10",
            ]
        )
        == 0
    )
    res = json.loads(capsys.readouterr().out)
    assert 0.0 <= res["top1"] <= 100.0 and res["probe"] == "linear" and res["step"] == 4


def test_checkpoint_from_another_method_or_architecture(tmp_path, capsys):
    train(tiny_cfg(tmp_path, synthetic_size=64, stop_after_steps=1))
    with pytest.raises(CheckpointError, match="from method 'vicreg', but this run uses method 'byol'"):
        train(tiny_cfg(tmp_path, method="byol", synthetic_size=64), resume=True)
    with pytest.raises(CheckpointError, match="architecture"):
        train(tiny_cfg(tmp_path, synthetic_size=64, width=4), resume=True)
    with pytest.raises(ConfigError, match="pass --resume"):
        train(tiny_cfg(tmp_path, synthetic_size=64))
    out = str(tmp_path / "run")
    assert cli(["train", "--method", "barlow_twins", "--data", "synthetic", "--out", out, "--resume"]) == 2
    assert "from method 'vicreg'" in capsys.readouterr().err


def test_bad_config_and_missing_data(tmp_path, capsys):
    cfg_file = tmp_path / "cfg.yaml"
    cfg_file.write_text("method: vicreg\nepochs: 3\nlearning_rate: 0.1\n")
    with pytest.raises(ConfigError, match=r"unknown config option\(s\) \['learning_rate'\]"):
        load_config(cfg_file)
    cfg_file.write_text("method: vicreg\nepochs: 3\nbatch_size: 16\n")
    cfg = load_config(cfg_file, epochs=5, batch_size=None)  # flags override YAML, None = not given
    assert (cfg.epochs, cfg.batch_size) == (5, 16)
    with pytest.raises(ConfigError, match="epochs must be a positive int or None, got -1"):
        load_config(None, epochs=-1)
    with pytest.raises(ValueError, match="unknown method 'simclrr'"):
        load_config(None, method="simclrr")
    with pytest.raises(ConfigError, match="larger than the training set"):
        train(tiny_cfg(tmp_path, synthetic_size=8))
    assert (
        cli(
            [
                "train",
                "--data",
                "cifar10",
                "--data-root",
                str(tmp_path / "nowhere"),
                "--out",
                str(tmp_path / "r2"),
            ]
        )
        == 2
    )
    assert "cifar-10" in capsys.readouterr().err.lower()
    assert cli(["train", "--data", str(tmp_path / "no_folder"), "--out", str(tmp_path / "r3")]) == 2
    assert "existing image folder" in capsys.readouterr().err
