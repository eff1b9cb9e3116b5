"""Numerics shared by both loss backends (the Triton launchers and their torch twins).

A leaf module: it imports torch only, so ``sslfast.kernels`` never depends on the torch
backend and the torch backend never on triton.

- accumulation dtypes and the epsilons of F.normalize / F.cosine_similarity;
- the covariance family's off-diagonal sums without a D×D matrix when N < D (Gram route);
- the coding rate through Sylvester's identity and one batched Cholesky.

These are GEMMs and factorisations, so they go to cuBLAS/cuSOLVER (BLAS/LAPACK on CPU); the
Triton kernels fuse the elementwise passes before and after them.
"""

from __future__ import annotations

import torch

NORM_EPS = 1e-12  # F.normalize's default
COS_EPS = 1e-8  # F.cosine_similarity's default


def acc_dtype(dtype: torch.dtype) -> torch.dtype:
    """Accumulate in fp32 for fp32/bf16/fp16 inputs and fp64 for fp64 inputs."""
    return torch.float64 if dtype == torch.float64 else torch.float32


_EXPONENT_BITS = {torch.float32: (torch.int32, 0x7F800000), torch.float64: (torch.int64, 0x7FF0000000000000)}


def pow2_scale(m: torch.Tensor) -> torch.Tensor:
    """The largest power of two ≤ ``m`` (fp32/fp64, elementwise), or 1 where ``m`` is 0, subnormal,
    inf or NaN.

    Overflow-safe statistics divide data by such a scale before squaring (|x/s| < 2) and fold it back
    analytically: a power of two makes the division exact, so in-range inputs give bit-identical
    squares, and inf/NaN inputs keep s = 1 and propagate to a non-finite loss.
    """
    int_dtype, mask = _EXPONENT_BITS[m.dtype]
    s = (m.contiguous().view(int_dtype) & mask).view(m.dtype)
    return torch.where((s > 0) & torch.isfinite(s), s, torch.ones_like(s))


def max_abs(z: torch.Tensor, dim) -> torch.Tensor:
    """max |z| over ``dim`` (abs + amax: on CPU ~50× faster than vector_norm(ord=inf))."""
    return z.abs().amax() if dim is None else z.abs().amax(dim)


def column_scale(z: torch.Tensor) -> torch.Tensor:
    """Per-column power-of-two scale of an (N, D) fp32/fp64 tensor (see ``pow2_scale``)."""
    return pow2_scale(max_abs(z, 0))


def sum_squares(x: torch.Tensor, coef: float) -> torch.Tensor:
    """``coef · Σ x²`` in x's dtype without overflowing unless the result itself does.

    The squares are summed in units of a power-of-two scale s (|x/s| < 2), then ``coef`` and s² are
    applied in an order that overflows only when the true value is out of range.
    """
    s = pow2_scale(max_abs(x, None))
    y = (x / s).reshape(-1)
    return (coef * torch.dot(y, y)) * s * s


