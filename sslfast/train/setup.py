"""The one run setup: config -> method spec -> views -> data -> model -> optimizer (one lr rule)
-> schedule -> training step -> monitor.

The trainer (``sslfast train``), the evaluation CLI, the epoch benchmark and the speed run all
build their runs here, so a recipe means the same thing everywhere.

Two pipelines share it (``TrainConfig.pipeline``):
- ``ours``: uint8 images resident on the device, views made on the device (fused Triton kernel on
  GPU), one forward over all views of a resolution, compiled bf16 channels_last step on CUDA, the
  fused losses (``backend="auto"``);
- ``reference``: a torch DataLoader over per-image PIL/numpy transforms on CPU workers
  (``data_pipelines.baseline``), fp32 eager NCHW, the textbook losses (``backend="reference"``):
  the way lightly's examples and solo-learn run it.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import math
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

from .config import ConfigError, TrainConfig
from .methods import MethodSpec, SSLModel, build_model, get_method, momentum_tau
from .optim import build_optimizer, warmup_cosine
from .step import TrainStep, make_train_step, step_seed

__all__ = [
    "Run",
    "backbone_kwargs",
    "build_run",
    "build_views",
    "knn_monitor",
    "load_data",
    "method_spec",
    "model_from_checkpoint",
    "scaled_lr",
    "setup_distributed",
]


# ---------------------------------------------------------------------------------------------
# Method, views, data
# ---------------------------------------------------------------------------------------------


def method_spec(cfg: TrainConfig) -> MethodSpec:
    """The method's published spec with the config's overrides (None fields keep the default)."""
    base = get_method(cfg.method)
    loss_kwargs = {**base.loss_kwargs, **cfg.loss_kwargs}
    unknown = sorted(set(cfg.loss_kwargs) - set(base.loss_kwargs))
    if unknown:
        raise ConfigError(
            f"loss_kwargs {unknown} are not options of {cfg.method}'s loss; "
            f"its options: {sorted(base.loss_kwargs) or 'none'}"
        )
    if cfg.queue_size is not None:
        if base.kind != "moco_v2":
            raise ConfigError(f"queue_size applies to method 'mocov2', got method {cfg.method!r}")
        loss_kwargs["queue_size"] = cfg.queue_size
    if cfg.static_lr and "predictor" in cfg.static_lr and base.pred_hidden is None:
        raise ConfigError(f"static_lr names the predictor, but method {cfg.method!r} has none")
    if cfg.pred_lr_scale is not None and base.pred_hidden is None:
        raise ConfigError(f"pred_lr_scale applies to methods with a predictor, but method {cfg.method!r} has none")
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
        bias_lr_scale=cfg.bias_lr_scale,
        pred_lr_scale=cfg.pred_lr_scale,
        eta=cfg.eta,
        lr_scaling=cfg.lr_scaling,
        bn_per_view=cfg.bn_per_view,
        static_lr=tuple(cfg.static_lr) if cfg.static_lr is not None else None,
        momentum=_momentum(base, cfg.ema_tau),
    )


def _momentum(base: MethodSpec, tau: float | None):
    if tau is None:
        return None
    if base.momentum is None:
        raise ConfigError(f"ema_tau applies to methods with a momentum teacher, got method {base.name!r}")
    return (float(tau), max(float(tau), base.momentum[1]))


def build_views(spec: MethodSpec, cfg: TrainConfig) -> list:
    """The method's ViewSpecs (CIFAR presets), with the config's size / patch / multi-crop options."""
    from ..data_pipelines import preset

    if spec.views == "emp_ssl":
        views = preset("emp_ssl", n_patches=spec.num_views or 20)
    else:
        views = preset(spec.views, "cifar10")
    if cfg.view_size is not None:
        views = [v.replace(size=cfg.view_size) for v in views]
    if cfg.crop_min_scale is not None:
        if spec.views == "emp_ssl":
            raise ConfigError("crop_min_scale does not apply to EMP-SSL, whose patches have a fixed scale (0.25)")
        views = [v.replace(crop_scale=(cfg.crop_min_scale, v.crop_scale[1])) for v in views]
    if cfg.local_crops:
        # SwAV's local crops (scale 0.05-0.14), with the global views' colour pipeline
        local = views[0].replace(size=cfg.local_size, crop_scale=(0.05, 0.14))
        views += [local.replace(name=f"local-{i + 1}") for i in range(cfg.local_crops)]
    return views


def cifar10_places(root: str | os.PathLike | None, search: bool) -> list[str]:
    """Where to look for CIFAR-10: ``root``; else ``$SSLFAST_DATA``; with ``search`` (benchmarks)
    also ``../shared/data`` beside the working directory."""
    places = [root] if root is not None else [os.environ.get("SSLFAST_DATA")]
    if search and root is None:
        places.append(Path.cwd().parent / "shared" / "data")
    return [str(p) for p in places if p]


def load_data(cfg: TrainConfig, *, search: bool = False):
    """(train ImageDataset, test ImageDataset or None) for ``cfg.data``, cut to ``cfg.subset``.

    CIFAR-10 is read from the official binary folder, or from a ``.npz`` subset written by
    ``sslfast.data_pipelines.cifar_subset`` when ``data_root`` names one (the GPU runbook's).
    """
    from ..data_pipelines import ImageFolder, cifar_subset, load_cifar10, make_synthetic
    from ..data_pipelines.datasets import DatasetError

    if cfg.data == "cifar10" and cifar_subset.is_subset(cfg.data_root):
        train, test = cifar_subset.load(cfg.data_root)  # the GPU runbook's sha256-checked subset
    elif cfg.data == "cifar10":
        places = cifar10_places(cfg.data_root, search)
        if not places:
            raise ConfigError(
                "data 'cifar10' needs its location: pass --data-root DIR or set SSLFAST_DATA "
                "to the folder holding cifar-10-batches-bin/ (there is no download during training)"
            )
        errors = []
        for place in places:
            try:
                train, test = load_cifar10(place, train=True), load_cifar10(place, train=False)
                break
            except DatasetError as e:
                errors.append(str(e))
        else:
            raise DatasetError(f"CIFAR-10 not found in any of {places}: " + "; ".join(errors))
    elif cfg.data == "synthetic":
        train = make_synthetic(cfg.synthetic_size, 10, cfg.image_size, seed=cfg.seed)
        test = make_synthetic(max(cfg.synthetic_size // 4, 100), 10, cfg.image_size, seed=cfg.seed + 10_000)
    else:
        root = Path(cfg.data)
        if not root.is_dir():
            raise ConfigError(f"data must be 'cifar10', 'synthetic' or an existing image folder, got {cfg.data!r}")
        if (root / "train").is_dir():
            train = ImageFolder(root / "train").load(cfg.image_size)
            test = ImageFolder(root / "val").load(cfg.image_size) if (root / "val").is_dir() else None
        else:
            train, test = ImageFolder(root).load(cfg.image_size), None
    if cfg.subset is not None:
        train = first(train, cfg.subset)
    return train, test


def first(ds, n: int | None):
    """The first ``n`` images of a dataset (all when None)."""
    if n is None or n >= len(ds):
        return ds
    return dataclasses.replace(ds, images=ds.images[:n], labels=ds.labels[:n], coarse_labels=None)


# ---------------------------------------------------------------------------------------------
# Model and optimisation
# ---------------------------------------------------------------------------------------------


def backbone_kwargs(cfg: TrainConfig) -> dict:
    """The backbone's size keywords from the config; refuses options the backbone does not have."""
    vit = cfg.backbone.startswith("vit")
    kw: dict = {}
    if cfg.width is not None:
        if vit:
            raise ConfigError(f"width applies to ResNet backbones; for {cfg.backbone!r} use vit_dim / vit_depth")
        kw["width"] = cfg.width
    for name, key in (("vit_depth", "depth"), ("vit_dim", "embed_dim"), ("patch_size", "patch_size")):
        value = getattr(cfg, name)
        if value is not None:
            if not vit:
                raise ConfigError(f"{name} applies to ViT backbones, got backbone {cfg.backbone!r}")
            kw[key] = value
    if vit:
        kw.setdefault("patch_size", 4)  # CIFAR's 32x32 crops; 16-pixel patches would leave 4 tokens
        kw["img_size"] = cfg.view_size or cfg.image_size
    return kw


def scaled_lr(spec: MethodSpec) -> float:
    """The one learning-rate rule: ``lr · batch / lr_ref_batch`` (linear scaling, as solo-learn's
    main_pretrain.py), ``lr · √(batch / lr_ref_batch)`` with ``lr_scaling="sqrt"``, or ``lr`` as
    given for methods without a reference batch (EMP-SSL)."""
    if not spec.lr_ref_batch:
        return spec.lr
    ratio = spec.batch_size / spec.lr_ref_batch
    return spec.lr * (math.sqrt(ratio) if spec.lr_scaling == "sqrt" else ratio)


def make_model(cfg: TrainConfig, spec: MethodSpec, *, gather_distributed: bool = False) -> SSLModel:
    backend = "reference" if cfg.pipeline == "reference" else cfg.backend
    try:
        return build_model(
            spec,
            cfg.backbone,
            backbone_kwargs=backbone_kwargs(cfg),
            backend=backend,
            gather_distributed=gather_distributed,
        )
    except (ValueError, TypeError) as e:  # a backbone that cannot take these sizes
        raise ConfigError(f"cannot build {cfg.backbone!r} for {spec.name}: {e}") from None


def architecture(cfg: TrainConfig) -> dict:
    """What a checkpoint's weights must match."""
    spec = method_spec(cfg)
    return {
        "backbone_kwargs": backbone_kwargs(cfg),
        "proj_hidden": list(spec.proj_hidden),
        "proj_out": spec.proj_out,
        "pred_hidden": spec.pred_hidden,
    }


def setup_distributed(cfg: TrainConfig) -> tuple[int, int, torch.device]:
    """(world_size, rank, device). Under torchrun, joins the process group with a timeout, so a
    rank that dies makes the others raise instead of waiting forever."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        use_cuda = torch.cuda.is_available() and cfg.device != "cpu"
        if use_cuda:
            os.environ.setdefault("TORCH_NCCL_ASYNC_ERROR_HANDLING", "1")
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group("nccl" if use_cuda else "gloo", timeout=datetime.timedelta(seconds=cfg.dist_timeout_s))
    if dist.is_initialized():
        world, rk = dist.get_world_size(), dist.get_rank()
    else:
        world, rk = 1, 0
    return world, rk, resolve_device(cfg.device)


def resolve_device(name: str | None) -> torch.device:
    """The config's device, checked: a CUDA device on a machine without one is a ConfigError."""
    if name is None:
        if torch.cuda.is_available():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError as e:
        raise ConfigError(f"device {name!r} is not a torch device: {e}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} needs CUDA, but this torch ({torch.__version__}) sees no CUDA device")
    return device


@dataclass
class Run:
    """Everything a training run is made of; ``build_run`` fills it in."""

    cfg: TrainConfig
    spec: MethodSpec
    views: list
    train_set: object
    test_set: object | None
    model: SSLModel  # the unwrapped model, on the device
    optimizer: torch.optim.Optimizer
    base_lr: float
    steps_per_epoch: int
    total_steps: int
    warmup_steps: int
    schedule: Callable[[int], float]
    ema: Callable | None
    device: torch.device
    world: int = 1
    rank: int = 0

    @property
    def global_batch(self) -> int:
        return self.spec.batch_size

    @property
    def local_batch(self) -> int:
        return self.spec.batch_size // self.world

    @property
    def channels_last(self) -> bool:
        if self.cfg.pipeline == "reference":
            return False
        return self.device.type == "cuda" if self.cfg.channels_last == "auto" else bool(self.cfg.channels_last)

    @property
    def amp_dtype(self):
        if self.cfg.pipeline == "reference":
            return None
        return {"auto": "auto", "bf16": torch.bfloat16, "fp16": torch.float16, "none": None}[self.cfg.amp]

    @property
    def compile(self) -> bool | str:
        if self.cfg.pipeline == "reference":
            return False
        return (self.device.type == "cuda") if self.cfg.compile == "auto" else self.cfg.compile

    def fresh_weights(self, seed: int) -> dict:
        """The state dict of a freshly initialised model for ``seed`` (the speed run loads it into
        the compiled model between timed runs: same architecture, no recompilation)."""
        torch.manual_seed(seed)
        return make_model(self.cfg, self.spec, gather_distributed=self.world > 1).state_dict()


def build_run(
    cfg: TrainConfig,
    *,
    device: torch.device | None = None,
    world: int = 1,
    rank: int = 0,
    data=None,
    search_data: bool = False,
) -> Run:
    """Build the run that ``cfg`` describes. ``data``: preloaded ``(train, test)`` (else loaded)."""
    cfg.validate()
    device = resolve_device(cfg.device) if device is None else device
    spec = method_spec(cfg)
    views = build_views(spec, cfg)
    train_set, test_set = load_data(cfg, search=search_data) if data is None else data
    if spec.batch_size % world:
        raise ConfigError(f"batch_size ({spec.batch_size}) must be divisible by the world size ({world})")
    steps_per_epoch = len(train_set) // spec.batch_size
    if steps_per_epoch == 0:
        raise ConfigError(f"batch_size ({spec.batch_size}) is larger than the training set ({len(train_set)} images)")
    total_steps = spec.epochs * steps_per_epoch
    # the warm-up keeps its slope (never squeezed into a short run): see optim.warmup_cosine
    warmup_steps = spec.warmup_epochs * steps_per_epoch
    torch.manual_seed(cfg.seed)
    model = make_model(cfg, spec, gather_distributed=world > 1)
    if cfg.sync_bn and world > 1:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model.to(device)
    base_lr = scaled_lr(spec)
    # tensor lr: the schedule writes it in place (no recompiles)
    optimizer = build_optimizer(
        spec.optimizer,
        model,
        torch.tensor(base_lr, device=device),
        spec.weight_decay,
        eta=spec.eta,
        clip_lr=spec.clip_lr,
        static_lr=spec.static_lr,
        bias_lr_scale=spec.bias_lr_scale,
        head_lr_scale={"predictor": spec.pred_lr_scale} if spec.pred_lr_scale != 1.0 else None,
    )
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
    return Run(
        cfg,
        spec,
        views,
        train_set,
        test_set,
        model,
        optimizer,
        base_lr,
        steps_per_epoch,
        total_steps,
        warmup_steps,
        schedule,
        ema,
        device,
        world,
        rank,
    )


def build_step(run: Run, model: nn.Module | None = None) -> TrainStep:
    """The training step of ``run``; ``model`` is its DDP wrapper when distributed."""
    if run.channels_last:  # before DDP wraps it: gradient buckets take the parameters' strides
        run.model.to(memory_format=torch.channels_last)
    return make_train_step(
        model if model is not None else run.model,
        run.optimizer,
        views=run.views,
        schedule=run.schedule,
        compile=run.compile,
        mode=run.cfg.compile_mode,
        amp_dtype=run.amp_dtype,
        channels_last=run.channels_last,
        cuda_graphs=run.cfg.cuda_graphs,
        ema=run.ema,
        seed=run.cfg.seed,
        augment_backend=run.cfg.augment_backend,
        world_size=run.world,
        rank=run.rank,
    )


# ---------------------------------------------------------------------------------------------
# Data feed: one epoch of batches for either pipeline
# ---------------------------------------------------------------------------------------------


def epoch_order(seed: int, epoch: int, n: int) -> torch.Tensor:
    """The data order of ``epoch``: a permutation seeded by (seed, epoch) only, so a resumed run
    replays exactly the order of an uninterrupted one."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(step_seed(seed + 1, epoch)))


def device_batches(run: Run, images: torch.Tensor, epoch: int, start: int = 0) -> Iterator[torch.Tensor]:
    """``ours``: this rank's uint8 batches of ``epoch`` from device-resident ``images``, from step ``start``."""
    order = epoch_order(run.cfg.seed, epoch, len(images)).to(images.device)
    for i in range(start, run.steps_per_epoch):
        lo = i * run.global_batch + run.rank * run.local_batch
        yield images[order[lo : lo + run.local_batch]]


class ReferenceFeed:
    """``reference``: per-image PIL views in DataLoader workers (the CPU augmentation baseline);
    yields lists of view tensors on the device, ``steps_per_epoch`` per epoch."""

    def __init__(self, run: Run, images: torch.Tensor, labels: torch.Tensor):
        from ..data_pipelines.baseline import PILViewDataset

        workers = run.cfg.workers if run.cfg.workers is not None else (os.cpu_count() or 1)
        self.run = run
        self.loader = torch.utils.data.DataLoader(
            PILViewDataset(images.cpu(), labels.cpu(), run.views, seed=run.cfg.seed),
            batch_size=run.local_batch,
            shuffle=True,
            drop_last=True,
            num_workers=workers,
            persistent_workers=workers > 0,
            pin_memory=run.device.type == "cuda",
            generator=torch.Generator().manual_seed(run.cfg.seed),
        )
        self._it = None

    def batches(self, epoch: int) -> Iterator[list[torch.Tensor]]:
        for _ in range(self.run.steps_per_epoch):
            try:
                views, _ = next(self._it)
            except (StopIteration, TypeError):
                self._it = iter(self.loader)
                views, _ = next(self._it)
            yield [v.to(self.run.device, non_blocking=True) for v in views]

    def close(self) -> None:
        if self._it is not None and getattr(self._it, "_shutdown_workers", None):
            self._it._shutdown_workers()
        self._it = None


# ---------------------------------------------------------------------------------------------
# Monitor and checkpoints
# ---------------------------------------------------------------------------------------------


def knn_monitor(run: Run):
    """The kNN monitor of ``run`` (None when off or without a test split)."""
    from ..eval.features import normalizer
    from ..eval.knn import KNNMonitor

    cfg = run.cfg
    if not cfg.knn_every or run.test_set is None:
        return None
    train, test = first(run.train_set, cfg.knn_train_size), first(run.test_set, cfg.knn_test_size)
    amp = torch.bfloat16 if run.device.type == "cuda" and cfg.amp in ("auto", "bf16") else None
    return KNNMonitor(
        train.images,
        train.labels,
        test.images,
        test.labels,
        transform=normalizer(run.views[0].mean, run.views[0].std),
        k=min(cfg.knn_k, len(train)),
        every=cfg.knn_every,
        device=run.device,
        autocast_dtype=amp,
        num_classes=len(run.train_set.classes),
    )


def model_from_checkpoint(path: str | os.PathLike, device="cpu") -> tuple[nn.Module, TrainConfig, dict]:
    """(SSLModel with the checkpoint's weights, its TrainConfig, the raw checkpoint)."""
    from .checkpoint import CheckpointError, load_checkpoint

    ckpt = load_checkpoint(path)
    saved = ckpt.get("config")
    if not isinstance(saved, dict):
        raise CheckpointError(f"checkpoint {path} holds no training config: it was not written by sslfast train")
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    try:
        cfg = TrainConfig(**{k: v for k, v in saved.items() if k in names}).validate()
        spec = method_spec(cfg)
    except ConfigError as e:
        raise CheckpointError(f"checkpoint {path} holds an invalid training config: {e}") from None
    model = make_model(cfg, spec)
    try:
        model.load_state_dict(ckpt["model"])
    except (RuntimeError, KeyError) as e:
        raise CheckpointError(f"checkpoint {path} does not match the model its config describes: {e}") from None
    return model.to(device), cfg, ckpt
