"""The covariance-family and EMP-SSL kernels at their launch boundaries (issue 10 item 2), on the CPU
interpreter: rows split across programs (module-level size-rule hooks forced small), D not a
multiple of the block, full-wave grids at the benchmark sizes, V = 256 views, float arguments that
lose precision in fp32, and row offsets past 2³¹ elements."""

import math
import struct

import pytest
import sslfast.kernels._covariance as cov
import sslfast.kernels.emp_ssl as emp_kernels
import sslfast.kernels.tico as tico_kernels
import torch
from conformance import grad_scale
from covariance_cases import call, loss_and_grads, make_pair
from helpers import rel_err
from sslfast.kernels._op import cdiv
from sslfast.kernels._scalars import f64_bits

import sslfast.functional as F

SMS = 132  # H100/H200 SXM
BENCH = [(256, 2048), (1024, 8192)]


def check_close(loss, z_a, z_b, rtol):
    ref = loss_and_grads(loss, z_a.double(), z_b.double(), "reference")
    out = loss_and_grads(loss, z_a, z_b, "triton")
    assert rel_err(out[0], ref[0]) <= rtol, (loss, rel_err(out[0], ref[0]))
    floor = grad_scale(ref[0], z_a, z_b)  # TiCo at D = 1: the true gradient is round-off
    for o, r in zip(out[1:], ref[1:]):
        err = float((o.double() - r).norm())
        assert err <= 10 * rtol * max(float(r.norm()), floor), (loss, err, float(r.norm()))


@pytest.mark.parametrize("n,d", BENCH)
def test_column_kernels_fill_a_wave_at_the_benchmark_sizes(n, d):
    (col_blocks, chunks), rows = cov.column_grid(n, d)
    assert col_blocks * chunks >= SMS
    assert rows % cov.BLOCK_N == 0 and (chunks - 1) * rows < n <= chunks * rows  # no empty chunk, all rows
    assert cdiv(n, cov.BLOCK_N) * cdiv(d, cov.BLOCK_D) >= SMS  # the 2-D gradient kernels
    block_n, block_d = tico_kernels.row_blocks(n, d)
    assert cdiv(n, block_n) >= SMS and block_n * block_d <= tico_kernels.ROW_TILE


@pytest.mark.parametrize("n", [1, 2, 31, 32, 33, 100, 1000])
def test_split_rows_covers_every_row_once(n):
    for col_blocks in (1, 3, 32, 500):
        rows, chunks = cov.split_rows(n, col_blocks, 8)
        assert rows % 8 == 0 and (chunks - 1) * rows < n <= chunks * rows


@pytest.fixture
def tiny_blocks(monkeypatch):
    """Force many row chunks and column blocks (BLOCK_N = 4, BLOCK_D = 16, no program cap)."""
    monkeypatch.setattr(cov, "BLOCK_N", 4)
    monkeypatch.setattr(cov, "BLOCK_D", 16)
    monkeypatch.setattr(cov, "TARGET_PROGRAMS", 10**6)
    monkeypatch.setattr(tico_kernels, "MAX_BLOCK_N", 4)
    monkeypatch.setattr(tico_kernels, "ROW_TILE", 64)
    monkeypatch.setattr(emp_kernels, "MAX_BLOCK_V", 4)
    monkeypatch.setattr(emp_kernels, "BLOCK_D", 16)


@pytest.mark.parametrize("dtype,rtol", [(torch.float32, 2e-5), (torch.float64, 1e-12)])
@pytest.mark.parametrize("loss", ["vicreg", "barlow_twins", "tico", "emp_ssl"])
@pytest.mark.parametrize("n,d", [(37, 70), (9, 1), (5, 33)])
def test_rows_split_across_programs(tiny_blocks, loss, n, d, dtype, rtol):
    """N = 37 → 10 row chunks of 4 reduced in a second stage; D = 70 = 4·16 + 6, D = 1, D = 33."""
    (_, chunks), _ = cov.column_grid(n, d)
    assert chunks == cdiv(n, 4) > 1
    z_a, z_b = make_pair(n, d, seed=n + d)
    check_close(loss, z_a.to(dtype), z_b.to(dtype), rtol)


@pytest.mark.parametrize("loss", ["vicreg", "barlow_twins"])
def test_d_2048_at_small_n(loss):
    z_a, z_b = make_pair(3, 2048, seed=1)
    check_close(loss, z_a.float(), z_b.float(), 2e-5)


