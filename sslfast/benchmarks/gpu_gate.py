"""Static sm_90a gate: compile every Triton kernel variant the launchers choose, without a GPU.

The CPU interpreter (``TRITON_INTERPRET=1``) proves what a kernel computes, not that it fits an
H100/H200: it cannot see shared-memory limits, register spills, whether ``tl.dot`` becomes a
tensor-core instruction, or that the JIT types a Python float argument as fp32. This module

1. drives the loss functionals (and the view kernel's ``make_views``) on ``meta`` tensors inside
   ``sslfast.kernels._op.capture_launches()``, so the real launchers pick every tile, flag and
   route (a size sent to the torch backend is recorded as ``routed: torch``) at any size with no
   memory: signatures are never hand-copied;
2. binds each recorded launch with Triton's own binder (``create_function_from_signature`` and
   ``JITFunction._pack_args``: ints equal to 1 become constexprs, divisibility-by-16 attributes,
   Python float -> fp32, tensor dtype -> pointer type) for ``GPUTarget("cuda", 90, 32)``, and
   deduplicates the variants (kernel + signature + constexprs + attributes + warps/stages);
3. compiles each variant once with ``triton.compile`` and runs the wheel's ptxas ``-v`` on its PTX
   for sm_90a, then checks it (``CHECKS`` below).

``sslfast bench gate [--quick|--full]`` writes one results row per variant (kind ``gate`` in
``sslfast/report/schema.py``) and exits non-zero when a check fails outside ``KNOWN_FAILURES``.
``sslfast bench gate --launch`` (CUDA only) is the GPU twin: it runs each case that is small
enough with real tensors and records, per variant, whether its launches ran and gave finite output.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import itertools
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field

import torch

# -- sm_90 (H100/H200) limits -------------------------------------------------------------------
SMS = 132  # H100 SXM; the H200 has the same 132 SMs
MAX_DYNAMIC_SMEM = 232_448  # bytes one block may opt in to (227 KiB)
SMEM_PER_SM = 233_472  # 228 KiB per SM; each resident block also reserves 1 KiB
SMEM_RESERVED_PER_BLOCK = 1024
REGS_PER_SM = 65_536
REG_ALLOC_UNIT = 256  # registers are granted per warp in units of 256
MAX_WARPS_PER_SM = 64
MAX_BLOCKS_PER_SM = 32
# fp64 kernels carry twice the register pressure of their fp32 twins; a small stack frame there is
# cheap next to fp64 arithmetic (~1/2 of fp32 rate on H100), so it gets a budget, not zero.
FP64_STACK_BUDGET = 1024
# The benchmark sizes at which the covariance family must fill one wave of SMs.
WAVE_SIZES = ((256, 2048), (1024, 8192))
COVARIANCE_FAMILY = ("vicreg", "barlow_twins", "tico", "emp_ssl")

CHECKS = ("compiles", "smem", "spills", "tensor_cores", "fp64_scalars", "wave")
# Checks whose outcome does not depend on sizes, dtypes or flags the quick grid leaves out (fp64
# scalars are typed by the launcher, the wave is judged at WAVE_SIZES): a known failure of these
# that passes in the quick grid is fixed. The others are judged stale by the full grid only.
QUICK_JUDGED = ("fp64_scalars", "wave")

# Known failures on the current kernels, keyed by (kernel, check), each with its reason. The gate
# reports a failure outside this list as new, and an entry that no longer fails as stale: remove it
# when the fix lands (tests/bench/test_gpu_gate.py asserts both on the quick grid).
# Entries that fail under one triton only: judged stale only under that version (prefix).
KNOWN_ONLY_UNDER: dict[tuple[str, str], str] = {}
_FP32_SCALARS = "Python floats bind as fp32: the fp64 kernel gets fp32 {} (pass fp64 scalars or tensors)"
_QUARTER_WAVE = "grid {}: {} programs at the benchmark sizes, under one wave of 132 SMs"
KNOWN_FAILURES: dict[tuple[str, str], str] = {}


# ---------------------------------------------------------------------------------------------
# Cases: what users call, on meta tensors
# ---------------------------------------------------------------------------------------------

DTYPES = {
    "fp32-highest": (torch.float32, "highest"),
    "fp32-high": (torch.float32, "high"),
    "bf16": (torch.bfloat16, "highest"),
    "fp16": (torch.float16, "highest"),
    "fp64": (torch.float64, "highest"),
}


@dataclass
class Case:
    """One call of a user-facing entry point; ``run(device)`` builds inputs and calls it (with
    backward when ``grad``)."""

    loss: str
    dtype: str
    sizes: dict
    flags: dict = field(default_factory=dict)
    run: Callable[[torch.device], object] | None = None

    @property
    def label(self) -> str:
        parts = [f"{k}={v}" for k, v in self.sizes.items()] + [f"{k}={v}" for k, v in self.flags.items()]
        return f"{self.loss}[{self.dtype}; {', '.join(parts)}]"

    @property
    def elements(self) -> int:
        """Input elements (an upper bound): what the GPU twin must allocate to run the case."""
        sizes = dict(self.sizes)
        if "K" in sizes:  # MoCo: two (B, D) views and a (K, D) bank
            return (2 * sizes["B"] + sizes["K"]) * sizes["D"]
        n = 1
        for v in sizes.values():
            n *= v
        return n


def _new(shape, dtype, device, grad=False):
    if device.type == "meta":
        t = torch.empty(shape, device=device, dtype=dtype)
    else:
        t = torch.randn(shape, device=device, dtype=torch.float32).to(dtype)
    return t.requires_grad_(grad)


def _finish(out, inputs, grad):
    loss = out[0] if isinstance(out, tuple) else out
    if grad:
        loss.backward()
        return [loss] + [t.grad for t in inputs if t.requires_grad]
    return [loss]


def _pair_case(loss, dtype, n, d, grad, m=None):
    from sslfast import functional as F

    fn = {"vicreg": F.vicreg_loss, "barlow_twins": F.barlow_twins_loss}[loss]
    dt = DTYPES[dtype][0]

    def run(device):
        shape = (n, m, d) if m else (n, d)
        za, zb = _new(shape, dt, device, grad), _new(shape, dt, device, grad)
        return _finish(fn(za, zb, backend="auto"), [za, zb], grad)

    sizes = {"N": n, "M": m, "D": d} if m else {"N": n, "D": d}
    return Case(loss, dtype, sizes, {"grad": grad}, run)


def _tico_case(dtype, n, d, grad):
    from sslfast import functional as F

    dt = DTYPES[dtype][0]
    cov_dt = torch.float64 if dt == torch.float64 else torch.float32

    def run(device):
        za, zb = _new((n, d), dt, device, grad), _new((n, d), dt, device, grad)
        cov = _new((d, d), cov_dt, device)
        return _finish(F.tico_loss(za, zb, cov, backend="auto"), [za, zb], grad)

    return Case("tico", dtype, {"N": n, "D": d}, {"grad": grad}, run)


def _emp_case(dtype, v, b, d, grad):
    from sslfast import functional as F

    dt = DTYPES[dtype][0]

    def run(device):
        z = _new((v, b, d), dt, device, grad)
        return _finish(F.emp_ssl_loss(z, backend="auto"), [z], grad)

    return Case("emp_ssl", dtype, {"V": v, "B": b, "D": d}, {"grad": grad}, run)


def _multicrop_case(dtype, v, b, d, grad, weights=False, backend="auto", q_range=None):
    """``q_range=(q_start, q_count)`` drives the launcher of one rank of a gathered batch (the
    dispatcher MultiCropInfoNCEFunction calls under gather_distributed)."""
    from sslfast import functional as F

    dt = DTYPES[dtype][0]

    def run(device):
        z = _new((v, b, d), dt, device, grad)
        if q_range is not None:
            from sslfast.losses.infonce import _infonce_backend, _multicrop_infonce_fwd

            start, count = q_range
            scale = _new((v, count), torch.float32, device)
            # the routing multicrop_infonce_loss applies before it reaches this dispatcher
            chosen = _infonce_backend("triton", z.device, v * count * v * b, d, dt, grad)
            out = _multicrop_infonce_fwd(chosen)(z, scale, 0.1, start, count, grad)
            return list(out)
        w = _new((b,), torch.float32, device) if weights else None
        return _finish(F.multicrop_infonce_loss(z, w, temperature=0.1, backend=backend), [z], grad)

    flags = {"grad": grad, "weights": weights, "backend": backend}
    if q_range is not None:
        flags["q_range"] = f"{q_range[0]}+{q_range[1]}"
    return Case("multicrop_infonce", dtype, {"V": v, "B": b, "D": d}, flags, run)


def _moco_case(dtype, b, k, d, grad):
    from sslfast import functional as F

    dt = DTYPES[dtype][0]

    def run(device):
        o0, o1 = _new((b, d), dt, device, grad), _new((b, d), dt, device, grad)
        bank = _new((k, d), dt, device)
        return _finish(F.nt_xent_loss(o0, o1, temperature=0.1, memory_bank=bank, backend="auto"), [o0, o1], grad)

    return Case("moco", dtype, {"B": b, "K": k, "D": d}, {"grad": grad}, run)


def _views_case(dtype, n, size, blur):
    from sslfast.data_pipelines.gpu_augment import make_views
    from sslfast.data_pipelines.views import preset

    dt = DTYPES[dtype][0]
    specs = preset("byol", "imagenet") if blur else preset("simclr", "cifar10")

    def run(device):
        img = torch.empty((n, 3, size, size), device=device, dtype=torch.uint8)
        if device.type != "meta":
            img = torch.randint(0, 256, (n, 3, size, size), device=device, dtype=torch.uint8)
        specs_sized = [type(s)(**{**s.__dict__, "size": min(s.size, size)}) for s in specs]
        if not blur or device.type != "meta":
            return make_views(img, specs_sized, backend="auto", out_dtype=dt)
        # The blur runs in torch after the kernel and asks the host whether any sample blurs
        # (params.blur.any()), which meta tensors cannot answer; the launch is recorded by then.
        try:
            return make_views(img, specs_sized, backend="auto", out_dtype=dt)
        except RuntimeError as e:
            if "meta" not in str(e):
                raise
            return None

    return Case("views", dtype, {"N": n, "S": size}, {"blur": blur}, run)


def cases(mode: str = "full") -> list[Case]:
    """The grid. ``quick``: a representative set (each kernel, each dtype family, every known
    failure) that compiles in about a minute on two cores."""
    out: list[Case] = []
    if mode == "quick":
        # Every kernel once, the wave sizes of the covariance family, fp64 scalars, tf32 tensor cores;
        # the fp32-"highest"/fp64 InfoNCE variants (20-40 s of ptxas each) are left to the full grid.
        for dt in ("fp32-highest", "fp64"):
            out += [_pair_case("vicreg", dt, 256, 2048, True), _tico_case(dt, 256, 2048, True)]
        out += [_pair_case("barlow_twins", "fp32-highest", 256, 2048, True),
                _emp_case("fp32-highest", 64, 256, 1024, True),
                _multicrop_case("bf16", 2, 256, 128, True, backend="triton"),
                _moco_case("bf16", 256, 65536, 128, True),
                _views_case("bf16", 64, 32, False)]
        return out
    if mode != "full":
        raise ValueError(f"mode must be 'quick' or 'full', got {mode!r}")
    ns = (2, 17, 256, 1024, 65536)
    ds = (1, 16, 100, 2048, 8192)
    for dt in DTYPES:
        for n, d, grad in itertools.product(ns, ds, (True, False)):
            out += [_pair_case("vicreg", dt, n, d, grad), _pair_case("barlow_twins", dt, n, d, grad)]
            out.append(_tico_case(dt, n, d, grad))
        out.append(_pair_case("vicreg", dt, 256, 2048, True, m=4))
        for v, b, d in itertools.product((2, 20, 64, 200, 256), (2, 256), (1, 64, 2048)):
            out.append(_emp_case(dt, v, b, d, True))
        out.append(_emp_case(dt, 20, 256, 1024, False))
        for v, b, d in itertools.product((2, 8), (2, 4096), (1, 16, 100, 128, 256, 512, 1024, 2048)):
            if v * b <= 65536:
                out.append(_multicrop_case(dt, v, b, d, True, backend="triton"))
                out.append(_multicrop_case(dt, v, b, d, False, backend="auto"))
        for d in (128, 2048):
            out.append(_multicrop_case(dt, 2, 4096, d, True, q_range=(1024, 1024)))
            out.append(_multicrop_case(dt, 2, 4096, d, False, q_range=(1024, 1024)))
        for b, k, d in itertools.product((2, 4096), (65536,), (16, 100, 128, 512, 2048)):
            out += [_moco_case(dt, b, k, d, True), _moco_case(dt, b, k, d, False)]
    for dt in ("fp32-highest", "bf16", "fp16"):
        for n, size, blur in itertools.product((256,), (32, 96, 224), (False, True)):
            out.append(_views_case(dt, n, size, blur))
    return out


# ---------------------------------------------------------------------------------------------
# Capture and bind
# ---------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _matmul_precision(value: str):
    old = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision(value)
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(old)


def capture(case: Case) -> list:
    """The launches ``case`` makes on meta tensors (empty: routed to the torch backend)."""
    from sslfast.kernels._op import capture_launches

    with _matmul_precision(DTYPES[case.dtype][1]), capture_launches() as rec:
        case.run(torch.device("meta"))
    return rec


class _Pointer:
    """What the binder sees of a tensor on a GPU: its dtype and an address. The caching allocator
    hands out 512-byte aligned blocks, so the address is the storage offset on an aligned base."""

    def __init__(self, t: torch.Tensor):
        self.dtype = t.dtype
        self._ptr = (1 << 30) + t.storage_offset() * t.element_size()

    def data_ptr(self) -> int:
        return self._ptr


def target():
    from triton.backends.compiler import GPUTarget

    return GPUTarget("cuda", 90, 32)


@dataclass
class Variant:
    """One compilation: a kernel specialised as a GPU launch would be."""

    kernel: str
    module: str
    signature: dict
    constexprs: dict
    attrs: dict
    options: dict
    grids: list = field(default_factory=list)  # (case label, grid)
    wave_grids: list = field(default_factory=list)  # programs at WAVE_SIZES
    family: str = ""
    dtype: str = ""
    cases: int = 0

    @property
    def key(self) -> str:
        return repr((self.module, self.kernel, self.signature, sorted(self.constexprs.items()),
                     sorted(self.attrs.items()), sorted(self.options.items())))


_BINDERS: dict = {}


def bind(launch) -> Variant:
    """Triton's own specialisation of one recorded launch for sm_90a."""
    from triton.compiler import make_backend
    from triton.runtime.jit import create_function_from_signature

    kernel = launch.kernel
    if kernel not in _BINDERS:
        backend = make_backend(target())
        _BINDERS[kernel] = (backend, create_function_from_signature(kernel.signature, kernel.params, backend))
    backend, binder = _BINDERS[kernel]
    args = [_Pointer(a) if isinstance(a, torch.Tensor) else a for a in launch.args]
    kwargs = dict(launch.kwargs)
    bound, specialization, options = binder(*args, **kwargs)
    opts, signature, constexprs, attrs = kernel._pack_args(backend, kwargs, bound, specialization, options)
    launch_opts = {k: kwargs[k] for k in ("num_warps", "num_stages", "num_ctas") if k in kwargs}
    launch_opts.setdefault("num_warps", opts.num_warps)
    launch_opts.setdefault("num_stages", opts.num_stages)
    return Variant(
        kernel=kernel.fn.__name__,
        module=kernel.fn.__module__,
        signature=dict(signature),
        constexprs={k: v for k, v in constexprs.items()},
        attrs={k: v for k, v in attrs.items()},
        options=launch_opts,
    )


