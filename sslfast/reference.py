"""Textbook pure-PyTorch references: the ground truth for tests and benchmarks.

Each follows the official code line for line (links below), with no fusion and no
algorithmic shortcut. Run them in float64 to get the numbers every backend is tested against.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def _off_diagonal(x: torch.Tensor) -> torch.Tensor:
    n = x.shape[0]
    return x.flatten()[:-1].view(n - 1, n + 1)[:, 1:].flatten()


def vicreg_loss_reference(
    z_a: torch.Tensor, z_b: torch.Tensor, lambda_param: float = 25.0, mu_param: float = 25.0,
    nu_param: float = 1.0, eps: float = 1e-4,
) -> torch.Tensor:
    """VICReg (Bardes et al., ICLR 2022), as in facebookresearch/vicreg main_vicreg.py::VICReg.forward."""
    n, d = z_a.shape
    repr_loss = F.mse_loss(z_a, z_b)
    x = z_a - z_a.mean(dim=0)
    y = z_b - z_b.mean(dim=0)
    std_x = torch.sqrt(x.var(dim=0) + eps)
    std_y = torch.sqrt(y.var(dim=0) + eps)
    std_loss = torch.mean(F.relu(1 - std_x)) / 2 + torch.mean(F.relu(1 - std_y)) / 2
    cov_x = (x.T @ x) / (n - 1)
    cov_y = (y.T @ y) / (n - 1)
    cov_loss = _off_diagonal(cov_x).pow(2).sum().div(d) + _off_diagonal(cov_y).pow(2).sum().div(d)
    return lambda_param * repr_loss + mu_param * std_loss + nu_param * cov_loss


def barlow_twins_loss_reference(z_a: torch.Tensor, z_b: torch.Tensor, lambda_param: float = 5e-3) -> torch.Tensor:
    """Barlow Twins (Zbontar et al., ICML 2021), as in facebookresearch/barlowtwins main.py::BarlowTwins.

    ``bn`` is BatchNorm1d(affine=False) in training mode: batch mean, biased variance, eps 1e-5.
    """
    n = z_a.shape[0]
    bn = lambda z: F.batch_norm(z, None, None, training=True, eps=1e-5)  # noqa: E731
    c = bn(z_a).T @ bn(z_b)
    c = c / n
    on_diag = torch.diagonal(c).add(-1).pow(2).sum()
    off_diag = _off_diagonal(c).pow(2).sum()
    return on_diag + lambda_param * off_diag


def tico_loss_reference(
    z_a: torch.Tensor, z_b: torch.Tensor, cov: torch.Tensor, beta: float = 0.9, rho: float = 8.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """TiCo (Zhu et al., 2022, arXiv:2206.10698) with lightly's TiCoLoss semantics.

    Returns ``(loss, new_cov)``; ``cov`` is the running (D, D) covariance (zeros at the start).
    """
    z_a = F.normalize(z_a, dim=1)
    z_b = F.normalize(z_b, dim=1)
    b = torch.mm(z_a.T, z_a).detach() / z_a.shape[0]
    c = beta * cov + (1 - beta) * b
    invariance = 1.0 - (z_a * z_b).sum(dim=1).mean()
    contrast = rho * (torch.mm(z_a, c) * z_a).sum(dim=1).mean()
    return invariance + contrast, c.detach()


def total_coding_rate_reference(z: torch.Tensor, eps: float = 0.2) -> torch.Tensor:
    """Total coding rate −½·logdet(I_D + D/(N·eps)·ZᵀZ) of one (N, D) view.

    As in tsb0601/EMP-SSL main.py::TotalCodingRate (which takes W = Zᵀ): a D×D logdet.
    """
    w = z.T
    p, m = w.shape
    identity = torch.eye(p, device=z.device, dtype=z.dtype)
    scalar = p / (m * eps)
    return -torch.logdet(identity + scalar * w.matmul(w.T)) / 2.0


def emp_ssl_loss_reference(z_views: list[torch.Tensor], tcr_eps: float = 0.2, inv_coef: float = 200.0) -> torch.Tensor:
    """EMP-SSL (Tong et al., 2023, arXiv:2304.03977), as in tsb0601/EMP-SSL main.py.

    ``inv_coef·(−mean_v mean_b cos(z_v, z̄)) + mean_v TCR(z_v)``, z̄ the (not detached) mean over
    views. Minimising it *maximises* the coding rate (lightly 1.6 has this sign inverted).
    """
    z_list = torch.stack(list(z_views), dim=0)
    z_avg = z_list.mean(dim=0)
    z_sim = 0
    for i in range(len(z_views)):
        z_sim = z_sim + F.cosine_similarity(z_list[i], z_avg, dim=1).mean()
    z_sim = z_sim / len(z_views)
    tcr = sum(total_coding_rate_reference(z, tcr_eps) for z in z_views) / len(z_views)
    return inv_coef * (-z_sim) + tcr


# ---------------------------------------------------------------------------------------------
# InfoNCE family (issue 3)
# ---------------------------------------------------------------------------------------------


def nt_xent_loss_reference(
    out0: torch.Tensor, out1: torch.Tensor, temperature: float = 0.5, negatives: torch.Tensor | None = None,
    out0_large: torch.Tensor | None = None, out1_large: torch.Tensor | None = None, rank: int = 0,
) -> torch.Tensor:
    """NT-Xent (SimCLR, Chen et al. 2020, arXiv:2002.05709; MoCo, He et al. 2020, arXiv:1911.05722).

    Line for line lightly 1.6.0 lightly/loss/ntx_ent_loss.py::NTXentLoss.forward:
    - ``negatives`` (K, D) given (memory bank, the bank *before* this step's update): logits
      [⟨q, k⁺⟩, q·bankᵀ]/T with q = out0, k⁺ = out1, label 0;
    - otherwise the 2B rows of both views against all other rows, positives the other view.
      ``out0_large``/``out1_large`` are the normalised gathered batches when distributed
      (local queries against global keys, labels offset by ``rank``·B).
    """
    batch_size = out0.shape[0]
    out0 = F.normalize(out0, dim=1)
    out1 = F.normalize(out1, dim=1)
    if negatives is not None:
        negatives = negatives.to(out0.dtype).T
        sim_pos = torch.einsum("nc,nc->n", out0, out1).unsqueeze(-1)
        sim_neg = torch.einsum("nc,ck->nk", out0, negatives)
        logits = torch.cat([sim_pos, sim_neg], dim=1) / temperature
        labels = torch.zeros(logits.shape[0], device=out0.device, dtype=torch.long)
        return F.cross_entropy(logits, labels)
    if out0_large is None:
        out0_large, out1_large = out0, out1
    world = out0_large.shape[0] // batch_size
    diag_mask = torch.zeros((batch_size, batch_size * world), dtype=torch.bool, device=out0.device)
    diag_mask[torch.arange(batch_size), torch.arange(batch_size) + rank * batch_size] = True
    logits_00 = torch.einsum("nc,mc->nm", out0, out0_large) / temperature
    logits_01 = torch.einsum("nc,mc->nm", out0, out1_large) / temperature
    logits_10 = torch.einsum("nc,mc->nm", out1, out0_large) / temperature
    logits_11 = torch.einsum("nc,mc->nm", out1, out1_large) / temperature
    logits_00 = logits_00[~diag_mask].view(batch_size, -1)
    logits_11 = logits_11[~diag_mask].view(batch_size, -1)
    logits = torch.cat([torch.cat([logits_01, logits_00], dim=1), torch.cat([logits_10, logits_11], dim=1)], dim=0)
    labels = (torch.arange(batch_size, device=out0.device) + rank * batch_size).repeat(2)
    return F.cross_entropy(logits, labels)


def multicrop_infonce_loss_reference(
    z: torch.Tensor, temperature: float = 0.1, weights: torch.Tensor | None = None, reduction: str = "mean",
) -> torch.Tensor:
    """Multi-view SimCLR / InfoNCE, as solo-learn solo/losses/simclr.py::simclr_loss_func.

    ``z`` (V, B, D): rows are L2-normalised; a row's positives are the same image in the other
    views (solo-learn's ``indexes``), the denominator is every row but itself:
    ``ℓ_i = −log(Σ_pos exp(s_ij/T) / Σ_{j≠i} exp(s_ij/T))``. solo-learn sums raw exps; here both
    sums are logsumexps (same value, finite at small T). ``weights`` (B,) or (V, B): GenView's
    quality weights (Li et al. 2024, arXiv:2403.12003), normalised to mean 1, multiply ℓ_i.
    ``reduction="none"`` returns the (V, B) per-row losses (unweighted).
    """
    v, b, d = z.shape
    z = F.normalize(z.reshape(v * b, d), dim=-1)
    indexes = torch.arange(b, device=z.device).repeat(v)
    sim = torch.einsum("if,jf->ij", z, z) / temperature
    pos_mask = indexes[:, None] == indexes[None, :]
    pos_mask.fill_diagonal_(False)
    self_mask = torch.eye(v * b, dtype=torch.bool, device=z.device)
    log_pos = torch.logsumexp(sim.masked_fill(~pos_mask, float("-inf")), 1)
    log_all = torch.logsumexp(sim.masked_fill(self_mask, float("-inf")), 1)
    rows = (log_all - log_pos).reshape(v, b)
    if reduction == "none":
        return rows
    if weights is None:
        return rows.mean()
    w = weights.detach().to(rows.dtype).expand(v, b)
    return (rows * (w / w.mean())).mean()
