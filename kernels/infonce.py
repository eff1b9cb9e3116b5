"""Tiled InfoNCE: multi-crop SimCLR / NT-Xent and the MoCo memory-bank form.

Multi-crop (SimCLR, Chen et al. 2020, arXiv:2002.05709; solo-learn's multi-view form):
N = V·B_g L2-normalised rows u, query rows i (this rank's V·B_q rows), per query
    ℓ_i = LSE_{j≠i}(s_ij/T) − LSE_{j∈pos(i)}(s_ij/T),   s_ij = ⟨u_i, u_j⟩,
pos(i) = the other V−1 views of the same image; loss = Σ_i c_i ℓ_i with per-row scales c.
With P_ij = softmax over j≠i and Q_ij = softmax over pos(i),
    dL/ds_ij = c_i (P_ij − Q_ij)/T,   dL/du_i = Σ_j dL/ds_ij u_j (as query) + Σ_j dL/ds_ji u_j (as key).

Launch sequence (never an N×N tensor in global memory; extra memory O(N·D + N)):
1. ``_normalize_rows_kernel``: u = x / max(‖x‖, eps) into an (N, D) buffer in the dot operand
   dtype (the input dtype for bf16/fp16, so the dots run on bf16/fp16 tensor cores; the
   accumulation dtype otherwise), and ‖x‖ per row. Overflow-safe: each row is scaled by its max |x|
   before the sum of squares (``sslfast._numerics.normalize_rows`` is the torch twin).
2. ``_multicrop_infonce_fwd_kernel``: a program owns BM query rows and streams every key tile with
   ``tl.dot``, keeping an online logsumexp (flash-attention's m/l) and, when the gradient is
   wanted, the online softmax-weighted sum Σ_j P_ij u_j — the query half of the gradient in the
   same pass. The V−1 positives are gathered by index (they are not a tile-shaped set), so
   LSE_pos and Σ Q_ij u_j cost O(V·D) per row. Writes LSE_all, LSE_pos and c_i/T·(P−Q)u per row.
3. ``_multicrop_infonce_fwd_keys_kernel``: a program owns BN key rows and streams the query tiles,
   recomputing s and P from the stored LSE (flash-attention's dK pass), subtracts the positive
   part by index, adds the row's query half, and applies the normalisation backward, writing
   dL/dx in the input dtype.
The loss Σ c_i (LSE_all − LSE_pos) is a length-N reduction on the host side (no sync).

Sizes (``_plan``, ``fused_supported``). Shared memory must not grow with D and the BM×D gradient
accumulators must fit in registers (Hopper: 232,448 B of shared memory per block; spills are slow):
- without a gradient, the similarity dots stream D in chunks of BK (``_sim_tile``), so every D is
  served with the same tiles;
- with a gradient, whole-D tiles are held (Σ_j P_ij u_j is BM×D), so the fused kernels serve a padded
  D up to ``MAX_GRAD_DP`` per operand dtype (``MAX_GRAD_DP_IEEE`` for exact fp32 dots). Larger D go
  to the dense torch backend: ``fused_supported`` is the predicate
  ``sslfast.losses.infonce`` routes by (for ``backend="triton"`` and ``"auto"`` alike).

Dot precision (``_precision``): bf16/fp16 operands in their own dtype, fp32 accumulation; fp32 at
torch's default matmul precision ("highest") as ``tf32x3`` (three TF32 tensor-core products: ≈fp32
accuracy), at "high"/"medium" as ``tf32``; exact fp32 FMA dots only on request (``FP32_DOTS =
"ieee"``, served with smaller tiles); fp64 always "ieee". Scalars (1/T, eps, scales) reach the
kernels as fp64 bit patterns in an int64 (``_scalars.f64_bits``) and are converted in-kernel to the
accumulation dtype: the JIT would type a Python float as fp32, which costs the fp64 path ≈6e-8.
Offsets are int64 (``WIDE``) once N·D can pass 2³¹.

MoCo (He et al. 2020, arXiv:1911.05722; lightly's NTXentLoss with a memory bank): queries
u0_i, logits [⟨u0_i, u1_i⟩, u0_i·bankᵀ]/T, label 0. ``_nt_xent_bank_fwd_kernel`` streams the bank tiles
for B queries; the bank is constant, so the whole gradient comes out of that one pass.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import triton
import triton.language as tl

from sslfast._numerics import NORM_EPS, acc_dtype
from sslfast.backend import interpreting

from ._covariance import row_major
from ._op import cdiv, kernel_op, launch
from ._scalars import f64_arg, f64_bits

NORM_BLOCK_N = 32
NORM_BLOCK_D = 64
NEG_BIG = tl.constexpr(-1.0e30)  # finite start for the running max: exp(m_old − m_new) never sees −inf − (−inf)

_TRITON_VERSION = tuple(int(x) for x in triton.__version__.split(".")[:2])  # tiles that differ by compiler

# Test hooks: TILES = (BM, BN, num_warps) and CHUNK = BK force small, multi-tile, multi-chunk grids.
TILES = None
CHUNK = None
# Exact fp32 dots, on request only: "auto" (tf32x3 at torch's "highest", tf32 at "high"/"medium")
# or "ieee" (FMA dots, no tensor cores; smaller tiles, MAX_GRAD_DP_IEEE). Read at launch (at trace
# time under torch.compile).
FP32_DOTS = "auto"
# Largest padded D the gradient kernels serve per dot operand dtype (statically checked for sm_90a
# with the static gate, sslfast bench gate: no spills, shared memory ≤ 232,448 B). Above: torch backend.
# D = 256 spilled at every tile shape tried (16×16 up to 64×64, 4 and 8 warps): serving it needs the
# gradient split over D across programs.
MAX_GRAD_DP = {torch.float16: 128, torch.bfloat16: 128, torch.float32: 128, torch.float64: 64}
MAX_GRAD_DP_IEEE = 64
WIDE_FROM = 2**31  # int64 offsets once an offset can reach this


class Plan(NamedTuple):
    bm: int  # query rows per program (forward / bank kernel)
    bn: int  # key rows per streamed tile
    bk: int  # D chunk of the similarity dots (= dp: whole-D tiles)
    warps: int
    kbn: int  # keys kernel: key rows per program
    kbm: int  # keys kernel: query rows per streamed tile
    kwarps: int


def _plan_tiles(tiles):
    """((BM, BN, warps) of the forward kernels, (BN, BM, warps) of the keys kernel)."""
    return tiles if isinstance(tiles[0], tuple) else (tiles, (tiles[1], tiles[0], tiles[2]))


def _padded(d: int) -> int:
    return max(16, triton.next_power_of_2(d))  # tl.dot needs every tile dim >= 16


def _operand_dtype(dtype: torch.dtype) -> torch.dtype:
    """dtype of the normalised rows fed to tl.dot: bf16/fp16 stay themselves (tensor cores).

    Under TRITON_INTERPRET bf16 rows are staged in fp32: the interpreter's numpy has no bfloat16
    and its tl.dot multiplies the raw bit patterns. fp16 (a numpy dtype) takes the 16-bit path there.
    """
    if dtype == torch.bfloat16 and interpreting():
        return torch.float32
    return dtype if dtype in (torch.float16, torch.bfloat16) else acc_dtype(dtype)


def _precision(dtype: torch.dtype) -> str:
    """input_precision of every tl.dot for inputs of ``dtype``.

    bf16/fp16 operands are multiplied exactly into fp32 ("ieee" only names that; it does not turn off
    their tensor cores). fp32: "tf32x3" at torch's default "highest" (≈fp32 accuracy on tensor
    cores), "tf32" at "high"/"medium", as every other fp32 matmul of the step; exact FMA dots with
    ``FP32_DOTS = "ieee"``. fp64: "ieee".
    """
    if dtype == torch.float32:
        if FP32_DOTS == "ieee":
            return "ieee"
        if FP32_DOTS != "auto":
            raise ValueError(f"sslfast.kernels.infonce.FP32_DOTS must be 'auto' or 'ieee', got {FP32_DOTS!r}")
        return "tf32x3" if torch.get_float32_matmul_precision() == "highest" else "tf32"
    return "ieee"


def _max_grad_dp(dtype: torch.dtype) -> int:
    # FP32_DOTS only: the routing runs outside the op, where torch.compile cannot trace
    # torch.get_float32_matmul_precision (a str-returning torch.* call)
    if dtype == torch.float32 and FP32_DOTS == "ieee":
        return MAX_GRAD_DP_IEEE
    return MAX_GRAD_DP[_operand_dtype(dtype)]


def fused_supported(d: int, dtype: torch.dtype, compute_grad: bool) -> bool:
    """Whether the fused kernels serve feature dimension ``d`` for ``dtype`` inputs.

    Without a gradient every D is served (the similarity dots stream D in chunks). With one, the
    kernels hold whole-D accumulators, so the padded D must be ≤ ``MAX_GRAD_DP`` of the operand dtype
    (``MAX_GRAD_DP_IEEE`` for exact fp32 dots); larger sizes would spill registers or exceed shared
    memory, and ``sslfast.losses.infonce`` sends them to the torch backend instead.
    """
    return not compute_grad or _padded(d) <= _max_grad_dp(dtype)


# Gradient-path tiles by dot kind and padded D: ((BM, BN, warps) forward/bank, (BN, BM, warps) keys).
# Chosen by compiling for sm_90a (triton 3.9), then narrowed where the full gate (sslfast bench gate)
# found spills under one of the two tritons (tf32 at D = 128, below; the tf32x3 keys kernel at
# D <= 32: 4-8 B with 32-row tiles under 3.6): the largest tiles without register spills under both.
# tf32x3 splits every fp32 operand in two (hi + lo), so it needs the smallest tiles.
# tf32 at D = 128 is where the two compilers part: triton 3.6's register allocator spills the 32-row
# tiles (12-20 B) and 3.9's the 16-row ones (8 B, capped at 128 registers), so the tile follows the
# compiler; each choice is spill-free in the full gate under its version.
_TF32_D128 = ((16, 32, 8), (16, 32, 8)) if _TRITON_VERSION < (3, 9) else ((32, 32, 8), (32, 32, 8))
GRAD_TILES = {
    "16bit": {32: ((32, 32, 4), (32, 32, 4)), 64: ((64, 64, 8), (64, 64, 8)), 128: ((32, 32, 8), (32, 32, 8))},
    "tf32": {32: ((32, 32, 4), (32, 32, 4)), 128: _TF32_D128},
    "tf32x3": {32: ((32, 32, 4), (16, 32, 8)), 64: ((32, 32, 8), (32, 32, 8)), 128: ((16, 32, 4), (16, 32, 8))},
    "ieee": {64: ((32, 32, 4), (16, 16, 4))},
    "fp64": {64: ((16, 32, 4), (16, 32, 4))},
}
# Forward-only tiles (BM, BN, warps) and D chunk BK (elements), same check.
FWD_TILES = {"16bit": (64, 64, 8, 64), "tf32": (64, 64, 8, 64), "tf32x3": (64, 64, 8, 32), "ieee": (16, 32, 4, 32),
             "fp64": (32, 32, 4, 32)}


def _dot_kind(dtype: torch.dtype) -> str:
    if dtype == torch.float64:
        return "fp64"
    if dtype == torch.float32:
        return _precision(dtype)
    return "16bit"


# int64 offsets cost registers: above padded D = 64 the gradient kernels then take these tiles
WIDE_GRAD_TILES = ((16, 16, 4), (16, 32, 8))


def _plan(dp: int, dtype: torch.dtype, compute_grad: bool, wide: bool = False) -> Plan:
    """Tiles by padded D, dot kind, gradient (whole-D tiles with one, D chunks without) and offset width."""
    kind = _dot_kind(dtype)
    if compute_grad and TILES is not None:
        (bm, bn, w), (kbn, kbm, kw) = _plan_tiles(TILES)
        bk = dp
    elif compute_grad:
        table = GRAD_TILES[kind]
        fits = [k for k in table if k >= dp]
        if not fits:
            raise ValueError(f"no fused gradient tiles for padded D = {dp} ({kind} dots): see fused_supported")
        (bm, bn, w), (kbn, kbm, kw) = WIDE_GRAD_TILES if wide and dp > 64 else table[min(fits)]
        bk = dp
    else:
        bm, bn, w, bk = FWD_TILES[kind]
        kbn, kbm, kw = bn, bm, w
        bk = min(CHUNK or bk, dp)
    if TILES is not None:
        (bm, bn, w), (kbn, kbm, kw) = _plan_tiles(TILES)
    return Plan(bm, bn, bk, w, kbn, kbm, kw)


@triton.jit
def _wide(x, WIDE: tl.constexpr):
    if WIDE:
        x = x.to(tl.int64)
    return x


@triton.jit
def _normalize_rows_kernel(
    x_ptr, u_ptr, norm_ptr, N, D, stride_x, eps_bits, WIDE: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr
):
    ACC = norm_ptr.dtype.element_ty
    eps = f64_arg(eps_bits, ACC)
    rows = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    rmask = rows < N
    xrow = _wide(rows, WIDE) * stride_x
    urow = _wide(rows, WIDE) * D
    # pass 1: a = max |x| per row, so that the sum of squares below lies in [1, D] (no overflow to
    # inf at |x| ≈ 1e19 in fp32, no underflow to 0 at |x| ≈ 1e-20)
    a = tl.zeros([BLOCK_N], ACC)
    for d0 in range(0, D, BLOCK_D):
        cols = d0 + tl.arange(0, BLOCK_D)
        mask = rmask[:, None] & (cols < D)[None, :]
        x = tl.load(x_ptr + xrow[:, None] + cols[None, :], mask=mask, other=0.0).to(ACC)
        a = tl.maximum(a, tl.max(tl.abs(x), 1))
    a = tl.where(a > 0, a, 1.0)  # zero rows (a NaN row keeps its NaN through x)
    inv_a = 1.0 / a  # per-row reciprocals: one division per row, not per element
    ss = tl.zeros([BLOCK_N], ACC)
    for d0 in range(0, D, BLOCK_D):
        cols = d0 + tl.arange(0, BLOCK_D)
        mask = rmask[:, None] & (cols < D)[None, :]
        x = tl.load(x_ptr + xrow[:, None] + cols[None, :], mask=mask, other=0.0).to(ACC) * inv_a[:, None]
        ss += tl.sum(x * x, 1)
    r = tl.sqrt(ss)
    norm = a * r
    # u = x / max(‖x‖, eps) as F.normalize: x/eps at or below eps (there 1/a may be inf: that branch is
    # not taken); a NaN/inf row (norm NaN) takes the scaled branch, where inf·0 or NaN makes it NaN:
    # never a finite row out of a non-finite one
    small = norm <= eps
    inv_r = 1.0 / tl.where(r > 0, r, 1.0)
    inv_eps = 1.0 / eps
    for d0 in range(0, D, BLOCK_D):
        cols = d0 + tl.arange(0, BLOCK_D)
        mask = rmask[:, None] & (cols < D)[None, :]
        x = tl.load(x_ptr + xrow[:, None] + cols[None, :], mask=mask, other=0.0).to(ACC)
        u = tl.where(small[:, None], x * inv_eps, (x * inv_a[:, None]) * inv_r[:, None])
        tl.store(u_ptr + urow[:, None] + cols[None, :], u.to(u_ptr.dtype.element_ty), mask=mask)
    tl.store(norm_ptr + rows, norm, mask=rmask)


@triton.jit
def _normalize_backward(g, u, n, eps):
    """Backward of u = x / max(‖x‖, eps) for (rows, DP) tiles: (g − u⟨u, g⟩)/‖x‖ above eps, g/eps
    below it; per-row coefficients, so the tile costs one multiply-add per element (no division)."""
    big = n > eps
    a = tl.where(big, 1.0 / tl.where(big, n, 1.0), 1.0 / eps)
    b = tl.where(big, tl.sum(u * g, 1) * a, 0.0)
    return g * a[:, None] - u * b[:, None]


@triton.jit
def _sim_tile(q, q_ptr, qoff, qmask, k_ptr, koff, kmask, D, PRECISION: tl.constexpr, ACC: tl.constexpr,
              BK: tl.constexpr, DP: tl.constexpr):
    """(BM, BN) similarities ⟨q_i, k_j⟩ and, for whole-D tiles (BK == DP), the key tile itself.

    BK == DP: ``q`` is the query tile held in registers and one dot does it. BK < DP: D is streamed
    in BK chunks of both operands from global memory (L2), so shared memory does not grow with D.
    """
    if BK == DP:
        cols = tl.arange(0, DP)
        k = tl.load(k_ptr + koff[:, None] + cols[None, :], mask=kmask[:, None] & (cols < D)[None, :], other=0.0)
        s = tl.dot(q, tl.trans(k), input_precision=PRECISION, out_dtype=ACC)
    else:
        s = tl.zeros([qoff.shape[0], koff.shape[0]], ACC)
        k = s  # unused: no gradient on the chunked path
        for d0 in range(0, D, BK):
            cols = d0 + tl.arange(0, BK)
            dmask = cols < D
            qc = tl.load(q_ptr + qoff[:, None] + cols[None, :], mask=qmask[:, None] & dmask[None, :], other=0.0)
            kc = tl.load(k_ptr + koff[:, None] + cols[None, :], mask=kmask[:, None] & dmask[None, :], other=0.0)
            s = tl.dot(qc, tl.trans(kc), s, input_precision=PRECISION, out_dtype=ACC)
    return s, k


@triton.jit
def _row_dot(q, a_ptr, aoff, b_ptr, boff, mask, D, ACC: tl.constexpr, BK: tl.constexpr, DP: tl.constexpr):
    """Row-wise ⟨a_r, b_r⟩ in ACC, and the b rows when whole-D (BK == DP; ``q`` holds the a rows then)."""
    if BK == DP:
        cols = tl.arange(0, DP)
        b = tl.load(b_ptr + boff[:, None] + cols[None, :], mask=mask[:, None] & (cols < D)[None, :], other=0.0)
        s = tl.sum(q.to(ACC) * b.to(ACC), 1)
    else:
        s = tl.zeros([aoff.shape[0]], ACC)
        b = s  # unused: no gradient on the chunked path
        for d0 in range(0, D, BK):
            cols = d0 + tl.arange(0, BK)
            m2 = mask[:, None] & (cols < D)[None, :]
            a = tl.load(a_ptr + aoff[:, None] + cols[None, :], mask=m2, other=0.0).to(ACC)
            s += tl.sum(a * tl.load(b_ptr + boff[:, None] + cols[None, :], mask=m2, other=0.0).to(ACC), 1)
    return s, b


@triton.jit
def _online_keys(
    q,
    q_ptr,
    qoff,
    qmask,
    k_ptr,
    NK,
    D,
    stride_k,
    qrow,
    inv_t,
    m,
    l,
    acc,
    EXCLUDE_SELF: tl.constexpr,
    COMPUTE_GRAD: tl.constexpr,
    WIDE: tl.constexpr,
    PRECISION: tl.constexpr,
    BN: tl.constexpr,
    BK: tl.constexpr,
    DP: tl.constexpr,
):
    """Stream key tiles: running max m, running Σ exp(s − m) l, running Σ exp(s − m)·k acc."""
    ACC = m.dtype
    for j0 in range(0, NK, BN):
        keys = j0 + tl.arange(0, BN)
        kmask = keys < NK
        s, k = _sim_tile(q, q_ptr, qoff, qmask, k_ptr, _wide(keys, WIDE) * stride_k, kmask, D, PRECISION, ACC, BK, DP)
        s = s * inv_t
        valid = kmask[None, :]
        if EXCLUDE_SELF:
            valid = valid & (keys[None, :] != qrow[:, None])
        s = tl.where(valid, s, float("-inf"))
        m_new = tl.maximum(m, tl.max(s, 1))
        alpha = tl.exp(m - m_new)
        p = tl.exp(s - m_new[:, None])
        l = l * alpha + tl.sum(p, 1)
        if COMPUTE_GRAD:
            # p ∈ [0, 1] in the operand dtype (flash-attention's P·V), fp32/fp64 accumulation
            acc = acc * alpha[:, None] + tl.dot(p.to(k.dtype), k, input_precision=PRECISION, out_dtype=ACC)
        m = m_new
    return m, l, acc


@triton.jit
def _multicrop_infonce_fwd_kernel(
    u_ptr,
    c_ptr,
    stats_ptr,
    dq_ptr,
    V,
    Bg,
    Bq,
    b0,
    D,
    inv_t_bits,
    COMPUTE_GRAD: tl.constexpr,
    WIDE: tl.constexpr,
    PRECISION: tl.constexpr,
    BM: tl.constexpr,
    BN: tl.constexpr,
    BK: tl.constexpr,
    DP: tl.constexpr,
):
    ACC = stats_ptr.dtype.element_ty
    inv_t = f64_arg(inv_t_bits, ACC)
    nq = V * Bq
    qi = tl.program_id(0) * BM + tl.arange(0, BM)  # local query index: view-major, as (V, B_q)
    rmask = qi < nq
    view = qi // Bq
    gb = b0 + qi % Bq  # image index in the gathered batch
    qrow = view * Bg + gb  # row of u
    qoff = _wide(qrow, WIDE) * D
    if BK == DP:
        cols = tl.arange(0, DP)
        q = tl.load(u_ptr + qoff[:, None] + cols[None, :], mask=rmask[:, None] & (cols < D)[None, :], other=0.0)
    else:
        q = 0.0  # streamed in chunks by _sim_tile / _row_dot
    if COMPUTE_GRAD:
        acc = tl.zeros([BM, DP], ACC)
    else:
        acc = tl.zeros([BM, 16], ACC)  # unused
    m = tl.full([BM], NEG_BIG, ACC)
    l = tl.zeros([BM], ACC)
    m, l, acc = _online_keys(
        q, u_ptr, qoff, rmask, u_ptr, V * Bg, D, D, qrow, inv_t, m, l, acc, True, COMPUTE_GRAD, WIDE, PRECISION,
        BN, BK, DP,
    )
    lse_all = m + tl.log(tl.where(rmask, l, 1.0))  # padded rows: no log(0) warnings
    if BK == DP:  # reloaded (L2), not kept live across the key loop: register pressure
        q = tl.load(u_ptr + qoff[:, None] + cols[None, :], mask=rmask[:, None] & (cols < D)[None, :], other=0.0)
    # Positives: the same image in the other views, found by index.
    mp = tl.full([BM], NEG_BIG, ACC)
    lp = tl.zeros([BM], ACC)
    for v in range(0, V):
        pmask = rmask & (view != v)
        sp, _ = _row_dot(q, u_ptr, qoff, u_ptr, _wide(v * Bg + gb, WIDE) * D, pmask, D, ACC, BK, DP)
        sp = tl.where(pmask, sp * inv_t, float("-inf"))
        mp_new = tl.maximum(mp, sp)
        lp = lp * tl.exp(mp - mp_new) + tl.exp(sp - mp_new)
        mp = mp_new
    lse_pos = mp + tl.log(tl.where(rmask, lp, 1.0))
    tl.store(stats_ptr + qi, lse_all, mask=rmask)
    tl.store(stats_ptr + nq + qi, lse_pos, mask=rmask)
    if COMPUTE_GRAD:
        g = acc / tl.where(rmask, l, 1.0)[:, None]  # Σ_j P_ij u_j
        for v in range(0, V):
            pmask = rmask & (view != v)
            sp, up = _row_dot(q, u_ptr, qoff, u_ptr, _wide(v * Bg + gb, WIDE) * D, pmask, D, ACC, BK, DP)
            w = tl.exp(tl.where(pmask, sp * inv_t - lse_pos, float("-inf")))
            g -= w[:, None] * up.to(ACC)
        c = tl.load(c_ptr + qi, mask=rmask, other=0.0)
        cols = tl.arange(0, DP)
        dq_off = _wide(qi, WIDE) * D
        dq_mask = rmask[:, None] & (cols < D)[None, :]
        tl.store(dq_ptr + dq_off[:, None] + cols[None, :], g * (c * inv_t)[:, None], mask=dq_mask)


@triton.jit
def _multicrop_infonce_fwd_keys_kernel(
    u_ptr,
    norm_ptr,
    c_ptr,
    stats_ptr,
    dq_ptr,
    g_ptr,
    V,
    Bg,
    Bq,
    b0,
    D,
    inv_t_bits,
    eps_bits,
    WIDE: tl.constexpr,
    PRECISION: tl.constexpr,
    BM: tl.constexpr,
    BN: tl.constexpr,
    DP: tl.constexpr,
):
    ACC = stats_ptr.dtype.element_ty
    inv_t = f64_arg(inv_t_bits, ACC)
    eps = f64_arg(eps_bits, ACC)
    ng = V * Bg
    nq = V * Bq
    keys = tl.program_id(0) * BN + tl.arange(0, BN)
    kmask = keys < ng
    kview = keys // Bg
    kb = keys % Bg
    cols = tl.arange(0, DP)
    dmask = cols < D
    tile_mask = kmask[:, None] & dmask[None, :]
    koff = _wide(keys, WIDE) * D
    k = tl.load(u_ptr + koff[:, None] + cols[None, :], mask=tile_mask, other=0.0)
    acc = tl.zeros([BN, DP], ACC)
    # c_i·nq ~ O(1) (c_i = w_i / (mean w · nq)): keeps P·c clear of fp16's subnormals; /nq at the end
    cn = nq * 1.0
    for i0 in range(0, nq, BM):
        qi = i0 + tl.arange(0, BM)
        qvalid = qi < nq
        qrow = (qi // Bq) * Bg + b0 + qi % Bq
        q = tl.load(
            u_ptr + (_wide(qrow, WIDE) * D)[:, None] + cols[None, :], mask=qvalid[:, None] & dmask[None, :], other=0.0
        )
        lse = tl.load(stats_ptr + qi, mask=qvalid, other=0.0)
        c = tl.load(c_ptr + qi, mask=qvalid, other=0.0) * cn
        s = tl.dot(k, tl.trans(q), input_precision=PRECISION, out_dtype=ACC) * inv_t  # (BN, BM): sᵀ
        valid = qvalid[None, :] & (qrow[None, :] != keys[:, None])
        p = tl.exp(tl.where(valid, s - lse[None, :], float("-inf"))) * c[None, :]  # self: no exp overflow
        acc += tl.dot(p.to(q.dtype), q, input_precision=PRECISION, out_dtype=ACC)
    acc = acc / cn
    # Key j is a positive of the other views of its image, when that image is one of ours.
    local = kmask & (kb >= b0) & (kb < b0 + Bq)
    kf = tl.load(u_ptr + koff[:, None] + cols[None, :], mask=tile_mask, other=0.0).to(ACC)  # reloaded: see fwd
    for v in range(0, V):
        pmask = local & (kview != v)
        qi = v * Bq + (kb - b0)
        uq = tl.load(
            u_ptr + (_wide(v * Bg + kb, WIDE) * D)[:, None] + cols[None, :],
            mask=pmask[:, None] & dmask[None, :],
            other=0.0,
        ).to(ACC)
        lse_pos = tl.load(stats_ptr + nq + qi, mask=pmask, other=0.0)
        c = tl.load(c_ptr + qi, mask=pmask, other=0.0)
        w = c * tl.exp(tl.where(pmask, tl.sum(kf * uq, 1) * inv_t - lse_pos, float("-inf")))
        acc -= w[:, None] * uq
    g = acc * inv_t
    own = kview * Bq + (kb - b0)
    g += tl.load(
        dq_ptr + (_wide(own, WIDE) * D)[:, None] + cols[None, :], mask=local[:, None] & dmask[None, :], other=0.0
    )
    n = tl.load(norm_ptr + keys, mask=kmask, other=1.0)
    gx = _normalize_backward(g, kf, n, eps)
    tl.store(g_ptr + koff[:, None] + cols[None, :], gx.to(g_ptr.dtype.element_ty), mask=tile_mask)


@triton.jit
def _nt_xent_bank_fwd_kernel(
    u_ptr,
    norm_ptr,
    bank_ptr,
    stats_ptr,
    g_ptr,
    B,
    K,
    D,
    stride_bank,
    inv_t_bits,
    c_bits,
    eps_bits,
    COMPUTE_GRAD: tl.constexpr,
    WIDE: tl.constexpr,
    PRECISION: tl.constexpr,
    BM: tl.constexpr,
    BN: tl.constexpr,
    BK: tl.constexpr,
    DP: tl.constexpr,
):
    ACC = stats_ptr.dtype.element_ty
    inv_t = f64_arg(inv_t_bits, ACC)
    c = f64_arg(c_bits, ACC)
    eps = f64_arg(eps_bits, ACC)
    rows = tl.program_id(0) * BM + tl.arange(0, BM)
    rmask = rows < B
    qoff = _wide(rows, WIDE) * D  # u0
    poff = _wide(B + rows, WIDE) * D  # u1: the positive
    if BK == DP:
        cols = tl.arange(0, DP)
        q = tl.load(u_ptr + qoff[:, None] + cols[None, :], mask=rmask[:, None] & (cols < D)[None, :], other=0.0)
    else:
        q = 0.0  # streamed in chunks
    if COMPUTE_GRAD:
        acc = tl.zeros([BM, DP], ACC)
    else:
        acc = tl.zeros([BM, 16], ACC)  # unused
    m = tl.full([BM], NEG_BIG, ACC)
    l = tl.zeros([BM], ACC)
    m, l, acc = _online_keys(
        q, u_ptr, qoff, rmask, bank_ptr, K, D, stride_bank, rows, inv_t, m, l, acc, False, COMPUTE_GRAD, WIDE,
        PRECISION, BN, BK, DP,
    )
    if BK == DP:  # reloaded (L2), not kept live across the bank loop: register pressure
        q = tl.load(u_ptr + qoff[:, None] + cols[None, :], mask=rmask[:, None] & (cols < D)[None, :], other=0.0)
    sp, kp = _row_dot(q, u_ptr, qoff, u_ptr, poff, rmask, D, ACC, BK, DP)
    sp = sp * inv_t
    m_t = tl.maximum(m, sp)
    scale = tl.exp(m - m_t)
    l_t = tl.where(rmask, l * scale + tl.exp(sp - m_t), 1.0)
    lse = m_t + tl.log(l_t)
    tl.store(stats_ptr + rows, lse, mask=rmask)
    tl.store(stats_ptr + B + rows, sp, mask=rmask)
    if COMPUTE_GRAD:
        mask = rmask[:, None] & (cols < D)[None, :]
        qf = q.to(ACC)
        kf = kp.to(ACC)
        coef = (tl.exp(sp - lse) - 1.0) * (c * inv_t)  # (softmax − onehot) at the positive logit
        # one output tile at a time: few BM×DP tiles live at once (register pressure)
        gq = acc * (scale / l_t * (c * inv_t))[:, None] + coef[:, None] * kf
        nq = tl.load(norm_ptr + rows, mask=rmask, other=1.0)
        gxq = _normalize_backward(gq, qf, nq, eps)
        tl.store(g_ptr + qoff[:, None] + cols[None, :], gxq.to(g_ptr.dtype.element_ty), mask=mask)
        nk = tl.load(norm_ptr + B + rows, mask=rmask, other=1.0)
        gxk = _normalize_backward(coef[:, None] * qf, kf, nk, eps)
        tl.store(g_ptr + poff[:, None] + cols[None, :], gxk.to(g_ptr.dtype.element_ty), mask=mask)


def _wide_offsets(*extents: int) -> bool:
    """int64 offsets when any flat offset (rows × row stride) can reach 2³¹."""
    return max(extents) >= WIDE_FROM


def _normalize(x: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, D) rows -> (u, ‖x‖): u in the operand dtype ``dtype``, ‖x‖ in the accumulation dtype."""
    x = row_major(x)
    n, d = x.shape
    u = torch.empty((n, d), device=x.device, dtype=dtype)
    norm = torch.empty((n,), device=x.device, dtype=acc_dtype(x.dtype))
    launch(_normalize_rows_kernel)[(cdiv(n, NORM_BLOCK_N),)](
        x,
        u,
        norm,
        n,
        d,
        x.stride(0),
        f64_bits(NORM_EPS),
        WIDE=_wide_offsets(n * max(x.stride(0), d)),
        BLOCK_N=NORM_BLOCK_N,
        BLOCK_D=NORM_BLOCK_D,
    )
    return u, norm


