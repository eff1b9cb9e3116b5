"""Declarative SSL methods: a ``MethodSpec`` per method, and ``SSLModel``, which turns a list
of views into the method's loss with one forward pass per view resolution.

Defaults follow the published CIFAR-10 recipes; each spec cites its source:
- solo-learn (da Costa et al., JMLR 2022), ``scripts/pretrain/cifar/<method>.yaml``, whose
  ``lr`` is scaled by ``batch_size / 256`` (solo-learn's ``main_pretrain.py``); we do the same.
- EMP-SSL: the official repository tsb0601/EMP-SSL (``main.py``, ``model/model.py``, README).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields, replace

import torch
import torch.nn.functional as F
from torch import nn

from .. import losses
from ..distributed import gather, rank
from .config import LR_SCALING
from .models import build_backbone, projector

__all__ = ["METHODS", "MethodSpec", "SSLModel", "build_model", "get_method", "momentum_tau"]


@dataclass(frozen=True)
class MethodSpec:
    """One SSL method: views, heads, loss, momentum encoder and optimisation defaults.

    ``kind`` selects how projections become a loss (see ``SSLModel``). ``proj_*``/``pred_*``
    describe the heads (``pred_hidden=None``: no predictor). ``momentum=(base_tau, final_tau)``
    adds an EMA copy of backbone + projector, updated with the cosine schedule of BYOL.
    ``lr`` is the learning rate at batch ``lr_ref_batch`` (None: no scaling), scaled by
    ``lr_scaling``: "linear" (``lr·B/ref``, solo-learn) or "sqrt" (``lr·√(B/ref)``, which SimCLR's
    Appendix B.1 found better at small batches).
    ``static_lr`` names heads (``"predictor"``) whose rate stays at that scaled ``lr`` while the
    rest follows the warm-up and cosine schedule.
    """

    name: str
    kind: str
    views: str  # data_pipelines preset name
    proj_hidden: tuple[int, ...]
    proj_out: int
    source: str
    proj_batch_norm: bool = True
    proj_last_bn: bool = False
    proj_normalize: bool = False  # L2-normalise the projection (EMP-SSL's encoder)
    pred_hidden: int | None = None
    bn_per_view: bool = False  # one forward pass per view (BatchNorm statistics per view), not per shape
    static_lr: tuple[str, ...] = ()  # submodules trained at the base lr throughout (optim.param_groups_for_ssl)
    bias_lr_scale: float = 1.0  # biases' and norm parameters' rate / the weights' (optim.param_groups_for_ssl)
    pred_lr_scale: float = 1.0  # multiplies the predictor's rate, scheduled or static (optim head_lr_scale)
    momentum: tuple[float, float] | None = None
    loss_kwargs: dict = field(default_factory=dict)
    loss_scale: float = 1.0
    num_views: int | None = None  # preset argument (EMP-SSL patches)
    optimizer: str = "lars"
    lr: float = 0.3
    lr_ref_batch: int | None = 256
    lr_scaling: str = "linear"
    weight_decay: float = 1e-4
    eta: float = 0.02
    clip_lr: bool = True
    batch_size: int = 256
    epochs: int = 1000
    warmup_epochs: int = 10
    warmup_start_lr: float = 3e-5
    final_lr: float = 0.0


def _lars(**kw) -> dict:
    # solo-learn CIFAR LARS: eta 0.02, clip_lr True, exclude_bias_n_norm True (param_groups_for_ssl).
    return dict(optimizer="lars", eta=0.02, clip_lr=True, **kw)


METHODS: dict[str, MethodSpec] = {
    m.name: m
    for m in (
        # solo-learn cifar/vicreg.yaml: proj 2048-2048-2048, weights sim 25 / var 25 / cov 1, LARS lr 0.3,
        # wd 1e-4. solo-learn's variance term is mean relu(1-std_a) + mean relu(1-std_b) (no 1/2), while
        # VICRegLoss (lightly, official VICReg) halves it: solo-learn's var weight 25 is mu_param=50 here.
        MethodSpec(
            "vicreg",
            "pair",
            "vicreg",
            (2048, 2048),
            2048,
            "solo-learn scripts/pretrain/cifar/vicreg.yaml",
            loss_kwargs=dict(lambda_param=25.0, mu_param=50.0, nu_param=1.0),
            **_lars(lr=0.3, weight_decay=1e-4),
        ),
        # solo-learn cifar/barlow.yaml: proj 2048-2048-2048, scale_loss 0.1, lamb 0.0051 (barlow.py default),
        # LARS lr 0.3, wd 1e-4; asymmetric (BYOL) augmentations.
        MethodSpec(
            "barlow_twins",
            "pair",
            "byol",
            (2048, 2048),
            2048,
            "solo-learn scripts/pretrain/cifar/barlow.yaml",
            loss_kwargs=dict(lambda_param=0.0051),
            loss_scale=0.1,
            **_lars(lr=0.3, weight_decay=1e-4),
        ),
        # No CIFAR recipe in solo-learn or the TiCo paper: TiCoLoss defaults (lightly, beta 0.9, rho 8),
        # TiCo paper's 2-layer 4096-256 projector, and the Barlow Twins CIFAR optimiser recipe above.
        MethodSpec(
            "tico",
            "pair",
            "byol",
            (4096,),
            256,
            "TiCo arXiv:2206.10698 head; solo-learn barlow.yaml optim",
            loss_kwargs=dict(beta=0.9, rho=8.0),
            **_lars(lr=0.3, weight_decay=1e-4),
        ),
        # solo-learn cifar/simclr.yaml: proj 2048-256, temperature 0.2, LARS lr 0.4, wd 1e-4, symmetric augs.
        MethodSpec(
            "simclr",
            "multicrop_infonce",
            "simclr",
            (2048,),
            256,
            "solo-learn scripts/pretrain/cifar/simclr.yaml",
            loss_kwargs=dict(temperature=0.2),
            **_lars(lr=0.4, weight_decay=1e-4),
        ),
        # solo-learn cifar/mocov2plus.yaml: proj 2048-256 (no BN), queue 32768 per view, T 0.2,
        # tau 0.99->0.999, SGD lr 0.3, wd 1e-4. Loss (solo-learn mocov2plus.py): the mean of q1 against
        # [k2; past k2 keys] and q2 against [k1; past k1 keys]: one queue per view.
        MethodSpec(
            "mocov2",
            "moco_v2",
            "simclr",
            (2048,),
            256,
            "solo-learn scripts/pretrain/cifar/mocov2plus.yaml",
            proj_batch_norm=False,
            momentum=(0.99, 0.999),
            loss_kwargs=dict(temperature=0.2, queue_size=32768),
            optimizer="sgd",
            lr=0.3,
            weight_decay=1e-4,
            clip_lr=False,
        ),
        # solo-learn cifar/mocov3.yaml: proj 4096-256 + last BN, pred 4096, T 0.2, tau 0.99->1.0,
        # LARS lr 0.3, wd 1e-6; asymmetric augs.
        MethodSpec(
            "mocov3",
            "moco_v3",
            "byol",
            (4096,),
            256,
            "solo-learn scripts/pretrain/cifar/mocov3.yaml",
            proj_last_bn=True,
            pred_hidden=4096,
            momentum=(0.99, 1.0),
            loss_kwargs=dict(temperature=0.2),
            **_lars(lr=0.3, weight_decay=1e-6),
        ),
        # solo-learn cifar/byol.yaml: proj 4096-256, pred 4096, tau 0.99->1.0, LARS lr 1.0, wd 1e-5.
        MethodSpec(
            "byol",
            "byol",
            "byol",
            (4096,),
            256,
            "solo-learn scripts/pretrain/cifar/byol.yaml",
            pred_hidden=4096,
            momentum=(0.99, 1.0),
            **_lars(lr=1.0, weight_decay=1e-5),
        ),
        # solo-learn cifar/simsiam.yaml: proj 2048-2048-2048 + last BN, pred 512, SGD lr 0.5, wd 1e-5;
        # the predictor at a fixed lr (solo-learn simsiam.py static_lr; SimSiam paper Sec. 4.4).
        MethodSpec(
            "simsiam",
            "simsiam",
            "simclr",
            (2048, 2048),
            2048,
            "solo-learn scripts/pretrain/cifar/simsiam.yaml",
            proj_last_bn=True,
            pred_hidden=512,
            static_lr=("predictor",),
            optimizer="sgd",
            lr=0.5,
            weight_decay=1e-5,
            clip_lr=False,
        ),
        # tsb0601/EMP-SSL: 20 patches (README's CIFAR command), encoder 512-4096-1024 L2-normalised,
        # inv coef 200, TCR eps 0.2, LARS(SGD nesterov) eta 0.005 clip, lr 0.3 at batch 100 (no scaling),
        # wd 1e-4, cosine to 0 without warm-up, 30 epochs.
        MethodSpec(
            "emp_ssl",
            "emp_ssl",
            "emp_ssl",
            (4096,),
            1024,
            "tsb0601/EMP-SSL main.py, model/model.py",
            proj_normalize=True,
            num_views=20,
            loss_kwargs=dict(tcr_eps=0.2, inv_coef=200.0),
            optimizer="lars",
            eta=0.005,
            clip_lr=True,
            lr=0.3,
            lr_ref_batch=None,
            weight_decay=1e-4,
            batch_size=100,
            epochs=30,
            warmup_epochs=0,
            warmup_start_lr=0.0,
        ),
    )
}

KINDS = ("pair", "multicrop_infonce", "moco_v2", "moco_v3", "byol", "simsiam", "emp_ssl")


def get_method(name: str, **overrides) -> MethodSpec:
    """The registered spec for ``name``, with fields replaced by ``overrides`` (None values ignored)."""
    if not isinstance(name, str):
        raise TypeError(f"method must be a str, got {type(name).__name__}")
    key = name.lower().replace("-", "_")
    if key not in METHODS:
        raise ValueError(f"unknown method {name!r}; valid methods: {', '.join(sorted(METHODS))}")
    valid = {f.name for f in fields(MethodSpec)} - {"name", "kind", "source"}
    bad = sorted(set(overrides) - valid)
    if bad:
        raise ValueError(f"unknown MethodSpec field(s) {bad}; valid fields: {sorted(valid)}")
    spec = replace(METHODS[key], **{k: v for k, v in overrides.items() if v is not None})
    if spec.lr_scaling not in LR_SCALING:
        raise ValueError(f"lr_scaling must be one of {LR_SCALING}, got {spec.lr_scaling!r}")
    if spec.kind not in KINDS:
        raise ValueError(f"MethodSpec.kind must be one of {KINDS}, got {spec.kind!r}")
    return spec


def momentum_tau(step, total_steps: int, base_tau: float, final_tau: float):
    r"""BYOL's EMA schedule (Grill et al. 2020, Sec. 3.2; solo-learn MomentumUpdater):
    :math:`\tau_k = \tau_{final} - (\tau_{final} - \tau_{base})(\cos(\pi k / K) + 1) / 2`.
    ``step`` may be a tensor (no host sync)."""
    if isinstance(step, torch.Tensor):
        progress = torch.clamp(step.to(torch.float32) / max(total_steps, 1), 0.0, 1.0)
        return final_tau - (final_tau - base_tau) * (torch.cos(math.pi * progress) + 1) / 2
    progress = min(max(step / max(total_steps, 1), 0.0), 1.0)
    return final_tau - (final_tau - base_tau) * (math.cos(math.pi * progress) + 1) / 2


def _wide(z: torch.Tensor) -> torch.Tensor:
    # losses in fp32 under bf16/fp16 autocast; float64 stays float64 (exactness tests)
    return z if z.dtype in (torch.float32, torch.float64) else z.float()


def _neg_cosine(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    # mean over the batch of -cos(p, sg(z)) (SimSiam eq. 1; BYOL's 2 - 2cos up to the constant)
    return -(F.normalize(_wide(p), dim=-1) * F.normalize(_wide(z.detach()), dim=-1)).sum(-1).mean()


def moco_v3_loss(q: torch.Tensor, k: torch.Tensor, temperature: float, gather_distributed: bool) -> torch.Tensor:
    """MoCo v3 contrastive loss (Chen, Xie & He, ICCV 2021, Alg. 1): cross-entropy of
    ``q·kᵀ/T`` against the diagonal, times ``2T``. Negatives are the other keys of the (global)
    batch. Written with ``F.cross_entropy``: lightly's NTXentLoss also contrasts each query with
    the other queries, which MoCo v3 does not, so its semantics differ."""
    q = F.normalize(_wide(q), dim=1)
    k = F.normalize(_wide(k.detach()), dim=1)
    offset = 0
    if gather_distributed:
        k = gather(k)  # keys carry no gradient, so the gather only supplies negatives
        offset = rank() * q.shape[0]
    logits = q @ k.T / temperature
    labels = torch.arange(q.shape[0], device=q.device) + offset
    return F.cross_entropy(logits, labels) * (2 * temperature)


class SSLModel(nn.Module):
    """Backbone + projector (+ predictor, + momentum copies) and the method's loss.

    ``forward(views) -> loss``: views are (B, C, H, W) tensors; views of equal shape go through
    the backbone in *one* concatenated pass (multi-crop: one pass per resolution), and the
    momentum encoder likewise. Loss state (TiCo covariance, MoCo queue) lives in ``self.loss``
    buffers and is therefore part of ``state_dict``.
    """

    def __init__(
        self,
        spec: MethodSpec,
        backbone: nn.Module,
        *,
        backend: str = "auto",
        gather_distributed: bool = False,
    ):
        super().__init__()
        if not isinstance(spec, MethodSpec):
            raise TypeError(f"spec must be a MethodSpec, got {type(spec).__name__}")
        if not hasattr(backbone, "feat_dim"):
            raise TypeError(f"backbone must expose feat_dim (see sslfast.train.models), got {type(backbone).__name__}")
        self.spec = spec
        self.backbone = backbone
        self.projector = projector(
            backbone.feat_dim,
            list(spec.proj_hidden),
            spec.proj_out,
            batch_norm=spec.proj_batch_norm,
            last_bn=spec.proj_last_bn,
        )
        self.predictor = None
        if spec.pred_hidden is not None:
            # BYOL / SimSiam / MoCo v3 predictor: Linear-BN-ReLU-Linear (models.predictor).
            self.predictor = projector(
                spec.proj_out, [spec.pred_hidden], spec.proj_out, batch_norm=spec.proj_batch_norm
            )
        self.momentum_backbone = self.momentum_projector = None
        if spec.momentum is not None:
            self.momentum_backbone = copy.deepcopy(backbone).requires_grad_(False)
            self.momentum_projector = copy.deepcopy(self.projector).requires_grad_(False)
        self.gather_distributed = gather_distributed
        self.loss = self._build_loss(backend, gather_distributed)

    def _build_loss(self, backend: str, gather: bool) -> nn.Module | None:
        spec, kw = self.spec, dict(self.spec.loss_kwargs)
        if spec.name == "vicreg":
            return losses.VICRegLoss(**kw, gather_distributed=gather, backend=backend)
        if spec.name == "barlow_twins":
            return losses.BarlowTwinsLoss(**kw, gather_distributed=gather, backend=backend)
        if spec.name == "tico":
            return losses.TiCoLoss(**kw, gather_distributed=gather, backend=backend, dim=spec.proj_out)
        if spec.kind == "multicrop_infonce":
            return losses.MultiCropInfoNCELoss(**kw, gather_distributed=gather, backend=backend)
        if spec.kind == "moco_v2":
            # one queue per view (solo-learn MoCo V2+): "k2" holds past k2 keys, scored against q1;
            # "k1" past k1 keys, scored against q2. Each NTXentLoss scores its queries against the
            # bank as it was before the step, then enqueues its keys; banks are buffers (resume).
            return nn.ModuleDict(
                {
                    name: losses.NTXentLoss(
                        temperature=kw["temperature"],
                        memory_bank_size=(kw["queue_size"], spec.proj_out),
                        gather_distributed=gather,
                        backend=backend,
                        bank_seed=seed,  # independent random initial keys, as solo-learn's randn queues
                    )
                    for name, seed in (("k2", 0), ("k1", 1))
                }
            )
        if spec.kind == "emp_ssl":
            return losses.EMPSSLLoss(**kw, backend=backend)
        return None  # moco_v3 / byol / simsiam: written below

    def _grouped(
        self, encode: Callable[[torch.Tensor], torch.Tensor], views: Sequence[torch.Tensor]
    ) -> list[torch.Tensor]:
        """``encode`` over views concatenated per shape (one pass each; with ``spec.bn_per_view``
        one pass per view, so BatchNorm normalises each view by its own statistics); outputs in
        the views' order."""
        groups: dict[tuple, list[int]] = {}
        for i, v in enumerate(views):
            groups.setdefault((i,) if self.spec.bn_per_view else tuple(v.shape), []).append(i)
        out: list[torch.Tensor | None] = [None] * len(views)
        for idx in groups.values():
            z = encode(torch.cat([views[i] for i in idx]) if len(idx) > 1 else views[idx[0]])
            for i, zi in zip(idx, z.chunk(len(idx)), strict=True):
                out[i] = zi
        return out

    def _online(self, x: torch.Tensor) -> torch.Tensor:
        z = self.projector(self.backbone(x))
        return F.normalize(z, dim=1) if self.spec.proj_normalize else z

    def _target(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.momentum_projector(self.momentum_backbone(x))

    def forward(self, views: Sequence[torch.Tensor]) -> torch.Tensor:
        if isinstance(views, torch.Tensor) or not isinstance(views, (list, tuple)):
            raise TypeError(f"views must be a list of (B, C, H, W) tensors, got {type(views).__name__}")
        if len(views) < 2:
            raise ValueError(f"{self.spec.name} needs at least 2 views, got {len(views)}")
        if next(self.backbone.parameters()).dtype == torch.float64:
            # make_views gives fp32; a float64 model (exactness tests) gets float64 inputs
            views = [v.double() for v in views]
        z = self._grouped(self._online, views)
        kind, scale = self.spec.kind, self.spec.loss_scale
        if kind == "pair":
            loss = self.loss(_wide(z[0]), _wide(z[1]))
        elif kind == "multicrop_infonce":
            loss = self.loss([_wide(zi) for zi in z])
        elif kind == "emp_ssl":
            loss = self.loss(_wide(torch.stack(z)))
        elif kind == "moco_v2":
            k = self._grouped(self._target, views[:2])
            # symmetric MoCo v2+ (solo-learn mocov2plus.py): (L(q1, k2 | queue of k2) + L(q2, k1 | queue of k1)) / 2
            loss = 0.5 * (self.loss["k2"](_wide(z[0]), _wide(k[1])) + self.loss["k1"](_wide(z[1]), _wide(k[0])))
        elif kind == "simsiam":
            p = self._grouped(self.predictor, z[:2])
            loss = 0.5 * (_neg_cosine(p[0], z[1]) + _neg_cosine(p[1], z[0]))
        else:  # byol, moco_v3: predictor on the online branch, momentum targets
            p = self._grouped(self.predictor, z[:2])
            k = self._grouped(self._target, views[:2])
            if kind == "byol":
                # solo-learn byol_loss_func: sum over the two pairs of 2 - 2 cos(p, sg(z'))
                loss = 4 + 2 * (_neg_cosine(p[0], k[1]) + _neg_cosine(p[1], k[0]))
            else:
                # MoCo v3 Alg. 1, the official builder and solo-learn *sum* the two directions
                t, g = self.spec.loss_kwargs["temperature"], self.gather_distributed
                loss = moco_v3_loss(p[0], k[1], t, g) + moco_v3_loss(p[1], k[0], t, g)
        return loss * scale if scale != 1.0 else loss

    def momentum_pairs(self) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """(momentum params, online params) for the EMA update; empty without a momentum encoder."""
        if self.momentum_backbone is None:
            return [], []
        ema = list(self.momentum_backbone.parameters()) + list(self.momentum_projector.parameters())
        online = list(self.backbone.parameters()) + list(self.projector.parameters())
        return ema, online

    @torch.no_grad()
    def momentum_update(self, tau) -> None:
        """``ema ← tau·ema + (1 − tau)·online`` with multi-tensor (foreach) kernels; tau may be a tensor."""
        ema, online = self.momentum_pairs()
        if not ema:
            return
        diff = torch._foreach_sub(online, ema)
        torch._foreach_mul_(diff, 1 - tau)
        torch._foreach_add_(ema, diff)


def build_model(
    spec: MethodSpec,
    backbone: str | nn.Module = "resnet18_cifar",
    *,
    backbone_kwargs: dict | None = None,
    backend: str = "auto",
    gather_distributed: bool = False,
) -> SSLModel:
    """``SSLModel`` for ``spec`` on a backbone given by name (``models.build_backbone``) or module."""
    if isinstance(backbone, str):
        backbone = build_backbone(backbone, **(backbone_kwargs or {}))
    elif not isinstance(backbone, nn.Module):
        raise TypeError(f"backbone must be a name or an nn.Module, got {type(backbone).__name__}")
    return SSLModel(spec, backbone, backend=backend, gather_distributed=gather_distributed)
