"""`sslfast report`: bench/results/*.json -> a markdown report with PNG plots, and the README's
results section.

    sslfast report [--results bench/results] [--out bench/report] [--readme README.md] [--no-plots]

Rules
- Every ``*.json`` under ``--results`` (recursively) is read and validated. A malformed file
  (bad JSON, a missing key, a wrong type) stops the report: each problem is printed with its file,
  nothing is written, and the exit status is 1. A file whose ``benchmark`` kind is unknown is
  skipped with a message on stderr and listed in the report, so newer benchmarks never break it.
- Runs are grouped by (benchmark, ``env.device``, variant); the variant keeps runs that measure
  different things apart: the dtype for losses, the output dtype for augment, and "quick" for
  reduced runs. Within a group the newest ``env.timestamp`` wins (ties: the later file name); the
  others are listed as superseded. Each table row names its device, torch, triton and commit (short sha).
- Ratios are those stored in one file, or taken between rows of the same file (epoch: ours vs
  reference; tta: ours vs the reference recipe). No ratio is ever formed across files or devices.
- The README text between ``<!-- results:start -->`` and ``<!-- results:end -->`` is replaced by
  a generated summary. Until a GPU run exists it says that every number is a CPU number
  (``env.device_type == "cpu"``), and it lists the GPU targets still unmeasured.
- The output depends only on the files (no clock, no absolute paths): running it twice on the same
  results gives the same bytes. Stale ``<kind>-*.png`` files in ``--out`` are removed.

The results contract (what every benchmark writes and the report reads) is ``sslfast.report.schema``:
writers validate on write (``benchmarks.common.write_results``), the report validates on read.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from . import tables
from .schema import KINDS, ReportError, ResultsError, Run, load, slug

START, END = "<!-- results:start -->", "<!-- results:end -->"
TITLES = {
    "losses": "Loss speed and memory",
    "augment": "Augmentation throughput",
    "epoch": "Epoch time, ours vs reference",
    "tta": "Time to accuracy, CIFAR-10 linear probe",
    "convergence": "Convergence on a short CPU budget, CIFAR-10 kNN",
    "gate": "Static sm_90a gate: every Triton kernel variant compiled for H100/H200",
}
COMMANDS = {k: f"sslfast bench {k}" for k in KINDS}
GPU_TARGETS = {
    "losses": "fused Triton losses vs the reference (eager and torch.compile): time and peak memory",
    "augment": "fused GPU augmentation ≥ 1,000,000 32×32 views/s and ≥ 50× the CPU DataLoader baseline (one H100)",
    "epoch": "epoch time and images/s, ours vs the reference pipeline",
    "tta": "CIFAR-10 linear probe ≥ 85% in ≤ 45 s and ≥ 90% in ≤ 3 min of training on one H100 "
    "(mean ± std over ≥ 3 seeds, plus a second backbone)",
}


@dataclass
class Collection:
    results_dir: Path
    runs: list[Run] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)  # (file, reason)

    def name(self, run_or_path) -> str:
        path = run_or_path.path if isinstance(run_or_path, Run) else run_or_path
        try:
            return path.relative_to(self.results_dir).as_posix()
        except ValueError:
            return path.as_posix()


class InvalidResults(Exception):
    """One or more results files are malformed; ``errors`` holds one ResultsError per file."""

    def __init__(self, errors: list[ResultsError]):
        self.errors = errors
        super().__init__("\n".join(str(e) for e in errors))


def collect(results_dir: str | Path) -> Collection:
    """Load every ``*.json`` under ``results_dir``; raise InvalidResults listing every bad file."""
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise ReportError(f"results folder not found: {results_dir}")
    found, errors = Collection(results_dir), []
    for path in sorted(results_dir.rglob("*.json")):
        try:
            run = load(path)
        except ResultsError as e:
            errors.append(e)
            continue
        if run.kind in KINDS:
            found.runs.append(run)
        else:
            found.skipped.append((path, f"unknown benchmark kind {run.kind!r} (known: {', '.join(KINDS)})"))
    if errors:
        raise InvalidResults(errors)
    return found


def select(runs: list[Run]) -> tuple[list[Run], dict[Path, Run]]:
    """Newest run per (benchmark, device, variant), and {superseded file: the run that replaced it}."""
    groups: dict[tuple[str, str, str], list[Run]] = {}
    for run in runs:
        groups.setdefault((run.kind, run.env["device"], run.variant), []).append(run)
    chosen, superseded = [], {}
    for key in sorted(groups):
        ordered = sorted(groups[key], key=lambda r: (r.timestamp, r.path.name))
        chosen.append(ordered[-1])
        superseded.update({r.path: ordered[-1] for r in ordered[:-1]})
    chosen.sort(key=lambda r: (KINDS.index(r.kind), not r.on_gpu, r.env["device"], r.variant))
    return chosen, superseded


def _stem(run: Run) -> str:
    """PNG name prefix: unique per selected run (kind, device, variant)."""
    return "-".join(p for p in (run.kind, slug(run.env["device"])[:40].strip("-"), slug(run.variant)) if p)


def _heading(run: Run) -> str:
    variant = f" · {run.variant}" if run.variant else ""
    return f"{run.env['device']}{variant}"


def gpu_status(chosen: list[Run]) -> str:
    """The plain statement of which numbers are CPU numbers, and what is still unmeasured on a GPU."""
    gpu_kinds = {r.kind for r in chosen if r.on_gpu}
    if not gpu_kinds:
        text = (
            "**These are CPU numbers.** No results file was measured on a GPU yet (every file has "
            '`env.device_type` = `"cpu"`); they show the code paths work and how they compare on a CPU, '
            "not GPU speed.\n"
        )
    else:
        devices = sorted({r.env["device"] for r in chosen if r.on_gpu})
        text = (
            f"GPU numbers were measured on {', '.join(devices)}. Rows whose device column names a CPU "
            "are CPU numbers.\n"
        )
    missing = [k for k in KINDS if k in GPU_TARGETS and k not in gpu_kinds]  # convergence: CPU evidence
    if missing:
        text += "\nGPU targets not yet measured:\n\n" + "".join(
            f"- {GPU_TARGETS[k]} (`{COMMANDS[k]}`)\n" for k in missing
        )
    return text


def render(
    col: Collection,
    chosen: list[Run],
    superseded: dict[Path, Run],
    plots: dict[Path, list[str]],
    plots_skipped: bool,
) -> tuple[str, str]:
    """(report.md text, README section text)."""
    report = [
        "# sslfast benchmark report\n",
        f"Generated by `sslfast report` from {len(col.runs)} results file(s); do not edit by hand. "
        "Ratios are only those measured within one file; see `sslfast/report.py` for the rules.\n",
        gpu_status(chosen),
    ]
    readme = [gpu_status(chosen)]
    for kind in KINDS:
        runs = [r for r in chosen if r.kind == kind]
        report.append(f"## {TITLES[kind]} (`{kind}`)\n")
        readme.append(f"### {TITLES[kind]}\n")
        if not runs:
            msg = f"No `{kind}` results yet (`{COMMANDS[kind]}`).\n"
            report.append(msg)
            readme.append(msg)
            continue
        for run in runs:
            full, summary = tables.RENDER[kind](run)
            env = run.env
            meta = (
                f"File `{col.name(run)}`, measured {env['timestamp']} on {env['device']} "
                f"(`{env['device_type']}`), torch {env['torch']}, triton {env['triton'] or '—'}, "
                f"commit `{run.commit}`.\n"
            )
            report += [f"### {_heading(run)}\n", meta, full]
            if kind == "losses" and not run.on_gpu:
                report.append("Peak memory per loss: not measured on CPU (no plot).\n")
            report += [f"![{kind} {name}]({name})\n" for name in plots.get(run.path, [])]
            readme += [f"{_heading(run)} (`{col.name(run)}`):\n", summary]
    if plots_skipped:
        report.append("Plots were not drawn (`--no-plots`).\n")
    report.append("## Results files\n")
    rows = [
        [
            f"`{col.name(r)}`",
            r.kind,
            r.env["device"],
            r.variant or "—",
            r.env["timestamp"],
            f"`{r.commit}`",
            f"superseded by `{col.name(superseded[r.path])}`" if r.path in superseded else "reported",
        ]
        for r in sorted(col.runs, key=lambda r: col.name(r))
    ]
    rows += [[f"`{col.name(p)}`", "?", "", "", "", "", f"skipped: {why}"] for p, why in col.skipped]
    report.append(tables.table(["file", "benchmark", "device", "variant", "measured", "commit", "status"], rows))
    return "\n".join(report), "\n".join(readme)


def write_plots(chosen: list[Run], out: Path) -> dict[Path, list[str]]:
    from .plots import PLOT

    written = {r.path: PLOT[r.kind](r, out, _stem(r)) for r in chosen}
    keep = {n for names in written.values() for n in names}
    for old in out.glob("*.png"):
        if old.name.split("-")[0] in KINDS and old.name not in keep:
            old.unlink()
    return written


def _split_readme(readme: Path) -> tuple[str, str, str]:
    """(text before and including START, old section, END and the rest)."""
    if not readme.is_file():
        raise ReportError(f"README not found: {readme}")
    text = readme.read_text(encoding="utf-8")
    if text.count(START) != 1 or text.count(END) != 1 or text.index(START) > text.index(END):
        raise ReportError(f"{readme}: needs exactly one '{START}' line followed by one '{END}' line")
    head, rest = text.split(START)
    body, tail = rest.split(END)
    return head + START, body, END + tail


def update_readme(readme: str | Path, section: str, report_md: str | Path) -> bool:
    """Replace the text between the markers with ``section``; True when the file changed."""
    readme = Path(readme)
    head, old, tail = _split_readme(readme)
    link = Path(os.path.relpath(report_md, readme.parent)).as_posix()
    body = (
        f"\n<!-- generated by `sslfast report` from the results JSON: edits here are overwritten -->\n"
        f"Full report with plots: [{link}]({link}).\n\n{section.strip()}\n"
    )
    if body == old:
        return False
    readme.write_text(head + body + tail, encoding="utf-8")
    return True


def write_report(
    col: Collection,
    out_dir: str | Path = "bench/report",
    readme: str | Path | None = None,
    plots: bool = True,
) -> Path:
    """Write ``out_dir/report.md`` (+ PNGs) for ``col`` and update ``readme``; return the report's path."""
    if readme is not None:
        _split_readme(Path(readme))  # fail before writing anything
    chosen, superseded = select(col.runs)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = write_plots(chosen, out) if plots else {}
    report, section = render(col, chosen, superseded, written, not plots)
    path = out / "report.md"
    path.write_text(report, encoding="utf-8")
    if readme is not None:
        update_readme(readme, section, path)
    return path


