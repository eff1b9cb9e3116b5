"""``sslfast eval``: kNN or linear-probe top-1 of a training checkpoint's backbone.

    sslfast eval --checkpoint runs/vicreg/checkpoint.pt --probe knn --data cifar10 --data-root ~/data

Features are extracted once (eval transform: the full image, normalised as in training);
kNN is weighted cosine k=200, T=0.1; the linear probe is L-BFGS logistic regression on
standardised features (``sslfast.eval``). Prints one JSON object; ``--out`` also writes it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path


def parser() -> argparse.ArgumentParser:
    from .._checks import arg_type, check_int, check_positive

    pos_int = arg_type(int, check_int)
    p = argparse.ArgumentParser(
        prog="sslfast eval", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--probe", choices=("knn", "linear"), default="knn")
    p.add_argument("--data", default=None, help="cifar10 | synthetic | folder (default: the training data)")
    p.add_argument("--data-root", default=None)
    p.add_argument("--train-size", type=pos_int, default=None, help="use the first N training images (default: all)")
    p.add_argument("--test-size", type=pos_int, default=None, help="use the first N test images (default: all)")
    p.add_argument("--k", type=pos_int, default=200, help="kNN neighbours (at most the training images used)")
    p.add_argument("--temperature", type=arg_type(float, check_positive), default=0.1, help="kNN vote temperature")
    p.add_argument("--epochs", type=pos_int, default=100, help="linear probe iterations")
    p.add_argument("--batch-size", type=pos_int, default=512)
    p.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda when available)")
    p.add_argument("--out", default=None, help="also write the JSON result here (atomically)")
    return p


def _device(name: str | None):
    import torch

    from ..train.config import ConfigError

    if name is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise ConfigError(f"--device must be cpu, cuda or cuda:N, got {name!r}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {name} needs CUDA, but this torch ({torch.__version__}) sees no CUDA device")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ConfigError(f"--device {name}: there are {torch.cuda.device_count()} CUDA device(s)")
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(f"--device must be cpu, cuda or cuda:N, got {name!r}")
    return device


def evaluate(args: argparse.Namespace) -> dict:
    import dataclasses

    import torch

    from ..train.config import ConfigError
    from ..train.setup import build_views, load_data, method_spec, model_from_checkpoint
    from .features import extract_features, normalizer
    from .knn import knn_classify
    from .probe import linear_probe

    device = _device(args.device)
    model, cfg, ckpt = model_from_checkpoint(args.checkpoint, device)
    overrides = {k: v for k, v in (("data", args.data), ("data_root", args.data_root)) if v is not None}
    cfg = dataclasses.replace(cfg, subset=None, **overrides)
    train_set, test_set = load_data(cfg)
    if test_set is None:
        raise ConfigError(f"data {cfg.data!r} has no test split (an image folder needs train/ and val/)")
    views = build_views(method_spec(cfg), cfg)
    tf = normalizer(views[0].mean, views[0].std)
    amp = torch.bfloat16 if device.type == "cuda" else None
    # None: every image; a size above the split's length is capped to it (and reported as n_train/n_test)
    ntr = len(train_set) if args.train_size is None else min(len(train_set), args.train_size)
    nte = len(test_set) if args.test_size is None else min(len(test_set), args.test_size)
    t0 = time.perf_counter()
    kw = dict(transform=tf, batch_size=args.batch_size, device=device, autocast_dtype=amp)
    f_tr = extract_features(model.backbone, train_set.images[:ntr], **kw)
    f_te = extract_features(model.backbone, test_set.images[:nte], **kw)
    y_tr, y_te = train_set.labels[:ntr].to(device), test_set.labels[:nte].to(device)
    feat_s = time.perf_counter() - t0
    result = {
        "checkpoint": str(args.checkpoint),
        # the config is the checkpoint's one required record (model_from_checkpoint checked it)
        "method": cfg.method,
        "backbone": cfg.backbone,
        "epoch": ckpt.get("epoch"),
        "step": ckpt.get("step"),
        "data": cfg.data,
        "probe": args.probe,
        "n_train": ntr,
        "n_test": nte,
        "feature_time_s": feat_s,
    }
    if args.probe == "knn":
        t0 = time.perf_counter()
        res = knn_classify(
            f_tr,
            y_tr,
            f_te,
            y_te,
            k=min(args.k, ntr),
            temperature=args.temperature,
            num_classes=len(train_set.classes),
        )
        result.update(
            top1=res.top1,
            k=min(args.k, ntr),
            temperature=args.temperature,
            probe_time_s=time.perf_counter() - t0,
        )
    else:
        res = linear_probe(f_tr, y_tr, f_te, y_te, epochs=args.epochs, num_classes=len(train_set.classes))
        result.update({k: res[k] for k in ("top1", "train_top1", "train_time_s", "eval_time_s")})
    return result


def _write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to a temporary file in the same folder, then rename it over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    """Errors: flag values are checked by argparse; ConfigError, CheckpointError, DatasetError and
    missing files are user errors, reported by the CLI wrapper (``sslfast.cli.run_command``)."""
    args = parser().parse_args(argv)
    result = evaluate(args)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        _write_atomic(Path(args.out), text)
    return 0


if __name__ == "__main__":
    from ..cli import run_command

    sys.exit(run_command("eval", main, sys.argv[1:]))
