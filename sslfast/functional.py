"""Functional forms of the losses. Every one takes ``backend="auto" | "triton" | "torch" | "reference"``.

``auto``: the fused Triton kernels for CUDA tensors, the plain-PyTorch implementation of the
same algorithms elsewhere; ``reference``: the textbook code in ``sslfast.reference``.
Low-precision inputs (bf16/fp16) are accumulated in fp32 and the loss is returned in fp32;
gradients come back in the input dtype. Non-finite inputs give a non-finite loss (NaN or inf),
never a finite number.
"""
from __future__ import annotations

import torch

from . import reference as ref
from ._autograd import BarlowTwinsFunction, CodingRateFunction, TiCoFunction, VICRegFunction, ViewInvarianceFunction
from ._checks import check_matrix, check_nonnegative, check_pair, check_positive, stack_views
from .backend import resolve_backend
from .distributed import gather_pair

__all__ = ["vicreg_loss", "barlow_twins_loss", "tico_loss", "total_coding_rate", "emp_ssl_loss"]


def vicreg_loss(
    z_a: torch.Tensor, z_b: torch.Tensor, *, lambda_param: float = 25.0, mu_param: float = 25.0,
    nu_param: float = 1.0, eps: float = 1e-4, gather_distributed: bool = False, backend: str = "auto",
) -> torch.Tensor:
    """VICReg loss (Bardes, Ponce & LeCun, ICLR 2022, arXiv:2105.04906).

    ``λ·MSE(z_a, z_b) + μ·½·Σ_v mean_d relu(1 − sqrt(Var_d(z_v) + eps)) + ν·Σ_v Σ_{i≠j} Cov(z_v)_ij² / D``
    with unbiased variance and (N−1)-normalised covariance, as the official code and lightly.
    For N < D the off-diagonal sum uses the N×N Gram matrix, never a D×D one.
    """
    check_pair(z_a, z_b)
    for value, name in ((lambda_param, "lambda_param"), (mu_param, "mu_param"), (nu_param, "nu_param")):
        check_nonnegative(value, name)
    check_positive(eps, "eps")
    z_a, z_b = gather_pair(z_a, z_b, gather_distributed)
    backend = resolve_backend(backend, z_a.device)
    if backend == "reference":
        return ref.vicreg_loss_reference(z_a, z_b, lambda_param, mu_param, nu_param, eps)
    return VICRegFunction.apply(z_a, z_b, float(lambda_param), float(mu_param), float(nu_param), float(eps), backend)


def barlow_twins_loss(
    z_a: torch.Tensor, z_b: torch.Tensor, *, lambda_param: float = 5e-3, gather_distributed: bool = False,
    backend: str = "auto",
) -> torch.Tensor:
    """Barlow Twins loss (Zbontar et al., ICML 2021, arXiv:2103.03230).

    Each view is standardised with batch statistics (BatchNorm1d(affine=False): biased variance,
    eps 1e-5); ``C = ẑ_aᵀẑ_b / N``; loss ``Σ_i (1 − C_ii)² + λ·Σ_{i≠j} C_ij²``.
    With ``gather_distributed=True`` the statistics and C are over the *global* batch (the
    official SyncBatchNorm semantics), so gradients equal single-process gradients on the
    concatenated batch. lightly instead standardises per rank and averages C across ranks.
    """
    check_pair(z_a, z_b)
    check_nonnegative(lambda_param, "lambda_param")
    z_a, z_b = gather_pair(z_a, z_b, gather_distributed)
    backend = resolve_backend(backend, z_a.device)
    if backend == "reference":
        return ref.barlow_twins_loss_reference(z_a, z_b, lambda_param)
    return BarlowTwinsFunction.apply(z_a, z_b, float(lambda_param), backend)


