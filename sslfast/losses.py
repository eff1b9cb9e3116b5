"""nn.Module losses: drop-in replacements for lightly's, with ``backend=`` (see sslfast.functional)."""
from __future__ import annotations

import torch
from torch import nn

from . import functional as F
from ._checks import check_nonnegative, check_positive
from .backend import check_backend


class VICRegLoss(nn.Module):
    """VICReg loss; arguments and value as ``lightly.loss.VICRegLoss``. See ``sslfast.functional.vicreg_loss``."""

    def __init__(self, lambda_param: float = 25.0, mu_param: float = 25.0, nu_param: float = 1.0,
                 gather_distributed: bool = False, eps: float = 1e-4, backend: str = "auto"):
        super().__init__()
        for value, name in ((lambda_param, "lambda_param"), (mu_param, "mu_param"), (nu_param, "nu_param")):
            check_nonnegative(value, name)
        check_positive(eps, "eps")
        self.lambda_param, self.mu_param, self.nu_param, self.eps = lambda_param, mu_param, nu_param, eps
        self.gather_distributed = gather_distributed
        self.backend = check_backend(backend)

    def forward(self, z_a: torch.Tensor, z_b: torch.Tensor) -> torch.Tensor:
        return F.vicreg_loss(z_a, z_b, lambda_param=self.lambda_param, mu_param=self.mu_param,
                             nu_param=self.nu_param, eps=self.eps, gather_distributed=self.gather_distributed,
                             backend=self.backend)


class BarlowTwinsLoss(nn.Module):
    """Barlow Twins loss; arguments as ``lightly.loss.BarlowTwinsLoss``. See ``sslfast.functional.barlow_twins_loss``."""

    def __init__(self, lambda_param: float = 5e-3, gather_distributed: bool = False, backend: str = "auto"):
        super().__init__()
        check_nonnegative(lambda_param, "lambda_param")
        self.lambda_param = lambda_param
        self.gather_distributed = gather_distributed
        self.backend = check_backend(backend)

    def forward(self, z_a: torch.Tensor, z_b: torch.Tensor) -> torch.Tensor:
        return F.barlow_twins_loss(z_a, z_b, lambda_param=self.lambda_param,
                                   gather_distributed=self.gather_distributed, backend=self.backend)


class TiCoLoss(nn.Module):
    """TiCo loss with lightly's semantics; the running covariance ``C`` is a registered buffer.

    ``C`` is saved in ``state_dict`` (lightly keeps it as a plain attribute). It is allocated at
    the first forward (zeros, D×D, fp32 or fp64 for fp64 inputs) unless ``dim`` is given, and
    updated in place, so a compiled step has no graph break on the update.
    """

    def __init__(self, beta: float = 0.9, rho: float = 8.0, gather_distributed: bool = False,
                 backend: str = "auto", dim: int | None = None):
        super().__init__()
        if not 0 <= beta <= 1:
            raise ValueError(f"beta must be in [0, 1], got {beta!r}")
        check_nonnegative(rho, "rho")
        self.beta, self.rho = beta, rho
        self.gather_distributed = gather_distributed
        self.backend = check_backend(backend)
        size = 0 if dim is None else int(dim)
        self.register_buffer("C", torch.zeros(size, size))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        saved = state_dict.get(prefix + "C")
        if saved is not None and saved.shape != self.C.shape:
            self.C = torch.zeros_like(saved, device=self.C.device)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, z_a: torch.Tensor, z_b: torch.Tensor, update_covariance_matrix: bool = True) -> torch.Tensor:
        d = z_a.shape[-1] if isinstance(z_a, torch.Tensor) else None
        if self.C.numel() == 0 and d is not None:
            dtype = torch.float64 if z_a.dtype == torch.float64 else torch.float32
            self.C = torch.zeros(d, d, device=z_a.device, dtype=dtype)
        loss, new_cov = F.tico_loss(z_a, z_b, self.C, beta=self.beta, rho=self.rho,
                                    gather_distributed=self.gather_distributed, backend=self.backend)
        if update_covariance_matrix:
            with torch.no_grad():
                self.C.copy_(new_cov)
        return loss


class TotalCodingRate(nn.Module):
    """``−½·logdet(I + D/(N·eps)·ZᵀZ)``; see ``sslfast.functional.total_coding_rate``."""

    def __init__(self, eps: float = 0.2, backend: str = "auto"):
        super().__init__()
        check_positive(eps, "eps")
        self.eps = eps
        self.backend = check_backend(backend)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return F.total_coding_rate(z, eps=self.eps, backend=self.backend)


class EMPSSLLoss(nn.Module):
    """EMP-SSL loss with the official sign (maximises the coding rate); see ``sslfast.functional.emp_ssl_loss``."""

    def __init__(self, tcr_eps: float = 0.2, inv_coef: float = 200.0, backend: str = "auto"):
        super().__init__()
        check_positive(tcr_eps, "tcr_eps")
        check_nonnegative(inv_coef, "inv_coef")
        self.tcr_eps, self.inv_coef = tcr_eps, inv_coef
        self.backend = check_backend(backend)

    def forward(self, z_views) -> torch.Tensor:
        return F.emp_ssl_loss(z_views, tcr_eps=self.tcr_eps, inv_coef=self.inv_coef, backend=self.backend)
