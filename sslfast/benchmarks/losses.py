"""`sslfast bench losses`: fused vs reference loss speed, memory and cost.

For every case (loss × size) and implementation — the reference (eager), lightly 1.6 (when
installed: the loss a user would otherwise run), the reference under torch.compile, the torch
backend, the triton backend — it times the forward (inputs without grad) and forward+backward
(``torch.autograd.grad`` of the loss), records the median with p20/p80 and peak memory, and the
cost model of ``costs.py``: FLOPs and bytes moved for the row and for the reference, their
ratios, and on CUDA the achieved TFLOP/s, TB/s and fraction of the device's peak. It prints an
80-column table and writes the full JSON under bench/results/. Ratios are taken within one run.
On CPU the triton backend would run on the interpreter, which measures nothing useful, so it is
skipped, and compiling the reference is opt-in (``--compile``).
"""

from __future__ import annotations

import argparse
import gc

import torch

from .._checks import arg_type, check_number
from ..report.schema import loss_size
from .cases import Case, all_cases
from .common import machine_load, peak_memory_mb, text_table, time_fn, wrap_text, write_results
from .costs import counted_cost, device_peak, fused_cost, throughput
from .lightly_ref import lightly_fn, lightly_version

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
REFERENCES = ("reference", "reference_compiled", "lightly")
SHORT_IMPL = {"reference": "reference", "reference_compiled": "ref+compile", "lightly": "lightly 1.6"}


def _implementations(case: Case, device: torch.device, compile_reference: bool, lightly: bool) -> dict:
    impls = {"reference": case.fns["reference"]}
    fn = lightly_fn(case.loss, case.params, device) if lightly else None
    if fn is not None:
        impls["lightly"] = fn
    if compile_reference:
        impls["reference_compiled"] = torch.compile(case.fns["reference"])
    impls["torch"] = case.fns["torch"]
    if device.type == "cuda" and "triton" in case.fns:
        impls["triton"] = case.fns["triton"]
    return impls


def _runner(fn, inputs, backward: bool):
    if not backward:
        return lambda: fn(*inputs)
    # allow_unused: lightly's MoCo keeps its own bank, so the case's bank input is unused there
    return lambda: torch.autograd.grad(fn(*inputs), inputs, allow_unused=True)


def _cost(case: Case, impl: str, run, dtype: torch.dtype, backward: bool, ref_cost: dict | None) -> dict | None:
    """The row's FLOPs and bytes (costs.py): analytic for the fused kernels, counted otherwise."""
    if impl == "triton":
        return fused_cost(case.loss, case.params, dtype, backward)
    if impl == "reference_compiled":  # same products as the eager reference; its fused bytes are not counted
        return None if ref_cost is None else {"flops": ref_cost["flops"], "cost_method": "reference's FLOPs"}
    return counted_cost(run)


def _ratios(row: dict, ref_cost: dict | None) -> None:
    """Reference FLOPs/bytes on every row, and reference ÷ this row (> 1: this row does less)."""
    if ref_cost is None:
        return
    row["reference_flops"], row["reference_bytes"] = ref_cost["flops"], ref_cost["bytes"]
    if row.get("flops"):
        row["flop_ratio_vs_reference"] = ref_cost["flops"] / row["flops"]
    if row.get("bytes"):
        row["bytes_ratio_vs_reference"] = ref_cost["bytes"] / row["bytes"]