def build(
    results_dir: str | Path = "bench/results",
    out_dir: str | Path = "bench/report",
    readme: str | Path | None = None,
    plots: bool = True,
) -> Path:
    """Collect, validate and report. Raises InvalidResults (nothing written) on a malformed file."""
    return write_report(collect(results_dir), out_dir, readme, plots)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="sslfast report", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--results", default="bench/results", help="folder of results JSON (default bench/results)")
    parser.add_argument("--out", default="bench/report", help="where report.md and the PNGs go (default bench/report)")
    parser.add_argument(
        "--readme",
        default=None,
        help="README whose results section is regenerated (default: ./README.md when it has "
        "the markers; an explicit path must have them)",
    )
    parser.add_argument("--no-readme", action="store_true", help="leave every README alone")
    parser.add_argument("--no-plots", action="store_true", help="tables only (no matplotlib needed)")
    args = parser.parse_args(argv)
    readme = args.readme
    if (
        readme is None
        and not args.no_readme
        and Path("README.md").is_file()
        and START in Path("README.md").read_text(encoding="utf-8")
    ):
        readme = "README.md"
    try:
        col = collect(args.results)
        for p, why in col.skipped:
            print(f"sslfast report: skipped {p}: {why}", file=sys.stderr)
        path = write_report(col, args.out, None if args.no_readme else readme, plots=not args.no_plots)
    except InvalidResults as e:  # user errors (sslfast.cli's contract): one message, status 2, no traceback
        for err in e.errors:
            print(f"sslfast report: rejected {err.path}:", file=sys.stderr)
            for problem in err.problems:
                print(f"  - {problem}", file=sys.stderr)
        print(f"sslfast report: error: {len(e.errors)} malformed results file(s); nothing written", file=sys.stderr)
        return 2
    except ReportError as e:
        print(f"sslfast report: error: {e}", file=sys.stderr)
        return 2
    print(f"report: {path}" + (f"\nREADME results section: {readme}" if readme and not args.no_readme else ""))
    return 0