def tico_loss(
    z_a: torch.Tensor, z_b: torch.Tensor, cov: torch.Tensor, *, beta: float = 0.9, rho: float = 8.0,
    gather_distributed: bool = False, backend: str = "auto",
) -> tuple[torch.Tensor, torch.Tensor]:
    """TiCo loss (Zhu, Moraes & Liu, 2022, arXiv:2206.10698), lightly's semantics.

    Rows are L2-normalised; ``C' = β·cov + (1−β)·ẑ_aᵀẑ_a/N`` (detached);
    ``loss = 1 − mean_n⟨ẑ_a, ẑ_b⟩ + ρ·mean_n ẑ_a C' ẑ_aᵀ``. Returns ``(loss, C')``: pass C' back in
    as ``cov`` on the next step (``TiCoLoss`` does this with a registered buffer).
    """
    check_pair(z_a, z_b)
    d = z_a.shape[1]
    if not isinstance(cov, torch.Tensor) or cov.shape != (d, d):
        seen = tuple(cov.shape) if isinstance(cov, torch.Tensor) else type(cov).__name__
        raise ValueError(f"cov must be a ({d}, {d}) tensor matching z_a's D={d}, got {seen}")
    if cov.device != z_a.device:
        raise ValueError(f"cov must be on z_a's device {z_a.device}, got {cov.device}")
    if not cov.is_floating_point():
        raise TypeError(f"cov must be a floating-point tensor, got {cov.dtype}")
    if not 0 <= beta <= 1:
        raise ValueError(f"beta must be in [0, 1], got {beta!r}")
    check_nonnegative(rho, "rho")
    z_a, z_b = gather_pair(z_a, z_b, gather_distributed)
    backend = resolve_backend(backend, z_a.device)
    if backend == "reference":
        return ref.tico_loss_reference(z_a, z_b, cov, beta, rho)
    return TiCoFunction.apply(z_a, z_b, cov.detach(), float(beta), float(rho), backend)


def _coding_rates(z: torch.Tensor, eps: float, backend: str) -> torch.Tensor:
    if backend == "reference":
        return torch.stack([ref.total_coding_rate_reference(view, eps) for view in z])
    return CodingRateFunction.apply(z, float(eps), backend)


def total_coding_rate(z: torch.Tensor, *, eps: float = 0.2, backend: str = "auto") -> torch.Tensor:
    """Total coding rate ``−½·logdet(I + D/(N·eps)·ZᵀZ)`` (Ma et al. 2007; MCR², Yu et al. 2020).

    ``z`` is one (N, D) view, or (V, N, D) views, whose coding rates are averaged. Computed as
    logdet(I_N + a·ZZᵀ) when N ≤ D (Sylvester's identity), all views in one batched Cholesky.
    Minimising it *expands* the representation (it is the negative coding rate).
    """
    if isinstance(z, torch.Tensor) and z.dim() == 2:
        views = check_matrix(z, "z", min_rows=1)[None]
    else:
        views = stack_views(z, "z")
    check_positive(eps, "eps")
    backend = resolve_backend(backend, views.device)
    return _coding_rates(views, eps, backend).mean()


def emp_ssl_loss(
    z_views, *, tcr_eps: float = 0.2, inv_coef: float = 200.0, backend: str = "auto",
) -> torch.Tensor:
    """EMP-SSL loss (Tong, Chen, Ma & LeCun, 2023, arXiv:2304.03977), the official semantics.

    ``z_views``: a list of V (B, D) tensors or a (V, B, D) tensor. ``inv_coef·(−mean_v mean_b
    cos(z_vb, z̄_b)) + mean_v TCR(z_v)`` with z̄ the (not detached) mean over views. Minimising it
    maximises each view's coding rate; lightly 1.6's EMPSSLLoss has the sign of this term inverted.
    The official projector L2-normalises the embeddings before this loss; do so upstream.
    """
    views = stack_views(z_views, "z_views", min_views=2)
    check_positive(tcr_eps, "tcr_eps")
    check_nonnegative(inv_coef, "inv_coef")
    backend = resolve_backend(backend, views.device)
    if backend == "reference":
        return ref.emp_ssl_loss_reference(list(views), tcr_eps, inv_coef)
    invariance = ViewInvarianceFunction.apply(views, backend)
    return inv_coef * invariance + _coding_rates(views, tcr_eps, backend).mean()

