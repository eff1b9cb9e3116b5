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
    warm: bool = False,
) -> dict:
    """Median/p20/p80 of ``fn()`` in milliseconds.

    On CUDA this uses triton.testing.do_bench (which flushes L2 and uses CUDA events).
    On CPU it runs ``warmup`` calls (one only when a call is slow), then up to ``rep`` timed
    calls, stopping after at least 3 once ``max_time_s`` is spent. ``warm``: the caller already
    made the first call (a slow CPU case then costs one call less).
    """
    if device.type == "cuda":
        from triton.testing import do_bench

        samples = do_bench(fn, warmup=25, rep=100, return_mode="all")
        return quantiles(list(samples))
    t0 = time.perf_counter()
    if not warm:
        fn()  # first call: allocation, autotuning, compilation
    first = time.perf_counter() - t0 if not warm else 0.0
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
    env_overrides: dict | None = None,
) -> Path:
    """Write ``{"benchmark": name, "env": ..., **payload}`` as JSON and return its path.

    ``path``: rewrite that file (a long benchmark saving its progress) instead of a new one.
    ``env_overrides``: env fields that describe the measurement better than this process does
    (a merge of shards records the commit the shards ran, not the one that merged them).
    """
    env = {**collect(device), **machine_load(), **(env_overrides or {})}
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


# --- terminal tables ---------------------------------------------------------------------------

TERMINAL_WIDTH = 80


def _wrap_cell(text: str, width: int) -> list[str]:
    import textwrap

    return textwrap.wrap(text, width, break_long_words=True, break_on_hyphens=False) or [""]


def text_table(
    header: list[str],
    rows: list[list[str]],
    right: set[int] = frozenset(),
    width: int = TERMINAL_WIDTH,
    indent: int = 0,
) -> str:
    """A plain-text table at most ``width`` columns wide, whatever the terminal or pipe.

    Columns are separated by one space; ``right`` holds the indices of right-aligned (numeric)
    columns. When the natural width is too wide, the widest left-aligned column is narrowed and
    its cells wrap onto continuation lines, so nothing is cut off (full values stay in the JSON).
    """
    cols = len(header)
    cells = [[str(c) for c in r] for r in [header, *rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(cols)]
    budget = width - indent - (cols - 1)
    wrappable = [i for i in range(cols) if i not in right]
    while sum(widths) > budget and wrappable:
        i = max(wrappable, key=lambda j: widths[j])
        floor = max(len(w) for w in header[i].split()) if header[i] else 1
        if widths[i] <= max(floor, 6):
            wrappable.remove(i)
            continue
        widths[i] -= 1
    lines = []
    for r in cells:
        parts = [_wrap_cell(c, widths[i]) if i not in right else [c] for i, c in enumerate(r)]
        for k in range(max(len(p) for p in parts)):
            out = []
            for i, p in enumerate(parts):
                text = p[k] if k < len(p) else ""
                out.append(text.rjust(widths[i]) if i in right else text.ljust(widths[i]))
            lines.append((" " * indent + " ".join(out)).rstrip())
        if r is cells[0]:
            lines.append(" " * indent + " ".join("-" * w for w in widths))
    return "\n".join(lines)


def wrap_text(text: str, width: int = TERMINAL_WIDTH, indent: int = 0) -> str:
    """``text`` wrapped to ``width`` columns, continuation lines indented by ``indent + 2``."""
    import textwrap

    return textwrap.fill(
        text, width, initial_indent=" " * indent, subsequent_indent=" " * (indent + 2), break_long_words=True
    )


def machine_load(when: str = "when the results were written") -> dict:
    """Torch threads and the load average, with a warning when other work competes for the CPUs."""
    cores = os.cpu_count() or 1
    info: dict = {"torch_threads": torch.get_num_threads(), "cpu_count": cores}
    if hasattr(os, "getloadavg"):
        load = os.getloadavg()
        info["load_average_1_5_15"] = [round(x, 2) for x in load]
        # The benchmark itself keeps up to `cores` busy; more than that means others compete.
        if load[0] > cores + 0.5:
            info["load_warning"] = (
                f"machine loaded: 1-minute load average {load[0]:.1f} on {cores} cores (this run included) "
                f"{when}; other processes shared the CPUs, so absolute times are "
                "inflated: compare ratios measured side by side in this run only"
            )
    return info
