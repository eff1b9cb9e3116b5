"""The reduced CPU speed run: end to end, a valid results file, accuracy above chance."""
import json

import pytest

from sslfast.benchmarks.tta import RECIPES, crossings, main
from sslfast.report.schema import validate


def test_crossings_pick_the_first_point_at_or_above_each_threshold():
    curve = [[1.0, 1, 50.0], [2.0, 2, 85.0], [3.0, 3, 84.0], [4.0, 4, 91.0]]
    assert crossings(curve, [85, 90, 95]) == {"85": {"seconds": 2.0, "epoch": 2}, "90": {"seconds": 4.0, "epoch": 4},
                                              "95": None}


def test_recipes_include_the_reference():
    assert RECIPES["emp_ssl_reference"].pipeline == "reference"
    assert RECIPES["emp_ssl_reference"].method == RECIPES["emp_ssl"].method


def test_quick_defaults_to_synthetic_data_but_honours_an_explicit_choice():
    from sslfast.benchmarks.tta import parse_args

    assert parse_args(["--quick"]).data == "synthetic"
    assert parse_args(["--quick", "--data", "cifar10"]).data == "cifar10"
    assert parse_args(["--quick", "--data-root", "/d"]).data == "cifar10"
    full = parse_args([])
    assert (full.data, full.seeds, full.epochs, full.width) == ("cifar10", 3, None, None)
    quick = parse_args(["--quick", "--seeds", "2", "--width", "16", "--probe-epochs", "7"])
    assert (quick.seeds, quick.width, quick.subset, quick.vit_depth) == (2, 16, 512, 2)
    assert (quick.probe_epochs, quick.knn_train, quick.warmup_steps) == (7, 512, 2)  # given values win
    assert (full.probe_epochs, full.knn_train, full.warmup_steps) == (100, 10_000, 20)
    with pytest.raises(SystemExit):
        parse_args(["--seeds", "0"])


def test_summary_counts_seeds_that_crossed_and_their_mean_std_seconds():
    from sslfast.benchmarks.tta import summarise

    def row(seed, t85, final):
        hit = None if t85 is None else {"seconds": t85, "epoch": t85 / 10}
        return {"recipe": "r", "seed": seed, "thresholds": {"85": hit, "90": None},
                "final_linear_top1": final, "train_seconds": 50.0 + seed}

    (s,) = summarise([row(0, 40.0, 86.0), row(1, 44.0, 87.0), row(2, None, 84.0)])
    assert s["runs"] == 3 and s["final_linear_top1_mean_std"] == pytest.approx((257 / 3, (7 / 3) ** 0.5))
    assert s["train_seconds_mean_std"] == (51.0, 1.0)
    assert s["thresholds"]["85"]["seeds_reached"] == 2
    assert s["thresholds"]["85"]["seconds_mean_std"] == pytest.approx((42.0, 8**0.5))
    assert s["thresholds"]["90"] == {"seeds_reached": 0, "seconds_mean_std": (None, None), "epoch_mean": None}


def test_the_untrained_point_is_a_floor_never_a_crossing():
    curve = [[0.0, 0, 40.0], [5.0, 1, 35.0], [9.0, 2, 50.0]]
    assert crossings(curve, [30, 45]) == {"30": {"seconds": 5.0, "epoch": 1}, "45": {"seconds": 9.0, "epoch": 2}}


def test_the_training_budget_can_bind_the_reference_alone():
    from argparse import Namespace

    from sslfast.benchmarks.tta import _budget, _seeds

    args = Namespace(max_train_seconds=None, reference_max_train_seconds=150.0, seeds=3, reference_seeds=1)
    assert _budget(RECIPES["emp_ssl"], args) is None and _budget(RECIPES["emp_ssl_reference"], args) == 150.0
    assert _seeds(RECIPES["emp_ssl"], args) == 3 and _seeds(RECIPES["emp_ssl_reference"], args) == 1
    args.reference_seeds = 0  # 0 means no reference runs, not "fall back to --seeds"
    assert _seeds(RECIPES["emp_ssl_reference"], args) == 0


