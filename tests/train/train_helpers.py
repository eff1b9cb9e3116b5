"""Tiny models and configs shared by the training tests (CPU, seconds per run)."""

import functools

import torch

from sslfast.train.config import TrainConfig
from sslfast.train.methods import build_model, get_method, momentum_tau
from sslfast.train.optim import build_optimizer
from sslfast.train.setup import build_views
from sslfast.train.step import make_train_step

SIZE = 16


def tiny_spec(name: str, **extra):
    kw = dict(proj_hidden=(32,), proj_out=32)
    if get_method(name).pred_hidden:
        kw["pred_hidden"] = 16
    if name == "emp_ssl":
        kw["num_views"] = 4
    if name == "mocov2":
        kw["loss_kwargs"] = dict(temperature=0.2, queue_size=64)
    kw.update(extra)
    return get_method(name, **kw)


def tiny_step(
    name: str,
    *,
    lr: float = 0.05,
    seed: int = 0,
    backbone=None,
    compile=False,
    dtype=None,
    world_size: int = 1,
    rank: int = 0,
    wrap=None,
    device="cpu",
    cuda_graphs=False,
    **spec_extra,
):
    torch.manual_seed(seed)
    spec = tiny_spec(name, **spec_extra)
    model = build_model(
        spec,
        backbone if backbone is not None else "resnet18_cifar",
        backbone_kwargs=None if backbone is not None else dict(width=8),
        gather_distributed=world_size > 1,
    )
    model.to(device)
    if dtype is not None:
        model.to(dtype)
    opt = build_optimizer(
        spec.optimizer,
        model,
        torch.tensor(lr, dtype=torch.float64 if dtype else torch.float32, device=device),
        spec.weight_decay,
        eta=spec.eta,
        clip_lr=spec.clip_lr,
    )
    views = build_views(spec, TrainConfig(method=name, view_size=SIZE))
    ema = (
        functools.partial(momentum_tau, total_steps=20, base_tau=spec.momentum[0], final_tau=spec.momentum[1])
        if spec.momentum
        else None
    )
    net = wrap(model) if wrap else model
    step = make_train_step(
        net,
        opt,
        views=views,
        schedule=lambda s: lr,
        compile=compile,
        ema=ema,
        seed=seed,
        world_size=world_size,
        rank=rank,
        cuda_graphs=cuda_graphs,
    )
    return model, opt, step


def tiny_cfg(tmp_path, **kw) -> TrainConfig:
    base = dict(
        method="vicreg",
        data="synthetic",
        synthetic_size=128,
        image_size=SIZE,
        view_size=SIZE,
        width=8,
        proj_hidden=[32],
        proj_out=32,
        batch_size=16,
        epochs=2,
        warmup_epochs=0,
        lr=0.3,
        log_every=1,
        tensorboard=False,
        progress=False,
        out=str(tmp_path / "run"),
        knn_every=0,
    )
    base.update(kw)
    return TrainConfig(**base)