def scaled_norm(y: torch.Tensor, scale: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """For rows x = y·scale: ``(‖y‖, max(‖y‖, eps/scale))``, i.e. ‖x‖/scale and max(‖x‖, eps)/scale.

    The clamp of F.normalize / F.cosine_similarity, expressed in scaled units so that neither ‖x‖²
    nor ‖x‖ is formed (both overflow fp32 at |x| ≈ 1e19).
    """
    norm = torch.linalg.vector_norm(y, dim=-1, keepdim=True)
    return norm, torch.maximum(norm, eps / scale)


def normalize_rows(x: torch.Tensor, eps: float = NORM_EPS) -> tuple[torch.Tensor, torch.Tensor]:
    """F.normalize over dim 1, overflow- and underflow-safe: ``(u, ‖x‖)`` with u = x / max(‖x‖, eps).

    ‖x‖² overflows once |x| ≈ 1.8e19 in fp32/bf16 (1.3e154 in fp64) and underflows below ≈1e-19, and
    F.normalize then returns a finite wrong row (zeros). Each row is first divided by its max |x|
    (a, detached: u does not depend on it), so the sum of squares lies in [1, D]; ‖x‖ = a·‖x/a‖ is
    stored for the backward (it may round to inf only where 1/‖x‖ underflows anyway). Rows with
    ‖x‖ ≤ eps give x/eps, as F.normalize. Any NaN or inf in a row puts a NaN into its u (inf/inf), so a
    non-finite input can never become a finite loss.
    """
    a = x.detach().abs().amax(1, keepdim=True)
    a = torch.where(a > 0, a, torch.ones_like(a))  # zero rows: x/1 (a NaN row keeps its NaN through x)
    xs = x / a
    r = torch.linalg.vector_norm(xs, dim=1, keepdim=True)
    norm = a * r
    # NaN compares False with `norm <= eps`, so a non-finite row takes xs / r: NaN in every entry
    u = torch.where(norm <= eps, x / eps, xs / torch.where(r > 0, r, torch.ones_like(r)))
    return u, norm


def normalize_backward(g: torch.Tensor, u: torch.Tensor, norm: torch.Tensor, eps: float = NORM_EPS) -> torch.Tensor:
    """Backward of u = x / max(‖x‖, eps) (F.normalize) for rows of ``g``/``u``; ``norm`` = ‖x‖ (N, 1)."""
    proj = g - u * (u * g).sum(1, keepdim=True)
    return torch.where(norm > eps, proj / norm.clamp_min(eps), g / eps)


# ---------------------------------------------------------------------------------------------
# Gram route: ‖AᵀB‖²_F = ⟨AAᵀ, BBᵀ⟩_F at O(N²D) when N < D.
# The off-diagonal sum is then ‖AᵀB‖² − Σ_d (AᵀB)_dd², a difference of two nearly equal numbers
# when the embeddings are near-whitened, so the Gram matrices and both sums are accumulated in
# float64 (fp32 loses ~1e-3 relative there; tests/losses/test_covariance_precision.py). The
# gradient directions are first-order quantities and stay in fp32.
# D×D route (N ≥ D): form AᵀB, zero its diagonal and sum squares directly: no cancellation.
# ---------------------------------------------------------------------------------------------


def use_gram(n: int, d: int) -> bool:
    """The Gram (N×N) route is cheaper exactly when N < D."""
    return n < d


def offdiag_self(
    yc: torch.Tensor, scale: torch.Tensor, compute_grad: bool = True
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None, torch.Tensor]:
    """Off-diagonal mass of C = ZcᵀZc for a centred (N, D) ``Zc = yc·scale`` (``scale``: (D,) column
    scales, ``yc`` the centred data in those units, |yc| < 4).

    Returns ``(off, m, s, zc)`` with ``off = Σ_{d≠e} C_de²`` (float64 scalar), ``zc`` and the gradient
    direction ``Zc·Off(C) = m − zc·s`` (so that ``d off/dZc = 4·Zc·Off(C)``). On the D×D route ``s``
    is None and ``m`` already is ``Zc·Off(C)``. ``off`` is formed from scaled data in float64, so it
    overflows (to inf) only where its true value is beyond float64, never to NaN: for fp32 inputs
    C² reaches 1e154 at most. Without ``compute_grad`` ``m`` is None: the forward alone skips the
    gradient's GEMM (half the FLOPs of a forward-only call).
    """
    n, d = yc.shape
    zc = yc * scale
    if use_gram(n, d):
        z64 = yc.double() * scale.double()
        g = z64 @ z64.T
        s = (z64 * z64).sum(0)  # exact squares: Σ s² must match ‖G‖² to ~1e-12 before the subtraction
        off = (torch.dot(g.view(-1), g.view(-1)) - torch.dot(s, s)).clamp_min(0)
        return off, g.to(yc.dtype) @ zc if compute_grad else None, s.to(yc.dtype), zc
    c = yc.T @ yc  # bounded entries (≤ 16·N): the scales are folded back in float64 below
    c.diagonal().zero_()
    s64 = scale.double()
    off = (c.double() * s64[:, None] * s64[None, :]).square().sum()
    return off, zc @ (c * scale[:, None] * scale[None, :]) if compute_grad else None, None, zc


def offdiag_cross(
    a: torch.Tensor, b: torch.Tensor, compute_grad: bool = True
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None, bool]:
    """Off-diagonal mass of M = AᵀB for (N, D) ``a``, ``b``.

    Returns ``(off, diag, ma, mb, gram)``: ``off = Σ_{i≠j} M_ij²`` (float64), ``diag = diag(M)``
    (in ``a.dtype``), and the gradient directions: ``d off/dA = 2·(ma − b·diag)``,
    ``d off/dB = 2·(mb − a·diag)`` on the Gram route (``gram=True``), or ``2·ma``, ``2·mb`` on
    the D×D route, where the diagonal was already removed. Without ``compute_grad`` ``ma`` and
    ``mb`` are None: the forward alone skips their two GEMMs.
    """
    n, d = a.shape
    if use_gram(n, d):
        a64, b64 = a.double(), b.double()
        ga, gb = a64 @ a64.T, b64 @ b64.T
        diag = (a64 * b64).sum(0)
        off = ((ga * gb).sum() - diag.square().sum()).clamp_min(0)
        if not compute_grad:
            return off, diag.to(a.dtype), None, None, True
        return off, diag.to(a.dtype), gb.to(a.dtype) @ a, ga.to(a.dtype) @ b, True
    m = a.T @ b
    diag = m.diagonal().clone()
    m.diagonal().zero_()
    off = m.double().square().sum()
    if not compute_grad:
        return off, diag, None, None, False
    return off, diag, b @ m.T, a @ m, False


# ---------------------------------------------------------------------------------------------
# Coding rate
# ---------------------------------------------------------------------------------------------


def coding_rates(z: torch.Tensor, eps: float, compute_grad: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-view total coding rate −½·logdet(I + a·ZᵀZ), a = D/(N·eps), of (V, N, D) ``z``, and
    (if ``compute_grad``) d rate_v / dZ_v.

    Sylvester: logdet(I_D + a·ZᵀZ) = logdet(I_N + a·ZZᵀ); the smaller side is factorised, all V
    views in one batched Cholesky (no host sync: cholesky_ex). Gradient: −a·(I + aZZᵀ)⁻¹Z.

    The Gram matrix and its factorisation are float64 for every input dtype: near collapse
    I + a·ZZᵀ has a condition number ≫ 1/eps_fp32 (fp32 Cholesky was 2% off at magnitude 30), and
    for fp32/bf16/fp16 inputs float64 also holds a·ZZᵀ without overflow (|z| ≤ 3.4e38 → ≤ 1e77·D).
    The rates are returned in the accumulation dtype, the gradient in z's dtype.
    """
    x = z.to(torch.float64)
    v, n, d = x.shape
    a = d / (n * eps)
    rows = n <= d
    k = n if rows else d
    eye = torch.eye(k, device=x.device, dtype=x.dtype).expand(v, k, k)
    gram = torch.baddbmm(eye, x, x.mT, alpha=a) if rows else torch.baddbmm(eye, x.mT, x, alpha=a)
    chol, info = torch.linalg.cholesky_ex(gram)
    # A failed factorisation (inf/NaN input) must not leave a finite partial logdet: NaN instead.
    ok = torch.where(info == 0, 1.0, torch.nan).to(x.dtype)
    tcr = -torch.log(torch.diagonal(chol, dim1=-2, dim2=-1)).sum(-1) * ok  # −½·2·Σ log diag(L)
    acc = acc_dtype(z.dtype)
    if not compute_grad:
        return tcr.to(acc), z.new_empty(0)
    grad = torch.cholesky_solve(x, chol) if rows else torch.cholesky_solve(x.mT, chol).mT
    return tcr.to(acc), (-a * grad * ok[:, None, None]).to(z.dtype)
