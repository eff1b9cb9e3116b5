"""`sslfast bench convergence` harness: real trainer runs, a valid results file, the report's table."""

import json
import os
from pathlib import Path

import pytest

from sslfast.benchmarks.convergence import main
from sslfast.report import tables
from sslfast.report.schema import ResultsError, validate

CIFAR = Path(os.environ.get("SSLFAST_DATA") or Path(__file__).resolve().parents[3] / "shared" / "data")


@pytest.mark.skipif(
    not (CIFAR / "cifar-10-batches-bin").is_dir(),
    reason=f"CIFAR-10 binary data not found at {CIFAR} (set SSLFAST_DATA)",
)
def test_quick_convergence_run_writes_a_valid_report_row(tmp_path, capsys):
    args = ["--quick", "--methods", "simclr", "--vit-methods", "none", "--train-size", "64", "--test-size", "32"]
    assert main([*args, "--data-root", str(CIFAR), "--out", str(tmp_path)]) == 0
    (path,) = tmp_path.glob("convergence-*.json")
    run = validate(json.loads(path.read_text()), path)
    (row,) = run.doc["results"]
    assert row["method"] == "simclr" and row["epochs"] == 1 and not row["diverged"] and row["all_losses_finite"]
    assert [e for e, _ in row["knn_curve"]] == [1] and 0 <= row["untrained_knn_top1"] <= 100
    assert row["gain_points"] == pytest.approx(row["final_knn_top1"] - row["untrained_knn_top1"])
    full, _ = tables.convergence(run)
    assert "| simclr |" in full and "of 1 runs met their target" in full
    assert row["seed"] == 0 and run.variant == "quick"
    assert "[1/1] simclr " in capsys.readouterr().err  # progress: run i of all

    # A sweep: recipe variations (--set) merged into one file that does not supersede the benchmark
    out2 = tmp_path / "var"
    args2 = [*args, "--seed", "1", "--seeds", "2", "--set", "lr=0.2", "--data-root", str(CIFAR), "--out", str(out2)]
    assert main(args2) == 0
    err = capsys.readouterr().err
    assert "[1/2] simclr " in err and "[2/2] simclr " in err  # progress: run i of all
    merged = tmp_path / "merged"
    assert main(["--merge", str(path), *map(str, out2.glob("*.json")), "--sweep", "--out", str(merged)]) == 0
    (mpath,) = merged.glob("convergence-*.json")
    swept = validate(json.loads(mpath.read_text()), mpath)
    assert swept.variant == "sweep, quick" and [r["seed"] for r in swept.doc["results"]] == [0, 1, 2]
    full, summary = tables.convergence(swept)
    # a sweep row names the whole recipe it ran (the short-budget recipe a --set is relative to changes)
    quick = "batch_size=32, proj_hidden=[64], proj_out=32, warmup_epochs=1"
    assert "| simclr (batch_size=32, lr=0.2, proj_hidden=[64], proj_out=32, warmup_epochs=1) |" in full
    assert f"| simclr ({quick}) |" in full
    assert "3 runs of 2 variations" in summary
    assert "- simclr on resnet18_cifar: 2 variation(s), 3 run(s); best mean gain" in summary
    # a row trained for other epochs than its file's (an --epochs shard) says so, in both tables
    doc = json.loads(mpath.read_text())
    doc["results"][1]["epochs"] = 2
    doc["results"][1]["gain_points"] = 99.0
    full, summary = tables.convergence(validate(doc, mpath))
    assert "| simclr (batch_size=32, lr=0.2, proj_hidden=[64], proj_out=32, warmup_epochs=1, epochs=2) |" in full
    # ... and is not ranked above the runs of the file's budget
    assert "best mean gain +99.0" not in summary
    doc["results"][0]["epochs"] = doc["results"][2]["epochs"] = 5  # no run in the budget: all are ranked
    _, summary = tables.convergence(validate(doc, mpath))
    assert "best mean gain +99.0 over seed 1 (batch_size=32, lr=0.2, " in summary
    from sslfast.report import plots

    assert plots.convergence(swept, tmp_path, "s") == []  # its table carries it: no 30-line legend

    # A merge records the commit its shards ran (the report's commit column), not the merging one
    shard = json.loads(path.read_text())
    shard["env"]["git_sha"] = "0123abc"
    shards = [tmp_path / "s1.json", tmp_path / "s2.json"]
    for seed, s in enumerate(shards):
        shard["results"][0]["seed"] = seed
        s.write_text(json.dumps(shard))
    assert main(["--merge", *map(str, shards), "--out", str(tmp_path / "m2")]) == 0
    (m2,) = (tmp_path / "m2").glob("convergence-*.json")
    doc = json.loads(m2.read_text())
    assert doc["env"]["git_sha"] == "0123abc" and doc["shard_git_shas"] == ["0123abc"]
    # shards of different commits: "mixed", not the merging process's commit
    shard["env"]["git_sha"] = "4567def"
    shard["results"][0]["seed"] = 2
    shards[1].write_text(json.dumps(shard))
    assert main(["--merge", *map(str, shards), "--out", str(tmp_path / "m4")]) == 0
    (m4,) = (tmp_path / "m4").glob("convergence-*.json")
    mixed = validate(json.loads(m4.read_text()), m4)
    assert mixed.doc["shard_git_shas"] == ["0123abc", "4567def"] and mixed.commit == "mixed: see shard_git_shas"
    # merged again with a new shard, it keeps its shards' commits (not its own "mixed")
    shard["env"]["git_sha"] = "89abcde"
    shard["results"][0]["seed"] = 3
    shards[1].write_text(json.dumps(shard))
    assert main(["--merge", str(m4), str(shards[1]), "--out", str(tmp_path / "m5")]) == 0
    (m5,) = (tmp_path / "m5").glob("convergence-*.json")
    assert json.loads(m5.read_text())["shard_git_shas"] == ["0123abc", "4567def", "89abcde"]
    with pytest.raises(SystemExit):
        main(["--sweep"])


