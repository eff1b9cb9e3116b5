"""The off-diagonal sums of the covariance family, without a D×D matrix when N < D.

Shared by the torch and triton backends: these are GEMMs, so they go to cuBLAS/BLAS; the
Triton kernels fuse the passes before and after them.

Gram route (N < D): ‖AᵀB‖²_F = ⟨AAᵀ, BBᵀ⟩_F, cost O(N²D). The off-diagonal sum is then
‖AᵀB‖² − Σ_d (AᵀB)_dd², a difference of two nearly equal numbers when the embeddings are
near-whitened, so the Gram matrices and both sums are accumulated in float64 (fp32 loses
~1e-3 relative there; see tests/test_covariance_precision.py). The gradient directions
are first-order quantities and stay in fp32.

D×D route (N ≥ D): form AᵀB, zero its diagonal and sum squares directly: no cancellation.
"""

from __future__ import annotations

import torch


def use_gram(n: int, d: int) -> bool:
    """The Gram (N×N) route is cheaper exactly when N < D."""
    return n < d


def offdiag_self(zc: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Off-diagonal mass of C = ZcᵀZc for a centred (N, D) ``zc``.

    Returns ``(off, m, s)`` with ``off = Σ_{d≠e} C_de²`` (float64 scalar) and the gradient
    direction ``Zc·Off(C) = m − zc·s`` (so that ``d off/dZc = 4·Zc·Off(C)``). On the D×D
    route ``s`` is None and ``m`` already is ``Zc·Off(C)``.
    """
    n, d = zc.shape
    if use_gram(n, d):
        z64 = zc.double()
        g = z64 @ z64.T
        s = (z64 * z64).sum(0)  # exact squares: Σ s² must match ‖G‖² to ~1e-12 before the subtraction
        off = (torch.dot(g.view(-1), g.view(-1)) - torch.dot(s, s)).clamp_min(0)
        return off, g.to(zc.dtype) @ zc, s.to(zc.dtype)
    c = zc.T @ zc
    c.diagonal().zero_()
    return c.double().square().sum(), zc @ c, None


def offdiag_cross(
    a: torch.Tensor, b: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, bool]:
    """Off-diagonal mass of M = AᵀB for (N, D) ``a``, ``b``.

    Returns ``(off, diag, ma, mb, gram)``: ``off = Σ_{i≠j} M_ij²`` (float64), ``diag = diag(M)``
    (in ``a.dtype``), and the gradient directions: ``d off/dA = 2·(ma − b·diag)``,
    ``d off/dB = 2·(mb − a·diag)`` on the Gram route (``gram=True``), or ``2·ma``, ``2·mb`` on
    the D×D route, where the diagonal was already removed.
    """
    n, d = a.shape
    if use_gram(n, d):
        a64, b64 = a.double(), b.double()
        ga, gb = a64 @ a64.T, b64 @ b64.T
        diag = (a64 * b64).sum(0)
        off = ((ga * gb).sum() - diag.square().sum()).clamp_min(0)
        return off, diag.to(a.dtype), gb.to(a.dtype) @ a, ga.to(a.dtype) @ b, True
    m = a.T @ b
    diag = m.diagonal().clone()
    m.diagonal().zero_()
    return m.double().square().sum(), diag, b @ m.T, a @ m, False
