"""bench/gpu_run.sh, the GPU runbook for a 15-minute lease: valid bash, a dry run that shows the
plan, part budgets that sum to at most 12 minutes (each device call within its limit), no silent
default, and flags that the benchmarks it calls accept."""

import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "bench" / "gpu_run.sh"
pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


def parts() -> list[tuple[str, int, int]]:
    """(name, budget s, call) from the script's PARTS table."""
    found = re.findall(r'^\s+"(\w+)\|(\d+)\|(\d)\|', SCRIPT.read_text(), flags=re.M)
    return [(n, int(b), int(c)) for n, b, c in found]


def test_script_parses():
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True)


def test_parts_are_ordered_by_value_and_fit_the_lease():
    table = parts()
    assert [n for n, _, _ in table] == ["gate", "tests", "losses", "augment", "epoch", "tta"]
    assert sum(b for _, b, _ in table) <= 12 * 60
    for call in {c for _, _, c in table}:
        assert sum(b for _, b, c in table if c == call) <= 540  # a device call runs 10 minutes at most
    assert [c for _, _, c in table] == sorted(c for _, _, c in table)  # call 1 = the most valuable parts


def test_dry_run_shows_plan_and_total(tmp_path):
    out = subprocess.run(["bash", str(SCRIPT), "--dry-run"], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert out.returncode == 0, out.stderr
    total = sum(b for _, b, _ in parts())
    assert f"total {total}s of run time" in out.stdout
    for name, budget, _ in parts():
        assert re.search(rf"part {name}\s+{budget}s", out.stdout), name
    assert "device call 1:" in out.stdout and "device call 2:" in out.stdout


def test_over_budget_plan_is_refused(tmp_path):
    text = SCRIPT.read_text().replace('"tta|120|2|', '"tta|600|2|')
    bad = tmp_path / "gpu_run.sh"
    bad.write_text(text)
    out = subprocess.run(["bash", str(bad), "--dry-run"], capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert out.returncode == 1 and "over its limit" in out.stderr


@pytest.mark.parametrize("argv", [[], ["--call", "3"], ["--parts", "nope"], ["--parts", ""], ["losses"]])
def test_bad_arguments_are_a_usage_error_before_anything_runs(tmp_path, argv):
    out = subprocess.run(["bash", str(SCRIPT), *argv], capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert out.returncode == 2
    assert "usage: bash bench/gpu_run.sh" in out.stderr
    assert not any(tmp_path.iterdir())  # nothing installed or written before the check


def test_every_part_enforces_its_budget_and_writes_under_out():
    text = SCRIPT.read_text()
    body = text[text.index("run_part() {") : text.index("\nrc=0")]
    for name, _, _ in parts():
        assert re.search(rf"\n    {name}\)", body), name
    assert body.count('timeout -k 5 "$b"') == len(parts())
    assert body.count('--out "$OUT"') >= 4  # losses, augment, epoch, tta; gate via SSLFAST_RESULTS


def _flags(bench: str) -> list[str]:
    """The arguments the script passes to `sslfast bench <bench>` (continuation lines joined)."""
    text = SCRIPT.read_text().replace("\\\n", " ")
    line = next(x for x in text.splitlines() if f"sslfast.cli bench {bench} " in x and "timeout" in x)
    args = shlex.split(line.split(f"sslfast.cli bench {bench}", 1)[1].split(";")[0])
    return [a.replace("$OUT", "/tmp/out").replace("$SUBSET", "x.npz") for a in args if a != ";;"]


def test_benchmarks_accept_the_flags_the_runbook_passes():
    from sslfast.benchmarks import epoch, tta

    tta.parse_args(_flags("tta"))
    epoch.parse_args(_flags("epoch"))
    assert "--no-compile" in _flags("losses")


def test_cifar_subset_round_trip_and_tamper_check(tmp_path, monkeypatch):
    import numpy as np
    import sslfast.data_pipelines as dp
    import torch
    from sslfast.data_pipelines import cifar_subset

    data = dp.make_synthetic(40, 10, 32, seed=0)
    monkeypatch.setattr(dp, "load_cifar10", lambda root, train=True: data)
    path = cifar_subset.build(None, tmp_path / "s.npz", n_train=30, n_test=5)
    train, test = cifar_subset.load(path)
    assert torch.equal(train.images, data.images[:30]) and torch.equal(test.labels, data.labels[:5])
    assert train.classes == tuple(data.classes)

    with np.load(path) as f:
        arrays = {k: f[k] for k in f.files}
    arrays["train_labels"] = (arrays["train_labels"] + 1) % 10  # same shapes, other contents
    np.savez(tmp_path / "t.npz", **arrays)
    with pytest.raises(cifar_subset.SubsetError, match="do not match the sha256"):
        cifar_subset.load(tmp_path / "t.npz")
    with pytest.raises(cifar_subset.SubsetError, match="not found"):
        cifar_subset.load(tmp_path / "missing.npz")
    with pytest.raises(cifar_subset.SubsetError, match="must be in"):
        cifar_subset.build(None, tmp_path / "u.npz", n_train=41)


def test_the_one_run_setup_reads_the_subset_for_train_epoch_and_tta(tmp_path, monkeypatch):
    import sslfast.data_pipelines as dp
    import torch
    from sslfast.data_pipelines import cifar_subset
    from sslfast.data_pipelines.datasets import DatasetError

    from sslfast.benchmarks import epoch, tta
    from sslfast.train.config import TrainConfig
    from sslfast.train.setup import load_data

    data = dp.make_synthetic(40, 10, 32, seed=0)
    monkeypatch.setattr(dp, "load_cifar10", lambda root, train=True: data)
    path = str(cifar_subset.build(None, tmp_path / "s.npz", n_train=30, n_test=6))
    monkeypatch.undo()  # from here on, only the .npz can supply these images
    train, test = load_data(TrainConfig(data="cifar10", data_root=path, subset=20))
    assert torch.equal(train.images, data.images[:20]) and len(test) == 6
    args = tta.parse_args(["--data-root", path, "--subset", "25", "--test-subset", "4"])
    train, test, label = tta.load_data(args)
    assert (len(train), len(test)) == (25, 4) and label.startswith("CIFAR-10 subset")
    train, label = epoch._data(epoch.parse_args(["--data-root", path]))
    assert torch.equal(train.images, data.images[:30]) and label.startswith("CIFAR-10 subset")
    with pytest.raises(DatasetError, match="not found"):
        load_data(TrainConfig(data="cifar10", data_root=str(tmp_path / "missing.npz")))
    # A named --data-root that cannot be read is an error, never a synthetic stand-in.
    with pytest.raises(SystemExit, match="sslfast bench epoch: error: .*not found"):
        epoch._data(epoch.parse_args(["--data-root", str(tmp_path / "missing.npz")]))


def test_dry_run_fits_80_columns():
    out = subprocess.run(["bash", str(SCRIPT), "--dry-run"], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert max(len(line) for line in out.stdout.splitlines()) <= 80
