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



# ---------------------------------------------------------------------------------------------
# InfoNCE family (issue 3): NT-Xent (SimCLR), MoCo memory bank, multi-crop SimCLR, GenView weights
# ---------------------------------------------------------------------------------------------

from ._autograd import MultiCropInfoNCEFunction, NTXentBankFunction  # noqa: E402
from ._checks import check_tensor  # noqa: E402
from .backend import check_backend  # noqa: E402
from .distributed import gather, rank, world_size  # noqa: E402
from .torch_impl import acc_dtype  # noqa: E402

__all__ += ["nt_xent_loss", "multicrop_infonce_loss"]

# backend="auto" on CUDA runs the dense torch path (one (N_q, N_keys) logits matrix) below this many
# similarity entries and the tiled Triton kernel from there up. PROVISIONAL (2048² ≈ N = 2048 rows
# on one process): no GPU was available when it was set. Measure the crossover with
# `sslfast bench losses` on the GPU and set it from the recorded JSON.
INFONCE_TILED_MIN_ENTRIES = 2048 * 2048


def _infonce_backend(backend: str, device: torch.device, entries: int) -> str:
    resolved = resolve_backend(backend, device)
    if backend == "auto" and resolved == "triton" and entries < INFONCE_TILED_MIN_ENTRIES:
        return "torch"
    return resolved


def _row_weights(weights, v: int, b: int, device: torch.device) -> torch.Tensor:
    check_tensor(weights, "weights")
    if tuple(weights.shape) not in ((b,), (v, b)):
        raise ValueError(f"weights must have shape (B,) = ({b},) or (V, B) = ({v}, {b}) to match z, "
                         f"got shape {tuple(weights.shape)}")
    if weights.device != device:
        raise ValueError(f"weights must be on z's device {device}, got {weights.device}")
    return weights.detach().expand(v, b)


def multicrop_infonce_loss(
    z, weights: torch.Tensor | None = None, *, temperature: float = 0.1, gather_distributed: bool = False,
    backend: str = "auto",
) -> torch.Tensor:
    """Multi-crop InfoNCE: multi-view SimCLR (Chen et al. 2020, arXiv:2002.05709; solo-learn semantics).

    ``z``: a (V, B, D) tensor or a list of V (B, D) tensors (e.g. 2 global + 6 local crops projected
    to one D). Rows are L2-normalised (F.normalize's eps, so all-zero rows stay finite); the
    positives of a row are the same image in the other V−1 views, the negatives every other row:
    ``ℓ_i = −log(Σ_pos exp(s_ij/T) / Σ_{j≠i} exp(s_ij/T))``, loss = mean_i ℓ_i. Computed with
    logsumexps (stable for any T > 0); the triton backend never stores the N×N similarities.

    ``weights`` (B,) or (V, B), detached: GenView's quality weights (Li et al. 2024,
    arXiv:2403.12003) multiply ℓ_i after normalising them to mean 1 (over the global batch
    when distributed): loss = Σ w_i ℓ_i / Σ w_i.

    ``gather_distributed``: every rank's rows are keys (negatives; positives by global index),
    and each rank's queries are its own rows, as solo-learn and lightly do. The returned value is
    this rank's share: its mean over ranks equals the single-process loss on the concatenated
    batch, and each rank's input gradient is world_size × its slice of the single-process
    gradient, so DDP's averaging yields exactly the single-process parameter gradient.
    """
    views = stack_views(z, "z", min_views=2)
    temperature = check_positive(temperature, "temperature")
    v, b, _ = views.shape
    acc = acc_dtype(views.dtype)
    w = None if weights is None else _row_weights(weights, v, b, views.device).to(acc)
    distributed = gather_distributed and world_size() > 1
    keys = gather(views, 1) if distributed else views
    q_start = rank() * b if distributed else 0
    if w is None:
        scale = torch.full((v, b), 1.0 / (v * b), device=views.device, dtype=acc)
    else:
        w_all = gather(w, 1) if distributed else w
        scale = w / (w_all.mean() * (v * b))
    backend = _infonce_backend(backend, views.device, v * b * keys.shape[0] * keys.shape[1])
    if backend == "reference":
        if not distributed:
            return ref.multicrop_infonce_loss_reference(views, temperature, weights=w)
        rows = ref.multicrop_infonce_loss_reference(keys, temperature, reduction="none")
        return (rows[:, q_start:q_start + b] * scale).sum()
    return MultiCropInfoNCEFunction.apply(keys, scale, temperature, q_start, b, backend)


def nt_xent_loss(
    out0: torch.Tensor, out1: torch.Tensor, *, temperature: float = 0.5, memory_bank: torch.Tensor | None = None,
    gather_distributed: bool = False, backend: str = "auto",
) -> torch.Tensor:
    """NT-Xent, the value and gradient of ``lightly.loss.NTXentLoss`` (SimCLR, arXiv:2002.05709).

    Without ``memory_bank``: rows of both views L2-normalised, logits cos/T, each of the 2B rows
    classifies its other view among all 2B−1 other rows; mean cross-entropy. This is
    ``multicrop_infonce_loss`` with V = 2. ``gather_distributed``: local queries against the
    gathered keys, as lightly (see ``multicrop_infonce_loss`` for what the value and gradient are).

    With ``memory_bank`` (K, D), the MoCo form (He et al. 2020, arXiv:1911.05722): queries out0,
    logits [⟨q, k⁺⟩, q·bankᵀ]/T with k⁺ = out1, label 0, mean over the B local rows; the bank
    (normalised keys of earlier steps) is a constant. Updating it is ``NTXentLoss``'s job.
    """
    check_pair(out0, out1, ("out0", "out1"), min_rows=1)
    temperature = check_positive(temperature, "temperature")
    b, d = out0.shape
    if memory_bank is not None:
        check_tensor(memory_bank, "memory_bank")
        if memory_bank.dim() != 2 or memory_bank.shape[1] != d:
            raise ValueError(f"memory_bank must have shape (K, D) with D = {d} as out0, "
                             f"got shape {tuple(memory_bank.shape)}")
        if memory_bank.device != out0.device:
            raise ValueError(f"memory_bank must be on out0's device {out0.device}, got {memory_bank.device}")
        bank = memory_bank.detach()
        backend = _infonce_backend(backend, out0.device, b * (bank.shape[0] + 1))
        if backend == "reference":
            return ref.nt_xent_loss_reference(out0, out1, temperature, negatives=bank.clone())
        return NTXentBankFunction.apply(out0, out1, bank, temperature, backend)
    if check_backend(backend) == "reference":
        if gather_distributed and world_size() > 1:
            large0 = gather(torch.nn.functional.normalize(out0, dim=1))
            large1 = gather(torch.nn.functional.normalize(out1, dim=1))
            return ref.nt_xent_loss_reference(out0, out1, temperature, out0_large=large0, out1_large=large1,
                                              rank=rank())
        return ref.nt_xent_loss_reference(out0, out1, temperature)
    return multicrop_infonce_loss(torch.stack([out0, out1]), temperature=temperature,
                                  gather_distributed=gather_distributed, backend=backend)
