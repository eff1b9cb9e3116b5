"""The static sm_90a gate (sslfast.benchmarks.gpu_gate): capture follows the launchers, the binder
types arguments as the JIT does, the checks catch what they claim, and the quick grid finds no
failure outside KNOWN_FAILURES (and every known failure it can judge still fails).

Compiling needs real @triton.jit objects, so the gate runs in a subprocess without
TRITON_INTERPRET (make test sets it for the whole session)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

pytest.importorskip("triton")

from sslfast.benchmarks import gpu_gate as g  # noqa: E402
from sslfast.report.schema import validate  # noqa: E402
from sslfast.report.tables import gate_table  # noqa: E402

SCRIPT = r"""
import json, sys
from sslfast.benchmarks import gpu_gate as g
from sslfast.kernels import infonce

case = g._multicrop_case("bf16", 2, 256, 128, True, backend="triton")
def bound():
    return [{"kernel": v.kernel, "constexprs": {list(v.signature)[k[0]]: c for k, c in v.constexprs.items()},
             "options": v.options, "signature": v.signature} for v in map(g.bind, g.capture(case))]
before = bound()
infonce.TILES = (32, 16, 2)  # what a tuned tile rule would return: the capture must see it
after = bound()
infonce.TILES = None
payload = g.run_gate("quick", jobs=2, log=lambda *a: None)
json.dump({"before": before, "after": after, "payload": payload}, open(sys.argv[1], "w"))
"""


@pytest.fixture(scope="module")
def gate(tmp_path_factory):
    out = tmp_path_factory.mktemp("gate") / "gate.json"
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env.setdefault("TRITON_DEFAULT_FP_FUSION", "1")
    res = subprocess.run([sys.executable, "-c", SCRIPT, str(out)], env=env, capture_output=True, text=True,
                         timeout=900)
    assert res.returncode == 0, res.stderr[-4000:]
    return json.loads(out.read_text())


def _by_kernel(launches, name):
    return [x for x in launches if x["kernel"] == name]


@pytest.mark.slow
def test_capture_follows_the_launchers(gate):
    """Changing the launcher's tile rule changes the captured constexprs and warps."""
    (b,) = _by_kernel(gate["before"], "_multicrop_infonce_fwd_kernel")
    (a,) = _by_kernel(gate["after"], "_multicrop_infonce_fwd_kernel")
    from sslfast.kernels import infonce

    # bf16 with a gradient at padded D = 128: the launcher's own tile table
    expected = infonce.GRAD_TILES["16bit"][128][0]
    assert (b["constexprs"]["BM"], b["constexprs"]["BN"], b["options"]["num_warps"]) == expected
    assert (a["constexprs"]["BM"], a["constexprs"]["BN"], a["options"]["num_warps"]) == (32, 16, 2)
    assert b["constexprs"]["DP"] == a["constexprs"]["DP"] == 128


@pytest.mark.slow
def test_binder_types_arguments_like_the_jit(gate):
    """Pointer types from tensor dtypes (bf16 input normalised into bf16 rows for the 16-bit dots),
    float hyperparameters as fp64 bit patterns (int64: a Python float would bind as fp32), ints
    equal to 1 as constexprs, ints divisible by 16 marked."""
    rows = {r["kernel"]: r for r in gate["payload"]["results"] if r["dtype"] == "bf16"}
    norm = rows["_normalize_rows_kernel"]
    assert norm["signature"]["x_ptr"] == "*bf16" and norm["signature"]["u_ptr"] == "*bf16"
    assert norm["signature"]["eps_bits"] == "i64"
    assert not any(t in ("fp32", "fp64") for t in norm["signature"].values())
    assert "D" in norm["divisible_by_16"] and "x_ptr" in norm["divisible_by_16"]
    views = rows["_views_kernel"]
    assert views["constexprs"]["s_w"] == 1 and "s_w" not in views["signature"]  # unit stride: constexpr
    assert views["signature"]["out_ptr"] == "*bf16"


