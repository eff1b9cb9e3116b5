"""Tiled InfoNCE: multi-crop SimCLR / NT-Xent and the MoCo memory-bank form.

Multi-crop (SimCLR, Chen et al. 2020, arXiv:2002.05709; solo-learn's multi-view form):
N = V·B_g L2-normalised rows u, query rows i (this rank's V·B_q rows), per query
    ℓ_i = LSE_{j≠i}(s_ij/T) − LSE_{j∈pos(i)}(s_ij/T),   s_ij = ⟨u_i, u_j⟩,
pos(i) = the other V−1 views of the same image; loss = Σ_i c_i ℓ_i with per-row scales c.
With P_ij = softmax over j≠i and Q_ij = softmax over pos(i),
    dL/ds_ij = c_i (P_ij − Q_ij)/T,   dL/du_i = Σ_j dL/ds_ij u_j (as query) + Σ_j dL/ds_ji u_j (as key).

Launch sequence (never an N×N tensor in global memory; extra memory O(N·D + N)):
1. ``_normalize_rows_kernel``: u = x / max(‖x‖, eps) into an (N, D) buffer in the accumulation
   dtype, and ‖x‖ per row.
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

MoCo (He et al. 2020, arXiv:1911.05722; lightly's NTXentLoss with a memory bank): queries
u0_i, logits [⟨u0_i, u1_i⟩, u0_i·bankᵀ]/T, label 0. ``_nt_xent_bank_fwd_kernel`` streams the bank tiles
for B queries; the bank is constant, so the whole gradient comes out of that one pass.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from sslfast._numerics import NORM_EPS, acc_dtype

from ._covariance import row_major
from ._op import cdiv, kernel_op, launch

NORM_BLOCK_N = 32
NORM_BLOCK_D = 64
# (BM, BN, num_warps) by padded D. Provisional: chosen for register footprint (flash-attention's
# usual shapes), not tuned — tune on the GPU. Tests set TILES to force small, multi-tile grids.
TILES = None
NEG_BIG = tl.constexpr(-1.0e30)  # finite start for the running max: exp(m_old − m_new) never sees −inf − (−inf)


def _tiles(dp: int) -> tuple[int, int, int]:
    if TILES is not None:
        return TILES
    if dp <= 128:
        return 64, 64, 4
    if dp <= 256:
        return 64, 32, 8
    return 32, 32, 8


def _precision(dtype: torch.dtype) -> str:
    # fp32 follows torch's own matmul setting: full-precision dots by default ("highest"), so
    # results track the fp64 reference, and TF32 tensor cores once a user opts in with
    # torch.set_float32_matmul_precision("high"), as for every other fp32 matmul in the step.
    # bf16/fp16 inputs already carry ~1e-3 rounding, so tf32 loses nothing; fp64 stays exact.
    if dtype == torch.float64:
        return "ieee"
    if dtype == torch.float32:
        return "ieee" if torch.get_float32_matmul_precision() == "highest" else "tf32"
    return "tf32"


@triton.jit
def _normalize_rows_kernel(x_ptr, u_ptr, norm_ptr, N, D, stride_x, eps, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr):
    ACC = u_ptr.dtype.element_ty
    rows = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    rmask = rows < N
    ss = tl.zeros([BLOCK_N], ACC)
    for d0 in range(0, D, BLOCK_D):
        cols = d0 + tl.arange(0, BLOCK_D)
        mask = rmask[:, None] & (cols < D)[None, :]
        x = tl.load(x_ptr + rows[:, None] * stride_x + cols[None, :], mask=mask, other=0.0).to(ACC)
        ss += tl.sum(x * x, 1)
    norm = tl.sqrt(ss)
    inv = 1.0 / tl.maximum(norm, eps)  # F.normalize: all-zero rows map to 0, not NaN
    for d0 in range(0, D, BLOCK_D):
        cols = d0 + tl.arange(0, BLOCK_D)
        mask = rmask[:, None] & (cols < D)[None, :]
        x = tl.load(x_ptr + rows[:, None] * stride_x + cols[None, :], mask=mask, other=0.0).to(ACC)
        tl.store(u_ptr + rows[:, None] * D + cols[None, :], x * inv[:, None], mask=mask)
    tl.store(norm_ptr + rows, norm, mask=rmask)


@triton.jit
def _online_keys(
    q,
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
    PRECISION: tl.constexpr,
    BN: tl.constexpr,
    DP: tl.constexpr,
):
    """Stream key tiles: running max m, running Σ exp(s − m) l, running Σ exp(s − m)·k acc."""
    ACC = q.dtype
    cols = tl.arange(0, DP)
    dmask = cols < D
    for j0 in range(0, NK, BN):
        keys = j0 + tl.arange(0, BN)
        kmask = keys < NK
        k = tl.load(k_ptr + keys[:, None] * stride_k + cols[None, :], mask=kmask[:, None] & dmask[None, :], other=0.0)
        s = tl.dot(q, tl.trans(k), input_precision=PRECISION, out_dtype=ACC) * inv_t
        valid = kmask[None, :]
        if EXCLUDE_SELF:
            valid = valid & (keys[None, :] != qrow[:, None])
        s = tl.where(valid, s, float("-inf"))
        m_new = tl.maximum(m, tl.max(s, 1))
        alpha = tl.exp(m - m_new)
        p = tl.exp(s - m_new[:, None])
        l = l * alpha + tl.sum(p, 1)
        if COMPUTE_GRAD:
            acc = acc * alpha[:, None] + tl.dot(p, k, input_precision=PRECISION, out_dtype=ACC)
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
    inv_t,
    COMPUTE_GRAD: tl.constexpr,
    PRECISION: tl.constexpr,
    BM: tl.constexpr,
    BN: tl.constexpr,
    DP: tl.constexpr,
):
    ACC = u_ptr.dtype.element_ty
    nq = V * Bq
    qi = tl.program_id(0) * BM + tl.arange(0, BM)  # local query index: view-major, as (V, B_q)
    rmask = qi < nq
    view = qi // Bq
    gb = b0 + qi % Bq  # image index in the gathered batch
    qrow = view * Bg + gb  # row of u
    cols = tl.arange(0, DP)
    dmask = cols < D
    qmask = rmask[:, None] & dmask[None, :]
    q = tl.load(u_ptr + qrow[:, None] * D + cols[None, :], mask=qmask, other=0.0)
    m = tl.full([BM], NEG_BIG, ACC)
    l = tl.zeros([BM], ACC)
    acc = tl.zeros([BM, DP], ACC)
    m, l, acc = _online_keys(q, u_ptr, V * Bg, D, D, qrow, inv_t, m, l, acc, True, COMPUTE_GRAD, PRECISION, BN, DP)
    lse_all = m + tl.log(tl.where(rmask, l, 1.0))  # padded rows: no log(0) warnings
    # Positives: the same image in the other views, found by index.
    mp = tl.full([BM], NEG_BIG, ACC)
    lp = tl.zeros([BM], ACC)
    for v in range(0, V):
        pmask = rmask & (view != v)
        up = tl.load(
            u_ptr + (v * Bg + gb)[:, None] * D + cols[None, :], mask=pmask[:, None] & dmask[None, :], other=0.0
        )
        sp = tl.where(pmask, tl.sum(q * up, 1) * inv_t, float("-inf"))
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
            up = tl.load(
                u_ptr + (v * Bg + gb)[:, None] * D + cols[None, :], mask=pmask[:, None] & dmask[None, :], other=0.0
            )
            w = tl.exp(tl.where(pmask, tl.sum(q * up, 1) * inv_t - lse_pos, float("-inf")))
            g -= w[:, None] * up
        c = tl.load(c_ptr + qi, mask=rmask, other=0.0)
        tl.store(dq_ptr + qi[:, None] * D + cols[None, :], g * (c * inv_t)[:, None], mask=qmask)


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
    inv_t,
    eps,
    PRECISION: tl.constexpr,
    BM: tl.constexpr,
    BN: tl.constexpr,
    DP: tl.constexpr,
):
    ACC = u_ptr.dtype.element_ty
    ng = V * Bg
    nq = V * Bq
    keys = tl.program_id(0) * BN + tl.arange(0, BN)
    kmask = keys < ng
    kview = keys // Bg
    kb = keys % Bg
    cols = tl.arange(0, DP)
    dmask = cols < D
    tile_mask = kmask[:, None] & dmask[None, :]
    k = tl.load(u_ptr + keys[:, None] * D + cols[None, :], mask=tile_mask, other=0.0)
    acc = tl.zeros([BN, DP], ACC)
    for i0 in range(0, nq, BM):
        qi = i0 + tl.arange(0, BM)
        qvalid = qi < nq
        qrow = (qi // Bq) * Bg + b0 + qi % Bq
        q = tl.load(u_ptr + qrow[:, None] * D + cols[None, :], mask=qvalid[:, None] & dmask[None, :], other=0.0)
        lse = tl.load(stats_ptr + qi, mask=qvalid, other=0.0)
        c = tl.load(c_ptr + qi, mask=qvalid, other=0.0)
        s = tl.dot(k, tl.trans(q), input_precision=PRECISION, out_dtype=ACC) * inv_t  # (BN, BM): sᵀ
        valid = qvalid[None, :] & (qrow[None, :] != keys[:, None])
        p = tl.exp(tl.where(valid, s - lse[None, :], float("-inf"))) * c[None, :]  # self: no exp overflow
        acc += tl.dot(p, q, input_precision=PRECISION, out_dtype=ACC)
    # Key j is a positive of the other views of its image, when that image is one of ours.
    local = kmask & (kb >= b0) & (kb < b0 + Bq)
    for v in range(0, V):
        pmask = local & (kview != v)
        qi = v * Bq + (kb - b0)
        uq = tl.load(
            u_ptr + (v * Bg + kb)[:, None] * D + cols[None, :], mask=pmask[:, None] & dmask[None, :], other=0.0
        )
        lse_pos = tl.load(stats_ptr + nq + qi, mask=pmask, other=0.0)
        c = tl.load(c_ptr + qi, mask=pmask, other=0.0)
        w = c * tl.exp(tl.where(pmask, tl.sum(k * uq, 1) * inv_t - lse_pos, float("-inf")))
        acc -= w[:, None] * uq
    g = acc * inv_t
    own = kview * Bq + (kb - b0)
    g += tl.load(dq_ptr + own[:, None] * D + cols[None, :], mask=local[:, None] & dmask[None, :], other=0.0)
    # backward of u = x / max(‖x‖, eps): (g − u⟨u, g⟩)/‖x‖ above eps, g/eps below it
    n = tl.load(norm_ptr + keys, mask=kmask, other=1.0)
    proj = tl.sum(k * g, 1)
    gx = tl.where(n[:, None] > eps, (g - k * proj[:, None]) / tl.maximum(n, eps)[:, None], g / eps)
    tl.store(g_ptr + keys[:, None] * D + cols[None, :], gx.to(g_ptr.dtype.element_ty), mask=tile_mask)


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
    inv_t,
    c,
    eps,
    COMPUTE_GRAD: tl.constexpr,
    PRECISION: tl.constexpr,
    BM: tl.constexpr,
    BN: tl.constexpr,
    DP: tl.constexpr,
):
    ACC = u_ptr.dtype.element_ty
    rows = tl.program_id(0) * BM + tl.arange(0, BM)
    rmask = rows < B
    cols = tl.arange(0, DP)
    dmask = cols < D
    mask = rmask[:, None] & dmask[None, :]
    q = tl.load(u_ptr + rows[:, None] * D + cols[None, :], mask=mask, other=0.0)  # u0
    kp = tl.load(u_ptr + (B + rows)[:, None] * D + cols[None, :], mask=mask, other=0.0)  # u1: the positive
    m = tl.full([BM], NEG_BIG, ACC)
    l = tl.zeros([BM], ACC)
    acc = tl.zeros([BM, DP], ACC)
    m, l, acc = _online_keys(
        q, bank_ptr, K, D, stride_bank, rows, inv_t, m, l, acc, False, COMPUTE_GRAD, PRECISION, BN, DP
    )
    sp = tl.sum(q * kp, 1) * inv_t
    m_t = tl.maximum(m, sp)
    scale = tl.exp(m - m_t)
    l_t = tl.where(rmask, l * scale + tl.exp(sp - m_t), 1.0)
    lse = m_t + tl.log(l_t)
    tl.store(stats_ptr + rows, lse, mask=rmask)
    tl.store(stats_ptr + B + rows, sp, mask=rmask)
    if COMPUTE_GRAD:
        coef = (tl.exp(sp - lse) - 1.0) * (c * inv_t)  # (softmax − onehot) at the positive logit
        gq = acc * (scale / l_t * (c * inv_t))[:, None] + coef[:, None] * kp
        gk = coef[:, None] * q
        nq = tl.load(norm_ptr + rows, mask=rmask, other=1.0)
        nk = tl.load(norm_ptr + B + rows, mask=rmask, other=1.0)
        pq = tl.sum(q * gq, 1)
        pk = tl.sum(kp * gk, 1)
        gxq = tl.where(nq[:, None] > eps, (gq - q * pq[:, None]) / tl.maximum(nq, eps)[:, None], gq / eps)
        gxk = tl.where(nk[:, None] > eps, (gk - kp * pk[:, None]) / tl.maximum(nk, eps)[:, None], gk / eps)
        tl.store(g_ptr + rows[:, None] * D + cols[None, :], gxq.to(g_ptr.dtype.element_ty), mask=mask)
        tl.store(g_ptr + (B + rows)[:, None] * D + cols[None, :], gxk.to(g_ptr.dtype.element_ty), mask=mask)


def _normalize(x: torch.Tensor, acc: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, D) rows -> (u, ‖x‖) with u in ``acc``."""
    x = row_major(x)
    n, d = x.shape
    u = torch.empty((n, d), device=x.device, dtype=acc)
    norm = torch.empty((n,), device=x.device, dtype=acc)
    launch(_normalize_rows_kernel)[(cdiv(n, NORM_BLOCK_N),)](
        x, u, norm, n, d, x.stride(0), NORM_EPS, BLOCK_N=NORM_BLOCK_N, BLOCK_D=NORM_BLOCK_D
    )
    return u, norm


