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
