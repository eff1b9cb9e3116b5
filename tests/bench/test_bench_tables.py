"""Every benchmark's console table fits 80 columns (issue 13 item 5) and every numeric flag of
`sslfast bench augment/epoch` is checked up front with `sslfast bench <x>: error: ...`."""

import pytest

from sslfast.benchmarks import augment, epoch
from sslfast.cli import main as cli


def _width(text: str) -> int:
    return max(len(line) for line in text.splitlines())


def test_augment_table_fits_80_columns():
    rows = [
        {
            "preset": "emp-ssl-20patch",
            "n_views": 20,
            "view_size": 32,
            "baseline": {"views_per_s": 12345.6, "backend": "DataLoader+PIL, 16 workers", "n_images": 2048},
            "dali": {
                "views_per_s": 1.5e5,
                "backend": "DALI GPU backend",
                "n_images": 2048,
                "speedup_vs_baseline": 12.2,
            },
            "fused": {
                "views_per_s": 12_345_678.9,
                "backend": "triton kernel on NVIDIA H200, bfloat16 out, 50000 images per epoch",
                "n_images": 50000,
                "speedup_vs_baseline": 1000.1,
            },
        }
    ]
    text = augment.format_table(rows, "cuda")
    assert _width(text) <= 80, text
    assert "12,345,679" in text and "1000.10x" in text and "bfloat16" in text and "epoch" in text  # wrapped, not cut


def test_epoch_table_fits_80_columns():
    row = {"images_per_s": 123456.7, "seconds_per_epoch": 1234.5, "step_ms": 12345.6, "warmup_s": 123.4}
    rows = [
        {"method": "barlow_twins", "pipeline": "ours", **row},
        {"method": "barlow_twins", "pipeline": "reference", **row},
    ]
    text = epoch.format_table(rows, {"barlow_twins": 12.34}, "cuda")
    assert _width(text) <= 80, text
    assert "12.34x" in text and "123456.7" in text


@pytest.mark.parametrize(
    "bench, argv, flag",
    [
        ("augment", ["--images", "-1"], "--images"),
        ("augment", ["--batch-size", "0"], "--batch-size"),
        ("augment", ["--epochs", "0"], "--epochs"),
        ("augment", ["--workers", "-2"], "--workers"),
        ("augment", ["--fused-images", "x"], "--fused-images"),
        ("augment", ["--presets", "nope"], "--presets"),
        ("augment", ["--paths", "baseline,gpu"], "--paths"),
        ("epoch", ["--steps", "0"], "--steps"),
        ("epoch", ["--warmup", "-1"], "--warmup"),
        ("epoch", ["--batch-size", "-8"], "--batch-size"),
        ("epoch", ["--width", "0"], "--width"),
        ("epoch", ["--subset", "0"], "--subset"),
        ("epoch", ["--workers", "-1"], "--workers"),
    ],
)
def test_bad_numeric_flags_are_refused(bench, argv, flag, capsys):
    assert cli(["bench", bench, *argv]) == 2
    err = capsys.readouterr().err
    assert f"sslfast bench {bench}: error:" in err and flag in err, err
    assert "Traceback" not in err


def _run(kind: str, device: str, device_type: str, results: list[dict]):
    from sslfast.report.schema import validate

    env = {
        "device": device,
        "device_type": device_type,
        "torch": "2.11.0+cu130",
        "triton": "3.6.0",
        "git_sha": "0123456789abcdef",
        "timestamp": "2026-12-05T22:00:00+00:00",
    }
    return validate({"benchmark": kind, "env": env, "results": results})


@pytest.mark.parametrize("gpu", [False, True])
def test_report_summaries_of_losses_fit_80_columns(gpu):
    from sslfast.report import tables

    row = {"mode": "fwd+bwd", "median_ms": 12345.678, "speedup_vs_reference": 123.4, "speedup_vs_lightly": 56.7}
    results = [
        {"loss": "multicrop_infonce", "V": 8, "B": 1024, "N": 8192, "D": 256, "impl": "triton", **row},
        {"loss": "moco", "B": 256, "K": 65536, "D": 128, "impl": "torch", **row, "flop_ratio_vs_reference": 12.0},
        {"loss": "barlow_twins", "N": 4096, "D": 2048, "impl": "triton", **row, "bytes_peak_fraction": 0.87},
    ]
    run = _run("losses", "NVIDIA H200" if gpu else "CPU (AMD EPYC, 2 cores)", "cuda" if gpu else "cpu", results)
    full, summary = tables.losses(run)
    table_lines = [line for line in summary.splitlines() if line.startswith("|")]
    assert table_lines and max(len(line) for line in table_lines) <= 80, summary
    assert ("87% mem" if gpu else "12.0×") in summary and "`multicrop_infonce`:" in summary
    assert "0123456" in summary.splitlines()[0]  # device, versions and commit above the table
    assert "× vs lightly" in full


def test_report_summary_of_augment_fits_80_columns():
    from sslfast.report import tables

    path = {"views_per_s": 12_345_678.9, "backend": "triton on NVIDIA H200", "speedup_vs_baseline": 1234.5}
    row = {"preset": "emp-ssl-20patch", "n_views": 20, "view_size": 32, "fused": path}
    row["baseline"] = {"views_per_s": 12345.6, "backend": "DataLoader+PIL, 16 workers"}
    _, summary = tables.augment(_run("augment", "NVIDIA H200", "cuda", [row]))
    table_lines = [line for line in summary.splitlines() if line.startswith("|")]
    assert max(len(line) for line in table_lines) <= 80, summary