# ---------------------------------------------------------------------------------------------
# Compile and inspect (worker processes)
# ---------------------------------------------------------------------------------------------

_PTXAS = re.compile(
    r"Used (\d+) registers|(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads"
)
# TTIR prints inputPrecision only when it is not the default, ieee (triton 3.6 and 3.9 alike).
_DOT = re.compile(r"tt\.dot %[^,\s]+, %[^,\s]+, %[^,\s]+(?:, inputPrecision = (\w+))?(?:, maxNumImpreciseAcc = \d+)? : "
                  r"tensor<[0-9x]+x(\w+)>")


def compile_variant(module: str, kernel: str, signature: dict, constexprs: dict, attrs: dict, options: dict) -> dict:
    """Compile for sm_90a and read what a GPU would get: smem, registers, spills, dot lowering."""
    import importlib

    import triton
    from triton.backends.nvidia.compiler import get_ptxas
    from triton.compiler import ASTSource, make_backend

    fn = getattr(importlib.import_module(module), kernel)
    tgt = target()
    opts = make_backend(tgt).parse_options(dict(options))
    t0 = time.perf_counter()
    # Triton's own ptxas run (its flags: 3.9 adds --regAllocOptLevel=2) prints its -v log when
    # asked: those are the numbers of the cubin a GPU would load, at no second ptxas run.
    triton.knobs.nvidia.dump_ptxas_log = True
    log = io.StringIO()
    try:
        with contextlib.redirect_stdout(log):
            compiled = triton.compile(ASTSource(fn, signature, constexprs, attrs), target=tgt, options=opts.__dict__)
    except Exception as e:  # the failure itself is the finding
        msg = " ".join(str(e).split())
        return {"compiles": False, "error": f"{type(e).__name__}: {msg[:400]}"}
    out = {"compiles": True, "compile_s": round(time.perf_counter() - t0, 2), "smem": int(compiled.metadata.shared)}
    ptx = compiled.asm["ptx"]
    dots = _DOT.findall(compiled.asm["ttir"])
    out["dots"] = [{"precision": p or "ieee", "operand": ty} for p, ty in dots]
    if not dots:
        out["dot_path"] = "none"
    elif "wgmma" in ptx:
        out["dot_path"] = "wgmma"
    elif re.search(r"\bmma\.sync", ptx):
        out["dot_path"] = "mma"
    else:
        out["dot_path"] = "fma"
    text, returncode = log.getvalue(), 0
    out["ptxas_log"] = "triton" if "registers" in text else "gate"
    if out["ptxas_log"] == "gate":  # a cache hit runs no ptxas: assemble the PTX ourselves
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "k.ptx")
            with open(path, "w") as f:
                f.write(ptx)
            res = subprocess.run([get_ptxas(90).path, "-v", "--gpu-name", "sm_90a", path, "-o", os.devnull],
                                 capture_output=True, text=True)
        text, returncode = res.stdout + res.stderr, res.returncode
    regs = stack = spill_st = spill_ld = 0
    for m in _PTXAS.finditer(text):
        if m.group(1):
            regs = max(regs, int(m.group(1)))
        else:
            stack = max(stack, int(m.group(2)))
            spill_st, spill_ld = spill_st + int(m.group(3)), spill_ld + int(m.group(4))
    if returncode != 0:
        out.update(compiles=False, error="ptxas: " + " ".join(text.split())[:400])
    out.update(registers=regs, stack_bytes=stack, spill_store_bytes=spill_st, spill_load_bytes=spill_ld,
               num_warps=int(compiled.metadata.num_warps), num_stages=int(compiled.metadata.num_stages))
    return out


