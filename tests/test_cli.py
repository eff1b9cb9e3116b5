"""The `sslfast` command line: env, dispatch errors, and the quick loss benchmark end to end."""

import json
import subprocess
import sys

import pytest

from sslfast.cli import main


def run_cli(*args, **kw):
    return subprocess.run(
        [sys.executable, "-m", "sslfast.cli", *args], capture_output=True, text=True, timeout=600, **kw
    )


def test_env_reports_backend_and_interpreter():
    out = run_cli("env", "--json")
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout)
    for key in ("torch", "triton", "device", "triton_interpret", "auto_backend", "git_sha"):
        assert key in info
    assert info["auto_backend"] in ("torch", "triton")


def test_unknown_commands_fail_clearly(capsys):
    assert main(["frobnicate"]) == 2
    assert "unknown command 'frobnicate'" in capsys.readouterr().err
    assert main(["bench", "nothing"]) == 2
    assert main([]) == 2


@pytest.mark.slow
def test_bench_losses_quick_writes_results(tmp_path):
    out = run_cli("bench", "losses", "--quick", "--out", str(tmp_path), "--max-time", "2")
    assert out.returncode == 0, out.stderr[-3000:]
    (path,) = tmp_path.glob("losses-*.json")
    doc = json.loads(path.read_text())
    assert doc["benchmark"] == "losses" and doc["env"]["git_sha"] is not None
    rows = doc["results"]
    assert {r["loss"] for r in rows} >= {"vicreg", "barlow_twins", "tico", "coding_rate", "emp_ssl"}
    for r in rows:
        assert r["median_ms"] > 0 and r["p20_ms"] <= r["median_ms"] <= r["p80_ms"]
    assert "speedup_vs_reference" in rows[0]
