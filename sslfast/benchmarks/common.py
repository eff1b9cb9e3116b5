"""Timing, memory and results-JSON helpers shared by every benchmark.

GPU: `triton.testing.do_bench` (CUDA events, L2 flushed between runs) for microbenchmarks.
CPU: `time.perf_counter` around each call. Both report the median with p20/p80.
Every JSON written records the device, versions and git sha (`sslfast.env.collect`).
"""

from __future__ import annotations

import json
import math
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

from .._device import sync
from ..env import collect
from ..report.schema import slug, validate

RESULTS_DIR_ENV = "SSLFAST_RESULTS"


def quantiles(samples_ms: list[float]) -> dict:
    s = sorted(samples_ms)

    def q(p: float) -> float:
        # linear interpolation between closest ranks
        pos = p * (len(s) - 1)
        lo, hi = math.floor(pos), math.ceil(pos)
        return s[lo] + (s[hi] - s[lo]) * (pos - lo)

    return {"median_ms": statistics.median(s), "p20_ms": q(0.2), "p80_ms": q(0.8), "n_samples": len(s)}


def time_fn(
    fn: Callable[[], object],
    device: torch.device,
    *,
    warmup: int = 3,
    rep: int = 20,
    min_time_s: float = 0.0,
    max_time_s: float = 10.0,
) -> dict:
    """Median/p20/p80 of ``fn()`` in milliseconds.

    On CUDA this uses triton.testing.do_bench (which flushes L2 and uses CUDA events).
    On CPU it runs ``warmup`` calls (one only when a call is slow), then up to ``rep`` timed
    calls, stopping after at least 3 once ``max_time_s`` is spent.
    """
    if device.type == "cuda":
        from triton.testing import do_bench

        samples = do_bench(fn, warmup=25, rep=100, return_mode="all")
        return quantiles(list(samples))
    t0 = time.perf_counter()
    fn()  # first call: allocation, autotuning, compilation
    first = time.perf_counter() - t0
    for _ in range(warmup - 1 if first * warmup < max_time_s / 4 else 0):
        fn()
    samples: list[float] = []
    start = time.perf_counter()
    while len(samples) < rep:
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1e3)
        elapsed = time.perf_counter() - start
        if len(samples) >= 3 and elapsed > max(min_time_s, max_time_s):
            break
    return quantiles(samples)


def peak_memory_mb(fn: Callable[[], object], device: torch.device) -> float | None:
    """Peak device memory allocated *during* ``fn`` beyond what was live before it (MiB).

    Measured on CUDA only; torch exposes no allocator peak for CPU tensors, so CPU runs
    record None rather than a guess.
    """
    if device.type != "cuda":
        return None
    sync(device)
    torch.cuda.reset_peak_memory_stats(device)
    base = torch.cuda.memory_allocated(device)
    fn()
    sync(device)
    return (torch.cuda.max_memory_allocated(device) - base) / 2**20


def default_results_dir() -> Path:
    if os.environ.get(RESULTS_DIR_ENV):
        return Path(os.environ[RESULTS_DIR_ENV])
    here = Path.cwd() / "bench" / "results"
    return here if here.parent.is_dir() else Path.cwd() / "sslfast-results"


def write_results(
    name: str,
    payload: dict,
    out_dir: str | os.PathLike | None = None,
    device: torch.device | None = None,
    path: Path | None = None,
) -> Path:
    """Write ``{"benchmark": name, "env": ..., **payload}`` as JSON and return its path.

    ``path``: rewrite that file (a long benchmark saving its progress) instead of a new one.
    """
    env = collect(device)
    doc = json.loads(json.dumps({"benchmark": name, "env": env, **payload}, default=str))
    if path is None:
        out = Path(out_dir) if out_dir else default_results_dir()
        out.mkdir(parents=True, exist_ok=True)
        stamp = env["timestamp"].replace(":", "").replace("-", "").replace("+0000", "Z")
        path = out / f"{name}-{slug(env['device'])[:40].strip('-')}-{stamp}.json"
    validate(doc, path)  # the one results contract: a writer never leaves a file the report cannot read
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(doc, indent=2, sort_keys=False))
    tmp.replace(path)
    return path
