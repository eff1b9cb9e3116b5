"""`sslfast bench epoch` harness: both paths run and the JSON records what was measured where."""

import json

from sslfast.cli import main as cli
from sslfast.report.schema import validate


def test_bench_epoch_runs_and_labels_results(tmp_path, capsys):
    assert (
        cli(
            [
                "bench",
                "epoch",
                "--methods",
                "vicreg",
                "--steps",
                "1",
                "--warmup",
                "0",
                "--batch-size",
                "8",
                "--width",
                "4",
                "--proj",
                "32",
                "--subset",
                "32",
                "--workers",
                "0",
                "--out",
                str(tmp_path),
            ]
        )
        == 0
    )
    (path,) = tmp_path.glob("epoch-*.json")
    doc = json.loads(path.read_text())
    validate(doc, path)  # the report reads what the benchmark writes
    row = {r["pipeline"]: r for r in doc["results"] if r["method"] == "vicreg"}
    for p in ("ours", "reference"):
        assert row[p]["images_per_s"] > 0 and row[p]["timed_steps"] == 1
        assert row[p]["s_per_epoch"] == row[p]["seconds_per_epoch"] == row[p]["step_ms"] / 1e3 * (50_000 // 8)
    assert row["reference"]["amp"] == "fp32" and row["reference"]["compiled"] is False
    assert doc["speedup_ours_vs_reference"]["vicreg"] == row["ours"]["images_per_s"] / row["reference"]["images_per_s"]
    assert doc["targets"]["measured_on_gpu"] is False and "not a speed claim" in doc["evidence"]
    assert doc["env"]["torch"]


def test_bench_epoch_runs_every_method(tmp_path):
    # issue 12: EMP-SSL used to crash here (its patch preset was called with a dataset name)
    from sslfast.train.methods import METHODS

    args = ["bench", "epoch", "--methods", "all", "--paths", "ours", "--steps", "1", "--warmup", "0"]
    args += ["--batch-size", "8", "--width", "4", "--proj", "16", "--subset", "16", "--out", str(tmp_path)]
    assert cli(args) == 0
    (path,) = tmp_path.glob("epoch-*.json")
    doc = json.loads(path.read_text())
    validate(doc, path)
    assert sorted(r["method"] for r in doc["results"]) == sorted(METHODS)
    assert all(r["images_per_s"] > 0 for r in doc["results"])
