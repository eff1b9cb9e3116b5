"""`sslfast bench losses`: the cost model (analytic formulas agree with FlopCounterMode where the
torch backend runs the same products), the lightly column, 80-column tables, flag validation."""

import json

import pytest
import torch

from sslfast import functional as F
from sslfast.benchmarks import cases as C
from sslfast.benchmarks.common import text_table
from sslfast.benchmarks.costs import counted_cost, device_peak, fused_cost, throughput
from sslfast.benchmarks.lightly_ref import lightly_loss_module
from sslfast.benchmarks.losses import format_table, main, run_case
from sslfast.report.schema import validate


def _grad_run(fn, inputs):
    xs = [x.detach().clone().requires_grad_() for x in inputs]
    return lambda: torch.autograd.grad(fn(*xs), xs)


def _inputs(case):
    return case.make_inputs(torch.device("cpu"), torch.float32, torch.Generator().manual_seed(0))


def test_counted_cost_of_one_product():
    a, b = torch.randn(3, 5), torch.randn(5, 7)
    cost = counted_cost(lambda: a @ b)
    assert cost["flops"] == 2 * 3 * 5 * 7
    assert cost["bytes"] == 4 * (3 * 5 + 5 * 7 + 3 * 7)  # read both inputs, write the output


def test_counted_cost_includes_factorisations():
    x = torch.randn(4, 6, 6, dtype=torch.float64)
    spd = x @ x.mT + 6 * torch.eye(6, dtype=torch.float64)
    assert counted_cost(lambda: torch.linalg.cholesky_ex(spd))["flops"] == 4 * 6**3 // 3
    assert counted_cost(lambda: torch.logdet(spd))["flops"] >= 4 * 2 * 6**3 // 3


@pytest.mark.parametrize("n, d", [(8, 32), (32, 8)])  # the Gram (N < D) and the D×D route
@pytest.mark.parametrize("loss", ["vicreg", "barlow_twins", "tico"])
def test_fused_formula_matches_the_torch_backends_products(loss, n, d):
    """The triton launcher and the torch twin run the same GEMMs (sslfast._numerics), so the
    analytic count must equal FlopCounterMode's count of the torch backend."""
    fns = {
        "vicreg": lambda a, b: F.vicreg_loss(a, b, backend="torch"),
        "barlow_twins": lambda a, b: F.barlow_twins_loss(a, b, backend="torch"),
        "tico": lambda a, b: F.tico_loss(a, b, torch.zeros(d, d), backend="torch")[0],
    }
    case = C.Case(loss, {"N": n, "D": d}, C._pair(n, d), {"torch": fns[loss]})
    counted = counted_cost(_grad_run(case.fns["torch"], _inputs(case)))["flops"]
    assert fused_cost(loss, case.params, torch.float32, backward=True)["flops"] == counted


@pytest.mark.parametrize("n, d", [(8, 32), (32, 8)])
@pytest.mark.parametrize("loss", ["vicreg", "barlow_twins"])
def test_forward_alone_runs_no_gradient_products(loss, n, d):
    """Without a gradient the torch backend runs only the statistics' GEMMs (the forward used to run
    the gradient products too: twice VICReg's and three times Barlow Twins' D×D FLOPs)."""
    fn = {"vicreg": F.vicreg_loss, "barlow_twins": F.barlow_twins_loss}[loss]
    a, b = torch.randn(n, d), torch.randn(n, d)
    with torch.no_grad():
        counted = counted_cost(lambda: fn(a, b, backend="torch"))["flops"]
    assert fused_cost(loss, {"N": n, "D": d}, torch.float32, backward=False)["flops"] == counted
    m = min(n, d)
    assert counted == {"vicreg": 2 * 2 * n * d * m, "barlow_twins": 2 * 2 * n * n * d if n < d else 2 * n * d * d}[loss]


