"""The reduced CPU speed run: end to end, a valid results file, accuracy above chance."""
import json

import pytest

from sslfast.benchmarks.speedrun import RECIPES, crossings, main
from sslfast.report_schema import validate


def test_crossings_pick_the_first_point_at_or_above_each_threshold():
    curve = [[1.0, 1, 50.0], [2.0, 2, 85.0], [3.0, 3, 84.0], [4.0, 4, 91.0]]
    assert crossings(curve, [85, 90, 95]) == {"85": {"seconds": 2.0, "epoch": 2}, "90": {"seconds": 4.0, "epoch": 4},
                                              "95": None}


def test_recipes_include_the_reference():
    assert RECIPES["emp_ssl_reference"].pipeline == "reference"
    assert RECIPES["emp_ssl_reference"].method == RECIPES["emp_ssl"].method


@pytest.mark.slow
def test_reduced_speedrun_end_to_end(tmp_path):
    rc = main(["--quick", "--data", "synthetic", "--recipe", "emp_ssl", "--recipe", "emp_ssl_reference",
               "--workers", "0", "--out", str(tmp_path)])
    assert rc == 0
    (path,) = tmp_path.glob("tta-*.json")
    doc = json.loads(path.read_text())
    validate(doc, path)  # the report's schema: the report can read it
    assert {r["pipeline"] for r in doc["results"]} == {"ours", "reference"}
    assert doc["code_hash"] and doc["env"]["git_sha"] is not None
    for row in doc["results"]:
        assert row["train_seconds"] > 0 and row["eval_seconds"] > 0
        seconds = [p[0] for p in row["curve"]]
        assert seconds == sorted(seconds)
        # ten balanced classes: chance is 10%; 256 test images give a standard error near 2.5
        # points, and the reduced runs land at 25-36%, so 15% is above chance by ~4 sigma
        assert row["final_linear_top1"] > 15.0, row["curve"]
        assert len(row["knn_curve"]) == 2  # a kNN monitor after each of the 2 epochs
