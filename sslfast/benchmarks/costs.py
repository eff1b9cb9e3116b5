"""The cost model of `sslfast bench losses`: FLOPs and bytes moved per case, and device peaks.

What is counted (the same definition in every column, so the ratios mean something):

- **FLOPs** are those of matrix products and factorisations, 2 per multiply-add (GEMM, Gram,
  Cholesky n³/3, LU 2n³/3, triangular solves n² per right-hand side). Elementwise work is not
  counted in any column: it is O(N·D) against the O(N·D·min(N, D)) products, and it is what
  memory traffic (the bytes) measures instead.
- **Eager torch paths** (the reference, lightly, our torch backend) are counted by running them
  once under ``torch.utils.flop_counter.FlopCounterMode`` (with the factorisations added below)
  and a dispatch mode that adds up, per aten op, the bytes of its tensor inputs and outputs:
  what an unfused eager implementation moves to and from memory, caches ignored.
- **The fused kernels** (the triton backend) are counted analytically by ``fused_cost``, one
  formula per loss in this file: the products of its launch sequence, and the *minimum* bytes of
  that sequence — inputs read once, gradients written once, and the intermediates it stores
  between launches (Gram or covariance matrices, normalised rows) written once and read once.

On CUDA the runner turns these into achieved TFLOP/s and TB/s and a fraction of the device's
peak (``device_peak``); on a CPU it records the FLOP and byte ratios against the reference, which
show the algorithmic gain without any GPU.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

# --- device peaks ------------------------------------------------------------------------------

# (name test, label, memory TB/s, {dtype: TFLOP/s}, source). Memory figures count read + write.
# H200: measured in this workplace (device-to-device copy; bf16 dense GEMM). H100 SXM: the
# datasheet. fp32 matmuls run on CUDA cores unless TF32 is allowed (torch's default is not),
# so fp32 is compared with the FP32 (non-tensor) figure, or the TF32 one when TF32 is on.
PEAKS = (
    (
        lambda name: "H200" in name,
        "NVIDIA H200",
        4.3,
        {"bf16": 790.0, "fp16": 790.0, "fp32": 67.0, "tf32": 494.7},
        "bandwidth and bf16 measured here; fp32/tf32 spec",
    ),
    (
        lambda name: "H100" in name and ("HBM3" in name or "SXM" in name),
        "NVIDIA H100 SXM",
        3.35,
        {"bf16": 989.0, "fp16": 989.0, "fp32": 67.0, "tf32": 494.7},
        "spec (datasheet, dense)",
    ),
)


def device_peak(name: str, dtype: str) -> dict | None:
    """The peak of device ``name`` for inputs of ``dtype`` ("fp32"/"bf16"/"fp16"), or None if unknown."""
    for test, label, tb_s, tflops, source in PEAKS:
        if test(name):
            key = dtype
            if dtype == "fp32" and torch.backends.cuda.matmul.allow_tf32:
                key = "tf32"
            return {"device": label, "tb_per_s": tb_s, "tflops": tflops[key], "flops_dtype": key, "source": source}
    return None


# --- counting the eager paths ----------------------------------------------------------------


def _batch(shape) -> int:
    return math.prod(shape[:-2]) if len(shape) > 2 else 1


def _cholesky_flop(a_shape, *args, out_shape=None, **kwargs) -> int:
    n = a_shape[-1]
    return _batch(a_shape) * n**3 // 3


def _lu_flop(a_shape, *args, out_shape=None, **kwargs) -> int:
    n = a_shape[-1]
    return _batch(a_shape) * 2 * n**3 // 3


def _cholesky_solve_flop(b_shape, l_shape, *args, out_shape=None, **kwargs) -> int:
    n, k = l_shape[-1], b_shape[-1]
    return _batch(b_shape) * 2 * n * n * k  # two triangular solves, n² per column each


def _lu_solve_flop(lu_shape, pivots_shape, b_shape, *args, out_shape=None, **kwargs) -> int:
    n, k = lu_shape[-1], b_shape[-1]
    return _batch(b_shape) * 2 * n * n * k


def _triangular_solve_flop(a_shape, b_shape, *args, out_shape=None, **kwargs) -> int:
    n, k = a_shape[-1], b_shape[-1]
    return _batch(b_shape) * n * n * k


def _factorisations() -> dict:
    """FlopCounterMode counts products only; add the factorisations the coding rate uses."""
    aten = torch.ops.aten
    table = {
        "linalg_cholesky_ex": _cholesky_flop,
        "_linalg_slogdet": _lu_flop,
        "linalg_lu_factor_ex": _lu_flop,
        "_linalg_det": _lu_flop,
        "cholesky_solve": _cholesky_solve_flop,
        "_cholesky_solve_helper": _cholesky_solve_flop,
        "linalg_lu_solve": _lu_solve_flop,
        "linalg_solve_triangular": _triangular_solve_flop,
    }
    return {getattr(aten, name): fn for name, fn in table.items() if hasattr(aten, name)}


def _nbytes(t: torch.Tensor) -> int:
    logical = t.numel() * t.element_size()
    try:  # an expanded (stride-0) tensor moves its storage, not its logical size
        return min(logical, t.untyped_storage().nbytes())
    except (RuntimeError, NotImplementedError):
        return logical


def _byte_counter():
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_flatten

    class ByteCounter(TorchDispatchMode):
        """Bytes of every non-view aten op's tensor inputs and outputs."""

        def __init__(self):
            super().__init__()
            self.bytes = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            name = func.__name__
            if not (getattr(func, "is_view", False) or name.startswith(("empty", "detach", "_to_copy.", "lift"))):
                flat = tree_flatten((args, kwargs or {}, out))[0]
                self.bytes += sum(_nbytes(t) for t in flat if isinstance(t, torch.Tensor))
            return out

    return ByteCounter()