def test_schema_rejects_a_diverged_row_with_an_accuracy():
    row = dict(method="vicreg", backbone="resnet18_cifar", epochs=3, untrained_knn_top1=20.0, knn_curve=[[1, 30.0]])
    row.update(final_knn_top1=30.0, all_losses_finite=False, diverged=True)
    doc = {
        "benchmark": "convergence",
        "env": dict(
            device="cpu", device_type="cpu", torch="x", triton=None, git_sha=None, timestamp="2026-01-01T00:00:00"
        ),
        "results": [row],
    }
    with pytest.raises(ResultsError, match="a diverged run has no final_knn_top1"):
        validate(doc)
    row.update(diverged=False, all_losses_finite=True, knn_curve=[[2, 30.0], [1, 31.0]])
    with pytest.raises(ResultsError, match="epochs must increase"):
        validate(doc)
    row["knn_curve"] = [[1, 30.0], [2, 31.0]]
    validate(doc)
    row["seed"] = None  # merge sorts rows by seed: a row says which, or leaves it to config.seed
    with pytest.raises(ResultsError, match="seed"):
        validate(doc)


@pytest.mark.parametrize(
    "item, message",
    [
        ("epochs=10", "--set epochs: the benchmark sets this field of every run; use --epochs"),
        ("out=x", "--set out: the benchmark sets this field of every run; use --runs-dir"),
        ("knn_every=2", "--set knn_every: the benchmark sets this field of every run"),
        ("lr_sclaing=sqrt", "--set lr_sclaing: not a TrainConfig field; valid fields: "),
        ("lr", "--set takes FIELD=VALUE, got 'lr'"),
        ("batch_size=8", "--set batch_size and --batch-size both set the batch; give one"),
    ],
)
def test_set_refuses_fields_the_benchmark_sets_and_unknown_fields(item, message, capsys):
    # --set epochs=10 used to reach TrainConfig twice and end in an internal-error traceback
    with pytest.raises(SystemExit) as exc:
        main(["--methods", "vicreg", "--vit-methods", "none", "--batch-size", "16", "--set", item])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


@pytest.mark.parametrize(
    "item, message",
    [
        ("pred_lr_scale=10", "vicreg: pred_lr_scale applies to methods with a predictor, but method 'vicreg' has none"),
        ("pred_lr_scale=abc", "simsiam: pred_lr_scale must be a finite number"),
    ],
)
def test_every_runs_config_is_checked_before_the_first_run(tmp_path, item, message):
    # simsiam runs first and its data root does not exist: without the check up front the
    # benchmark would start simsiam (and fail on its data, or train it for minutes) before vicreg
    args = ["--methods", "simsiam,vicreg", "--vit-methods", "none", "--set", item]
    with pytest.raises(SystemExit) as exc:
        main([*args, "--data-root", str(tmp_path / "missing"), "--out", str(tmp_path)])
    assert message in str(exc.value) and not list(tmp_path.glob("*.json"))