def test_fused_formula_by_hand():
    # VICReg, N=4 < D=8: per view a Gram (2·N²·D) and G·Zc (2·N²·D) -> 2 views × 2 × 256
    assert fused_cost("vicreg", {"N": 4, "D": 8}, torch.float32, True)["flops"] == 2 * 2 * 2 * 4 * 4 * 8
    # multi-crop InfoNCE: forward = the logits only; fwd+bwd = 4 passes of 2·N²·D
    p = {"N": 16, "V": 2, "B": 8, "D": 4, "T": 0.1}
    assert fused_cost("multicrop_infonce", p, torch.float32, False)["flops"] == 2 * 16 * 16 * 4
    assert fused_cost("multicrop_infonce", p, torch.float32, True)["flops"] == 4 * 2 * 16 * 16 * 4
    # bytes: inputs once, grads once (bf16 = 2 bytes), plus intermediates
    fwd = fused_cost("moco", {"B": 2, "K": 10, "D": 4, "T": 0.1}, torch.bfloat16, False)
    assert fwd["bytes"] == 2 * 2 * 4 * 2 + 10 * 4 * 4
    assert fused_cost("nope", {}, torch.float32, True) is None


def test_coding_rate_formula_matches_counted_torch_backend():
    case = C.Case("coding_rate", {"V": 3, "B": 8, "D": 16}, None, {})
    z = torch.nn.functional.normalize(torch.randn(3, 8, 16), dim=-1)
    counted = counted_cost(_grad_run(lambda x: F.total_coding_rate(x, backend="torch"), [z]))["flops"]
    analytic = fused_cost("coding_rate", case.params, torch.float32, True)["flops"]
    assert abs(analytic - counted) <= 3  # k³/3 rounded per view vs per batch


def test_device_peaks_by_name():
    h200 = device_peak("NVIDIA H200", "bf16")
    assert h200["tb_per_s"] == 4.3 and h200["tflops"] == 790.0 and "measured" in h200["source"]
    h100 = device_peak("NVIDIA H100 80GB HBM3", "bf16")
    assert h100["tb_per_s"] == 3.35 and h100["tflops"] == 989.0 and "spec" in h100["source"]
    assert device_peak("NVIDIA H100 80GB HBM3", "fp32")["tflops"] == 67.0  # CUDA cores: TF32 is off by default
    assert device_peak("NVIDIA A10G", "bf16") is None
    row = {"median_ms": 2.0, "flops": 2 * 10**12, "bytes": 4 * 10**9}
    out = throughput(row, h200)
    assert out["tflops_per_s"] == pytest.approx(1000.0) and out["tb_per_s"] == pytest.approx(2.0)
    assert out["bytes_peak_fraction"] == pytest.approx(2.0 / 4.3)
    assert "flops_peak_fraction" not in throughput(row, None)
    compiled = throughput({"median_ms": 1000.0, "flops": 10**12}, h200)  # FLOPs only: no byte count
    assert compiled["tflops_per_s"] == pytest.approx(1.0) and "bytes_peak_fraction" not in compiled


def _tiny_vicreg():
    return C.Case("vicreg", {"N": 8, "D": 32}, C._pair(8, 32), C._with_backends(F.vicreg_loss))


def _validate(rows):
    env = {
        "device": "cpu",
        "device_type": "cpu",
        "torch": "x",
        "triton": None,
        "git_sha": None,
        "timestamp": "2026-01-01T00:00:00+00:00",
    }
    validate({"benchmark": "losses", "env": env, "results": json.loads(json.dumps(rows))})


def test_rows_carry_costs_and_ratios_for_ours_and_the_reference():
    rows = run_case(
        _tiny_vicreg(), torch.device("cpu"), torch.float32, compile_reference=False, modes=("fwd+bwd",), max_time_s=0.05
    )
    _validate(rows)
    by = {r["impl"]: r for r in rows}
    ref, ours = by["reference"], by["torch"]
    for r in rows:
        assert r["flops"] > 0 and r["bytes"] > 0 and r["reference_flops"] == ref["flops"]
    assert ours["flop_ratio_vs_reference"] == pytest.approx(ref["flops"] / ours["flops"])
    assert ours["flop_ratio_vs_reference"] > 1  # the Gram route: N²·D instead of N·D²
    assert ours["fused_flops"] == fused_cost("vicreg", {"N": 8, "D": 32}, torch.float32, True)["flops"]
    if lightly_loss_module() is not None:
        assert ours["speedup_vs_lightly"] == pytest.approx(by["lightly"]["median_ms"] / ours["median_ms"])
        assert by["lightly"]["flops"] > 0


