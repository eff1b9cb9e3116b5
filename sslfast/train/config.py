"""``TrainConfig``: every option of a training run, its validation, YAML loading, and the
command-line flags generated from it (one flag per field, with the field's help text).

None means "the method's published default" (``sslfast.train.methods``). A YAML file holds any
subset of the fields; flags override it.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

from .._checks import check_choice, check_int, check_number

__all__ = [
    "RESUME_SAFE",
    "ConfigError",
    "TrainConfig",
    "add_config_flags",
    "config_overrides",
    "load_config",
    "resume_changes",
]


class ConfigError(ValueError):
    """A training configuration value is invalid."""


def opt(default, help: str, **kw):
    """A config field with its command-line help text."""
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata={"help": help, **kw})
    return field(default=default, metadata={"help": help, **kw})


AMP = ("auto", "bf16", "fp16", "none")
LR_SCALING = ("linear", "sqrt")  # how a method's lr follows the batch (setup.scaled_lr)
PIPELINES = ("ours", "reference")


@dataclass
class TrainConfig:
    """Every option of a training run; None means "the method's published default"."""

    method: str = opt("vicreg", "SSL method (sslfast.train.methods.METHODS)")
    data: str = opt("cifar10", "'cifar10', 'synthetic' or an image folder (class subfolders, optional train/ val/)")
    data_root: str | None = opt(None, "folder holding cifar-10-batches-bin/ (default: $SSLFAST_DATA)")
    subset: int | None = opt(None, "train on the first N images only")
    synthetic_size: int = opt(4096, "images of --data synthetic")
    image_size: int = opt(32, "image size of synthetic data and image folders")
    view_size: int | None = opt(None, "override the views' output size")
    crop_min_scale: float | None = opt(
        None, "override the views' smallest random-resized-crop area fraction (0.08 in most presets)"
    )
    num_views: int | None = opt(None, "EMP-SSL patches per image")
    local_crops: int = opt(0, "SimCLR multi-crop: extra small crops")
    local_size: int = opt(16, "size of the local crops")
    queue_size: int | None = opt(None, "MoCo v2 queue length")
    loss_kwargs: dict = opt(
        {}, "override the method's loss weights and options, e.g. {lambda_param: 0.01} (YAML or --set)", cli=False
    )
    backbone: str = opt("resnet18_cifar", "backbone (sslfast.train.models.BACKBONES)")
    width: int | None = opt(None, "ResNet first-stage width (64 in ResNet-18; small for tests)")
    patch_size: int | None = opt(None, "ViT patch size (4 for 32x32 images)")
    vit_depth: int | None = opt(None, "ViT blocks (12 in ViT-Tiny; small for tests)")
    vit_dim: int | None = opt(None, "ViT embedding width, a multiple of its heads (192 in ViT-Tiny)")
    proj_hidden: list[int] | None = opt(None, "projector hidden widths")
    proj_out: int | None = opt(None, "projector output width")
    pred_hidden: int | None = opt(None, "predictor hidden width (BYOL, SimSiam, MoCo v3)")
    epochs: int | None = opt(None, "training epochs")
    batch_size: int | None = opt(None, "global batch size (split over ranks)")
    optimizer: str | None = opt(None, "lars, sgd or adamw")
    lr: float | None = opt(None, "learning rate at the method's reference batch, scaled linearly with the batch")
    lr_scaling: str | None = opt(
        None, "how lr follows the batch: linear (lr·B/256, the recipes' rule) or sqrt (lr·√(B/256))",
        choices=LR_SCALING,
    )
    weight_decay: float | None = opt(None, "weight decay")
    bn_per_view: bool | None = opt(
        None, "one forward pass per view, so BatchNorm normalises each view alone (solo-learn, official BYOL, "
        "Barlow Twins, VICReg), instead of one pass per resolution"
    )
    eta: float | None = opt(
        None, "LARS trust coefficient (solo-learn CIFAR: 0.02; official Barlow Twins, VICReg: 0.001)"
    )
    static_lr: list[str] | None = opt(
        None, "heads trained at the base learning rate throughout, without warm-up or decay (e.g. predictor)"
    )
    bias_lr_scale: float | None = opt(
        None, "learning rate of biases and norm parameters as a fraction of the weights' (official Barlow Twins: 0.024)"
    )
    pred_lr_scale: float | None = opt(
        None, "multiplies the predictor's learning rate: its schedule, or its fixed rate under static_lr "
        "(the BYOL paper ablates such a multiplier)"
    )
    warmup_epochs: int | None = opt(None, "linear warm-up epochs (kept at its slope when the run is shorter)")
    ema_tau: float | None = opt(None, "starting EMA momentum of the teacher (BYOL, MoCo v2/v3)")
    pipeline: str = opt(
        "ours",
        "'ours' (device-resident data, fused views and losses, compiled bf16 step) or 'reference' "
        "(PIL DataLoader views, fp32 eager, textbook losses)",
        choices=PIPELINES,
    )
    workers: int | None = opt(None, "DataLoader workers of the reference pipeline (default: all cores)")
    compile: bool | str = opt("auto", "torch.compile the step: auto (on with CUDA), true, false or a backend name")
    compile_mode: str | None = opt(None, "inductor mode, e.g. max-autotune-no-cudagraphs")
    cuda_graphs: bool = opt(False, "CUDA-graph capture (reduce-overhead)")
    backend: str = opt("auto", "loss backend: auto, triton, torch or reference")
    augment_backend: str = opt("auto", "view backend: auto, triton or torch")
    amp: str = opt("auto", "autocast: auto (bf16 on CUDA), bf16, fp16 or none", choices=AMP)
    channels_last: bool | str = opt("auto", "channels_last memory format: auto (on with CUDA), true or false")
    sync_bn: bool = opt(False, "SyncBatchNorm (DDP)")
    knn_every: int = opt(0, "epochs between kNN evaluations (0: off)")
    knn_k: int = opt(200, "kNN neighbours")
    knn_train_size: int | None = opt(10000, "training images in the kNN memory bank (None: all)")
    knn_test_size: int | None = opt(2000, "test images of the kNN evaluation (None: all)")
    log_every: int = opt(50, "steps between host syncs for logging")
    checkpoint_every: int = opt(0, "steps between checkpoints (0: at epoch ends only)")
    stop_after_steps: int | None = opt(None, "stop (with a checkpoint) after this many steps in total")
    seed: int = opt(0, "seed of the model, data order and views")
    out: str = opt("runs/default", "run folder")
    tensorboard: bool = opt(True, "TensorBoard logs under OUT/tb")
    progress: bool | str = opt("auto", "progress bar: auto (on a terminal), true or false")
    device: str | None = opt(None, "device (default: cuda when available)")
    dist_timeout_s: int = opt(120, "seconds a rank waits in a collective before failing")
    extra: dict = opt({}, "free-form, recorded only", cli=False)

    def validate(self) -> TrainConfig:
        from .methods import get_method

        try:
            for name in ("synthetic_size", "image_size", "knn_k", "log_every", "dist_timeout_s", "local_size"):
                check_int(getattr(self, name), name)
            for name in (
                "subset",
                "view_size",
                "num_views",
                "queue_size",
                "width",
                "patch_size",
                "vit_depth",
                "vit_dim",
                "proj_out",
                "pred_hidden",
                "epochs",
                "batch_size",
                "stop_after_steps",
                "knn_train_size",
                "knn_test_size",
                "workers",
            ):
                check_int(getattr(self, name), name, allow_none=True, min=0 if name == "workers" else 1)
            for name in ("knn_every", "checkpoint_every", "local_crops", "seed"):
                check_int(getattr(self, name), name, min=0)
            for name in ("lr", "weight_decay"):
                check_number(getattr(self, name), name, min=0, allow_none=True)
            for name in ("bias_lr_scale", "eta", "pred_lr_scale"):  # 0 would freeze them
                check_number(getattr(self, name), name, min=0, min_open=True, allow_none=True)
            if self.static_lr is not None:
                heads = ("projector", "predictor")
                if not isinstance(self.static_lr, (list, tuple)) or any(h not in heads for h in self.static_lr):
                    raise ValueError(f"static_lr must be a list of heads from {heads}, got {self.static_lr!r}")
            check_number(self.ema_tau, "ema_tau", min=0, max=1, allow_none=True)
            if not isinstance(self.loss_kwargs, dict) or not all(isinstance(k, str) for k in self.loss_kwargs):
                raise ValueError(f"loss_kwargs must be a mapping of option names to values, got {self.loss_kwargs!r}")
            check_number(self.crop_min_scale, "crop_min_scale", min=0, max=1, min_open=True, allow_none=True)
            check_choice(self.amp, "amp", AMP)
            if self.lr_scaling is not None:
                check_choice(self.lr_scaling, "lr_scaling", LR_SCALING)
            check_choice(self.pipeline, "pipeline", PIPELINES)
            if self.proj_hidden is not None:
                if not isinstance(self.proj_hidden, (list, tuple)):
                    raise ValueError(f"proj_hidden must be a list of positive ints, got {self.proj_hidden!r}")
                for i, h in enumerate(self.proj_hidden):
                    check_int(h, f"proj_hidden[{i}]")
            get_method(self.method)  # raises for an unknown method
        except (ValueError, TypeError) as e:
            raise ConfigError(str(e)) from None
        if self.local_crops and self.method != "simclr":
            raise ConfigError(f"local_crops is supported for method 'simclr', got method {self.method!r}")
        return self


# Fields that may differ when a run is resumed: they change how the run is watched, where it is
# written or how fast it runs, never which batches, views, weights or learning rates it uses.
# ``epochs`` may only be raised (a larger budget: the cosine schedule is then laid over the new
# total, so the rate continues from the new schedule's value at the resumed step). Every other
# field must match the checkpoint's config, or resume refuses and lists the differences.
RESUME_SAFE = (
    "epochs",
    "log_every",
    "checkpoint_every",
    "stop_after_steps",
    "knn_every",
    "knn_k",
    "knn_train_size",
    "knn_test_size",
    "tensorboard",
    "progress",
    "out",
    "data_root",
    "dist_timeout_s",
    "compile",
    "compile_mode",
    "workers",
    "extra",
)


def _plain(value):
    return list(value) if isinstance(value, tuple) else value


def _field_default(field: dataclasses.Field):
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return dataclasses.MISSING


def resume_changes(saved: dict, now: TrainConfig) -> list[str]:
    """The differences between a checkpoint's config and ``now`` that a resume must refuse, as
    ``"field: saved -> now"`` lines (empty when resuming is safe). A field the checkpoint predates
    counts as its default: the code that wrote the checkpoint behaved as that default does (new
    options default to the old behaviour), so setting it now is a change like any other."""
    current = dataclasses.asdict(now)
    defaults = {f.name: _field_default(f) for f in dataclasses.fields(now)}
    changes = []
    for name, value in current.items():
        old = saved.get(name, defaults[name])
        if old is dataclasses.MISSING or _plain(old) == _plain(value):
            continue
        if name == "epochs" and isinstance(old, int) and isinstance(value, int) and value > old:
            continue  # a raised budget
        if name in RESUME_SAFE and name != "epochs":
            continue
        changes.append(f"{name}: {old!r} -> {value!r}")
    return changes


def load_config(path: str | os.PathLike | None = None, **overrides) -> TrainConfig:
    """TrainConfig from a YAML file (optional), then ``overrides`` (None values ignored)."""
    values: dict = {}
    if path is not None:
        import yaml

        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file {p} does not exist")
        try:
            loaded = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"config file {p} is not valid YAML: {e}") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file {p} must hold a mapping of options, got {type(loaded).__name__}")
        values.update(loaded)
    values.update({k: v for k, v in overrides.items() if v is not None})
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ConfigError(f"unknown config option(s) {unknown}; valid options: {sorted(names)}")
    return TrainConfig(**values).validate()


# ---------------------------------------------------------------------------------------------
# Command-line flags generated from the fields
# ---------------------------------------------------------------------------------------------


def _flag_bool_or_str(text: str):
    """'true'/'false' (and yes/no/on/off/1/0) -> bool; anything else stays a string ('auto', a backend name)."""
    low = text.lower()
    if low in ("true", "yes", "on", "1"):
        return True
    if low in ("false", "no", "off", "0"):
        return False
    return text


def _scalar(tp) -> tuple[object, bool]:
    """(the scalar type of an annotation, whether None is allowed)."""
    args = typing.get_args(tp)
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        rest = [a for a in args if a is not type(None)]
        return (rest[0] if len(rest) == 1 else tuple(rest)), type(None) in args
    return tp, False


def add_config_flags(parser: argparse.ArgumentParser, *, exclude: tuple[str, ...] = (), group: str | None = None):
    """One ``--flag`` per TrainConfig field (``--batch-size`` for ``batch_size``), default None (not given)."""
    hints = typing.get_type_hints(TrainConfig)
    target = parser.add_argument_group(group) if group else parser
    for f in dataclasses.fields(TrainConfig):
        if f.name in exclude or not f.metadata.get("cli", True):
            continue
        flag = "--" + f.name.replace("_", "-")
        tp, _ = _scalar(hints[f.name])
        shown = "" if f.default is dataclasses.MISSING or f.default is None else f" (default: {f.default})"
        kw = dict(dest=f.name, default=None, help=f.metadata.get("help", "") + shown)
        if tp is bool:
            target.add_argument(flag, action=argparse.BooleanOptionalAction, **kw)
        elif tp == (bool, str):  # --compile, --no-compile, --compile aot_eager, --compile auto
            target.add_argument(flag, type=_flag_bool_or_str, nargs="?", const=True, metavar="VALUE", **kw)
            target.add_argument(
                "--no-" + flag[2:], dest=f.name, action="store_const", const=False, help=f"same as {flag} false"
            )
        elif typing.get_origin(tp) is list:
            (item,) = typing.get_args(tp)
            target.add_argument(flag, type=item, nargs="+", **kw)
        elif tp in (int, float, str):
            target.add_argument(flag, type=tp, choices=f.metadata.get("choices"), **kw)
        else:  # pragma: no cover - a new field type needs a rule here
            raise TypeError(f"TrainConfig.{f.name}: no command-line rule for type {tp!r}")
    return parser


def config_overrides(args: argparse.Namespace) -> dict:
    """The TrainConfig fields given on the command line (flags left out are None and dropped)."""
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    return {k: v for k, v in vars(args).items() if k in names and v is not None}