@pytest.mark.slow
def test_quick_gate_finds_no_failure_outside_the_known_list(gate):
    p = gate["payload"]
    s = p["summary"]
    assert not s["capture_errors"], s["capture_errors"]
    assert not s["new_failures"], f"new failures (fix them, or list them in KNOWN_FAILURES): {s['new_failures']}"
    assert not s["stale_known_failures"], f"fixed: remove from KNOWN_FAILURES: {s['stale_known_failures']}"
    kernels = {r["kernel"] for r in p["results"]}
    assert kernels >= {"_pair_column_sums_kernel", "_pair_centre_kernel", "_pair_standardise_kernel",
                       "_vicreg_fwd_kernel", "_barlow_twins_fwd_sums_kernel", "_barlow_twins_fwd_kernel",
                       "_normalize_pair_kernel", "_tico_fwd_kernel", "_emp_ssl_fwd_kernel",
                       "_normalize_rows_kernel", "_multicrop_infonce_fwd_kernel",
                       "_multicrop_infonce_fwd_keys_kernel", "_nt_xent_bank_fwd_kernel", "_views_kernel"}
    for r in p["results"]:
        assert r["compiles"], r
        assert r["registers"] > 0 and r["occupancy_blocks_per_sm"] >= 1, r
        assert r["passed"] == (not r["reasons"])
    # the 16-bit dots of the bf16 InfoNCE path lower to tensor cores (wgmma at 64-row tiles, mma at
    # the 32-row tiles the gradient path uses to stay free of spills)
    dots = {r["dot_path"] for r in p["results"] if r["kernel"] == "_multicrop_infonce_fwd_kernel"}
    assert dots and dots <= {"wgmma", "mma"}


@pytest.mark.slow
def test_gate_results_pass_the_contract_and_table_fits_80_columns(gate):
    env = {"device": "cpu", "device_type": "cpu", "torch": torch.__version__, "triton": "x", "git_sha": None,
           "timestamp": "2026-12-05T00:00:00+00:00"}
    run = validate({"benchmark": "gate", "env": env, **gate["payload"]})
    assert "sm_90a" in run.variant
    text = gate_table([gate["payload"]])
    assert max(map(len, text.splitlines())) <= 80, text
    bad = {**gate["payload"], "results": [{**gate["payload"]["results"][0], "passed": False, "reasons": {}}]}
    with pytest.raises(ValueError, match="passed"):
        validate({"benchmark": "gate", "env": env, **bad})


def _variant(sig):
    return g.Variant(kernel="k", module="m", signature=sig, constexprs={}, attrs={}, options={})


def _result(**kw):
    r = {"compiles": True, "smem": 0, "registers": 64, "stack_bytes": 0, "spill_store_bytes": 0,
         "spill_load_bytes": 0, "dots": [], "dot_path": "none", "num_warps": 4}
    return {**r, **kw}


def test_checks_catch_what_they_claim():
    fp32 = _variant({"x_ptr": "*fp32", "eps": "fp32"})
    fp64 = _variant({"x_ptr": "*fp64", "eps": "fp32", "n": "i32"})
    assert not any(g.check_variant(fp32, _result()).values())
    assert "232448" in g.check_variant(fp32, _result(smem=232_449))["smem"]
    assert g.check_variant(fp32, _result(spill_store_bytes=4))["spills"]
    assert not g.check_variant(fp64, _result(stack_bytes=512))["spills"]  # within the fp64 budget
    assert g.check_variant(fp64, _result(stack_bytes=4096))["spills"]
    assert "eps" in g.check_variant(fp64, _result())["fp64_scalars"]
    tf32 = [{"precision": "tf32", "operand": "f32"}]
    assert "fma" in g.check_variant(fp32, _result(dots=tf32, dot_path="fma"))["tensor_cores"]
    assert not g.check_variant(fp32, _result(dots=tf32, dot_path="wgmma"))["tensor_cores"]
    ieee = [{"precision": "ieee", "operand": "f32"}]
    assert "tensor_cores" not in g.check_variant(fp32, _result(dots=ieee, dot_path="fma"))
    v = _variant({"x_ptr": "*fp32"})
    v.wave_grids = [32, 256]
    assert "32 programs" in g.check_variant(v, _result())["wave"]
    assert g.check_variant(fp32, {"compiles": False, "error": "boom"}) == {"compiles": "boom"}


def test_dot_regex_reads_both_triton_versions():
    ieee = "%y = tt.dot %a, %b, %c : tensor<16x16xf32> * tensor<16x16xf32> -> tensor<16x16xf32> loc(#l)"
    tf32 = "%y = tt.dot %a, %b, %c, inputPrecision = tf32 : tensor<64x16xbf16> * tensor<16x64xbf16> -> t"
    assert g._DOT.findall(ieee) == [("", "f32")]
    assert g._DOT.findall(tf32) == [("tf32", "bf16")]


def test_occupancy_on_sm90():
    assert g.occupancy(255, 0, 4) == 2  # 256 regs x 128 threads = half the register file per block
    assert g.occupancy(32, 0, 4) == 16  # warp limit: 64 / 4
    assert g.occupancy(32, 0, 1) == 32  # block limit
    assert g.occupancy(32, 100_000, 4) == 2  # shared memory: 228 KiB / (100,000 + 1 KiB)


def test_launch_twin_needs_cuda(capsys):
    if torch.cuda.is_available():
        pytest.skip("a CUDA machine runs the twin for real")
    assert g.main(["--launch"]) == 2
    assert "needs a CUDA GPU" in capsys.readouterr().err