def test_lightly_column_can_be_left_out():
    rows = run_case(
        _tiny_vicreg(),
        torch.device("cpu"),
        torch.float32,
        compile_reference=False,
        modes=("fwd",),
        max_time_s=0.05,
        lightly=False,
    )
    assert {r["impl"] for r in rows} == {"reference", "torch"}
    assert not any("speedup_vs_lightly" in r for r in rows)


def _row(impl, mode="fwd+bwd", **kw):
    base = {"loss": "multicrop_infonce", "V": 8, "B": 4096, "N": 32768, "D": 256, "T": 0.1, "impl": impl}
    return {**base, "mode": mode, "median_ms": 123456.789, "flops": 10**15, "bytes": 10**12, **kw}


REPRESENTATIVE = [
    _row("reference", speedup_vs_reference=1.0, speedup_vs_lightly=0.5),
    _row("lightly", speedup_vs_reference=2.0),
    _row("reference_compiled", speedup_vs_reference=1.5, speedup_vs_lightly=0.75),
    _row("torch", speedup_vs_reference=123.4, speedup_vs_lightly=61.7, flop_ratio_vs_reference=3.0),
    _row("triton", speedup_vs_reference=1234.5, flops_peak_fraction=0.41, bytes_peak_fraction=0.9, tflops_per_s=400.0),
    {**_row("triton", "fwd"), "error": "out of memory: CUDA out of memory. Tried to allocate 64.00 GiB " * 3},
]


@pytest.mark.parametrize("gpu", [False, True])
def test_console_table_fits_80_columns(gpu):
    text = format_table(REPRESENTATIVE, "sslfast bench losses (cuda, bf16)", gpu)
    assert max(len(line) for line in text.splitlines()) <= 80, text
    assert "V=8×B=4096×N=32768×D=256" in text and "123456.789" in text
    assert ("90% mem" if gpu else "3.00x") in text
    assert "Tried to allocate" in text  # errors are wrapped, not cut


def test_text_table_wraps_instead_of_cutting():
    rows = [["emp_ssl (20x32)", "baseline", "DataLoader+PIL, 16 workers, pinned memory, prefetch 4", "1,234,567"]]
    text = text_table(["preset", "path", "backend", "views/s"], rows, right={3})
    assert max(len(line) for line in text.splitlines()) <= 80
    assert "prefetch 4" in text and "1,234,567" in text


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--max-time", "-1"], "argument --max-time"),
        (["--max-time", "0"], "argument --max-time"),
        (["--max-time", "nan"], "argument --max-time"),
        (["--skip", "("], "argument --skip: not a regular expression"),
        (["--skip", "."], "--skip leaves no benchmark case"),
        (["--loss", "nope"], "no benchmark case matches"),
    ],
)
def test_bad_flags_are_refused_before_any_work(argv, message, capsys):
    from sslfast.cli import main as cli

    assert cli(["bench", "losses", *argv]) == 2
    err = capsys.readouterr().err
    assert "sslfast bench losses: error:" in err and message in err


def test_quick_cli_run_writes_a_valid_costed_file(tmp_path, capsys):
    assert main(["--quick", "--loss", "coding_rate", "--max-time", "0.05", "--out", str(tmp_path)]) == 0
    (path,) = tmp_path.glob("losses-*.json")
    doc = json.loads(path.read_text())
    assert doc["env"]["torch_threads"] == torch.get_num_threads()
    assert "load_average_1_5_15" in doc["env"]
    assert all("flops" in r for r in doc["results"])
    out = capsys.readouterr().out
    assert max(len(line) for line in out.splitlines()) <= 80 or "results:" in out.splitlines()[-1]
