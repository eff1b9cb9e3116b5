"""``sslfast train``: SSL pre-training from YAML and/or flags (flags override the YAML).

sslfast train --method vicreg --data cifar10 --data-root ~/data --epochs 100 --out runs/vicreg
sslfast train --config cfg.yaml --out runs/x --resume
torchrun --nproc-per-node 8 -m sslfast.cli train --method simclr --data cifar10 ...

Every TrainConfig field has exactly one flag (``batch_size`` -> ``--batch-size``).
"""

from __future__ import annotations

import argparse
import sys

from .config import add_config_flags, config_overrides


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="sslfast train", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--config", help="YAML file of TrainConfig options (flags override it)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt (identically)")
    add_config_flags(p, group="run options (TrainConfig)")
    return p


def main(argv: list[str] | None = None) -> int:
    from ..data_pipelines.datasets import DatasetError
    from .checkpoint import CheckpointError
    from .config import ConfigError, load_config
    from .guard import TrainingDiverged
    from .loop import train

    args = parser().parse_args(argv)
    try:
        cfg = load_config(args.config, **config_overrides(args))
        summary = train(cfg, resume=args.resume)
    except (ConfigError, CheckpointError, DatasetError, FileNotFoundError) as e:
        print(f"sslfast train: error: {e}", file=sys.stderr)
        return 2
    except TrainingDiverged as e:  # the run itself failed: summary.json says diverged
        print(f"sslfast train: error: {e}", file=sys.stderr)
        return 1
    if summary is not None and summary["rank"] == 0:
        print(
            f"{summary['method']}: {summary['steps']}/{summary['total_steps']} steps, "
            f"loss {summary['final_loss']}, kNN top-1 {summary['knn_top1']}, "
            f"{summary['images_per_s']:.0f} img/s -> {summary['checkpoint']}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