def test_the_small_vit_takes_its_own_recipe_changes():
    # EMP-SSL's cited recipe is LARS on a ResNet; on the ViT the benchmark trains it with AdamW
    from sslfast.benchmarks.convergence import SHORT_BUDGET_VIT, entries, parse_args, run_config

    args = parse_args(["--methods", "emp_ssl,vicreg", "--vit-methods", "emp_ssl,vicreg", "--set", "num_views=2"])
    cfgs = {(m, b["backbone"]): run_config(m, b, args, Path("unused"), seed) for m, b, seed in entries(args)}
    vit = cfgs["emp_ssl", "vit_tiny"]
    assert (vit.optimizer, vit.lr, vit.weight_decay, vit.warmup_epochs) == ("adamw", 2e-3, 0.05, 1)
    assert vit.num_views == 2  # --set still applies on top
    resnet = cfgs["emp_ssl", "resnet18_cifar"]
    assert (resnet.optimizer, resnet.lr, resnet.warmup_epochs) == (None, None, None)  # the method's own
    assert cfgs["vicreg", "vit_tiny"].optimizer is None and set(SHORT_BUDGET_VIT) == {"emp_ssl"}


def test_seeds_run_every_method_per_seed_in_seed_order():
    from sslfast.benchmarks.convergence import entries, parse_args, run_config

    args = parse_args(["--methods", "vicreg,simclr", "--vit-methods", "emp_ssl", "--seed", "3", "--seeds", "2"])
    todo = entries(args)
    assert [(m, b["backbone"], s) for m, b, s in todo] == [
        ("vicreg", "resnet18_cifar", 3),
        ("simclr", "resnet18_cifar", 3),
        ("emp_ssl", "vit_tiny", 3),
        ("vicreg", "resnet18_cifar", 4),
        ("simclr", "resnet18_cifar", 4),
        ("emp_ssl", "vit_tiny", 4),
    ]
    assert [run_config(m, b, args, Path("unused"), s).seed for m, b, s in todo] == [3, 3, 3, 4, 4, 4]


def test_seeds_must_be_positive(capsys):
    from sslfast.benchmarks.convergence import parse_args

    with pytest.raises(SystemExit):
        parse_args(["--seeds", "0"])
    assert "--seeds must be at least 1, got 0" in capsys.readouterr().err


def _row(method, seed, gain, target=5.0, diverged=False, batch_size=32):
    return dict(
        method=method,
        backbone="resnet18_cifar",
        epochs=3,
        batch_size=batch_size,
        seed=seed,
        untrained_knn_top1=20.0,
        knn_curve=[] if diverged else [[1, 20.0 + gain]],
        final_knn_top1=None if diverged else 20.0 + gain,
        gain_points=None if diverged else gain,
        target_gain_points=target,
        all_losses_finite=not diverged,
        diverged=diverged,
    )


def _doc(rows, **extra):
    env = dict(device="cpu", device_type="cpu", torch="x", triton=None, git_sha=None, timestamp="2026-01-01T00:00:00")
    return {"benchmark": "convergence", "env": env, "config": {"epochs": 3}, "results": rows, **extra}


def test_several_seeds_are_judged_on_each_methods_mean_gain():
    rows = [
        _row("vicreg", 0, 6.0),
        _row("vicreg", 1, 4.0),
        _row("vicreg", 2, 8.0),  # mean 6.0: met, though seed 1 alone misses
        _row("byol", 0, 7.0),
        _row("byol", 1, 1.0),  # mean 4.0: missed, though seed 0 alone meets it
        _row("barlow_twins", 0, 9.0),
        _row("barlow_twins", 1, 0.0, diverged=True),  # a diverged seed fails the method, and leaves no mean
        _row("simclr", 0, 9.0),  # one seed of a cut-off run: no spread to show
    ]
    full, summary = tables.convergence(validate(_doc(rows)))
    assert (
        "| vicreg | resnet18_cifar | 32 | 0, 1, 2 | +6.0, +4.0, +8.0 | +6.0 ± 2.0 | 2 of 3 | ✓ (target ≥ 5.00) |"
        in full
    )
    assert "| byol | resnet18_cifar | 32 | 0, 1 | +7.0, +1.0 | +4.0 ± 4.2 | 1 of 2 | ✗ (target ≥ 5.00) |" in full
    assert "| barlow_twins | resnet18_cifar | 32 | 0, 1 | +9.0, — | — | 1 of 2 | ✗ non-finite loss |" in full
    assert "| simclr | resnet18_cifar | 32 | 0 | +9.0 | +9.0 (one seed) | 1 of 1 | ✓ (target ≥ 5.00) |" in full
    assert "5 of 8 runs met their target" in full
    assert "2 of 4 method/backbone recipes met their target on their mean gain over seeds" in full
    # the README gets the per-method summary; the per-seed table stays in the report
    assert "2 of 4 method/backbone recipes" in summary and "| kNN after each epoch (%) |" not in summary
    # one seed per method: no summary, the per-run verdicts as before
    one, same = tables.convergence(validate(_doc(rows[:1] + rows[3:4])))
    assert one == same and "on their mean gain" not in one and "2 of 2 runs met their target" in one


