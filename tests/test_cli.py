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


# ---------------------------------------------------------------------------------------------
# The error contract of every command (sslfast.cli): user errors -> one line, status 2
# ---------------------------------------------------------------------------------------------


def test_help_and_argparse_errors_return_their_status(capsys):
    assert main(["eval", "--help"]) == 0
    assert "usage: sslfast eval" in capsys.readouterr().out
    assert main(["eval", "--checkpoint", "x.pt", "--k", "zero"]) == 2
    assert "sslfast eval: error: argument --k: expected int, got 'zero'" in capsys.readouterr().err


def test_user_errors_of_any_command_are_one_line(monkeypatch, capsys):
    from sslfast.data_pipelines.datasets import DatasetError

    import sslfast.env

    def fail(argv):
        raise DatasetError("cifar10: /data/x.bin is corrupt")

    monkeypatch.setattr(sslfast.env, "main", fail)
    assert main(["env"]) == 2
    err = capsys.readouterr().err
    assert err == "sslfast env: error: cifar10: /data/x.bin is corrupt\n"


def test_missing_file_names_the_file(monkeypatch, capsys):
    import sslfast.env

    def fail(argv):
        open("/nonexistent/cfg.yaml")

    monkeypatch.setattr(sslfast.env, "main", fail)
    assert main(["env"]) == 2
    assert "sslfast env: error: [Errno 2] No such file or directory: '/nonexistent/cfg.yaml'" in capsys.readouterr().err


def test_plain_value_errors_are_bugs_with_a_traceback(monkeypatch):
    """A ValueError that no check turned into a user error is a bug: it propagates (traceback)."""
    import sslfast.env

    def fail(argv):
        raise ValueError("shapes do not match deep inside")

    monkeypatch.setattr(sslfast.env, "main", fail)
    with pytest.raises(ValueError, match="deep inside"):
        main(["env"])


def test_interrupt_exits_130(monkeypatch, capsys):
    import sslfast.env

    def interrupted(argv):
        raise KeyboardInterrupt

    monkeypatch.setattr(sslfast.env, "main", interrupted)
    assert main(["env"]) == 130
    assert capsys.readouterr().err == "sslfast env: interrupted\n"
    monkeypatch.setenv("SSLFAST_DEBUG", "1")
    with pytest.raises(KeyboardInterrupt):
        main(["env"])


def test_bench_errors_name_the_benchmark(monkeypatch, capsys):
    import sslfast.benchmarks.losses as bench_losses
    from sslfast.train.config import ConfigError

    def fail(argv):
        raise ConfigError("--max-time must be positive")

    monkeypatch.setattr(bench_losses, "main", fail)
    assert main(["bench", "losses"]) == 2
    assert capsys.readouterr().err == "sslfast bench losses: error: --max-time must be positive\n"


def test_user_error_classes_are_resolved_without_imports():
    """Resolving the classes imports nothing: a module never loaded cannot have raised its errors."""
    code = (
        "import sys; from sslfast.cli import user_error_types; user_error_types(); "
        "print('sslfast.train.config' in sys.modules, 'sslfast.report.schema' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.stdout.split() == ["False", "False"], out.stderr


def test_git_sha_is_read_once_per_process_so_results_name_the_commit_a_run_started_from(tmp_path):
    import subprocess

    from sslfast.env import git_sha

    run = lambda *a: subprocess.run(["git", *a], cwd=tmp_path, check=True, capture_output=True)  # noqa: E731
    run("init", "-q")
    (tmp_path / "f.py").write_text("x = 1\n")
    run("add", "f.py")
    run("-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "c")
    first = git_sha(tmp_path)
    assert first and not first.endswith("-dirty")
    (tmp_path / "f.py").write_text("x = 2\n")  # an edit made while a benchmark runs
    assert git_sha(tmp_path) == first
