"""Benchmark cases for `sslfast bench losses`: one ``Case`` per loss × size.

A case makes its inputs once and maps each implementation to a callable returning the
scalar loss. The runner adds ``reference_compiled`` (torch.compile of the reference) and
times fwd and fwd+bwd for each.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from .. import functional as F

# (N, D) grid of the covariance-family issue; quick = the subset `--quick` runs.
COV_SIZES = [(256, 2048), (256, 8192), (1024, 8192), (2048, 8192), (4096, 2048)]
COV_QUICK = [(256, 2048)]
# EMP-SSL coding rate: V views of B samples in D dims (the official CIFAR setting is V=20, B=100).
TCR_SIZES = [(20, 100, 1024), (20, 256, 2048)]
TCR_QUICK = [(8, 64, 256)]


@dataclass(frozen=True)
class Case:
    loss: str
    params: dict
    make_inputs: Callable[[torch.device, torch.dtype, torch.Generator], list[torch.Tensor]]
    fns: dict[str, Callable[..., torch.Tensor]]
    notes: dict = field(default_factory=dict)


def _pair(n: int, d: int):
    def make(device, dtype, gen):
        z_a = torch.randn(n, d, generator=gen, device="cpu").to(device, dtype)
        z_b = (z_a.float() + 0.5 * torch.randn(n, d, generator=gen).to(device)).to(dtype)
        return [z_a, z_b]
    return make


def _with_backends(fn: Callable[..., torch.Tensor]) -> dict[str, Callable[..., torch.Tensor]]:
    return {b: (lambda *xs, _b=b: fn(*xs, backend=_b)) for b in ("reference", "torch", "triton")}


def covariance_cases(quick: bool) -> list[Case]:
    cases = []
    for n, d in COV_QUICK if quick else COV_SIZES:
        p = {"N": n, "D": d}
        cases.append(Case("vicreg", p, _pair(n, d), _with_backends(F.vicreg_loss)))
        cases.append(Case("barlow_twins", p, _pair(n, d), _with_backends(F.barlow_twins_loss)))

        def tico(z_a, z_b, backend, _d=d):
            cov = torch.zeros(_d, _d, device=z_a.device)
            return F.tico_loss(z_a, z_b, cov, backend=backend)[0]

        cases.append(Case("tico", p, _pair(n, d), _with_backends(tico)))
    for v, b, d in TCR_QUICK if quick else TCR_SIZES:
        def views(device, dtype, gen, _s=(v, b, d)):
            z = torch.nn.functional.normalize(torch.randn(*_s, generator=gen), dim=-1)
            return [z.to(device, dtype)]

        cases.append(Case("coding_rate", {"V": v, "B": b, "D": d}, views, _with_backends(F.total_coding_rate),
                          notes={"reference": "official loop of per-view D×D logdets"}))
        cases.append(Case("emp_ssl", {"V": v, "B": b, "D": d}, views, _with_backends(F.emp_ssl_loss)))
    return cases


def all_cases(quick: bool) -> list[Case]:
    cases = covariance_cases(quick)
    try:
        from .infonce_cases import infonce_cases
    except ModuleNotFoundError as e:
        if e.name != f"{__package__}.infonce_cases":
            raise
        return cases
    return cases + infonce_cases(quick)
