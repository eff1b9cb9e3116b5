"""The case table of `sslfast bench losses`: one ``Case`` per loss × size.

A case makes its inputs once and maps each implementation to a callable returning the
scalar loss. The runner adds ``reference_compiled`` (torch.compile of the reference) and
times fwd and fwd+bwd for each.

Covariance family: the (N, D) grid of VICReg / Barlow Twins / TiCo, and the coding-rate / EMP-SSL
(V, B, D) views. InfoNCE family: multi-crop InfoNCE over N = V·B rows (V = 2 is exactly NT-Xent),
N ∈ {512, 2048, 8192, 32768}, V ∈ {2, 8}, D ∈ {128, 256}, T = 0.1; and the MoCo form (B queries
against a K-row bank). The InfoNCE reference is the textbook dense implementation (an N×N logits
matrix): at N = 32768 its fp32 logits alone take 4 GiB, so expect it to be slow or to run out of
memory there — the runner records what happens. Targets (one H100): N = 8192, D = 128 at ≥3× speed
and ≥10× less peak memory than the eager reference; never >10% slower at N = 512; N = 32768 in
bounded memory.
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

        cases.append(
            Case(
                "coding_rate",
                {"V": v, "B": b, "D": d},
                views,
                _with_backends(F.total_coding_rate),
                notes={"reference": "official loop of per-view D×D logdets"},
            )
        )
        cases.append(Case("emp_ssl", {"V": v, "B": b, "D": d}, views, _with_backends(F.emp_ssl_loss)))
    return cases


# ---------------------------------------------------------------------------------------------
# InfoNCE family
# ---------------------------------------------------------------------------------------------

INFONCE_N = (512, 2048, 8192, 32768)
INFONCE_V = (2, 8)
INFONCE_D = (128, 256)
INFONCE_QUICK = [(2, 256, 128)]  # (V, B, D): N = 512
TEMPERATURE = 0.1
# MoCo: (B, K, D), the MoCo v1/v2 ImageNet settings (K = 65536) and a small bank.
MOCO_SIZES = [(256, 4096, 128), (256, 65536, 128)]


def _views(v: int, b: int, d: int):
    def make(device, dtype, gen):
        # Views of one image share a component, so positives are more similar than negatives.
        base = torch.randn(1, b, d, generator=gen)
        z = base + 0.5 * torch.randn(v, b, d, generator=gen)
        return [z.to(device, dtype)]

    return make


def _bank_inputs(b: int, k: int, d: int):
    def make(device, dtype, gen):
        out0 = torch.randn(b, d, generator=gen)
        out1 = out0 + 0.5 * torch.randn(b, d, generator=gen)
        bank = torch.nn.functional.normalize(torch.randn(k, d, generator=gen), dim=1)
        return [out0.to(device, dtype), out1.to(device, dtype), bank.to(device)]  # the bank stays fp32, as lightly

    return make


def _multicrop_fns():
    return {
        b: (lambda z, _b=b: F.multicrop_infonce_loss(z, temperature=TEMPERATURE, backend=_b))
        for b in ("reference", "torch", "triton")
    }


def _moco_fns():
    return {
        b: (lambda o0, o1, bank, _b=b: F.nt_xent_loss(o0, o1, temperature=TEMPERATURE, memory_bank=bank, backend=_b))
        for b in ("reference", "torch", "triton")
    }


def infonce_sizes(quick: bool) -> list[tuple[int, int, int]]:
    if quick:
        return list(INFONCE_QUICK)
    return [(v, n // v, d) for n in INFONCE_N for v in INFONCE_V for d in INFONCE_D]


def infonce_cases(quick: bool) -> list[Case]:
    notes = {
        "reference": "dense N×N logits (solo-learn simclr_loss_func with logsumexps)",
        "torch": "dense N×N logits, loss and gradient in one pass",
        "triton": "tiled online logsumexp, O(N·D) memory",
    }
    cases = [
        Case(
            "multicrop_infonce",
            {"N": v * b, "V": v, "B": b, "D": d, "T": TEMPERATURE},
            _views(v, b, d),
            _multicrop_fns(),
            notes=dict(notes, nt_xent=v == 2),
        )
        for v, b, d in infonce_sizes(quick)
    ]
    if not quick:
        cases += [
            Case(
                "moco",
                {"B": b, "K": k, "D": d, "T": TEMPERATURE},
                _bank_inputs(b, k, d),
                _moco_fns(),
                notes={"reference": "lightly NTXentLoss with a memory bank (B×(K+1) logits)"},
            )
            for b, k, d in MOCO_SIZES
        ]
    return cases


def all_cases(quick: bool) -> list[Case]:
    return covariance_cases(quick) + infonce_cases(quick)
