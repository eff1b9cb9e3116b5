"""Run management: config, data, the epoch loop, logging, kNN monitor, checkpoints, resume, DDP.

``train(TrainConfig(...), resume=...)`` is what ``sslfast train`` runs. A run folder holds
``config.yaml``, ``metrics.jsonl`` (one JSON object per logged step / kNN evaluation),
``tb/`` (TensorBoard, when installed), ``checkpoint.pt`` (latest, atomic) and ``summary.json``.

Reproducibility: the data order of epoch e comes from a generator seeded by (seed, e) and the
views of step s from one seeded by (seed, s), so a resumed run replays exactly the batches and
augmentations of an uninterrupted run; the checkpoint carries model, optimizer, loss buffers,
EMA weights, the torch/numpy/python RNG states and the data-order generator state.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import inspect
import json
import os
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

from .checkpoint import (
    CheckpointError,
    get_rng_state,
    load_checkpoint,
    remove_stale_temporaries,
    save_checkpoint,
    set_rng_state,
)
from .methods import MethodSpec, build_model, get_method, momentum_tau
from .optim import build_optimizer, warmup_cosine
from .step import TrainStep, make_train_step, step_seed

__all__ = ["ConfigError", "TrainConfig", "build_views", "load_config", "train"]

CHECKPOINT = "checkpoint.pt"


class ConfigError(ValueError):
    """A training configuration value is invalid."""


@dataclass
class TrainConfig:
    """Every option of a training run; None means "the method's published default"."""

    method: str = "vicreg"
    data: str = "cifar10"  # "cifar10" | "synthetic" | an image folder (class subfolders)
    data_root: str | None = None  # CIFAR location; default $SSLFAST_DATA
    subset: int | None = None  # train on the first n images (tests, quick runs)
    synthetic_size: int = 4096
    image_size: int = 32  # synthetic images and image folders
    view_size: int | None = None  # override the views' output size
    num_views: int | None = None  # EMP-SSL patches
    local_crops: int = 0  # SimCLR multi-crop: extra small crops
    local_size: int = 16
    queue_size: int | None = None  # MoCo v2
    backbone: str = "resnet18_cifar"
    width: int | None = None  # ResNet first-stage width (tiny test models)
    patch_size: int | None = None  # ViT patch size (4 for 32x32)
    proj_hidden: list[int] | None = None
    proj_out: int | None = None
    pred_hidden: int | None = None
    epochs: int | None = None
    batch_size: int | None = None  # global batch (split over ranks)
    optimizer: str | None = None
    lr: float | None = None  # at the method's reference batch; scaled linearly
    weight_decay: float | None = None
    warmup_epochs: int | None = None
    compile: bool | str = "auto"  # "auto": on with CUDA; True/False; or a backend name ("aot_eager")
    compile_mode: str | None = None
    cuda_graphs: bool = False
    backend: str = "auto"  # loss backend
    augment_backend: str = "auto"
    amp: str = "auto"  # "auto" (bf16 on CUDA) | "bf16" | "fp16" | "none"
    channels_last: bool | str = "auto"
    sync_bn: bool = False
    knn_every: int = 0  # epochs; 0 = off
    knn_k: int = 200
    knn_train_size: int | None = 10000
    knn_test_size: int | None = 2000
    log_every: int = 50  # steps between host syncs for logging
    checkpoint_every: int = 0  # steps; 0 = at epoch ends only
    stop_after_steps: int | None = None  # stop (with a checkpoint) after this many steps in total
    seed: int = 0
    out: str = "runs/default"
    tensorboard: bool = True
    progress: bool | str = "auto"
    device: str | None = None
    dist_timeout_s: int = 600
    extra: dict = field(default_factory=dict)  # free-form, recorded only

    def validate(self) -> TrainConfig:
        pos = ("synthetic_size", "image_size", "knn_k", "log_every", "dist_timeout_s", "local_size")
        for name in pos:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"{name} must be a positive int, got {v!r}")
        for name in (
            "subset",
            "view_size",
            "num_views",
            "queue_size",
            "width",
            "patch_size",
            "proj_out",
            "pred_hidden",
            "epochs",
            "batch_size",
            "stop_after_steps",
            "knn_train_size",
            "knn_test_size",
        ):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise ConfigError(f"{name} must be a positive int or null, got {v!r}")
        for name in ("knn_every", "checkpoint_every", "local_crops", "seed"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ConfigError(f"{name} must be a non-negative int, got {v!r}")
        for name in ("lr", "weight_decay"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not v >= 0):
                raise ConfigError(f"{name} must be a non-negative number or null, got {v!r}")
        if self.amp not in ("auto", "bf16", "fp16", "none"):
            raise ConfigError(f"amp must be one of auto, bf16, fp16, none, got {self.amp!r}")
        if self.local_crops and self.method != "simclr":
            raise ConfigError(f"local_crops is supported for method 'simclr', got method {self.method!r}")
        get_method(self.method)  # raises for an unknown method
        return self


def load_config(path: str | os.PathLike | None = None, **overrides) -> TrainConfig:
    """TrainConfig from a YAML file (optional), then ``overrides`` (None values ignored)."""
    values: dict = {}
    if path is not None:
        import yaml

        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file {p} does not exist")
        loaded = yaml.safe_load(p.read_text()) or {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file {p} must hold a mapping of options, got {type(loaded).__name__}")
        values.update(loaded)
    values.update({k: v for k, v in overrides.items() if v is not None})
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ConfigError(f"unknown config option(s) {unknown}; valid options: {sorted(names)}")
    return TrainConfig(**values).validate()


# --------------------------------------------------------------------------------------------
# Pieces
# --------------------------------------------------------------------------------------------


def method_spec(cfg: TrainConfig) -> MethodSpec:
    loss_kwargs = None
    base = get_method(cfg.method)
    if cfg.queue_size is not None:
        if base.kind != "moco_v2":
            raise ConfigError(f"queue_size applies to method 'mocov2', got method {cfg.method!r}")
        loss_kwargs = {**base.loss_kwargs, "queue_size": cfg.queue_size}
    return get_method(
        cfg.method,
        proj_hidden=tuple(cfg.proj_hidden) if cfg.proj_hidden is not None else None,
        proj_out=cfg.proj_out,
        pred_hidden=cfg.pred_hidden if base.pred_hidden else None,
        num_views=cfg.num_views,
        loss_kwargs=loss_kwargs,
        optimizer=cfg.optimizer,
        lr=cfg.lr,
        weight_decay=cfg.weight_decay,
        batch_size=cfg.batch_size,
        epochs=cfg.epochs,
        warmup_epochs=cfg.warmup_epochs,
    )


def build_views(spec: MethodSpec, cfg: TrainConfig) -> list:
    """The method's ViewSpecs (CIFAR presets), with the config's size / patch / multi-crop options."""
    from ..data_pipelines import preset

    if spec.views == "emp_ssl":
        views = preset("emp_ssl", n_patches=spec.num_views or 20)
    else:
        views = preset(spec.views, "cifar10")
    if cfg.view_size is not None:
        views = [v.replace(size=cfg.view_size) for v in views]
    if cfg.local_crops:
        # SwAV's local crops (scale 0.05-0.14), with the global views' colour pipeline
        local = views[0].replace(size=cfg.local_size, crop_scale=(0.05, 0.14))
        views += [local.replace(name=f"local-{i + 1}") for i in range(cfg.local_crops)]
    return views


def load_data(cfg: TrainConfig):
    """(train ImageDataset, kNN train split or None, kNN test split or None, label)."""
    from ..data_pipelines import ImageFolder, load_cifar10, make_synthetic

    if cfg.data == "cifar10":
        root = cfg.data_root
        if root is None and not os.environ.get("SSLFAST_DATA"):
            raise ConfigError(
                "data 'cifar10' needs its location: pass --data-root DIR or set SSLFAST_DATA "
                "to the folder holding cifar-10-batches-bin/ (there is no download during training)"
            )
        train = load_cifar10(root, train=True)
        test = load_cifar10(root, train=False)
    elif cfg.data == "synthetic":
        train = make_synthetic(cfg.synthetic_size, 10, cfg.image_size, seed=cfg.seed)
        test = make_synthetic(max(cfg.synthetic_size // 4, 100), 10, cfg.image_size, seed=cfg.seed + 10_000)
    else:
        root = Path(cfg.data)
        if not root.is_dir():
            raise ConfigError(
                f"data must be 'cifar10', 'synthetic' or an existing image folder, got {cfg.data!r}"
            )
        if (root / "train").is_dir():
            train = ImageFolder(root / "train").load(cfg.image_size)
            test = ImageFolder(root / "val").load(cfg.image_size) if (root / "val").is_dir() else None
        else:
            train, test = ImageFolder(root).load(cfg.image_size), None
    if cfg.subset is not None:
        train = dataclasses.replace(
            train, images=train.images[: cfg.subset], labels=train.labels[: cfg.subset], coarse_labels=None
        )
    return train, test


def _amp_dtype(cfg: TrainConfig):
    return {"auto": "auto", "bf16": torch.bfloat16, "fp16": torch.float16, "none": None}[cfg.amp]


def _setup_distributed(cfg: TrainConfig) -> tuple[int, int, torch.device]:
    """(world_size, rank, device). Under torchrun, joins the process group with a timeout, so a
    rank that dies makes the others raise instead of waiting forever."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        use_cuda = torch.cuda.is_available() and cfg.device != "cpu"
        if use_cuda:
            os.environ.setdefault("TORCH_NCCL_ASYNC_ERROR_HANDLING", "1")
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(
            "nccl" if use_cuda else "gloo", timeout=datetime.timedelta(seconds=cfg.dist_timeout_s)
        )
    if dist.is_initialized():
        world, rk = dist.get_world_size(), dist.get_rank()
    else:
        world, rk = 1, 0
    if cfg.device is not None:
        device = torch.device(cfg.device)
    elif torch.cuda.is_available():
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    else:
        device = torch.device("cpu")
    return world, rk, device