@pytest.mark.parametrize("v", [256, 21])
def test_emp_ssl_many_views(v):
    """V = 256 views (16 chunks of 16) and V = 21 (a partial last chunk), against the reference."""
    g = torch.Generator().manual_seed(v)
    z = torch.nn.functional.normalize(torch.randn(v, 3, 4, generator=g, dtype=torch.float64), dim=-1)
    ref_z = z.clone().requires_grad_()
    ref = F.emp_ssl_loss(ref_z, backend="reference")
    ref.backward()
    out_z = z.float().requires_grad_()
    out = F.emp_ssl_loss(out_z, backend="triton")
    out.backward()
    assert rel_err(out, ref) <= 2e-5
    assert rel_err(out_z.grad, ref_z.grad) <= 1e-4


def _fp32_exact(x: float) -> bool:
    return struct.unpack("f", struct.pack("f", x))[0] == x


def test_f64_bits_round_trip_exactly():
    for x in (1 / 3, 2 / 7 * 1e-9, math.pi * 1e6, -1e-30 / 3, 0.0, -0.0, 25.0, 1e300):
        assert struct.unpack("<d", struct.pack("<q", f64_bits(x)))[0] == x
    assert f64_bits(5e-324) == 0  # subnormals flush to 0: no pattern equals 1 (a JIT constant)


@pytest.mark.parametrize("loss", ["vicreg", "barlow_twins", "tico", "emp_ssl"])
def test_fp64_kernels_get_no_fp32_rounded_float(loss, monkeypatch):
    """Triton types every Python float argument fp32, so fp64 kernels must receive only floats
    at all (they get fp64 bit patterns, kernels/_scalars.py); the interpreter would hide the rounding. N = 7
    makes 1/N, λ/(N·D), 2ρ/... inexact in fp32 (relative error ≈ 3e-8 ≫ 1e-12)."""
    import sslfast.kernels.barlow_twins as bt
    import sslfast.kernels.vicreg as vr

    seen = []

    def recording(kernel):
        class Launcher:
            def __getitem__(self, grid):
                def run(*args, **kwargs):
                    seen.append((kernel.__name__, [a for a in args if isinstance(a, float)]))
                    return kernel[grid](*args, **kwargs)

                return run

        return Launcher()

    for module in (cov, vr, bt, tico_kernels, emp_kernels):
        monkeypatch.setattr(module, "launch", recording)
    z_a, z_b = make_pair(7, 5, seed=2)
    loss_and_grads(loss, z_a, z_b, "triton")
    assert seen, "no launch recorded: the hook missed the launches"
    floats = [(name, xs) for name, xs in seen if xs]
    assert not floats, floats
    # and the value is the fp64 one to 1e-12 (hi + lo carries ~48 bits)
    out = call(loss, z_a, z_b, "triton")
    assert rel_err(out, call(loss, z_a, z_b, "reference")) <= 1e-12


_TTIR_SCRIPT = r"""
import re, sys
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from sslfast.kernels import _covariance as C, barlow_twins as BT, emp_ssl as E, tico as T, vicreg as V

FLAGS = {"DIFF": True, "STORE": True, "GRAM": True, "COMPUTE_GRAD": True, "BLOCK_N": 4, "BLOCK_D": 64, "BLOCK_V": 4}
bad = []
for fn in (C._pair_column_sums_kernel, C._pair_centre_kernel, C._pair_standardise_kernel, V._vicreg_fwd_kernel,
           BT._barlow_twins_fwd_sums_kernel, BT._barlow_twins_fwd_kernel, T._normalize_pair_kernel, T._tico_fwd_kernel,
           E._emp_ssl_fwd_kernel):
    consts = {k: v for k, v in FLAGS.items() if k in fn.arg_names}
    sig = {a: "constexpr" if a in consts else "*fp32" if a.endswith("_ptr") else
           "fp32" if a.endswith(("_hi", "_lo")) else "i32" for a in fn.arg_names}
    src = ASTSource(fn=fn, signature=sig, constexprs=consts)
    ttir = triton.compile(src, target=GPUTarget("cuda", 90, 32)).asm["ttir"]
    bad += [fn.__name__ + ": " + line.strip()[:160] for line in ttir.splitlines()
            if "arith.muli" in line and re.search(r": tensor<[0-9x]+xi32>", line)]
print("\n".join(bad) or "OK")
"""


def test_row_offsets_are_int64():
    """Every tensor offset product (row × stride, row × D, view × B…) is int64 in the compiled TTIR:
    an int32 one wraps once N·D ≥ 2³¹. Compiled for sm_90 in a subprocess without TRITON_INTERPRET
    (the interpreter computes in numpy and would not show the kernel's integer widths)."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    run = subprocess.run([sys.executable, "-c", _TTIR_SCRIPT], capture_output=True, text=True, env=env, timeout=600)
    if run.returncode != 0 and "ptxas" in run.stderr:
        pytest.skip("no CUDA toolchain to compile with: " + run.stderr.splitlines()[-1])
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.strip() == "OK", run.stdout