def counted_cost(run: Callable[[], object]) -> dict:
    """FLOPs (products and factorisations) and eager bytes of one call of ``run``."""
    from torch.utils.flop_counter import FlopCounterMode

    flops = FlopCounterMode(display=False, custom_mapping=_factorisations())
    counter = _byte_counter()
    with flops, counter:
        run()
    return {"flops": int(flops.get_total_flops()), "bytes": int(counter.bytes), "cost_method": "counted"}


# --- the fused kernels, analytically -------------------------------------------------------------


def _vicreg(p: dict, s: int, bwd: bool) -> tuple[int, int]:
    # Per view: C = ZcᵀZc (D×D) or G = ZcZcᵀ (N×N, float64, when N < D), then Zc·C or G·Zc for
    # the gradient direction (only when a gradient is wanted): 2·N·D·M each, M = min(N, D)
    # (sslfast._numerics.offdiag_self).
    n, d = p["N"], p["D"]
    m, acc = (n, 8) if n < d else (d, 4)
    flops = 2 * 2 * n * d * m * (2 if bwd else 1)
    inter = 2 * (2 * m * m * acc + (2 * n * d * s if bwd else 0))  # the M×M product and Zc·Off(C), per view
    return flops, 2 * n * d * s * (2 if bwd else 1) + inter


def _barlow_twins(p: dict, s: int, bwd: bool) -> tuple[int, int]:
    # Gram route (N < D): AAᵀ, BBᵀ (float64), then (BBᵀ)A and (AAᵀ)B: 4 products of 2·N²·D.
    # D×D route: M = ÂᵀB̂, then B̂Mᵀ and ÂM: 3 products of 2·N·D² (offdiag_cross). The gradient
    # products (the last two of each) only when a gradient is wanted.
    n, d = p["N"], p["D"]
    grad_inter = 2 * (2 * n * d * s) if bwd else 0
    if n < d:
        flops, inter = (4 if bwd else 2) * 2 * n * n * d, 2 * (2 * n * n * 8) + grad_inter
    else:
        flops, inter = (3 if bwd else 1) * 2 * n * d * d, 2 * d * d * 4 + grad_inter
    return flops, 2 * n * d * s * (2 if bwd else 1) + inter


