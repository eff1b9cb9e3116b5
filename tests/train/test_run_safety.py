"""Safe runs (issue 12): the divergence guard, resume refusing a changed config, finished runs left
alone, the run-folder lock, checkpoint digests, run ids in metrics.jsonl, train CLI errors."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from train_helpers import tiny_cfg

from sslfast.cli import main as cli
from sslfast.train.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from sslfast.train.config import ConfigError, TrainConfig, load_config
from sslfast.train.guard import LossGuard, TrainingDiverged, nonfinite_state
from sslfast.train.lock import RunLock, RunLocked
from sslfast.train.loop import train
from sslfast.train.methods import SSLModel

KW = dict(synthetic_size=64, epochs=2)  # 4 steps per epoch, 8 in all


def _records(out) -> list[dict]:
    return [json.loads(x) for x in (Path(out) / "metrics.jsonl").read_text().splitlines()]


def _nan_at(monkeypatch, bad_step: int) -> None:
    """SSLModel.forward returns NaN at its ``bad_step``-th call (1-based), a normal loss otherwise."""
    real, calls = SSLModel.forward, {"n": 0}

    def forward(self, views):
        calls["n"] += 1
        loss = real(self, views)
        return loss * float("nan") if calls["n"] == bad_step else loss

    monkeypatch.setattr(SSLModel, "forward", forward)


# --- divergence guard -------------------------------------------------------------------------


def test_loss_guard_record():
    g = LossGuard("cpu")
    for v in (3.0, 2.0, float("nan"), 1.0, float("inf")):
        g.track(torch.tensor(v))
    rec = g.read()
    assert not rec.finite and rec.first_bad_step == 3
    assert rec.last_finite_loss == 2.0 and rec.last_finite_step == 2 and rec.loss == math.inf
    assert "step 3" in rec.describe() and "last finite loss 2 at step 2" in rec.describe()
    g.reset(step=10)
    g.track(torch.tensor(0.5))
    rec = g.read()
    assert rec.finite and rec.last_finite_step == 11 and rec.first_bad_step is None


@pytest.mark.parametrize("bad_step,log_every", [(6, 1), (3, 50)])
def test_injected_nan_stops_the_run_and_saves_nothing_nonfinite(tmp_path, monkeypatch, bad_step, log_every):
    # log_every=50: no logging sync before the epoch end; the guard is read there, before the checkpoint
    _nan_at(monkeypatch, bad_step)
    out = tmp_path / "run"
    with pytest.raises(TrainingDiverged, match=f"non-finite \\(nan\\) at step {bad_step} \\(last finite loss"):
        train(tiny_cfg(tmp_path, checkpoint_every=1, log_every=log_every, **KW))
    summary = json.loads((out / "summary.json").read_text())
    assert summary["diverged"] is True and summary["finished"] is False
    assert summary["diverged_at_step"] == bad_step and summary["last_finite_step"] == bad_step - 1
    assert math.isfinite(summary["last_finite_loss"])
    ckpt = load_checkpoint(out / "checkpoint.pt")
    assert ckpt["step"] == bad_step - 1  # the checkpoint after the NaN step was never written
    for name, t in ckpt["model"].items():
        if t.is_floating_point():
            assert torch.isfinite(t).all(), name


def test_injected_nan_cli_exits_1(tmp_path, monkeypatch, capsys):
    _nan_at(monkeypatch, 2)
    out = tmp_path / "cli"
    args = ["train", "--data", "synthetic", "--synthetic-size", "64", "--image-size", "16", "--width", "4"]
    args += ["--proj-hidden", "16", "--proj-out", "16", "--batch-size", "16", "--epochs", "1", "--log-every", "1"]
    args += ["--no-tensorboard", "--no-progress", "--out", str(out)]
    assert cli(args) == 1
    err = capsys.readouterr().err
    assert "sslfast train: error: training diverged" in err and "step 2" in err and "last finite loss" in err
    assert not (out / "checkpoint.pt").exists()  # no good state to keep: nothing was saved
    assert json.loads((out / "summary.json").read_text())["diverged"] is True


def test_nonfinite_weights_with_finite_loss_are_not_checkpointed(tmp_path, monkeypatch):
    # the last update of epoch 1 overflows the weights after a finite loss: no later loss sees it,
    # the check of the state before the epoch-end checkpoint does
    import sslfast.train.optim as optim

    real, calls = optim.LARS.step, {"n": 0}

    def step(self, closure=None):
        out = real(self, closure)
        calls["n"] += 1
        if calls["n"] == 4:
            self.param_groups[0]["params"][0].data.fill_(float("inf"))
        return out

    monkeypatch.setattr(optim.LARS, "step", step)
    with pytest.raises(TrainingDiverged, match="non-finite values in backbone"):
        train(tiny_cfg(tmp_path, log_every=50, **KW))
    assert not (tmp_path / "run" / "checkpoint.pt").exists()
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["finished"] is False


def test_nonfinite_state_names_tensors():
    m = torch.nn.Linear(2, 2)
    assert nonfinite_state(m) == []
    m.bias.data[0] = float("nan")
    assert nonfinite_state(m) == ["bias"]


# --- resume -----------------------------------------------------------------------------------


def test_resume_refuses_a_changed_config_and_lists_fields(tmp_path):
    train(tiny_cfg(tmp_path, stop_after_steps=2, **KW))
    with pytest.raises(ConfigError, match=r"batch_size: 16 -> 8.*seed: 0 -> 3") as e:
        train(tiny_cfg(tmp_path, batch_size=8, seed=3, **KW), resume=True)
    assert "Fields that may change on resume" in str(e.value)
    with pytest.raises(ConfigError, match=r"data: 'synthetic' -> "):
        train(tiny_cfg(tmp_path, **{**KW, "data": str(tmp_path)}), resume=True)
    with pytest.raises(ConfigError, match=r"epochs: 2 -> 1"):  # a budget can only grow
        train(tiny_cfg(tmp_path, **{**KW, "epochs": 1}), resume=True)
    assert load_checkpoint(tmp_path / "run" / "checkpoint.pt")["step"] == 2  # nothing was touched
    # safe fields: logging cadence and a raised budget
    summary = train(tiny_cfg(tmp_path, **{**KW, "epochs": 3, "log_every": 2}), resume=True)
    assert summary["finished"] and summary["steps"] == 12
    ids = {r["run_id"] for r in _records(tmp_path / "run")}
    assert len(ids) == 1 and summary["run_id"] in ids  # one run id across the resume


def test_resume_counts_a_field_the_checkpoint_predates_as_its_default():
    # A checkpoint written before pred_lr_scale existed has no such key: resuming it with the
    # option set used to pass the check, load the old optimizer state and train without it.
    from dataclasses import asdict

    from sslfast.train.config import resume_changes

    old = asdict(TrainConfig(method="simsiam"))
    del old["pred_lr_scale"], old["loss_kwargs"]
    assert resume_changes(old, TrainConfig(method="simsiam")) == []
    assert resume_changes(old, TrainConfig(method="simsiam", pred_lr_scale=10.0)) == ["pred_lr_scale: None -> 10.0"]
    now = TrainConfig(method="simsiam", loss_kwargs={"temperature": 0.5})
    assert resume_changes(old, now) == ["loss_kwargs: {} -> {'temperature': 0.5}"]


def test_resume_of_a_finished_run_changes_nothing(tmp_path, capsys):
    train(tiny_cfg(tmp_path, **KW))
    out = tmp_path / "run"
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file() and p.name != ".lock"}
    again = train(tiny_cfg(tmp_path, **KW), resume=True)
    after = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file() and p.name != ".lock"}
    assert (
        after == before
        and again["finished"]
        and again["final_loss"] == json.loads(before["summary.json"])["final_loss"]
    )
    assert "finished run" in capsys.readouterr().err
    raised = train(tiny_cfg(tmp_path, **{**KW, "epochs": 3}), resume=True)  # a raised budget trains on
    assert raised["steps"] == 12 and raised["finished"]


# --- lock -------------------------------------------------------------------------------------


def test_second_run_on_the_same_out_fails_fast(tmp_path):
    out = tmp_path / "run"
    with RunLock(out, run_id="first"):
        with pytest.raises(RunLocked, match=f"in use by another run \\(pid {os.getpid()} on host"):
            train(tiny_cfg(tmp_path, **KW))
    assert not (out / "checkpoint.pt").exists() and not (out / "metrics.jsonl").exists()
    train(tiny_cfg(tmp_path, **KW))  # released: the folder can be used


def test_stale_lock_of_a_killed_run_is_taken_over(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (out / ".lock").write_text(json.dumps({"pid": int(dead.stdout), "host": "h", "started": 0, "run_id": "x"}))
    assert train(tiny_cfg(tmp_path, **KW))["finished"]
    assert f"pid {int(dead.stdout)}" in capsys.readouterr().err


# --- checkpoint digest ------------------------------------------------------------------------


def test_damaged_checkpoint_is_refused_by_resume_and_eval(tmp_path, capsys):
    train(tiny_cfg(tmp_path, stop_after_steps=2, **KW))
    path = tmp_path / "run" / "checkpoint.pt"
    data = bytearray(path.read_bytes())
    mid = len(data) // 2
    data[mid : mid + 10_000] = bytes(10_000)  # same size, 10 kB zeroed inside the payload
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="is damaged: the sha256 of its payload"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match="is damaged"):
        train(tiny_cfg(tmp_path, **KW), resume=True)
    assert cli(["eval", "--checkpoint", str(path), "--probe", "knn"]) == 2
    assert "is damaged" in capsys.readouterr().err


def test_checkpoint_round_trip_and_format_1_still_loads(tmp_path):
    p = save_checkpoint({"step": 3, "model": {"w": torch.arange(4.0)}}, tmp_path / "c.pt")
    ck = load_checkpoint(p)
    assert ck["step"] == 3 and torch.equal(ck["model"]["w"], torch.arange(4.0)) and ck["format"] == 2
    torch.save({"format": 1, "step": 5}, tmp_path / "old.pt")
    with pytest.warns(UserWarning, match="no digest"):
        assert load_checkpoint(tmp_path / "old.pt")["step"] == 5


# --- train CLI / config errors (issue 13) -------------------------------------------------------


@pytest.mark.parametrize(
    "yaml_text,match",
    [
        ("lr: .inf\n", "lr must be a finite"),
        ("weight_decay: .nan\n", "weight_decay must be a finite"),
        ("method: [vicreg\n", "is not valid YAML"),
        ("method: !!python/object:os.system {}\n", "is not valid YAML"),
    ],
)
def test_bad_yaml_is_a_config_error(tmp_path, yaml_text, match):
    f = tmp_path / "cfg.yaml"
    f.write_text(yaml_text)
    with pytest.raises(ConfigError, match=match):
        load_config(f)


def test_bad_options_are_config_errors(tmp_path, capsys):
    with pytest.raises(ConfigError, match="unknown method 'nope'"):
        load_config(None, method="nope")
    with pytest.raises(ConfigError, match="lr must be a finite"):
        TrainConfig(lr=float("nan")).validate()
    with pytest.raises(ConfigError, match="width applies to ResNet backbones"):
        train(tiny_cfg(tmp_path, backbone="vit_tiny", width=4, **KW))
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="device 'cuda' needs CUDA"):
            train(tiny_cfg(tmp_path, device="cuda", **KW))
    for argv, text in (
        (["--method", "nope"], "unknown method 'nope'"),
        (
            ["--backbone", "vit_tiny", "--width", "4", "--data", "synthetic"],
            "cannot build 'vit_tiny' for vicreg: width",
        ),
    ):
        assert cli(["train", *argv, "--out", str(tmp_path / "x")]) == 2
        assert f"sslfast train: error: {text}" in capsys.readouterr().err


def test_crop_min_scale_overrides_every_view_and_is_checked():
    from sslfast.train.setup import build_views, method_spec

    for method, preset_min in (("byol", 0.08), ("vicreg", 0.2), ("simclr", 0.08)):
        cfg = TrainConfig(method=method, local_crops=2 if method == "simclr" else 0).validate()
        assert {v.crop_scale for v in build_views(method_spec(cfg), cfg)[:2]} == {(preset_min, 1.0)}
        cfg.crop_min_scale = 0.3
        views = build_views(method_spec(cfg.validate()), cfg)
        assert [v.crop_scale for v in views[:2]] == [(0.3, 1.0)] * 2
        assert all(v.crop_scale == (0.05, 0.14) for v in views[2:])  # local crops keep their own range
    for bad, match in (
        (0.0, r"crop_min_scale must be a finite number > 0 and <= 1 or None, got 0\.0"),
        (1.5, "crop_min_scale"),
        ("0.2", "crop_min_scale"),
    ):
        with pytest.raises(ConfigError, match=match):
            TrainConfig(crop_min_scale=bad).validate()
    cfg = TrainConfig(method="emp_ssl", crop_min_scale=0.2).validate()
    with pytest.raises(ConfigError, match="does not apply to EMP-SSL"):
        build_views(method_spec(cfg), cfg)
