"""`sslfast bench losses`: fused vs reference loss speed and memory.

For every case (loss × size) and implementation — reference eager, reference under
torch.compile, the torch backend, the triton backend — it times the forward (inputs without
grad) and forward+backward (``torch.autograd.grad`` of the loss), records the median with
p20/p80 and peak memory, prints a table and writes a JSON under bench/results/. Ratios are
taken within one run. On CPU the triton backend would run on the interpreter, which measures
nothing useful, so it is skipped, and compiling the reference is opt-in (``--compile``).
"""

from __future__ import annotations

import argparse
import gc
import sys

import torch

from ..report.schema import loss_size
from .cases import Case, all_cases
from .common import peak_memory_mb, time_fn, write_results

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def _implementations(case: Case, device: torch.device, compile_reference: bool) -> dict:
    impls = {"reference": case.fns["reference"]}
    if compile_reference:
        impls["reference_compiled"] = torch.compile(case.fns["reference"])
    impls["torch"] = case.fns["torch"]
    if device.type == "cuda" and "triton" in case.fns:
        impls["triton"] = case.fns["triton"]
    return impls


def _runner(fn, inputs, backward: bool):
    if not backward:
        return lambda: fn(*inputs)
    return lambda: torch.autograd.grad(fn(*inputs), inputs)


def run_case(
    case: Case,
    device: torch.device,
    dtype: torch.dtype,
    *,
    compile_reference: bool,
    modes: tuple[str, ...],
    max_time_s: float,
) -> list[dict]:
    gen = torch.Generator().manual_seed(0)
    base = case.make_inputs(device, dtype, gen)
    rows = []
    for mode in modes:
        backward = mode == "fwd+bwd"
        inputs = [x.detach().clone().requires_grad_(backward) for x in base]
        ref_median = None
        for impl, fn in _implementations(case, device, compile_reference).items():
            row = {"loss": case.loss, **case.params, "impl": impl, "mode": mode, "dtype": str(dtype).split(".")[-1]}
            try:
                run = _runner(fn, inputs, backward)
                row.update(time_fn(run, device, max_time_s=max_time_s))
                row["peak_memory_mb"] = peak_memory_mb(run, device)
            except torch.OutOfMemoryError as e:  # the reference's D×D or N×N matrices can exceed memory
                row.update({"error": f"out of memory: {str(e).splitlines()[0]}"})
            except Exception as e:  # keep going: one failing case must not hide the others
                row.update({"error": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"})
            if impl == "reference" and "median_ms" in row:
                ref_median = row["median_ms"]
            if ref_median and "median_ms" in row:
                row["speedup_vs_reference"] = ref_median / row["median_ms"]
            rows.append(row)
            gc.collect()
            if device.type == "cuda":
                torch.cuda.empty_cache()
        for r in rows:  # ratios against the compiled reference, same run
            comp = next(
                (x for x in rows if x["impl"] == "reference_compiled" and x["mode"] == mode and "median_ms" in x), None
            )
            if comp and r["mode"] == mode and "median_ms" in r:
                r["speedup_vs_reference_compiled"] = comp["median_ms"] / r["median_ms"]
    return rows


def print_table(rows: list[dict], title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for col in ("loss", "size", "mode", "impl", "median ms", "p20–p80 ms", "peak MiB", "× vs ref", "× vs ref compiled"):
        table.add_column(col, justify="right" if "ms" in col or "×" in col or "MiB" in col else "left")
    for r in rows:
        if "error" in r:
            table.add_row(r["loss"], loss_size(r), r["mode"], r["impl"], "—", r["error"][:40], "", "", "")
            continue
        mem = r.get("peak_memory_mb")
        table.add_row(
            r["loss"],
            loss_size(r),
            r["mode"],
            r["impl"],
            f"{r['median_ms']:.3f}",
            f"{r['p20_ms']:.3f}–{r['p80_ms']:.3f}",
            "n/a" if mem is None else f"{mem:.1f}",
            f"{r.get('speedup_vs_reference', float('nan')):.2f}",
            f"{r['speedup_vs_reference_compiled']:.2f}" if "speedup_vs_reference_compiled" in r else "",
        )
    Console().print(table)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="sslfast bench losses", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="a small subset (one size per loss)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="fp32")
    parser.add_argument("--loss", action="append", help="only these losses (repeatable)")
    parser.add_argument("--mode", choices=["fwd", "fwd+bwd", "both"], default="both")
    parser.add_argument(
        "--compile",
        dest="compile_reference",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="also time the reference under torch.compile (default: on for CUDA, off for CPU)",
    )
    parser.add_argument(
        "--max-time", type=float, default=None, help="CPU: seconds per timing at most (default 2 with --quick, else 10)"
    )
    parser.add_argument("--out", default=None, help="results folder (default bench/results/)")
    args = parser.parse_args(argv)

    device = torch.device(args.device)
    compile_reference = device.type == "cuda" if args.compile_reference is None else args.compile_reference
    modes = ("fwd", "fwd+bwd") if args.mode == "both" else (args.mode,)
    cases = [c for c in all_cases(args.quick) if not args.loss or c.loss in args.loss]
    if not cases:
        print(f"no benchmark case matches --loss {args.loss}", file=sys.stderr)
        return 2
    rows = []
    for case in cases:
        rows += run_case(
            case,
            device,
            DTYPES[args.dtype],
            compile_reference=compile_reference,
            modes=modes,
            max_time_s=args.max_time or (2.0 if args.quick else 10.0),
        )
    notes = []
    if device.type != "cuda":
        notes.append(
            "CPU run: the triton backend is skipped (interpreter timings are meaningless); "
            "peak memory is not measured on CPU"
        )
    if not compile_reference:
        notes.append("reference under torch.compile not timed (pass --compile)")
    path = write_results(
        "losses", {"quick": args.quick, "dtype": args.dtype, "notes": notes, "results": rows}, args.out, device
    )
    print_table(rows, f"sslfast bench losses ({device.type}, {args.dtype})")
    for note in notes:
        print(f"note: {note}")
    print(f"results: {path}")
    return 0