def _backbone_kwargs(cfg: TrainConfig) -> dict:
    kw = {}
    if cfg.width is not None:
        kw["width"] = cfg.width
    if cfg.patch_size is not None:
        kw["patch_size"] = cfg.patch_size
        kw["img_size"] = cfg.view_size or cfg.image_size
    return kw


def _model_and_optimizer(cfg: TrainConfig, spec: MethodSpec, device, world: int):
    model = build_model(
        spec,
        cfg.backbone,
        backbone_kwargs=_backbone_kwargs(cfg),
        backend=cfg.backend,
        gather_distributed=world > 1,
    )
    if cfg.sync_bn and world > 1:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model.to(device)
    lr = spec.lr * (spec.batch_size / spec.lr_ref_batch if spec.lr_ref_batch else 1.0)
    # tensor lr: the schedule writes it in place (no recompiles)
    opt = build_optimizer(
        spec.optimizer,
        model,
        torch.tensor(lr, device=device),
        spec.weight_decay,
        eta=spec.eta,
        clip_lr=spec.clip_lr,
    )
    return model, opt, lr


class _Logger:
    """metrics.jsonl (+ TensorBoard, lazily imported) on rank 0."""

    def __init__(self, out: Path, tensorboard: bool, enabled: bool):
        self.enabled = enabled
        self.tb = None
        if not enabled:
            return
        self.jsonl = open(out / "metrics.jsonl", "a", buffering=1)
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(out / "tb"))
            except ImportError:
                warnings.warn("tensorboard is not installed: metrics go to metrics.jsonl only", stacklevel=2)

    def log(self, record: dict, step: int) -> None:
        if not self.enabled:
            return
        self.jsonl.write(json.dumps(record) + "\n")
        if self.tb is not None:
            for k, v in record.items():
                if isinstance(v, (int, float)) and k not in ("step", "epoch"):
                    self.tb.add_scalar(k, v, step)

    def close(self) -> None:
        if self.enabled:
            self.jsonl.close()
            if self.tb is not None:
                self.tb.close()