def test_only_seeds_of_one_recipe_are_averaged():
    # two batch sizes of one method, one seed each (an older file merged from shards): two recipes,
    # not two seeds of one; rows written before rows carried a seed take the file's
    rows = [_row("barlow_twins", 0, -5.0), _row("barlow_twins", 0, -4.1, batch_size=64)]
    for r in rows:
        del r["seed"]
    full, _ = tables.convergence(validate(_doc(rows, config={"epochs": 3, "seed": 2})))
    assert "on their mean gain" not in full and "± " not in full
    assert full.count("| barlow_twins | resnet18_cifar | 2 | 3 |") == 2


def test_a_sweep_ranks_variations_by_their_mean_over_seeds():
    rows = [
        _row("byol", 0, 9.0) | {"overrides": {"lr": 0.3}},  # one lucky seed ...
        _row("byol", 1, -3.0) | {"overrides": {"lr": 0.3}},  # ... of a variation whose mean is +3.0
        _row("byol", 0, 4.0) | {"overrides": {"lr": 0.1}},
        _row("byol", 1, 5.0) | {"overrides": {"lr": 0.1}},
    ]
    _, summary = tables.convergence(validate(_doc(rows, sweep=True)))
    assert "4 runs of 2 variations" in summary
    best = "+4.5 ± 0.7 over seeds 0, 1 (lr=0.1; recipe not recorded)"  # an older row: no recipe field
    assert f"- byol on resnet18_cifar: 2 variation(s), 4 run(s); best mean gain {best}\n" in summary
    # a variation run on one seed can top the mean: the best over several seeds is named beside it
    rows.append(_row("byol", 0, 6.0) | {"recipe": {"optimizer": "adamw", "batch_size": 32}})
    _, summary = tables.convergence(validate(_doc(rows, sweep=True)))
    lucky = "+6.0 over seed 0 (batch_size=32, optimizer=adamw)"
    assert f"best mean gain {lucky}; over several seeds {best}\n" in summary


def test_rows_of_one_recipe_are_its_seeds_however_it_was_given():
    # a --set on one day's short-budget recipe and the same values as a later default ran one recipe
    adamw = {"optimizer": "adamw", "lr": 0.016}
    via_set = _row("byol", 0, 1.9) | {"overrides": {"optimizer": "adamw"}, "recipe": adamw}
    default = _row("byol", 1, 1.9) | {"overrides": {}, "recipe": dict(reversed(adamw.items()))}
    older = _row("byol", 2, -2.5) | {"overrides": {}}  # no recipe recorded: not counted among them
    for sweep in (True, False):
        groups = tables.convergence_groups(validate(_doc([via_set, default, older], sweep=sweep)))
        assert sorted(len(g) for g in groups.values()) == [1, 2]
    full, _ = tables.convergence(validate(_doc([via_set, default, older])))
    assert "| byol (lr=0.016, optimizer=adamw) | resnet18_cifar | 32 | 0, 1 | +1.9, +1.9 | +1.9 ± 0.0 |" in full
    assert "| byol (recipe not recorded) | resnet18_cifar | 32 | 2 | -2.5 | -2.5 (one seed) |" in full
    # one recipe given one way throughout keeps its short label in a benchmark
    full, _ = tables.convergence(validate(_doc([default, default | {"seed": 2}])))
    assert "| byol | resnet18_cifar | 32 | 1, 2 |" in full