def run_case(
    case: Case,
    device: torch.device,
    dtype: torch.dtype,
    *,
    compile_reference: bool,
    modes: tuple[str, ...],
    max_time_s: float,
    lightly: bool = True,
    peak: dict | None = None,
) -> list[dict]:
    gen = torch.Generator().manual_seed(0)
    base = case.make_inputs(device, dtype, gen)
    rows = []
    for mode in modes:
        backward = mode == "fwd+bwd"
        inputs = [x.detach().clone().requires_grad_(backward) for x in base]
        mode_rows: list[dict] = []
        ref_cost = None
        for impl, fn in _implementations(case, device, compile_reference, lightly).items():
            row = {"loss": case.loss, **case.params, "impl": impl, "mode": mode, "dtype": str(dtype).split(".")[-1]}
            try:
                run = _runner(fn, inputs, backward)
                # Counting an eager path calls it once: on CPU that call is also the warm-up call.
                cost = _cost(case, impl, run, dtype, backward, ref_cost)
                warm = device.type == "cpu" and cost is not None and cost["cost_method"] == "counted"
                row.update(time_fn(run, device, max_time_s=max_time_s, warm=warm))
                row["peak_memory_mb"] = peak_memory_mb(run, device)
                if cost:
                    row.update(cost)
                if impl == "reference":
                    ref_cost = cost
                if impl == "torch" and device.type != "cuda":  # what the GPU kernels would do, on a CPU run
                    fused = fused_cost(case.loss, case.params, dtype, backward)
                    if fused:
                        row["fused_flops"], row["fused_bytes"] = fused["flops"], fused["bytes"]
            except torch.OutOfMemoryError as e:  # the reference's D×D or N×N matrices can exceed memory
                row.update({"error": f"out of memory: {str(e).splitlines()[0]}"})
            except Exception as e:  # keep going: one failing case must not hide the others
                row.update({"error": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"})
            _ratios(row, ref_cost)
            if device.type == "cuda":
                row.update(throughput(row, peak))
            mode_rows.append(row)
            gc.collect()
            if device.type == "cuda":
                torch.cuda.empty_cache()
        by_impl = {r["impl"]: r for r in mode_rows if "median_ms" in r}
        for r in mode_rows:  # every ratio is between rows of this mode, measured side by side
            if "median_ms" not in r:
                continue
            for ref, key in (
                ("reference", "speedup_vs_reference"),
                ("reference_compiled", "speedup_vs_reference_compiled"),
                ("lightly", "speedup_vs_lightly"),
            ):
                if ref in by_impl:
                    r[key] = by_impl[ref]["median_ms"] / r["median_ms"]
        rows += mode_rows
    return rows


def _x(value) -> str:
    return "" if value is None else f"{value:.2f}x" if value < 100 else f"{value:.0f}x"


def _si(value) -> str:
    if value is None:
        return ""
    for scale, unit in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= scale:
            return f"{value / scale:.3g}{unit}"
    return f"{value:.3g}"


def _cost_cell(r: dict, gpu: bool) -> str:
    """GPU: the larger fraction of peak (compute or memory) and which; CPU: FLOP ratio vs reference."""
    if gpu:
        f, b = r.get("flops_peak_fraction"), r.get("bytes_peak_fraction")
        if f is None and b is None:
            return "n/a" if "tflops_per_s" in r else ""
        return f"{max(f or 0, b or 0):.0%} {'mem' if (b or 0) >= (f or 0) else 'flop'}"
    return _x(r.get("flop_ratio_vs_reference")) if r["impl"] not in REFERENCES else ""


def format_table(rows: list[dict], title: str, gpu: bool) -> str:
    """The console table: one block per case, at most 80 columns (the JSON has every field)."""
    cases: dict[tuple, list[dict]] = {}
    for r in rows:
        cases.setdefault((r["loss"], loss_size(r)), []).append(r)
    last = "peak" if gpu else "FLOP/ref"
    head = ["mode", "impl", "median ms", "x ref", "x lightly", "FLOP", "bytes", last]
    out = [title]
    for (loss, size), case_rows in cases.items():
        body, errors = [], []
        for r in case_rows:
            impl = SHORT_IMPL.get(r["impl"], r["impl"])
            if "error" in r:
                body.append([r["mode"], impl, "failed", "", "", "", "", ""])
                errors.append(wrap_text(f"{r['mode']} {impl}: {r['error']}", indent=2))
                continue
            body.append(
                [
                    r["mode"],
                    impl,
                    f"{r['median_ms']:.3f}",
                    "" if r["impl"] == "reference" else _x(r.get("speedup_vs_reference")),
                    "" if r["impl"] == "lightly" else _x(r.get("speedup_vs_lightly")),
                    _si(r.get("flops")),
                    _si(r.get("bytes")),
                    _cost_cell(r, gpu),
                ]
            )
        out += ["", f"{loss} {size}", text_table(head, body, right={2, 3, 4, 5, 6, 7}, indent=2), *errors]
    return "\n".join(out)


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
        "--lightly",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="time lightly 1.6's loss as a second reference where it has one (default: on when installed)",
    )
    parser.add_argument(
        "--max-time",
        type=arg_type(float, check_number, min=0, min_open=True),
        default=None,
        help="CPU: seconds per timing at most (> 0; default 2 with --quick, else 10)",
    )
    parser.add_argument(
        "--skip",
        action="append",
        type=_regex,
        default=[],
        metavar="REGEX",
        help="skip cases whose 'loss size' label matches (repeatable), e.g. 'N=32768' or "
        "'vicreg N=2048×D=8192'; recorded in the notes",
    )
    parser.add_argument("--out", default=None, help="results folder (default bench/results/)")
    args = parser.parse_args(argv)

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: torch has no CUDA device here")
    compile_reference = device.type == "cuda" if args.compile_reference is None else args.compile_reference
    modes = ("fwd", "fwd+bwd") if args.mode == "both" else (args.mode,)
    cases = [c for c in all_cases(args.quick) if not args.loss or c.loss in args.loss]
    if not cases:
        parser.error(f"no benchmark case matches --loss {args.loss}")
    notes = []
    skipped = [c for c in cases if any(r.search(case_label(c)) for r in args.skip)]
    cases = [c for c in cases if c not in skipped]
    if skipped:
        notes.append("--skip: not run: " + ", ".join(case_label(c) for c in skipped))
    if not cases:
        parser.error("--skip leaves no benchmark case to run")
    lightly = args.lightly and lightly_version() is not None
    peak = device_peak(torch.cuda.get_device_name(device), args.dtype) if device.type == "cuda" else None
    start_load = machine_load("when the run started")
    if device.type != "cuda":
        notes.append(
            "CPU run: the triton backend is skipped (interpreter timings are meaningless); "
            "peak memory is not measured on CPU; the torch rows carry the fused kernels' analytic "
            "cost as fused_flops / fused_bytes"
        )
    elif peak is None:
        notes.append(
            f"no peak figures for {torch.cuda.get_device_name(device)}: TFLOP/s and TB/s are recorded "
            "but no fraction of peak"
        )
    if not compile_reference:
        notes.append("reference under torch.compile not timed (pass --compile)")
    if not lightly:
        why = "--no-lightly" if not args.lightly else "lightly is not installed (pip install --no-deps lightly==1.6.0)"
        notes.append(f"lightly column skipped: {why}")
    notes.append(
        "cost model (sslfast/benchmarks/costs.py): FLOPs of products and factorisations; bytes: eager "
        "paths = aten op inputs + outputs (counted), fused kernels = analytic minimum"
    )
    if start_load.get("load_warning"):
        notes.append(start_load["load_warning"])
    rows: list[dict] = []
    path = None
    print(f"sslfast bench losses ({device.type}, {args.dtype})", flush=True)
    for k, case in enumerate(cases):
        case_rows = run_case(
            case,
            device,
            DTYPES[args.dtype],
            compile_reference=compile_reference,
            modes=modes,
            max_time_s=args.max_time or (2.0 if args.quick else 10.0),
            lightly=lightly,
            peak=peak,
        )
        rows += case_rows
        # Rewritten after every case, so a run cut off by a time limit keeps what it measured.
        left = len(cases) - k - 1
        progress = [f"incomplete: {left} of {len(cases)} cases not run (cut off)"] if left else []
        payload = {
            "quick": args.quick,
            "dtype": args.dtype,
            "notes": notes + progress,
            "lightly": lightly_version() if lightly else None,
            "device_peak": peak,
            "load_at_start": start_load,
            "results": rows,
        }
        path = write_results("losses", payload, args.out, device, path=path)
        print(format_table(case_rows, "", device.type == "cuda").rstrip(), flush=True)
    for note in notes:
        print(wrap_text(f"note: {note}"))
    print(f"results: {path}")
    return 0


def case_label(case: Case) -> str:
    """'loss size', the label --skip matches, e.g. ``vicreg N=256×D=2048``."""
    return f"{case.loss} {loss_size(case.params)}"


def _regex(text: str):
    import re

    try:
        return re.compile(text)
    except re.error as e:
        raise argparse.ArgumentTypeError(f"not a regular expression: {text!r} ({e})") from None