def _progress(cfg: TrainConfig, enabled: bool, total: int, done: int):
    show = enabled and (cfg.progress is True or (cfg.progress == "auto" and sys.stderr.isatty()))
    if not show:
        return None, None
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    prog = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[ips]:>8.0f} img/s  loss {task.fields[loss]:.4f}"),
        TimeRemainingColumn(),
        transient=False,
    )
    task = prog.add_task(cfg.method, total=total, completed=done, ips=0.0, loss=float("nan"))
    prog.start()
    return prog, task


def _check_resume(ckpt: dict, cfg: TrainConfig, path: Path) -> None:
    for key, want in (("method", get_method(cfg.method).name), ("backbone", cfg.backbone)):
        if ckpt.get(key) != want:
            raise CheckpointError(
                f"checkpoint {path} is from {key} {ckpt.get(key)!r}, but this run uses "
                f"{key} {want!r}: use a matching config or another --out folder"
            )
    saved = ckpt.get("arch", {})
    now = _arch(cfg)
    if saved != now:
        raise CheckpointError(f"checkpoint {path} has architecture {saved}, this run has {now}")


def _arch(cfg: TrainConfig) -> dict:
    spec = method_spec(cfg)
    return {
        "backbone_kwargs": _backbone_kwargs(cfg),
        "proj_hidden": list(spec.proj_hidden),
        "proj_out": spec.proj_out,
        "pred_hidden": spec.pred_hidden,
    }


