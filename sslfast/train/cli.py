"""``sslfast train``: SSL pre-training from YAML and/or flags (flags override the YAML).

sslfast train --method vicreg --data cifar10 --data-root ~/data --epochs 100 --out runs/vicreg
sslfast train --config cfg.yaml --out runs/x --resume
torchrun --nproc-per-node 8 -m sslfast.cli train --method simclr --data cifar10 ...
"""

from __future__ import annotations

import argparse
import sys

# flag -> (TrainConfig field, type); every field can also come from --config YAML
_FLAGS = {
    "--method": ("method", str),
    "--data": ("data", str),
    "--data-root": ("data_root", str),
    "--subset": ("subset", int),
    "--synthetic-size": ("synthetic_size", int),
    "--image-size": ("image_size", int),
    "--view-size": ("view_size", int),
    "--num-views": ("num_views", int),
    "--local-crops": ("local_crops", int),
    "--local-size": ("local_size", int),
    "--queue-size": ("queue_size", int),
    "--backbone": ("backbone", str),
    "--width": ("width", int),
    "--patch-size": ("patch_size", int),
    "--proj-out": ("proj_out", int),
    "--pred-hidden": ("pred_hidden", int),
    "--epochs": ("epochs", int),
    "--batch-size": ("batch_size", int),
    "--optimizer": ("optimizer", str),
    "--lr": ("lr", float),
    "--weight-decay": ("weight_decay", float),
    "--warmup-epochs": ("warmup_epochs", int),
    "--compile-mode": ("compile_mode", str),
    "--backend": ("backend", str),
    "--augment-backend": ("augment_backend", str),
    "--amp": ("amp", str),
    "--knn-every": ("knn_every", int),
    "--knn-k": ("knn_k", int),
    "--log-every": ("log_every", int),
    "--checkpoint-every": ("checkpoint_every", int),
    "--stop-after-steps": ("stop_after_steps", int),
    "--seed": ("seed", int),
    "--out": ("out", str),
    "--device": ("device", str),
    "--dist-timeout-s": ("dist_timeout_s", int),
}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="sslfast train", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--config", help="YAML file of TrainConfig options (flags override it)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt (identically)")
    for flag, (dest, typ) in _FLAGS.items():
        p.add_argument(flag, dest=dest, type=typ, default=None)
    p.add_argument("--proj-hidden", dest="proj_hidden", type=int, nargs="+", default=None)
    p.add_argument(
        "--compile",
        dest="compile",
        action="store_const",
        const=True,
        default=None,
        help="torch.compile the step (default: on with CUDA)",
    )
    p.add_argument("--no-compile", dest="compile", action="store_const", const=False)
    p.add_argument("--compile-backend", dest="compile", help="torch.compile backend, e.g. aot_eager")
    for name, help_ in (
        ("cuda-graphs", "CUDA-graph capture (reduce-overhead)"),
        ("sync-bn", "SyncBatchNorm (DDP)"),
        ("tensorboard", "TensorBoard logs under OUT/tb"),
        ("progress", "progress bar"),
    ):
        p.add_argument(
            f"--{name}",
            dest=name.replace("-", "_"),
            action=argparse.BooleanOptionalAction,
            default=None,
            help=help_,
        )
    p.add_argument(
        "--channels-last", dest="channels_last", action=argparse.BooleanOptionalAction, default=None
    )
    return p


def main(argv: list[str] | None = None) -> int:
    from ..data_pipelines.datasets import DatasetError
    from .checkpoint import CheckpointError
    from .loop import ConfigError, load_config, train

    args = vars(parser().parse_args(argv))
    config, resume = args.pop("config"), args.pop("resume")
    try:
        cfg = load_config(config, **args)
        summary = train(cfg, resume=resume)
    except (ConfigError, CheckpointError, DatasetError, FileNotFoundError) as e:
        print(f"sslfast train: error: {e}", file=sys.stderr)
        return 2
    if summary is not None and summary["rank"] == 0:
        print(
            f"{summary['method']}: {summary['steps']}/{summary['total_steps']} steps, "
            f"loss {summary['final_loss']}, kNN top-1 {summary['knn_top1']}, "
            f"{summary['images_per_s']:.0f} img/s -> {summary['checkpoint']}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