def test_the_plot_names_a_diverged_seed_and_keeps_its_methods_entry(tmp_path, monkeypatch):
    from sslfast.report import plots

    figs = []
    monkeypatch.setattr(plots, "_save", lambda fig, out, name: figs.append(fig) or [name])
    rows = [_row("vicreg", 0, 0.0, diverged=True), _row("vicreg", 1, 6.0), _row("vicreg", 2, 7.0)]
    run = validate(_doc(rows, config={"epochs": 3, "train_size": 320}))
    assert plots.convergence(run, tmp_path, "c") == ["c-knn.png"]
    (fig,) = figs
    labels = [t.get_text() for ax in fig.axes if ax.get_legend() for t in ax.get_legend().get_texts()]
    # the diverged seed is named as such; the method's finite seeds keep one entry, their mean
    assert labels == ["vicreg DIVERGED (seed 0)", "vicreg (2 seeds)"]
    assert "mean over 3 seeds" in fig._suptitle.get_text()
    acc_ax = fig.axes[0]
    mean = next(line for line in acc_ax.get_lines() if line.get_label() == "vicreg (2 seeds)")
    assert list(mean.get_xdata()) == [0, 1] and list(mean.get_ydata()) == [0.0, 6.5]  # gains 6 and 7


def test_merging_seed_shards_records_every_seed_and_refuses_a_run_twice(tmp_path):
    paths = []
    for seed in (1, 0):
        notes = [f"CIFAR-10: first 5000 training images, kNN (k=200) ... as the bank; one seed ({seed})"]
        if seed == 1:
            notes.append("incomplete: 0 of 2 runs finished when this was written")
        config = {"epochs": 3, "seed": seed, "seeds": [seed], "train_size": 5000, "test_size": 1000}
        doc = _doc([_row("vicreg", seed, 6.0)], config=config, notes=notes)
        paths.append(tmp_path / f"s{seed}.json")
        paths[-1].write_text(json.dumps(doc))
    assert main(["--merge", *map(str, paths), "--out", str(tmp_path / "m")]) == 0
    (merged,) = (tmp_path / "m").glob("convergence-*.json")
    doc = json.loads(merged.read_text())
    assert [r["seed"] for r in doc["results"]] == [0, 1]
    assert doc["config"]["seed"] == 0 and doc["config"]["seeds"] == [0, 1]
    assert doc["notes"][0].endswith("training images as the bank; seeds 0 to 1")  # not shard 1's "one seed (1)"
    # the budget is the one most rows ran, not the first shard's: a 10-epoch shard given first
    ten = _doc([_row("vicreg", 5, 4.0) | {"epochs": 10}], config={"epochs": 10, "seed": 5})
    (tmp_path / "ten.json").write_text(json.dumps(ten))
    assert main(["--merge", str(tmp_path / "ten.json"), *map(str, paths), "--sweep", "--out", str(tmp_path / "t")]) == 0
    (t,) = (tmp_path / "t").glob("convergence-*.json")
    assert json.loads(t.read_text())["config"]["epochs"] == 3
    assert not any("one seed" in n for n in doc["notes"])
    assert "s1.json: incomplete: 0 of 2 runs finished when this was written" in doc["notes"]
    # the same --set and seed on another recipe (SHORT_BUDGET changed between sweeps) is another run
    for i, proj_out in enumerate((2048, 128)):
        doc = json.loads(paths[1].read_text())
        doc["results"][0]["recipe"] = {"proj_out": proj_out}
        (tmp_path / f"r{i}.json").write_text(json.dumps(doc))
    assert main(["--merge", str(tmp_path / "r0.json"), str(tmp_path / "r1.json"), "--out", str(tmp_path / "r")]) == 0
    (r,) = (tmp_path / "r").glob("convergence-*.json")
    groups = tables.convergence_groups(validate(json.loads(r.read_text()), r))
    assert sorted(len(g) for g in groups.values()) == [1, 1]  # two recipes of one seed each, not two seeds
    # a row that records its recipe beside one that does not, same --set: maybe two recipes; a
    # benchmark refuses to average them, a sweep keeps them apart
    mix = [str(tmp_path / "r0.json"), str(paths[1])]
    with pytest.raises(SystemExit, match="records its recipe in one of .* but not in the other"):
        main(["--merge", *mix, "--out", str(tmp_path / "mix")])
    assert main(["--merge", *mix, "--sweep", "--out", str(tmp_path / "mix")]) == 0
    # the same run twice (a shard given twice) would count twice in the mean: refused
    with pytest.raises(SystemExit, match=r"vicreg on resnet18_cifar seed 1 \(the recipe\) is in both .*s1.json"):
        main(["--merge", str(paths[0]), str(paths[0]), "--out", str(tmp_path / "m3")])