# --------------------------------------------------------------------------------------------
# The loop
# --------------------------------------------------------------------------------------------


def train(cfg: TrainConfig, resume: bool = False) -> dict:
    """Train ``cfg``; returns the summary dict (also written to ``out/summary.json`` on rank 0)."""
    if not isinstance(cfg, TrainConfig):
        raise TypeError(f"cfg must be a TrainConfig, got {type(cfg).__name__}")
    cfg.validate()
    world, rk, device = _setup_distributed(cfg)
    main = rk == 0
    out = Path(cfg.out)
    ckpt_path = out / CHECKPOINT
    if main:
        out.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(out)
        if ckpt_path.exists() and not resume:
            raise ConfigError(
                f"{ckpt_path} exists: pass --resume to continue that run, or choose another --out"
            )
    torch.manual_seed(cfg.seed)

    spec = method_spec(cfg)
    views = build_views(spec, cfg)
    train_set, test_set = load_data(cfg)
    global_batch = spec.batch_size
    if global_batch % world:
        raise ConfigError(f"batch_size ({global_batch}) must be divisible by the world size ({world})")
    local_batch = global_batch // world
    steps_per_epoch = len(train_set) // global_batch
    if steps_per_epoch == 0:
        raise ConfigError(
            f"batch_size ({global_batch}) is larger than the training set ({len(train_set)} images)"
        )
    total_steps = spec.epochs * steps_per_epoch
    warmup_steps = min(spec.warmup_epochs * steps_per_epoch, total_steps)

    model, opt, base_lr = _model_and_optimizer(cfg, spec, device, world)
    schedule = functools.partial(
        warmup_cosine,
        total_steps=total_steps,
        warmup_steps=warmup_steps,
        base_lr=base_lr,
        final_lr=spec.final_lr,
        start_lr=spec.warmup_start_lr,
    )
    ema = None
    if spec.momentum is not None:
        ema = functools.partial(
            momentum_tau, total_steps=total_steps, base_tau=spec.momentum[0], final_tau=spec.momentum[1]
        )
    inner = model
    channels_last = device.type == "cuda" if cfg.channels_last == "auto" else bool(cfg.channels_last)
    if channels_last:  # before DDP, whose gradient buckets take the parameters' strides
        inner.to(memory_format=torch.channels_last)
    if world > 1:
        # broadcast_buffers=False: loss buffers are updated from the gathered global batch on
        # every rank already; BN running stats stay per rank (rank 0's are checkpointed)
        ddp = nn.parallel.DistributedDataParallel
        # torch >= 2.13 renames broadcast_buffers (deprecated) to forward_sync_buffers
        no_sync = (
            {"forward_sync_buffers": False}
            if "forward_sync_buffers" in inspect.signature(ddp).parameters
            else {"broadcast_buffers": False}
        )
        model = ddp(model, device_ids=[device.index] if device.type == "cuda" else None, **no_sync)
    compile_opt = (device.type == "cuda") if cfg.compile == "auto" else cfg.compile
    step: TrainStep = make_train_step(
        model,
        opt,
        views=views,
        schedule=schedule,
        compile=compile_opt,
        mode=cfg.compile_mode,
        amp_dtype=_amp_dtype(cfg),
        channels_last=channels_last,
        cuda_graphs=cfg.cuda_graphs,
        ema=ema,
        seed=cfg.seed,
        augment_backend=cfg.augment_backend,
        world_size=world,
        rank=rk,
    )

    start_epoch, start_i = 0, 0
    data_gen = torch.Generator()
    if resume and ckpt_path.exists():
        ckpt = load_checkpoint(ckpt_path)
        _check_resume(ckpt, cfg, ckpt_path)
        inner.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        for g in opt.param_groups:  # keep the lr a device tensor after loading
            g["lr"] = torch.tensor(float(g["lr"]), device=device)
        step.step = int(ckpt["step"])
        start_epoch, start_i = int(ckpt["epoch"]), int(ckpt["step_in_epoch"])
        set_rng_state(ckpt["rng"])
        data_gen.set_state(ckpt["generators"]["data_order"])
        if main:
            print(f"resumed from {ckpt_path} at epoch {start_epoch}, step {step.step}", file=sys.stderr)
    elif resume and main:
        print(f"no checkpoint at {ckpt_path}: starting from scratch", file=sys.stderr)

    logger = _Logger(out, cfg.tensorboard, main)
    # kNN on rank 0 only (its BN statistics are the checkpointed ones); the others wait in the next collective
    monitor = (
        _knn_monitor(cfg, train_set, test_set, views, device)
        if main and cfg.knn_every and test_set is not None
        else None
    )
    if main:
        (out / "config.yaml").write_text(_dump_yaml(dataclasses.asdict(cfg)))
    images = train_set.images.to(device)
    prog, task = _progress(cfg, main, total_steps, step.step)

    def save(epoch: int, step_in_epoch: int) -> None:
        if not main:
            return
        save_checkpoint(
            {
                "method": spec.name,
                "backbone": cfg.backbone,
                "arch": _arch(cfg),
                "config": dataclasses.asdict(cfg),
                "model": inner.state_dict(),
                "optimizer": opt.state_dict(),
                "scheduler": {
                    "name": "warmup_cosine",
                    "step": step.step,
                    "total_steps": total_steps,
                    "warmup_steps": warmup_steps,
                    "base_lr": base_lr,
                },
                "epoch": epoch,
                "step": step.step,
                "step_in_epoch": step_in_epoch,
                "rng": get_rng_state(),
                "generators": {"data_order": data_gen.get_state()},
            },
            ckpt_path,
        )

    last = {"loss": float("nan")}
    knn_top1 = None
    t_start, n_images, t_log, imgs_log = time.perf_counter(), 0, time.perf_counter(), 0
    stopped = False
    try:
        for epoch in range(start_epoch, spec.epochs):
            if not (epoch == start_epoch and resume and start_i):
                data_gen.manual_seed(step_seed(cfg.seed + 1, epoch))
            order = torch.randperm(
                len(train_set), generator=torch.Generator().set_state(data_gen.get_state())
            )
            order = order.to(device)
            for i in range(start_i if epoch == start_epoch else 0, steps_per_epoch):
                lo = i * global_batch + rk * local_batch
                result = step(images[order[lo : lo + local_batch]])
                n_images += global_batch
                imgs_log += global_batch
                if step.step % cfg.log_every == 0 or step.step == total_steps:
                    now = time.perf_counter()
                    last = {
                        "step": step.step,
                        "epoch": epoch,
                        "loss": float(result["loss"]),  # host sync
                        "lr": float(schedule(step.step - 1)),
                        "images_per_s": imgs_log / max(now - t_log, 1e-9),
                        "elapsed_s": now - t_start,
                    }
                    t_log, imgs_log = now, 0
                    logger.log(last, step.step)
                    if prog is not None:
                        prog.update(task, completed=step.step, ips=last["images_per_s"], loss=last["loss"])
                elif prog is not None:
                    prog.update(task, completed=step.step)
                if cfg.checkpoint_every and step.step % cfg.checkpoint_every == 0:
                    save(epoch, i + 1)
                if cfg.stop_after_steps is not None and step.step >= cfg.stop_after_steps:
                    save(epoch, i + 1)
                    stopped = True
                    break
            if stopped:
                break
            if monitor is not None and monitor.due(epoch + 1):
                knn_top1 = monitor(inner.backbone, epoch + 1)
                logger.log({"epoch": epoch + 1, "step": step.step, "knn_top1": knn_top1}, step.step)
            save(epoch + 1, 0)
    finally:
        if prog is not None:
            prog.stop()
        logger.close()
    elapsed = time.perf_counter() - t_start
    summary = {
        "method": spec.name,
        "backbone": cfg.backbone,
        "steps": step.step,
        "total_steps": total_steps,
        "finished": step.step >= total_steps,
        "final_loss": last.get("loss"),
        "knn_top1": knn_top1,
        "images_per_s": n_images / elapsed if elapsed > 0 else None,
        "elapsed_s": elapsed,
        "world_size": world,
        "rank": rk,
        "device": str(device),
        "checkpoint": str(ckpt_path),
    }
    if main:
        tmp = out / ".summary.json.tmp"
        tmp.write_text(json.dumps(summary, indent=2))
        os.replace(tmp, out / "summary.json")
    return summary