def _tico(p: dict, s: int, bwd: bool) -> tuple[int, int]:
    # C' = β·C + (1−β)/N·ÛaᵀÛa (addmm) and P = Ûa·C': 2 products of 2·N·D² (kernels/tico.py).
    n, d = p["N"], p["D"]
    flops = 2 * 2 * n * d * d
    # Û (two (N, D) fp32 buffers) and P written + read; C read, C' written and read.
    inter = 2 * (2 * n * d * 4) + 2 * n * d * 4 + 3 * d * d * 4
    return flops, 2 * n * d * s * (2 if bwd else 1) + inter


def _coding_rate(p: dict, s: int, bwd: bool) -> tuple[int, int]:
    # Per view, k = min(B, D): I + a·ZZᵀ or I + a·ZᵀZ (baddbmm, 2·B·D·k), Cholesky k³/3, and
    # for the gradient a Cholesky solve against Z (2·k²·max(B, D) = 2·B·D·k) (_numerics.coding_rates).
    v, b, d = p["V"], p["B"], p["D"]
    k = min(b, d)
    flops = v * (2 * b * d * k + k**3 // 3 + (2 * b * d * k if bwd else 0))
    inter = v * (2 * k * k * 4 + 2 * k * k * 4 + (2 * b * d * 4 if bwd else 0))  # Gram, factor, solve
    return flops, v * b * d * s * (2 if bwd else 1) + inter


def _emp_ssl(p: dict, s: int, bwd: bool) -> tuple[int, int]:
    # The coding rate of every view plus the invariance term (elementwise: not counted as FLOPs).
    return _coding_rate(p, s, bwd)


def _multicrop_infonce(p: dict, s: int, bwd: bool) -> tuple[int, int]:
    # S = UUᵀ streamed in tiles (2·N²·D). With the gradient: the query pass also forms Σ_j P_ij u_j
    # (2·N²·D) and the key pass recomputes S and forms Σ_i P_ij u_i (2 × 2·N²·D) (kernels/infonce.py).
    n, d = p["N"], p["D"]
    flops = (4 if bwd else 1) * 2 * n * n * d
    inter = 2 * n * d * 4 + 2 * 3 * n * 4 + (2 * n * d * 4 if bwd else 0)  # U, per-row LSEs, query half
    return flops, n * d * s * (2 if bwd else 1) + inter


def _moco(p: dict, s: int, bwd: bool) -> tuple[int, int]:
    # B queries against K bank rows (2·B·K·D) and the positives (2·B·D); the gradient adds
    # Σ_k P_ik·bank_k (2·B·K·D) in the same pass. The bank is fp32 and read once.
    b, k, d = p["B"], p["K"], p["D"]
    flops = 2 * b * k * d * (2 if bwd else 1) + 2 * b * d
    return flops, 2 * b * d * s * (2 if bwd else 1) + k * d * 4


FUSED = {
    "vicreg": _vicreg,
    "barlow_twins": _barlow_twins,
    "tico": _tico,
    "coding_rate": _coding_rate,
    "emp_ssl": _emp_ssl,
    "multicrop_infonce": _multicrop_infonce,
    "moco": _moco,
}


def fused_cost(loss: str, params: dict, dtype: torch.dtype, backward: bool) -> dict | None:
    """Analytic FLOPs and minimum bytes of loss ``loss``'s fused launch sequence (None: no formula)."""
    if loss not in FUSED:
        return None
    s = torch.empty((), dtype=dtype).element_size()
    flops, nbytes = FUSED[loss](params, s, backward)
    return {"flops": int(flops), "bytes": int(nbytes), "cost_method": "analytic"}


def throughput(row: dict, peak: dict | None) -> dict:
    """Achieved TFLOP/s and TB/s of a timed row with a cost, and its fraction of ``peak``."""
    if "median_ms" not in row or "flops" not in row:
        return {}
    sec = row["median_ms"] / 1e3
    out = {"tflops_per_s": row["flops"] / sec / 1e12}
    if "bytes" in row:  # the compiled reference has the reference's FLOPs but no byte count
        out["tb_per_s"] = row["bytes"] / sec / 1e12
    if peak:
        out["flops_peak_fraction"] = out["tflops_per_s"] / peak["tflops"]
        if "tb_per_s" in out:
            out["bytes_peak_fraction"] = out["tb_per_s"] / peak["tb_per_s"]
    return out
