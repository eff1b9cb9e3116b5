"""The one results contract: what every benchmark writes and ``sslfast report`` reads.

``validate(doc, path)`` checks a results document; ``benchmarks.common.write_results`` calls it
before writing (a benchmark never leaves a file the report cannot read) and the report calls it
on every file it reads. Keys not listed are allowed (forward compatibility); listed keys must
have the stated types.

Schema (what the report reads; other keys are allowed; ``?`` = optional; ``num`` = int or float)
Every kind: ``{"benchmark": str, "env": {...}, "results": [...]}`` with env (written by
``sslfast.env.collect``) holding at least ``device: str, device_type: str ("cuda" = GPU),
torch: str, triton: str|null, git_sha: str|null, timestamp: ISO 8601 str``. A file merged from
shards (``sslfast bench convergence --merge``) has ``shard_git_shas: [str|null]`` at the top and
the shards' commit as ``git_sha``, or ``"mixed"`` when they differ.

- ``losses`` (sslfast bench losses), top ``quick?: bool, dtype?: str, notes?: [str]``; row:
  ``loss: str, impl: str, mode: str, N?/D?/V?/B?: int`` (at least one), then either
  ``median_ms: num, p20_ms?: num, p80_ms?: num, peak_memory_mb?: num|null,
  speedup_vs_reference?: num, speedup_vs_reference_compiled?: num, speedup_vs_lightly?: num``
  or ``error: str``; the cost model (sslfast/benchmarks/costs.py): ``flops?: int, bytes?: int,
  cost_method?: str, reference_flops?/reference_bytes?: int, flop_ratio_vs_reference?: num,
  bytes_ratio_vs_reference?: num`` (reference ÷ row), ``fused_flops?/fused_bytes?: int`` (CPU
  torch rows: the fused kernels' analytic cost), and on CUDA ``tflops_per_s?, tb_per_s?: num,
  flops_peak_fraction?, bytes_peak_fraction?: num`` (absent for an unknown device). Top level
  also ``lightly?: str|null`` (lightly's version when its column was timed), ``device_peak?:
  {device, tb_per_s, tflops, flops_dtype, source}|null``.
- ``augment`` (sslfast bench augment), top ``config?: {quick?, out_dtype?}, targets?: {note?,
  fused_views_per_s?}``; row: ``preset: str, n_views: int, view_size: int`` and at least one of
  ``baseline/dali/fused: {views_per_s: num, backend: str, n_images?: int,
  speedup_vs_baseline?: num}``.
- ``epoch`` (sslfast bench epoch), top ``quick?: bool, notes?: [str]``; row:
  ``method: str, pipeline: "ours"|"reference", images_per_s: num, s_per_epoch: num,
  backbone?: str``. Put both pipelines of a method (and backbone) in the same file: the
  "× faster" column is reference s_per_epoch / ours s_per_epoch from that file.
- ``tta`` (sslfast bench tta), top ``quick?: bool, notes?: [str]``; one row per timed run:
  ``recipe: str, pipeline: "ours"|"reference", seed: int, backbone: str,
  curve: [[seconds, epoch, top1], ...]`` (training seconds, evaluation excluded, not decreasing;
  top1 in percent), ``thresholds: {"85": {"seconds": num, "epoch": num} | null, ...}`` (keys are
  percent; null = never reached), ``final_linear_top1: num|null`` (percent),
  ``train_seconds: num, eval_seconds: num``. Runs are aggregated over seeds per (backbone,
  pipeline, recipe) as mean ± std; "× faster" = mean seconds of the one reference recipe of that
  backbone in the same file / mean seconds of the recipe. The goals (≥ 85% in ≤ 45 s, ≥ 90% in
  ≤ 180 s, ≥ 3 seeds) are judged on GPU files only.
- ``convergence`` (sslfast bench convergence), top ``quick?: bool, notes?: [str], targets?: {...},
  config?: {...}``; one row per training run: ``method: str, backbone: str, epochs: int,
  untrained_knn_top1: num, knn_curve: [[epoch, top1], ...]`` (epochs increasing, top1 in percent),
  ``final_knn_top1: num|null`` (null for a diverged run), ``gain_points?: num|null,
  target_gain_points?: num, all_losses_finite: bool, diverged: bool, error?: str|null,
  loss_curve?: [[step, loss], ...], views_seen?: int, train_seconds?: num, seed?: int`` (rows
  written before rows carried their seed: ``config.seed``, else 0), ``recipe?: {...}`` (the
  TrainConfig fields the run took beyond the method's defaults); ``config.seeds?: [int]``.
  Rows of one recipe with several seeds are judged on their mean gain.
- ``gate`` (sslfast bench gate: the static sm_90a compile gate, or its GPU twin with ``--launch``),
  top ``quick: bool, target: "sm_90a"|"launch", mode?: str, summary: {...}, known_failures?:
  {...}``; one row per kernel variant: ``kernel: str, passed: bool`` and, for ``sm_90a``,
  ``signature: {arg: type}, constexprs: {...}, num_warps: int, num_stages: int, compiles: bool,
  registers/spill_store_bytes/spill_load_bytes/stack_bytes/smem_bytes: int|null, dot_path:
  str|null, occupancy_blocks_per_sm: int|null, wave_programs: int|null, triton: str,
  checks: {check: bool}, reasons: {check: str}, known: [check], new_failures: [check]``.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import re
import statistics
from dataclasses import dataclass
from pathlib import Path

# Type specs: "str", "int", "num", "bool", "list", "dict"; "|null" also allows None;
# a tuple lists the allowed string values. A key ending in "?" is optional.
ENV = {
    "device": "str",
    "device_type": "str",
    "torch": "str",
    "triton": "str|null",
    "git_sha": "str|null",
    "timestamp": "str",
}
TOP = {
    "losses": {
        "results": "list",
        "quick?": "bool",
        "dtype?": "str",
        "notes?": "list",
        "lightly?": "str|null",
        "device_peak?": "dict|null",
    },
    "augment": {"results": "list", "config?": "dict", "targets?": "dict"},
    "epoch": {"results": "list", "quick?": "bool", "notes?": "list"},
    "tta": {"results": "list", "quick?": "bool", "notes?": "list"},
    "convergence": {"results": "list", "quick?": "bool", "notes?": "list", "targets?": "dict", "config?": "dict"},
    "gate": {"results": "list", "quick": "bool", "target": ("sm_90a", "launch"), "mode?": "str", "summary": "dict",
             "known_failures?": "dict"},
}
LOSS_ROW = {
    "loss": "str",
    "impl": "str",
    "mode": "str",
    "dtype?": "str",
    "N?": "int",
    "D?": "int",
    "V?": "int",
    "B?": "int",
    "K?": "int",
    "median_ms?": "num",
    "p20_ms?": "num",
    "p80_ms?": "num",
    "n_samples?": "int",
    "peak_memory_mb?": "num|null",
    "speedup_vs_reference?": "num",
    "speedup_vs_reference_compiled?": "num",
    "speedup_vs_lightly?": "num",
    "flops?": "int",
    "bytes?": "int",
    "cost_method?": "str",
    "reference_flops?": "int",
    "reference_bytes?": "int",
    "flop_ratio_vs_reference?": "num",
    "bytes_ratio_vs_reference?": "num",
    "fused_flops?": "int",
    "fused_bytes?": "int",
    "tflops_per_s?": "num",
    "tb_per_s?": "num",
    "flops_peak_fraction?": "num",
    "bytes_peak_fraction?": "num",
    "error?": "str",
}
AUGMENT_ROW = {
    "preset": "str",
    "n_views": "int",
    "view_size": "int",
    "baseline?": "dict",
    "dali?": "dict",
    "fused?": "dict",
}
AUGMENT_PATHS = ("baseline", "dali", "fused")
AUGMENT_PATH = {
    "views_per_s": "num",
    "backend": "str",
    "seconds_per_epoch?": "num",
    "n_images?": "int",
    "speedup_vs_baseline?": "num",
}
PIPELINES = ("ours", "reference")
EPOCH_ROW = {
    "method": "str",
    "pipeline": PIPELINES,
    "images_per_s": "num",
    "s_per_epoch": "num",
    "backbone?": "str",
    "batch_size?": "int",
    "dtype?": "str",
}
TTA_RUN = {
    "recipe": "str",
    "pipeline": PIPELINES,
    "seed": "int",
    "backbone": "str",
    "curve": "list",
    "thresholds": "dict",
    "final_linear_top1": "num|null",
    "train_seconds": "num",
    "eval_seconds": "num",
}
CROSSING = {"seconds": "num", "epoch": "num"}
CONVERGENCE_ROW = {
    "method": "str",
    "backbone": "str",
    "epochs": "int",
    "untrained_knn_top1": "num",
    "knn_curve": "list",
    "final_knn_top1": "num|null",
    "gain_points?": "num|null",
    "target_gain_points?": "num",
    "loss_curve?": "list",
    "all_losses_finite": "bool",
    "diverged": "bool",
    "error?": "str|null",
    "views_seen?": "int",
    "train_seconds?": "num",
    "seed?": "int",
    "recipe?": "dict",
}


GATE_ROW = {"kernel": "str", "passed": "bool"}
GATE_COMPILE_ROW = {
    "signature": "dict",
    "constexprs": "dict",
    "num_warps": "int",
    "num_stages": "int",
    "compiles": "bool",
    "registers": "int|null",
    "spill_store_bytes": "int|null",
    "spill_load_bytes": "int|null",
    "stack_bytes": "int|null",
    "smem_bytes": "int|null",
    "dot_path": "str|null",
    "occupancy_blocks_per_sm": "int|null",
    "wave_programs": "int|null",
    "triton": "str",
    "checks": "dict",
    "reasons": "dict",
    "known": "list",
    "new_failures": "list",
}


class ReportError(Exception):
    """A problem the user must fix (missing folder, README without markers, no matplotlib)."""


class ResultsError(ValueError):
    """A results file that cannot be reported; ``str()`` names the file and every problem."""

    def __init__(self, path: str | Path, problems: list[str]):
        self.path, self.problems = str(path), problems
        super().__init__(f"{path}: " + "; ".join(problems))


@dataclass(frozen=True)
class Run:
    """One validated results file."""

    path: Path
    doc: dict

    @property
    def kind(self) -> str:
        return self.doc["benchmark"]

    @property
    def env(self) -> dict:
        return self.doc["env"]

    @property
    def timestamp(self) -> _dt.datetime:
        return _parse_time(self.env["timestamp"])

    @property
    def on_gpu(self) -> bool:
        return self.env["device_type"] == "cuda"

    @property
    def commit(self) -> str:
        sha = self.env.get("git_sha") or "unknown"
        if sha == MIXED_SHA:
            return "mixed: see shard_git_shas"
        return sha[:7] + ("-dirty" if sha.endswith("-dirty") else "")

    @property
    def quick(self) -> bool:
        return bool(self.doc.get("quick", (self.doc.get("config") or {}).get("quick", False)))

    @property
    def variant(self) -> str:
        """What distinguishes runs that must not supersede each other on one device."""
        parts = []
        if self.kind == "losses":
            parts.append(self.doc.get("dtype", "fp32"))
        elif self.kind == "augment":
            parts.append((self.doc.get("config") or {}).get("out_dtype", "float32"))
        elif self.kind == "convergence" and self.doc.get("sweep"):  # recipe variations, apart from the benchmark
            parts.append("sweep")
        elif self.kind == "gate":  # one file per triton version and target must survive
            parts.append(f"{self.doc.get('target')} triton {self.env.get('triton')}")
        if self.quick:
            parts.append("quick")
        return ", ".join(parts)


def _parse_time(text: str) -> _dt.datetime:
    t = _dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return t if t.tzinfo else t.replace(tzinfo=_dt.timezone.utc)


def _type_ok(value, spec) -> bool:
    if isinstance(spec, tuple):
        return value in spec
    if spec.endswith("|null"):
        return value is None or _type_ok(value, spec[:-5])
    if spec == "num":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if spec == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, {"str": str, "bool": bool, "list": list, "dict": dict}[spec])


def _describe(value) -> str:
    text = json.dumps(value)
    return f"{type(value).__name__} {text if len(text) <= 40 else text[:37] + '...'}"


def check(obj, spec: dict, where: str, problems: list[str]) -> bool:
    """Append a message per missing key or wrong type; True when ``obj`` is a dict."""
    if not isinstance(obj, dict):
        problems.append(f"{where or 'top level'}: expected an object, got {_describe(obj)}")
        return False
    for key, want in spec.items():
        optional = key.endswith("?")
        key = key.rstrip("?")
        name = f"{where}.{key}" if where else key
        if key not in obj:
            if not optional:
                problems.append(f"missing key '{name}'")
            continue
        if not _type_ok(obj[key], want):
            shown = " or ".join(repr(v) for v in want) if isinstance(want, tuple) else want.replace("|", " or ")
            problems.append(f"'{name}': expected {shown}, got {_describe(obj[key])}")
    return True


def _check_losses(doc: dict, problems: list[str]) -> None:
    for i, row in enumerate(doc["results"]):
        where = f"results[{i}]"
        if not check(row, LOSS_ROW, where, problems):
            continue
        if "error" not in row and "median_ms" not in row:
            problems.append(f"{where}: needs 'median_ms' (or 'error' for a failed case)")
        if not any(k in row for k in ("N", "D", "V", "B")):
            problems.append(f"{where}: needs a size ('N'/'D' or 'V'/'B'/'D')")


def _check_augment(doc: dict, problems: list[str]) -> None:
    for i, row in enumerate(doc["results"]):
        where = f"results[{i}]"
        if not check(row, AUGMENT_ROW, where, problems):
            continue
        paths = [p for p in AUGMENT_PATHS if p in row]
        if not paths:
            problems.append(f"{where}: needs at least one of {list(AUGMENT_PATHS)}")
        for p in paths:
            check(row[p], AUGMENT_PATH, f"{where}.{p}", problems)


def _check_epoch(doc: dict, problems: list[str]) -> None:
    for i, row in enumerate(doc["results"]):
        check(row, EPOCH_ROW, f"results[{i}]", problems)


def _check_tta(doc: dict, problems: list[str]) -> None:
    for i, run in enumerate(doc["results"]):
        where = f"results[{i}]"
        if not check(run, TTA_RUN, where, problems):
            continue
        if isinstance(run["curve"], list):
            last = -math.inf
            for j, point in enumerate(run["curve"]):
                if not (isinstance(point, list) and len(point) == 3 and all(_type_ok(x, "num") for x in point)):
                    problems.append(f"'{where}.curve[{j}]': expected [seconds, epoch, top1], got {_describe(point)}")
                    break
                if point[0] < last:
                    problems.append(f"'{where}.curve[{j}]': seconds must not decrease")
                    break
                last = point[0]
        if isinstance(run["thresholds"], dict):
            for key, crossing in run["thresholds"].items():
                name = f"{where}.thresholds.{key}"
                try:
                    float(key)
                except ValueError:
                    problems.append(f"'{name}': threshold keys are accuracies in percent like \"85\"")
                if crossing is not None:
                    check(crossing, CROSSING, name, problems)


def _check_convergence(doc: dict, problems: list[str]) -> None:
    for i, row in enumerate(doc["results"]):
        where = f"results[{i}]"
        if not check(row, CONVERGENCE_ROW, where, problems):
            continue
        if isinstance(row["knn_curve"], list):
            last = -math.inf
            for j, point in enumerate(row["knn_curve"]):
                ok = isinstance(point, list) and len(point) == 2 and all(_type_ok(x, "num") for x in point)
                if not ok or not 0 <= point[1] <= 100:
                    problems.append(
                        f"'{where}.knn_curve[{j}]': expected [epoch, top1 in percent], got {_describe(point)}"
                    )
                    break
                if point[0] <= last:
                    problems.append(f"'{where}.knn_curve[{j}]': epochs must increase")
                    break
                last = point[0]
        if row.get("diverged") is True and row.get("final_knn_top1") is not None:
            problems.append(f"'{where}': a diverged run has no final_knn_top1 (got {row['final_knn_top1']!r})")


def _check_gate(doc: dict, problems: list[str]) -> None:
    for i, row in enumerate(doc["results"]):
        where = f"results[{i}]"
        if not check(row, GATE_ROW, where, problems):
            continue
        if doc["target"] == "sm_90a" and check(row, GATE_COMPILE_ROW, where, problems):
            if row["passed"] != (not row["reasons"]):
                problems.append(f"'{where}.passed' disagrees with its reasons {_describe(row['reasons'])}")


CHECKS = {
    "losses": _check_losses,
    "augment": _check_augment,
    "epoch": _check_epoch,
    "tta": _check_tta,
    "convergence": _check_convergence,
    "gate": _check_gate,
}
KINDS = tuple(CHECKS)


def validate(doc, path: str | Path = "<results>") -> Run:
    """Return the validated ``Run`` or raise ResultsError naming ``path`` and every problem.

    An unknown ``benchmark`` kind is not an error here: the caller decides (the report skips it).
    """
    problems: list[str] = []
    if not check(doc, {"benchmark": "str", "env": "dict"}, "", problems):
        raise ResultsError(path, problems)
    if problems:
        raise ResultsError(path, problems)
    check(doc["env"], ENV, "env", problems)
    if isinstance(doc["env"].get("timestamp"), str):
        try:
            _parse_time(doc["env"]["timestamp"])
        except ValueError:
            problems.append(f"'env.timestamp': not an ISO 8601 time: {doc['env']['timestamp']!r}")
    kind = doc["benchmark"]
    if kind in CHECKS and check(doc, TOP[kind], "", problems) and isinstance(doc.get("results"), list):
        CHECKS[kind](doc, problems)
    if problems:
        raise ResultsError(path, problems)
    return Run(Path(path), doc)


def load(path: str | Path) -> Run:
    """Read and validate one results file."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ResultsError(path, [f"not valid JSON: {e}"]) from None
    except (OSError, UnicodeDecodeError) as e:
        raise ResultsError(path, [f"cannot read: {e}"]) from None
    return validate(doc, path)


# ---------------------------------------------------------------------------------------------
# Names and statistics shared by the writers and the report
# ---------------------------------------------------------------------------------------------


def slug(text: str) -> str:
    """File-name form of a device name or variant: lower-case words joined by '-'."""
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower()


def loss_size(row: dict) -> str:
    """The size label of a ``losses`` row, e.g. ``N=256×D=2048``, ``V=8×B=64×D=256`` or ``B=256×K=4096×D=128``."""
    return "×".join(f"{k}={row[k]}" for k in ("V", "B", "N", "K", "D") if k in row)


# env.git_sha of a file merged from shards that ran different commits (listed in shard_git_shas)
MIXED_SHA = "mixed"


def row_seed(row: dict, doc: dict) -> int:
    """A convergence row's seed; rows written before rows carried one ran the file's ``config.seed``."""
    return row["seed"] if row.get("seed") is not None else (doc.get("config") or {}).get("seed", 0)


def mean_std(xs: list[float]) -> tuple[float | None, float | None]:
    """Mean and sample std over seeds (std 0 for one seed), or (None, None) for none."""
    if not xs:
        return None, None
    return statistics.mean(xs), (statistics.stdev(xs) if len(xs) > 1 else 0.0)