def _padded(d: int) -> int:
    return max(16, triton.next_power_of_2(d))  # tl.dot needs every tile dim >= 16


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
    """
    v, bg, d = z.shape
    acc = acc_dtype(z.dtype)
    u, norm = _normalize(z.reshape(v * bg, d), acc)
    nq = v * q_count
    dp = _padded(d)
    bm, bn, warps = _tiles(dp)
    scale = row_scale.to(acc).contiguous()
    stats = torch.empty((2, nq), device=z.device, dtype=acc)  # LSE_all, LSE_pos per query row
    dq = torch.empty((nq, d), device=z.device, dtype=acc) if compute_grad else stats
    inv_t = 1.0 / temperature
    prec = _precision(z.dtype)
    launch(_multicrop_infonce_fwd_kernel)[(cdiv(nq, bm),)](
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
        PRECISION=prec,
        BM=bm,
        BN=bn,
        DP=dp,
        num_warps=warps,
    )
    loss = (scale.reshape(-1) * (stats[0] - stats[1])).sum()
    if not compute_grad:
        return loss, z.new_empty(0)
    grad = torch.empty((v, bg, d), device=z.device, dtype=z.dtype)
    launch(_multicrop_infonce_fwd_keys_kernel)[(cdiv(v * bg, bn),)](
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
        NORM_EPS,
        PRECISION=prec,
        BM=bm,
        BN=bn,
        DP=dp,
        num_warps=warps,
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

    Contract of ``sslfast.losses.infonce.nt_xent_bank_fwd_torch``.
    """
    b, d = out0.shape
    acc = acc_dtype(out0.dtype)
    u, norm = _normalize(torch.cat([out0, out1]), acc)
    bank = row_major(bank.to(acc))
    dp = _padded(d)
    bm, bn, warps = _tiles(dp)
    stats = torch.empty((2, b), device=out0.device, dtype=acc)
    grad = torch.empty((2, b, d), device=out0.device, dtype=out0.dtype) if compute_grad else stats
    launch(_nt_xent_bank_fwd_kernel)[(cdiv(b, bm),)](
        u,
        norm,
        bank,
        stats,
        grad,
        b,
        bank.shape[0],
        d,
        bank.stride(0),
        1.0 / temperature,
        1.0 / b,
        NORM_EPS,
        COMPUTE_GRAD=compute_grad,
        PRECISION=_precision(out0.dtype),
        BM=bm,
        BN=bn,
        DP=dp,
        num_warps=warps,
    )
    loss = (stats[0] - stats[1]).mean()
    return loss, (grad if compute_grad else out0.new_empty(0))