def _knn_monitor(cfg: TrainConfig, train_set, test_set, views, device):
    from ..eval.features import KNNMonitor, normalizer

    ntr = min(len(train_set), cfg.knn_train_size or len(train_set))
    nte = min(len(test_set), cfg.knn_test_size or len(test_set))
    amp = torch.bfloat16 if device.type == "cuda" and cfg.amp in ("auto", "bf16") else None
    return KNNMonitor(
        train_set.images[:ntr],
        train_set.labels[:ntr],
        test_set.images[:nte],
        test_set.labels[:nte],
        transform=normalizer(views[0].mean, views[0].std),
        k=min(cfg.knn_k, ntr),
        every=cfg.knn_every,
        device=device,
        autocast_dtype=amp,
        num_classes=len(train_set.classes),
    )


def _dump_yaml(d: dict) -> str:
    import yaml

    return yaml.safe_dump(
        {k: (list(v) if isinstance(v, tuple) else v) for k, v in d.items()}, sort_keys=False
    )


def model_from_checkpoint(path: str | os.PathLike, device="cpu") -> tuple[nn.Module, TrainConfig, dict]:
    """(SSLModel with the checkpoint's weights, its TrainConfig, the raw checkpoint)."""
    ckpt = load_checkpoint(path)
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    cfg = TrainConfig(**{k: v for k, v in ckpt["config"].items() if k in names})
    spec = method_spec(cfg)
    model = build_model(spec, cfg.backbone, backbone_kwargs=_backbone_kwargs(cfg), backend=cfg.backend)
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as e:
        raise CheckpointError(f"checkpoint {path} does not match the model its config describes: {e}") from e
    return model.to(device), cfg, ckpt