def test_default_recipes_run_a_second_backbone_and_the_reference():
    from sslfast.benchmarks.tta import DEFAULT_RECIPES

    recipes = [RECIPES[n] for n in DEFAULT_RECIPES]
    assert {r.backbone for r in recipes if r.method == "emp_ssl"} == {"resnet18_cifar", "vit_tiny"}
    assert any(r.pipeline == "reference" for r in recipes)


def test_cpu_size_overrides_reach_the_right_backbone():
    from sslfast.benchmarks.tta import recipe_config
    from sslfast.train.setup import backbone_kwargs

    sizes = dict(width=8, vit_depth=2, vit_dim=48)  # one command line for a ResNet and a ViT recipe
    assert backbone_kwargs(recipe_config(RECIPES["emp_ssl"], sizes)) == {"width": 8}
    vit = backbone_kwargs(recipe_config(RECIPES["emp_ssl_vit_tiny"], sizes))
    assert vit == {"patch_size": 4, "depth": 2, "embed_dim": 48, "img_size": 32}
    assert backbone_kwargs(recipe_config(RECIPES["emp_ssl_vit_tiny"], {})) == {"patch_size": 4, "img_size": 32}


def test_training_budget_stops_the_run_and_still_probes(tmp_path):
    rc = main(["--quick", "--data", "synthetic", "--recipe", "emp_ssl_vit_tiny", "--max-train-seconds", "0",
               "--out", str(tmp_path)])
    assert rc == 0
    (path,) = tmp_path.glob("tta-*.json")
    doc = json.loads(path.read_text())
    validate(doc, path)
    (row,) = doc["results"]
    assert row["backbone"] == "vit_tiny" and row["config"]["backbone_kwargs"]["patch_size"] == 4
    assert row["epochs_run"] == 1 and row["max_train_seconds"] == 0
    assert len(row["curve"]) == 1 and len(row["knn_curve"]) == 1  # the stopped epoch is still evaluated
    assert row["curve"][0][1] == 1


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


def test_finished_runs_survive_a_command_cut_off_by_a_time_limit(tmp_path, monkeypatch):
    from sslfast.benchmarks import tta as speedrun

    real_run, calls = speedrun.RecipeRunner.run_seed, []

    def run_then_die(self, *a, **k):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt  # what `timeout` does to the second seed
        return real_run(self, *a, **k)

    monkeypatch.setattr(speedrun.RecipeRunner, "run_seed", run_then_die)
    with pytest.raises(KeyboardInterrupt):
        main(["--quick", "--recipe", "emp_ssl_vit_tiny", "--seeds", "3", "--epochs", "1", "--out", str(tmp_path)])
    (path,) = tmp_path.glob("tta-*.json")
    doc = json.loads(path.read_text())
    validate(doc, path)
    assert len(doc["results"]) == 1 and doc["results"][0]["seed"] == 0
    assert "incomplete: 1 of 3 timed runs finished when this was written" in doc["notes"]


def test_a_diverged_speed_run_is_flagged_never_reported_as_a_result(tmp_path, monkeypatch, capsys):
    # issue 12: the speed run reads the device-side finite flag at each epoch end (outside the clock)
    from sslfast.train.methods import SSLModel

    real = SSLModel.forward

    def forward(self, views):
        return real(self, views) * float("nan")

    monkeypatch.setattr(SSLModel, "forward", forward)
    rc = main(["--quick", "--recipe", "emp_ssl_vit_tiny", "--epochs", "2", "--warmup-steps", "0",
               "--out", str(tmp_path)])
    assert rc == 1
    assert "diverged (non-finite loss): emp_ssl_vit_tiny seed 0" in capsys.readouterr().err
    (path,) = tmp_path.glob("tta-*.json")
    doc = json.loads(path.read_text())
    validate(doc, path)
    (row,) = doc["results"]
    assert row["diverged"] and "at step 1" in row["divergence"]
    assert row["final_linear_top1"] is None and row["curve"] == [] and row["epochs_run"] == 1
    assert any("DIVERGED" in n for n in doc["notes"])
