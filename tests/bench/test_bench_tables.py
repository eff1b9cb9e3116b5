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
