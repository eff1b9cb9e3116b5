"""nn.Module losses: drop-in replacements for lightly's, with ``backend=`` (see sslfast.functional)."""

from __future__ import annotations

import torch
from torch import nn

from . import functional as F
from ._checks import check_nonnegative, check_positive
from .backend import check_backend


class VICRegLoss(nn.Module):
    """VICReg loss; arguments and value as ``lightly.loss.VICRegLoss``. See ``sslfast.functional.vicreg_loss``."""

    def __init__(
        self,
        lambda_param: float = 25.0,
        mu_param: float = 25.0,
        nu_param: float = 1.0,
        gather_distributed: bool = False,
        eps: float = 1e-4,
        backend: str = "auto",
    ):
        super().__init__()
        for value, name in ((lambda_param, "lambda_param"), (mu_param, "mu_param"), (nu_param, "nu_param")):
            check_nonnegative(value, name)
        check_positive(eps, "eps")
        self.lambda_param, self.mu_param, self.nu_param, self.eps = lambda_param, mu_param, nu_param, eps
        self.gather_distributed = gather_distributed
        self.backend = check_backend(backend)

    def forward(self, z_a: torch.Tensor, z_b: torch.Tensor) -> torch.Tensor:
        return F.vicreg_loss(
            z_a,
            z_b,
            lambda_param=self.lambda_param,
            mu_param=self.mu_param,
            nu_param=self.nu_param,
            eps=self.eps,
            gather_distributed=self.gather_distributed,
            backend=self.backend,
        )


class BarlowTwinsLoss(nn.Module):
    """Barlow Twins loss; arguments as ``lightly.loss.BarlowTwinsLoss``.

    See ``sslfast.functional.barlow_twins_loss``.
    """

    def __init__(self, lambda_param: float = 5e-3, gather_distributed: bool = False, backend: str = "auto"):
        super().__init__()
        check_nonnegative(lambda_param, "lambda_param")
        self.lambda_param = lambda_param
        self.gather_distributed = gather_distributed
        self.backend = check_backend(backend)

    def forward(self, z_a: torch.Tensor, z_b: torch.Tensor) -> torch.Tensor:
        return F.barlow_twins_loss(
            z_a, z_b, lambda_param=self.lambda_param, gather_distributed=self.gather_distributed, backend=self.backend
        )


class TiCoLoss(nn.Module):
    """TiCo loss with lightly's semantics; the running covariance ``C`` is a registered buffer.

    ``C`` is saved in ``state_dict`` (lightly keeps it as a plain attribute). It is allocated at
    the first forward (zeros, D×D, fp32 or fp64 for fp64 inputs) unless ``dim`` is given, and
    updated in place, so a compiled step has no graph break on the update.
    """

    def __init__(
        self,
        beta: float = 0.9,
        rho: float = 8.0,
        gather_distributed: bool = False,
        backend: str = "auto",
        dim: int | None = None,
    ):
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
        loss, new_cov = F.tico_loss(
            z_a,
            z_b,
            self.C,
            beta=self.beta,
            rho=self.rho,
            gather_distributed=self.gather_distributed,
            backend=self.backend,
        )
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


# ---------------------------------------------------------------------------------------------
# InfoNCE family (issue 3)
# ---------------------------------------------------------------------------------------------

from .distributed import gather as _gather  # noqa: E402
from .distributed import world_size as _world_size  # noqa: E402


def _bank_size(size) -> tuple[int, int] | None:
    """lightly's ``memory_bank_size``: 0 (no bank) or (K, dim); (0, dim) also disables it, as lightly."""
    form = "memory_bank_size must be 0 (no memory bank) or a (K, dim) tuple such as (4096, 128)"
    if isinstance(size, bool):
        raise ValueError(f"{form}, got {size!r}")
    if isinstance(size, int):
        if size == 0:
            return None
        raise ValueError(
            f"{form}, got the bare int {size}: the feature dimension is needed, write memory_bank_size=({size}, dim)"
        )
    if (
        isinstance(size, (tuple, list))
        and len(size) == 2
        and all(isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in size)
    ):
        k, dim = size
        if k == 0:
            return None
        if dim == 0:
            raise ValueError(f"{form}, got {size!r} (dim must be >= 1)")
        return int(k), int(dim)
    raise ValueError(f"{form}, got {size!r}")


