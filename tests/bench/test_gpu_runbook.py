"""bench/gpu_run.sh, the GPU-session runbook: valid bash, one stage per device call, no silent default."""

import shutil
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "gpu_run.sh"
pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


def test_script_parses():
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True)


def test_no_stage_is_a_usage_error_not_a_30_minute_run(tmp_path):
    out = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 2
    assert "usage: bash bench/gpu_run.sh STAGE" in out.stderr
    assert not any(tmp_path.iterdir())  # nothing installed or written before the check


def test_every_stage_it_names_is_handled():
    text = SCRIPT.read_text()
    for stage in ("tests", "gate", "gate-full", "losses", "augment", "epoch", "tta", "tta-vit", "all"):
        assert f"\n    {stage})" in text, stage
