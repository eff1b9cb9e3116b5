"""`sslfast report`: builds from fixture results (losses, augment, epoch, tta; CPU and a fake H100),
never forms a ratio across files, regenerates the README section idempotently, and rejects
malformed results files with a message naming the file and the problem."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sslfast.report import END, START, build, main
from sslfast.report.schema import ResultsError, load, validate

FIXTURES = Path(__file__).parent / "fixtures" / "report"
ROOT = Path(__file__).resolve().parents[2]
H100 = "NVIDIA H100 80GB HBM3"
CPU = "CPU (AMD EPYC, 2 cores, 2 torch threads)"
README = (
    f"# project\n\nintro stays\n\n## Results\n\n{START}\nhand-typed numbers that must go\n{END}\n\n"
    "## After\ntail stays\n"
)


def rows_of(md: str, first_cell: str) -> list[list[str]]:
    """Cells of the markdown table rows whose first cell is ``first_cell``."""
    return [
        [c.strip() for c in line.strip("|").split("|")]
        for line in md.splitlines()
        if line.startswith(f"| {first_cell} |")
    ]


def section(md: str, title: str) -> str:
    start = md.index(f"## {title}")
    nxt = md.find("\n## ", start + 1)
    return md[start : nxt if nxt > 0 else None]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """One report over every fixture (plots included), with a README copy."""
    tmp = tmp_path_factory.mktemp("report")
    readme = tmp / "README.md"
    readme.write_text(README)
    assert main(["--results", str(FIXTURES), "--out", str(tmp / "out"), "--readme", str(readme)]) == 0
    return tmp / "out", (tmp / "out" / "report.md").read_text(), readme.read_text()


def test_every_fixture_validates():
    for path in sorted(FIXTURES.glob("*.json")):
        assert load(path).kind in ("losses", "augment", "epoch", "tta")


def test_report_tables_name_device_versions_and_commit(built):
    _, md, _ = built
    for title in ("Loss speed and memory", "Augmentation throughput", "Epoch time", "Time to accuracy"):
        assert f"## {title}" in md
    h100 = rows_of(md, "vicreg")
    # every row ends with device | torch | triton | commit
    assert any(r[-4:] == [H100, "2.13.0+cu130", "3.9.0", "`f1x7ure`"] for r in h100)
    assert any(r[-4:] == [CPU, "2.13.0+cpu", "3.9.0", "`56c359b`"] for r in h100)
    for first in ("vicreg", "coding_rate", "cifar-2view (2×32px)", "emp_ssl", "emp_ssl_fast"):
        for row in rows_of(md, first):
            assert row[-4] in (H100, CPU) and row[-1].startswith("`"), row


def test_loss_rows_show_the_runs_own_numbers(built):
    _, md, _ = built
    doc = json.loads((FIXTURES / "losses-h100.json").read_text())
    triton = next(
        r
        for r in doc["results"]
        if r.get("impl") == "triton" and r["mode"] == "fwd+bwd" and r.get("N") == 2048
    )
    row = next(
        r
        for r in rows_of(md, "vicreg")
        if r[1] == "N=2048×D=8192" and r[2] == "fwd+bwd" and r[3] == "triton" and r[-4] == H100
    )
    assert row[4] == f"{triton['median_ms']:.2f}"  # 1.20 ms
    assert row[6] == f"{triton['peak_memory_mb']:.1f}"  # 16.0 MiB
    assert row[7] == "4.00×" and row[8] == f"{triton['speedup_vs_reference_compiled']:.2f}×"
    cpu_rows = [r for r in rows_of(md, "vicreg") if r[-4] == CPU]
    assert cpu_rows and all(r[6] == "not measured on CPU" for r in cpu_rows)
    assert "failed: out of memory" in md  # an error row is shown, not dropped


def test_plots_written_per_run_and_linked(built):
    out, md, _ = built
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert pngs == [
        "augment-cpu-amd-epyc-2-cores-2-torch-threads-float32-throughput.png",
        "epoch-nvidia-h100-80gb-hbm3-time.png",
        "losses-cpu-amd-epyc-2-cores-2-torch-threads-fp32-quick-speedup.png",
        "losses-nvidia-h100-80gb-hbm3-fp32-memory.png",  # peak memory: GPU run only
        "losses-nvidia-h100-80gb-hbm3-fp32-speedup.png",
        "tta-cpu-amd-epyc-2-cores-2-torch-threads-quick-accuracy.png",
        "tta-nvidia-h100-80gb-hbm3-accuracy.png",
    ]
    for name in pngs:
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"]({name})" in md
    assert "Peak memory per loss: not measured on CPU" in md


def test_newest_run_wins_and_older_is_listed_superseded(built):
    _, md, _ = built
    older = json.loads((FIXTURES / "losses-cpu-older.json").read_text())
    assert older["results"][1]["median_ms"] == 999.125  # a number only the older file has
    assert "999" not in section(md, "Loss speed and memory")
    assert "123×" not in section(md, "Loss speed and memory")  # its speedup_vs_reference 123.456
    files = section(md, "Results files")
    assert "`losses-cpu-older.json` | losses" in files
    assert "superseded by `losses-cpu.json`" in files


def test_epoch_ratio_only_within_one_run(built):
    md = section(built[1], "Epoch time")
    (emp,) = rows_of(md, "emp_ssl")
    assert emp[6] == "10.0×"  # reference 20 s / ours 2 s, both from epoch-h100.json
    (simclr,) = rows_of(md, "simclr")
    assert simclr[4:7] == ["—", "—", "—"]  # no reference row in that run: no ratio


def test_tta_mean_std_ratio_and_goals(built):
    _, md, _ = built
    tta = section(md, "Time to accuracy")
    fast = [r for r in rows_of(tta, "emp_ssl_fast") if r[2] == "resnet18"][0]
    assert fast[3] == "3" and fast[4] == "42.0 ± 2.00 s (epoch 8.40)"
    assert fast[5] == "not reached (2/3 seeds)"
    assert fast[7] == "—"  # no --probe-init in that file
    assert fast[10] == "85%: 20.0×, 90%: —"  # 840 s / 42 s, same file; 90%: not every seed crossed
    vit = [r for r in rows_of(tta, "emp_ssl_fast") if r[2] == "vit_tiny"][0]
    assert vit[10] == "85%: —, 90%: —"  # no reference recipe for vit_tiny in that file
    assert "emp_ssl_fast / resnet18: ≥ 85% in ≤ 45.0 s on NVIDIA H100 80GB HBM3: met" in tta
    assert "emp_ssl_fast / vit_tiny: ≥ 85% in ≤ 45.0 s on NVIDIA H100 80GB HBM3: not judged" in tta
    assert "CPU run: the time-to-accuracy goals" in tta


def test_tta_ratio_is_a_lower_bound_when_the_reference_never_crossed(tmp_path):
    doc = json.loads((FIXTURES / "tta-h100.json").read_text())
    for row in doc["results"]:
        if row["pipeline"] == "reference":
            row["thresholds"]["85"] = None  # stopped by --max-train-seconds before reaching 85%
        else:
            row["curve"].insert(0, [0.0, 0, 30.0 + row["seed"]])  # --probe-init: the untrained floor
            row.setdefault("config", {})["linear_probe_features"] = "mean embedding of 16 random patches"
    results = tmp_path / "results"
    results.mkdir()
    (results / "tta-h100.json").write_text(json.dumps(doc))
    build(results, tmp_path / "out", plots=False)
    tta = section((tmp_path / "out" / "report.md").read_text(), "Time to accuracy")
    fast = [r for r in rows_of(tta, "emp_ssl_fast") if r[2] == "resnet18"][0]
    # each reference seed trained 1000 s without reaching 85%: its crossing is > 1000 s, ours 42 s
    assert fast[10] == "85%: > 23.8× (reference not reached), 90%: —"
    assert fast[7] == "31.0 ± 1.00 %"  # untrained top-1 over seeds 0, 1, 2
    assert "- emp_ssl_fast / resnet18: linear probe on mean embedding of 16 random patches\n" in tta
    assert fast[4] == "42.0 ± 2.00 s (epoch 8.40)"  # the 0 s point does not count as a crossing
    (ref,) = [r for r in rows_of(tta, "emp_ssl_official")]
    assert ref[4] == "not reached (0/2 seeds)"


def test_readme_section_generated_between_markers(built):
    _, md, readme = built
    assert "hand-typed numbers" not in readme
    assert readme.startswith("# project\n\nintro stays\n") and readme.endswith(
        f"{END}\n\n## After\ntail stays\n"
    )
    body = readme.split(START)[1].split(END)[0]
    assert "Full report with plots: [out/report.md](out/report.md)" in body
    assert f"GPU numbers were measured on {H100}" in body
    # GPU-measured kinds drop out of the unmeasured list; augment has only a CPU run
    assert "GPU targets not yet measured" in body and "`sslfast bench augment`" in body
    assert "`sslfast bench tta`)" not in body and "`sslfast bench losses`)" not in body


def test_readme_update_is_idempotent_and_output_is_byte_stable(tmp_path, built):
    out, md, readme_once = built
    readme = tmp_path / "README.md"
    shutil.copytree(FIXTURES, tmp_path / "results")
    readme.write_text(README)
    for _ in range(2):
        build(tmp_path / "results", tmp_path / "out", readme)
        assert readme.read_text() == readme_once
    for path in out.iterdir():
        assert (tmp_path / "out" / path.name).read_bytes() == path.read_bytes(), path.name


def test_cpu_only_results_say_so_and_list_gpu_targets(tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    for name in ("losses-cpu.json", "augment-cpu.json", "tta-cpu-quick.json"):
        shutil.copy(FIXTURES / name, results)
    readme = tmp_path / "README.md"
    readme.write_text(README)
    build(results, tmp_path / "out", readme, plots=False)
    body = readme.read_text().split(START)[1].split(END)[0]
    assert "**These are CPU numbers.**" in body and "No results file was measured on a GPU yet" in body
    for kind in ("losses", "augment", "epoch", "tta"):
        assert f"(`sslfast bench {kind}`)" in body
    assert "≥ 85% in ≤ 45 s" in body
    assert "No `epoch` results yet" in body
    assert not list((tmp_path / "out").glob("*.png"))


def test_stale_plots_are_removed_and_others_kept(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "losses-some-old-device-speedup.png").write_bytes(b"old")
    (out / "diagram.png").write_bytes(b"mine")
    results = tmp_path / "results"
    results.mkdir()
    shutil.copy(FIXTURES / "augment-cpu.json", results)
    build(results, out)
    assert not (out / "losses-some-old-device-speedup.png").exists()
    assert (out / "diagram.png").read_bytes() == b"mine"


def test_unknown_benchmark_kind_is_skipped_and_listed(tmp_path, capsys):
    results = tmp_path / "results"
    results.mkdir()
    shutil.copy(FIXTURES / "augment-cpu.json", results)
    doc = json.loads((FIXTURES / "augment-cpu.json").read_text())
    doc["benchmark"] = "frobnicate"
    (results / "frob.json").write_text(json.dumps(doc))
    assert main(["--results", str(results), "--out", str(tmp_path / "out"), "--no-readme", "--no-plots"]) == 0
    assert "skipped" in capsys.readouterr().err
    md = (tmp_path / "out" / "report.md").read_text()
    assert "`frob.json`" in md and "skipped: unknown benchmark kind 'frobnicate'" in md


def _mutate(doc: dict, how: str) -> dict:
    if how == "no-env":
        del doc["env"]
    elif how == "no-results":
        del doc["results"]
    elif how == "no-timestamp":
        del doc["env"]["timestamp"]
    elif how == "median-str":
        doc["results"][2]["median_ms"] = "fast"
    elif how == "results-dict":
        doc["results"] = {"rows": []}
    elif how == "bad-pipeline":
        doc["results"][0]["pipeline"] = "mine"
    elif how == "curve-pair":
        doc["results"][1]["curve"][3] = [1.0, 2.0]
    elif how == "bad-time":
        doc["env"]["timestamp"] = "yesterday"
    return doc


@pytest.mark.parametrize(
    ("fixture", "how", "message"),
    [
        ("losses-h100.json", "no-env", "missing key 'env'"),
        ("losses-h100.json", "no-results", "missing key 'results'"),
        ("augment-cpu.json", "no-timestamp", "missing key 'env.timestamp'"),
        ("losses-h100.json", "median-str", "'results[2].median_ms': expected num, got str \"fast\""),
        ("epoch-h100.json", "results-dict", "'results': expected list, got dict"),
        (
            "epoch-h100.json",
            "bad-pipeline",
            "'results[0].pipeline': expected 'ours' or 'reference', got str \"mine\"",
        ),
        ("tta-h100.json", "curve-pair", "'results[1].curve[3]': expected [seconds, epoch, top1]"),
        ("tta-h100.json", "bad-time", "'env.timestamp': not an ISO 8601 time"),
    ],
)
def test_rejects_malformed_file_naming_file_and_problem(tmp_path, capsys, fixture, how, message):
    results = tmp_path / "results"
    shutil.copytree(FIXTURES, results)
    bad = results / f"bad-{how}.json"
    bad.write_text(json.dumps(_mutate(json.loads((FIXTURES / fixture).read_text()), how)))
    readme = tmp_path / "README.md"
    readme.write_text(README)
    assert main(["--results", str(results), "--out", str(tmp_path / "out"), "--readme", str(readme)]) == 2
    err = capsys.readouterr().err
    assert f"rejected {bad}" in err and message in err, err
    assert "nothing written" in err
    assert not (tmp_path / "out").exists() and readme.read_text() == README


def test_rejects_bad_json_and_non_object(tmp_path):
    bad = tmp_path / "broken.json"
    bad.write_text('{"benchmark": "losses", "env": ')
    with pytest.raises(ResultsError, match=r"broken\.json: not valid JSON: Expecting value: line 1"):
        load(bad)
    with pytest.raises(ResultsError, match=r"x\.json: top level: expected an object, got list"):
        validate([1, 2], "x.json")


def test_readme_without_markers_is_refused_before_writing(tmp_path, capsys):
    readme = tmp_path / "README.md"
    readme.write_text("# no markers\n")
    assert main(["--results", str(FIXTURES), "--out", str(tmp_path / "out"), "--readme", str(readme)]) == 2
    assert "needs exactly one '<!-- results:start -->'" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_real_writer_output_validates(tmp_path):
    """What sslfast.benchmarks.common.write_results writes (env included) passes the schema."""
    from sslfast.benchmarks.common import write_results

    row = {
        "loss": "vicreg",
        "N": 8,
        "D": 4,
        "impl": "torch",
        "mode": "fwd",
        "median_ms": 1.0,
        "peak_memory_mb": None,
    }
    path = write_results("losses", {"quick": True, "dtype": "fp32", "results": [row]}, tmp_path)
    run = load(path)
    assert run.kind == "losses" and run.variant == "fp32, quick"
    for committed in sorted((ROOT / "bench" / "results").rglob("*.json")):
        load(committed)


def test_import_is_light():
    code = "import sys, sslfast.report; print('matplotlib' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip() == "False"