class NTXentLoss(nn.Module):
    """NT-Xent (SimCLR) / MoCo loss; arguments, value and gradient as ``lightly.loss.NTXentLoss``.

    ``memory_bank_size=(K, dim)``: MoCo (He et al. 2020, arXiv:1911.05722). The forward uses the
    bank as it was *before* this step, then enqueues the L2-normalised ``out1`` (detached;
    gathered from every rank when ``gather_distributed``) at ``bank_ptr``, as lightly: only when
    ``out0.requires_grad``, and a batch that runs past the end fills the bank to its end, drops
    the rest and resets the pointer to 0. Unlike lightly, ``bank`` and ``bank_ptr`` are persistent
    buffers (in ``state_dict``: a resumed run continues identically), the update runs on the
    device with no host sync, and the initial bank (random unit rows, as lightly) comes from a
    generator seeded with ``bank_seed``, so it is reproducible and the same on every rank.
    See ``sslfast.functional.nt_xent_loss``.
    """

    def __init__(
        self,
        temperature: float = 0.5,
        memory_bank_size=0,
        gather_distributed: bool = False,
        backend: str = "auto",
        bank_seed: int = 0,
    ):
        super().__init__()
        self.temperature = check_positive(temperature, "temperature")
        self.memory_bank_size = _bank_size(memory_bank_size)
        self.gather_distributed = gather_distributed
        self.backend = check_backend(backend)
        if self.memory_bank_size is not None:
            gen = torch.Generator().manual_seed(int(bank_seed))
            bank = torch.nn.functional.normalize(torch.randn(self.memory_bank_size, generator=gen), dim=1)
            self.register_buffer("bank", bank)
            self.register_buffer("bank_ptr", torch.zeros(1, dtype=torch.long))
        else:
            self.bank = None

    def forward(self, out0: torch.Tensor, out1: torch.Tensor) -> torch.Tensor:
        if self.bank is None:
            return F.nt_xent_loss(
                out0,
                out1,
                temperature=self.temperature,
                gather_distributed=self.gather_distributed,
                backend=self.backend,
            )
        loss = F.nt_xent_loss(out0, out1, temperature=self.temperature, memory_bank=self.bank, backend=self.backend)
        if out0.requires_grad:
            self._enqueue(out1)
        return loss

    @torch.no_grad()
    def _enqueue(self, out1: torch.Tensor) -> None:
        acc = torch.float64 if out1.dtype == torch.float64 else torch.float32
        keys = torch.nn.functional.normalize(out1.detach().to(acc), dim=1).to(self.bank.dtype)
        if self.gather_distributed and _world_size() > 1:
            keys = _gather(keys)
        k, n = self.bank.shape[0], keys.shape[0]
        ptr = self.bank_ptr
        # Rows past the end are dropped (lightly): they are redirected to row K−1 carrying the
        # very value that row receives anyway, so duplicate writes agree and no sync is needed.
        idx = (ptr + torch.arange(n, device=ptr.device)).clamp(max=k - 1)
        self.bank.index_copy_(0, idx, keys[idx - ptr])
        self.bank_ptr.copy_(torch.where(ptr + n >= k, torch.zeros_like(ptr), ptr + n))


class MultiCropInfoNCELoss(nn.Module):
    """Multi-crop InfoNCE (multi-view SimCLR) with optional GenView quality weights.

    ``forward(z, weights=None)``: z is (V, B, D) or a list of V (B, D) tensors. See
    ``sslfast.functional.multicrop_infonce_loss``.
    """

    def __init__(self, temperature: float = 0.1, gather_distributed: bool = False, backend: str = "auto"):
        super().__init__()
        self.temperature = check_positive(temperature, "temperature")
        self.gather_distributed = gather_distributed
        self.backend = check_backend(backend)

    def forward(self, z, weights: torch.Tensor | None = None) -> torch.Tensor:
        return F.multicrop_infonce_loss(
            z, weights, temperature=self.temperature, gather_distributed=self.gather_distributed, backend=self.backend
        )
