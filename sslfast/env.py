"""Environment capture: printed by `sslfast env` and embedded in every results JSON."""

from __future__ import annotations

import argparse
import datetime as _dt
import functools
import json
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path

import torch

from .backend import auto_backend, interpreting, triton_available


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def git_sha(path: str | os.PathLike | None = None) -> str | None:
    """Commit of the source tree (with ``-dirty`` when it has uncommitted changes), read once per
    process and folder: a benchmark that writes its results after every run records the commit
    it started from (``sslfast bench`` reads it first), not one made while it ran."""
    where = Path(path).resolve() if path else Path(__file__).resolve().parent
    return _git_sha(str(where))


@functools.cache
def _git_sha(where: str) -> str | None:
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, timeout=10)
        if sha.returncode != 0:
            return os.environ.get("SSLFAST_GIT_SHA")
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=where,
            capture_output=True,
            text=True,
            timeout=10,
        )
        return sha.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return os.environ.get("SSLFAST_GIT_SHA")


def device_name(device: torch.device | str | None = None) -> str:
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"CPU ({cpu}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads)"


def collect(device: torch.device | str | None = None) -> dict:
    """Everything a benchmark number depends on."""
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    info = {
        "sslfast": _version("sslfast"),
        "git_sha": git_sha(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "triton": _version("triton") if triton_available() else None,
        "numpy": _version("numpy"),
        "nvidia_dali": _version("nvidia-dali-cuda130"),
        "device": device_name(device),
        "device_type": device.type,
        "cuda_available": torch.cuda.is_available(),
        "triton_interpret": interpreting(),
        "auto_backend": auto_backend(device),
        "timestamp": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info["gpu_memory_gib"] = round(props.total_memory / 2**30, 1)
        info["compute_capability"] = f"{props.major}.{props.minor}"
    return info


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sslfast env", description=__doc__)
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    info = collect()
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title="sslfast environment", show_header=False)
    for key, value in info.items():
        table.add_row(key, str(value))
    Console().print(table)
    return 0