def _multicrop_infonce_fake(z, row_scale, temperature, q_start, q_count, compute_grad):
    loss = z.new_empty((), dtype=acc_dtype(z.dtype))
    return loss, (torch.empty_like(z, memory_format=torch.contiguous_format) if compute_grad else z.new_empty(0))


@kernel_op("multicrop_infonce_fwd", fake=_multicrop_infonce_fake)
def multicrop_infonce_fwd(
    z: torch.Tensor, row_scale: torch.Tensor, temperature: float, q_start: int, q_count: int, compute_grad: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Multi-crop InfoNCE loss and (if ``compute_grad``) dL/dz.

    Contract of ``sslfast.losses.infonce.multicrop_infonce_fwd_torch``.

    ``z`` (V, B_g, D): every view of the (gathered) batch, all rows are keys. Queries are the
    images ``q_start .. q_start + q_count`` in every view; ``row_scale`` (V, q_count) holds their c_i.
    With a gradient, D must satisfy ``fused_supported`` (the loss functions route larger D to torch).
    """
    v, bg, d = z.shape
    if not fused_supported(d, z.dtype, compute_grad):
        raise ValueError(f"multicrop_infonce_fwd: D = {d} with a gradient exceeds the fused kernels' "
                         f"{_max_grad_dp(z.dtype)} for {z.dtype}; use the torch backend (the loss functions route it)")
    acc = acc_dtype(z.dtype)
    u, norm = _normalize(z.reshape(v * bg, d), _operand_dtype(z.dtype))
    nq = v * q_count
    dp = _padded(d)
    wide = _wide_offsets(v * bg * dp)
    plan = _plan(dp, z.dtype, compute_grad, wide)
    scale = row_scale.to(acc).contiguous()
    stats = torch.empty((2, nq), device=z.device, dtype=acc)  # LSE_all, LSE_pos per query row
    dq = torch.empty((nq, d), device=z.device, dtype=acc) if compute_grad else stats
    inv_t = f64_bits(1.0 / temperature)
    prec = _precision(z.dtype)
    launch(_multicrop_infonce_fwd_kernel)[(cdiv(nq, plan.bm),)](
        u,
        scale,
        stats,
        dq,
        v,
        bg,
        q_count,
        q_start,
        d,
        inv_t,
        COMPUTE_GRAD=compute_grad,
        WIDE=wide,
        PRECISION=prec,
        BM=plan.bm,
        BN=plan.bn,
        BK=plan.bk,
        DP=dp,
        num_warps=plan.warps,
    )
    loss = (scale.reshape(-1) * (stats[0] - stats[1])).sum()
    if not compute_grad:
        return loss, z.new_empty(0)
    grad = torch.empty((v, bg, d), device=z.device, dtype=z.dtype)
    launch(_multicrop_infonce_fwd_keys_kernel)[(cdiv(v * bg, plan.kbn),)](
        u,
        norm,
        scale,
        stats,
        dq,
        grad,
        v,
        bg,
        q_count,
        q_start,
        d,
        inv_t,
        f64_bits(NORM_EPS),
        WIDE=wide,
        PRECISION=prec,
        BM=plan.kbm,
        BN=plan.kbn,
        DP=dp,
        num_warps=plan.kwarps,
    )
    return loss, grad


def _nt_xent_bank_fake(out0, out1, bank, temperature, compute_grad):
    loss = out0.new_empty((), dtype=acc_dtype(out0.dtype))
    b, d = out0.shape
    return loss, (out0.new_empty((2, b, d)) if compute_grad else out0.new_empty(0))


@kernel_op("nt_xent_bank_fwd", fake=_nt_xent_bank_fake)
def nt_xent_bank_fwd(
    out0: torch.Tensor, out1: torch.Tensor, bank: torch.Tensor, temperature: float, compute_grad: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """MoCo-form NT-Xent loss and (if ``compute_grad``) stacked [dL/dout0, dL/dout1].

    Contract of ``sslfast.losses.infonce.nt_xent_bank_fwd_torch``. With a gradient, D must satisfy
    ``fused_supported``.
    """
    b, d = out0.shape
    if not fused_supported(d, out0.dtype, compute_grad):
        raise ValueError(f"nt_xent_bank_fwd: D = {d} with a gradient exceeds the fused kernels' "
                         f"{_max_grad_dp(out0.dtype)} for {out0.dtype}; use the torch backend "
                         "(the loss functions route it)")
    acc = acc_dtype(out0.dtype)
    op_dtype = _operand_dtype(out0.dtype)
    u, norm = _normalize(torch.cat([out0, out1]), op_dtype)
    bank = row_major(bank.to(op_dtype))
    dp = _padded(d)
    wide = _wide_offsets(2 * b * dp, bank.shape[0] * max(bank.stride(0), dp))
    plan = _plan(dp, out0.dtype, compute_grad, wide)
    stats = torch.empty((2, b), device=out0.device, dtype=acc)
    grad = torch.empty((2, b, d), device=out0.device, dtype=out0.dtype) if compute_grad else stats
    launch(_nt_xent_bank_fwd_kernel)[(cdiv(b, plan.bm),)](
        u,
        norm,
        bank,
        stats,
        grad,
        b,
        bank.shape[0],
        d,
        bank.stride(0),
        f64_bits(1.0 / temperature),
        f64_bits(1.0 / b),
        f64_bits(NORM_EPS),
        COMPUTE_GRAD=compute_grad,
        WIDE=wide,
        PRECISION=_precision(out0.dtype),
        BM=plan.bm,
        BN=plan.bn,
        BK=plan.bk,
        DP=dp,
        num_warps=plan.warps,
    )
    loss = (stats[0] - stats[1]).mean()
    return loss, (grad if compute_grad else out0.new_empty(0))
