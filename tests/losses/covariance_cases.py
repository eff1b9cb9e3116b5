"""Inputs and one call convention for the covariance-family tests.

Each loss is exposed as ``call(z_a, z_b, backend) -> scalar`` over a (N, D) pair, so every
test (values, gradients, dtypes, bad input, non-finite) covers all five losses the same way.
"""

import torch

import sslfast.functional as F

LOSSES = ("vicreg", "barlow_twins", "tico", "coding_rate", "emp_ssl")


def make_pair(n, d, seed=0, dtype=torch.float64):
    """Correlated views with column scales spread around 1, so VICReg's relu(1 − std) is active on
    some columns and not others. Fresh random values: never zeros."""
    g = torch.Generator().manual_seed(seed)
    scale = torch.empty(d, dtype=torch.float64).uniform_(0.3, 2.0, generator=g)
    z_a = torch.randn(n, d, generator=g, dtype=torch.float64) * scale + 0.5
    z_b = 0.7 * z_a + 0.5 * torch.randn(n, d, generator=g, dtype=torch.float64) * scale
    return z_a.to(dtype), z_b.to(dtype)


def tico_cov(d, seed=1, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(d, d, generator=g, dtype=torch.float64)
    return (x @ x.T / d).to(dtype)


def call(loss, z_a, z_b, backend):
    if loss == "vicreg":
        return F.vicreg_loss(z_a, z_b, backend=backend)
    if loss == "barlow_twins":
        return F.barlow_twins_loss(z_a, z_b, backend=backend)
    if loss == "tico":
        return F.tico_loss(z_a, z_b, tico_cov(z_a.shape[1], dtype=z_a.dtype).to(z_a.device), backend=backend)[0]
    if loss == "coding_rate":
        return F.total_coding_rate(torch.stack([z_a, z_b]), backend=backend)
    if loss == "emp_ssl":
        return F.emp_ssl_loss([z_a, z_b, 0.5 * (z_a + z_b)], backend=backend)
    raise ValueError(loss)


def loss_and_grads(loss, z_a, z_b, backend, grad_out=1.0):
    z_a = z_a.detach().clone().requires_grad_()
    z_b = z_b.detach().clone().requires_grad_()
    value = call(loss, z_a, z_b, backend)
    (value * grad_out).backward()
    return value.detach(), z_a.grad, z_b.grad


def near_whitened(n, d, noise, seed=0):
    """Centred orthogonal columns scaled to unit variance (rank ≤ N−1, so N < D leaves the other
    columns at tiny noise), plus ``noise``. A large offset makes centring matter too."""
    g = torch.Generator().manual_seed(seed)
    r = min(n - 1, d)
    x = torch.randn(n, r, generator=g, dtype=torch.float64)
    q, _ = torch.linalg.qr(x - x.mean(0))
    z = torch.zeros(n, d, dtype=torch.float64)
    z[:, torch.randperm(d, generator=g)[:r]] = q * (n - 1) ** 0.5
    return z + noise * torch.randn(n, d, generator=g, dtype=torch.float64) + 3.0


def mass_ratio(z):
    zc = z - z.mean(0)
    c = zc.T @ zc
    diag = c.diagonal().square().sum()
    return float((c.square().sum() - diag) / diag)