def _compile_job(job):
    return compile_variant(*job)


def occupancy(registers: int, smem: int, warps: int) -> int:
    """Resident blocks per SM on sm_90 from registers, shared memory and warps."""
    per_warp = -(-max(registers, 1) * 32 // REG_ALLOC_UNIT) * REG_ALLOC_UNIT
    by_regs = REGS_PER_SM // (per_warp * warps)
    by_smem = SMEM_PER_SM // (smem + SMEM_RESERVED_PER_BLOCK)
    by_warps = MAX_WARPS_PER_SM // warps
    return max(0, min(by_regs, by_smem, by_warps, MAX_BLOCKS_PER_SM))


# ---------------------------------------------------------------------------------------------
# Checks
# ---------------------------------------------------------------------------------------------


def _is_fp64(v: Variant) -> bool:
    return any(t == "*fp64" for t in v.signature.values())


def check_variant(v: Variant, r: dict) -> dict[str, str]:
    """Failed checks -> reason ('' when the check passes; missing when it does not apply)."""
    out: dict[str, str] = {}
    if not r.get("compiles"):
        out["compiles"] = r.get("error", "did not compile")
        return out
    out["compiles"] = ""
    out["smem"] = "" if r["smem"] <= MAX_DYNAMIC_SMEM else f"{r['smem']} B dynamic smem > {MAX_DYNAMIC_SMEM} B"
    if _is_fp64(v):
        out["spills"] = "" if r["stack_bytes"] <= FP64_STACK_BUDGET else (
            f"fp64 stack frame {r['stack_bytes']} B > budget {FP64_STACK_BUDGET} B")
    else:
        spilled = r["spill_store_bytes"] + r["spill_load_bytes"]
        out["spills"] = "" if spilled == 0 else (
            f"spills {r['spill_store_bytes']} B stores / {r['spill_load_bytes']} B loads")
    wants_tc = [d for d in r["dots"] if d["operand"] in ("bf16", "f16") or
                (d["operand"] == "f32" and d["precision"] in ("tf32", "tf32x3"))]
    if wants_tc:
        out["tensor_cores"] = "" if r["dot_path"] in ("wgmma", "mma") else (
            f"{wants_tc[0]['operand']}/{wants_tc[0]['precision']} dot lowered to {r['dot_path']}")
    if _is_fp64(v):
        low = [k for k, t in v.signature.items() if t in ("fp32", "fp16", "bf16")]
        out["fp64_scalars"] = "" if not low else f"fp32 scalars in an fp64 kernel: {', '.join(low)}"
    if v.wave_grids:
        least = min(v.wave_grids)
        out["wave"] = "" if least >= SMS else f"{least} programs at benchmark size < {SMS} SMs"
    return out


# ---------------------------------------------------------------------------------------------
# The gate
# ---------------------------------------------------------------------------------------------


def collect_variants(mode: str, log=print) -> tuple[list[Variant], list[dict]]:
    """Capture every case and deduplicate; returns (variants, per-case records)."""
    variants: dict[str, Variant] = {}
    records = []
    for case in cases(mode):
        try:
            launches = capture(case)
        except Exception as e:
            records.append({"case": case.label, "error": f"{type(e).__name__}: {e}"})
            log(f"capture failed: {case.label}: {type(e).__name__}: {e}")
            continue
        keys = []
        for launch in launches:
            v = bind(launch)
            v = variants.setdefault(v.key, v)
            v.family, v.dtype = v.family or case.loss, v.dtype or case.dtype
            v.cases += 1
            if len(v.grids) < 3:
                v.grids.append([case.label, list(launch.grid)])
            programs = 1
            for g in launch.grid:
                programs *= g
            size = (case.sizes.get("N", case.sizes.get("B")), case.sizes.get("D"))
            if case.loss in COVARIANCE_FAMILY and size in WAVE_SIZES:
                v.wave_grids.append(programs)
            keys.append(v.key)
        records.append({"case": case.label, "routed": "triton" if launches else "torch", "variants": keys})
    return list(variants.values()), records


def _compile_all(job_args: list, jobs: int, t0: float, log) -> list[dict]:
    if jobs <= 1:
        return [_compile_job(j) for j in job_args]
    import multiprocessing

    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        compiled = []
        for i, r in enumerate(pool.map(_compile_job, job_args), 1):
            compiled.append(r)
            if i % 25 == 0:
                log(f"compiled {i}/{len(job_args)} ({time.perf_counter() - t0:.0f} s)")
    return compiled


def run_gate(mode: str = "full", jobs: int = 2, log=print) -> dict:
    """Capture, compile and check; returns the results payload (rows + summary)."""
    import triton

    t0 = time.perf_counter()
    variants, records = collect_variants(mode, log)
    log(f"{len(records)} cases -> {len(variants)} variants ({time.perf_counter() - t0:.1f} s capture)")
    job_args = [(v.module, v.kernel, v.signature, v.constexprs, v.attrs, v.options) for v in variants]
    os.environ.setdefault("TRITON_DEFAULT_FP_FUSION", "1")  # triton 3.9 warns when unset; 1 = its default
    # A private kernel cache: every variant really runs ptxas, so its log is triton's own.
    cache, old_cache = tempfile.mkdtemp(prefix="sslfast-gate-"), os.environ.get("TRITON_CACHE_DIR")
    os.environ["TRITON_CACHE_DIR"] = cache
    try:
        compiled = _compile_all(job_args, jobs, t0, log)
    finally:
        shutil.rmtree(cache, ignore_errors=True)
        if old_cache is None:
            os.environ.pop("TRITON_CACHE_DIR", None)
        else:
            os.environ["TRITON_CACHE_DIR"] = old_cache
    rows = []
    for v, r in zip(variants, compiled):
        failed = check_variant(v, r)
        reasons = {k: msg for k, msg in failed.items() if msg}
        known = {k: msg for k, msg in reasons.items() if (v.kernel, k) in KNOWN_FAILURES}
        row = {
            "kernel": v.kernel, "family": v.family, "dtype": v.dtype,
            "signature": {k: t for k, t in v.signature.items() if t != "constexpr"},
            "constexprs": {list(v.signature)[k[0]]: c for k, c in v.constexprs.items()},
            "divisible_by_16": [list(v.signature)[k[0]] for k, a in v.attrs.items()
                                if any(x[0] == "tt.divisibility" for x in a)],
            "num_warps": int(v.options.get("num_warps", 4)), "num_stages": int(v.options.get("num_stages", 3)),
            "compiles": bool(r.get("compiles")),
            "registers": r.get("registers"), "spill_store_bytes": r.get("spill_store_bytes"),
            "spill_load_bytes": r.get("spill_load_bytes"), "stack_bytes": r.get("stack_bytes"),
            "smem_bytes": r.get("smem"), "dot_path": r.get("dot_path"),
            "occupancy_blocks_per_sm": (occupancy(r["registers"], r["smem"], r["num_warps"])
                                        if r.get("compiles") else None),
            "wave_programs": min(v.wave_grids) if v.wave_grids else None,
            "example_grids": v.grids, "n_cases": v.cases, "compile_s": r.get("compile_s"),
            "ptxas_log": r.get("ptxas_log"),
            "triton": triton.__version__,
            "checks": {k: (not msg) for k, msg in failed.items()},
            "passed": not reasons, "reasons": reasons,
            "known": sorted(known), "new_failures": sorted(set(reasons) - set(known)),
        }
        rows.append(row)
    failing = {(r["kernel"], c) for r in rows for c in r["reasons"]}
    evaluated = {(r["kernel"], c) for r in rows for c in r["checks"]}
    # The quick grid sees one size per kernel: spills and smem there say nothing about other sizes.
    judged = CHECKS if mode == "full" else QUICK_JUDGED
    stale = sorted(f"{k}:{c}" for k, c in KNOWN_FAILURES
                   if c in judged and (k, c) in evaluated and (k, c) not in failing
                   and triton.__version__.startswith(KNOWN_ONLY_UNDER.get((k, c), "")))
    new = sorted({f"{r['kernel']}:{c}" for r in rows for c in r["new_failures"]})
    routed = [rec["case"] for rec in records if rec.get("routed") == "torch"]
    errors = [rec for rec in records if "error" in rec]
    return {
        "quick": mode == "quick", "target": "sm_90a", "mode": mode,
        "results": rows,
        "summary": {
            "cases": len(records), "variants": len(rows), "failing_variants": sum(not r["passed"] for r in rows),
            "new_failures": new, "stale_known_failures": stale, "capture_errors": errors,
            "routed_torch": routed, "seconds": round(time.perf_counter() - t0, 1),
        },
        "known_failures": {f"{k}:{c}": why for (k, c), why in KNOWN_FAILURES.items()},
    }


def gate_ok(payload: dict) -> bool:
    s = payload["summary"]
    return not s["new_failures"] and not s["stale_known_failures"] and not s["capture_errors"]


# ---------------------------------------------------------------------------------------------
# GPU twin: launch every case small enough with real tensors
# ---------------------------------------------------------------------------------------------

LAUNCH_MAX_ELEMENTS = 1 << 24


def run_launch(mode: str = "full", log=print) -> dict:
    """CUDA only: run each case of the grid with at most ``LAUNCH_MAX_ELEMENTS`` input elements for
    real and record pass/fail per variant (finite outputs, no launch error)."""
    import triton

    if not torch.cuda.is_available():
        raise RuntimeError("sslfast bench gate --launch needs a CUDA GPU (torch.cuda.is_available() is False)")
    dev = torch.device("cuda")
    variants: dict[str, dict] = {}
    for case in cases(mode):
        if case.elements > LAUNCH_MAX_ELEMENTS:
            continue
        try:
            keys = [bind(launch).key for launch in capture(case)]
        except Exception as e:
            log(f"capture failed: {case.label}: {e}")
            continue
        if not keys:
            continue
        try:
            with _matmul_precision(DTYPES[case.dtype][1]):
                outs = case.run(dev)
            torch.cuda.synchronize()
            outs = outs if isinstance(outs, (list, tuple)) else [outs]
            tensors = [o for o in outs if isinstance(o, torch.Tensor) and o.numel()]
            finite = all(bool(torch.isfinite(o.float()).all()) for o in tensors)
            error = None if finite else "non-finite output"
        except Exception as e:
            error = f"{type(e).__name__}: {' '.join(str(e).split())[:300]}"
        for k in keys:
            rec = variants.setdefault(k, {"key": k, "launched": 0, "errors": []})
            rec["launched"] += 1
            if error and len(rec["errors"]) < 3:
                rec["errors"].append(f"{case.label}: {error}")
        log(f"{'FAIL' if error else 'ok  '} {case.label}" + (f": {error}" if error else ""))
    rows = []
    for rec in variants.values():
        name = re.search(r"'(_\w+_kernel)'", rec["key"])
        rows.append({"kernel": name.group(1) if name else "?", "variant": rec["key"][:2000],
                     "launched": rec["launched"], "passed": not rec["errors"], "errors": rec["errors"],
                     "triton": triton.__version__})
    return {"quick": mode == "quick", "target": "launch", "mode": mode, "results": rows,
            "summary": {"variants": len(rows), "failing_variants": sum(not r["passed"] for r in rows)}}


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------


def _summary_lines(payload: dict) -> list[str]:
    from sslfast.report.tables import gate_table

    s = payload["summary"]
    lines = [gate_table([payload])]
    lines.append(f"{s['cases']} cases, {s['variants']} variants, {s['failing_variants']} failing, "
                 f"{len(s['routed_torch'])} cases routed to torch, {s['seconds']} s")
    for name in s["new_failures"]:
        lines.append(f"NEW FAILURE {name}")
    for name in s["stale_known_failures"]:
        lines.append(f"STALE KNOWN FAILURE {name} (fixed: remove it from KNOWN_FAILURES)")
    for err in s["capture_errors"]:
        lines.append(f"CAPTURE ERROR {err['case']}: {err['error']}")
    return lines


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="sslfast bench gate", description=__doc__.split("\n\n")[0])
    g = p.add_mutually_exclusive_group()
    g.add_argument("--quick", action="store_true", help="the representative set (about a minute on 2 cores)")
    g.add_argument("--full", action="store_true", help="the full grid (the default)")
    p.add_argument("--launch", action="store_true", help="GPU twin: launch the captured variants on CUDA")
    p.add_argument("--out", default=None, help="results folder (default bench/results)")
    p.add_argument("--jobs", type=int, default=2, help="compile processes (default 2)")
    args = p.parse_args(argv)
    if args.jobs < 1:
        p.error(f"argument --jobs: expected a positive integer, got {args.jobs}")
    mode = "quick" if args.quick else "full"
    from sslfast.backend import interpreting

    if args.launch:
        if not torch.cuda.is_available():
            print("sslfast bench gate: error: --launch needs a CUDA GPU; run the static gate "
                  "(sslfast bench gate) on a CPU", file=sys.stderr)
            return 2
        if interpreting():
            print("sslfast bench gate: error: --launch runs compiled kernels; unset TRITON_INTERPRET",
                  file=sys.stderr)
            return 2
        from .common import write_results

        payload = run_launch(mode)
        path = write_results("gate", payload, args.out, device=torch.device("cuda"))
        print(f"{payload['summary']['failing_variants']} of {payload['summary']['variants']} variants failed; "
              f"wrote {path}")
        return 1 if payload["summary"]["failing_variants"] else 0
    if interpreting():
        # Under the interpreter @triton.jit gives interpreter objects, which cannot be compiled:
        # rerun in a process without it (make test sets TRITON_INTERPRET=1 globally).
        env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
        return subprocess.call([sys.executable, "-m", "sslfast.benchmarks.gpu_gate", *(argv or sys.argv[1:])], env=env)
    from .common import write_results

    payload = run_gate(mode, jobs=args.jobs)
    path = write_results("gate", payload, args.out, device=torch.device("cpu"))
    print("\n".join(_summary_lines(payload)))
    print(f"wrote {path}")
    return 0 if gate_ok(payload) else 1


if __name__ == "__main__":
    sys.exit(main())
