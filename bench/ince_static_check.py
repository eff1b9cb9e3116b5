"""Static sm_90a check of the InfoNCE kernels: registers, spills, shared memory and dot path.

Every kernel variant the launchers of ``sslfast.kernels.infonce`` choose (dtype × D × gradient ×
fp32 dot setting) is captured by replacing ``launch`` with a recorder (nothing runs), compiled with
``triton.compile`` for ``GPUTarget("cuda", 90, 32)``, and its PTX assembled with the bundled
``ptxas -v --gpu-name sm_90a``. No GPU is needed. Sizes ``fused_supported`` sends to torch are
listed as such. Usage (without TRITON_INTERPRET)::

    python bench/ince_static_check.py                      # the installed triton
    PYTHONPATH=/tmp/ince-t36 python bench/ince_static_check.py   # e.g. triton 3.6 in a --target dir

Exits 1 if a variant spills, needs more than 232,448 B of shared memory, or lacks tensor-core
instructions where they are expected (bf16/fp16/tf32/tf32x3).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile

HOPPER_SMEM = 232_448
TYPES = {"float64": "fp64", "float32": "fp32", "bfloat16": "bf16", "float16": "fp16", "int64": "i64", "int32": "i32"}


def _sig(fn, args, kwargs):
    """Triton signature/constexprs of one recorded call (ints typed as the JIT does, by magnitude)."""
    import torch

    sig, const = {}, {}
    names = fn.arg_names
    for name, value in zip(names, args):
        if isinstance(value, torch.Tensor):
            sig[name] = "*" + TYPES[str(value.dtype).removeprefix("torch.")]
        elif isinstance(value, bool):
            sig[name], const[name] = "constexpr", value
        elif isinstance(value, int):
            sig[name] = "i32" if -(2**31) <= value < 2**31 else "i64"
        elif isinstance(value, float):
            sig[name] = "fp32"
        else:
            raise TypeError(f"{name}: {type(value)}")
    opts = {}
    for name, value in kwargs.items():
        if name in ("num_warps", "num_stages"):
            opts[name] = value
        else:
            sig[name], const[name] = "constexpr", value
    return sig, const, opts


def capture(case):
    """The (kernel, args, kwargs) launches of one launcher call."""
    import sslfast.kernels.infonce as K
    import torch

    calls = []

    def recorder(kernel):
        class Grid:
            def __getitem__(self, grid):
                return lambda *a, **kw: calls.append((kernel, a, kw))

        return Grid()

    dtype, d, grad, setting, form = case
    old = K.launch, K.FP32_DOTS, torch.get_float32_matmul_precision()
    K.launch = recorder
    try:
        if setting == "ieee":
            K.FP32_DOTS = "ieee"
        else:
            torch.set_float32_matmul_precision(setting)
        if not K.fused_supported(d, dtype, grad):
            return None
        if form == "multicrop":
            fn = getattr(K.multicrop_infonce_fwd, "_init_fn", K.multicrop_infonce_fwd)
            z = torch.zeros(2, 32, d, dtype=dtype)
            fn(z, torch.ones(2, 32), 0.1, 0, 32, grad)
        else:
            fn = getattr(K.nt_xent_bank_fwd, "_init_fn", K.nt_xent_bank_fwd)
            x = torch.zeros(32, d, dtype=dtype)
            fn(x, x, torch.zeros(64, d, dtype=dtype), 0.1, grad)
    finally:
        K.launch, K.FP32_DOTS = old[0], old[1]
        torch.set_float32_matmul_precision(old[2])
    return calls


def compile_one(kernel, args, kwargs, ptxas):
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    fn = kernel
    sig, const, opts = _sig(fn, args, kwargs)
    opts.setdefault("num_stages", int(os.environ.get("INCE_STAGES", 3)))  # the launchers leave it at the CUDA default
    opts.setdefault("num_warps", 4)
    compiled = triton.compile(ASTSource(fn=fn, signature=sig, constexprs=const), target=GPUTarget("cuda", 90, 32),
                              options=opts)
    ptx = compiled.asm["ptx"]
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "k.ptx")
        with open(path, "w") as f:
            f.write(ptx)
        run = subprocess.run([ptxas, "-v", "--gpu-name", "sm_90a", path, "-o", os.path.join(tmp, "k.cubin")],
                             capture_output=True, text=True)
        if run.returncode:
            raise RuntimeError(f"ptxas failed on {fn.__name__}: {run.stderr[-2000:]}")
        out = run.stderr
    regs = int(re.search(r"Used (\d+) registers", out).group(1))
    spill = sum(int(x) for x in re.findall(r"(\d+) bytes spill (?:stores|loads)", out))
    path = "wgmma" if "wgmma" in ptx else "mma" if re.search(r"\bmma\.sync", ptx) else "fma"
    return regs, spill, compiled.metadata.shared, path, opts["num_warps"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dims", type=int, nargs="*", default=[1, 64, 128, 256, 512, 1024, 2048])
    parser.add_argument("--wide", action="store_true", help="also compile the int64-offset variants")
    opts = parser.parse_args()
    if os.environ.get("TRITON_INTERPRET"):
        sys.exit("run without TRITON_INTERPRET: this compiles for sm_90a")
    import sslfast.kernels.infonce as K
    import torch
    import triton

    try:  # the ptxas triton itself uses for sm_90 (3.9: "ptxas-blackwell", a CUDA 13 ptxas)
        from triton.backends.nvidia.compiler import get_ptxas

        ptxas = get_ptxas(90).path
    except ImportError:
        ptxas = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "ptxas")
    settings = [(torch.float64, "highest"), (torch.float32, "highest"), (torch.float32, "high"),
                (torch.float32, "ieee"), (torch.bfloat16, "highest"), (torch.float16, "highest")]
    seen, bad = set(), 0
    print(f"triton {triton.__version__}, {os.path.basename(ptxas)}, sm_90a, smem limit {HOPPER_SMEM} B")
    print(f"{'kernel':36} {'dtype':9} {'fp32':8} {'D':>5} {'grad':5} {'wide':5} {'warps':>5} {'regs':>4} "
          f"{'spill':>6} {'smem':>7} dot")
    for wide in ([False, True] if opts.wide else [False]):
        K.WIDE_FROM = 0 if wide else 2**31
        for dtype, setting in settings:
            for d in opts.dims:
                for grad in (True, False):
                    for form in ("multicrop", "bank"):
                        calls = capture((dtype, d, grad, setting, form))
                        if calls is None:
                            if form == "multicrop":
                                print(f"{'(routed to torch)':36} {str(dtype)[6:]:9} {setting:8} {d:5} {grad!s:5}")
                            continue
                        for kernel, args, kwargs in calls:
                            fn = kernel
                            key = (fn.__name__, repr(_sig(fn, args, kwargs)))
                            if key in seen:
                                continue
                            seen.add(key)
                            regs, spill, smem, path, warps = compile_one(kernel, args, kwargs, ptxas)
                            has_dot = fn.__name__ != "_normalize_rows_kernel"
                            want_tc = has_dot and (dtype in (torch.bfloat16, torch.float16)
                                                   or (dtype == torch.float32 and setting != "ieee"))
                            fail = spill > 0 or smem > HOPPER_SMEM or (want_tc and path == "fma")
                            bad += fail
                            print(f"{fn.__name__:36} {str(dtype)[6:]:9} {setting:8} {d:5} {grad!s:5} {wide!s:5} "
                                  f"{warps:5} {regs:4} {spill:6} {smem:7} {path if has_dot else '-'}"
                                  f"{'  <-- FAIL' if fail else ''}", flush=True)
    print(f"{len(seen)} variants, {bad} failing")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
