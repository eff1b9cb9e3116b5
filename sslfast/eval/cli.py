"""``sslfast eval``: kNN or linear-probe top-1 of a training checkpoint's backbone.

    sslfast eval --checkpoint runs/vicreg/checkpoint.pt --probe knn --data cifar10 --data-root ~/data

Features are extracted once (eval transform: the full image, normalised as in training);
kNN is weighted cosine k=200, T=0.1; the linear probe is L-BFGS logistic regression on
standardised features (``sslfast.eval``). Prints one JSON object; ``--out`` also writes it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="sslfast eval", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--probe", choices=("knn", "linear"), default="knn")
    p.add_argument("--data", default=None, help="cifar10 | synthetic | folder (default: the training data)")
    p.add_argument("--data-root", default=None)
    p.add_argument("--train-size", type=int, default=None, help="use the first N training images")
    p.add_argument("--test-size", type=int, default=None, help="use the first N test images")
    p.add_argument("--k", type=int, default=200)
    p.add_argument("--temperature", type=float, default=0.1)
    p.add_argument("--epochs", type=int, default=100, help="linear probe iterations")
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--device", default=None)
    p.add_argument("--out", default=None, help="also write the JSON result here")
    return p


def evaluate(args: argparse.Namespace) -> dict:
    import dataclasses

    import torch

    from ..train.config import ConfigError
    from ..train.setup import build_views, load_data, method_spec, model_from_checkpoint
    from .features import extract_features, normalizer
    from .knn import knn_classify
    from .probe import linear_probe

    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model, cfg, ckpt = model_from_checkpoint(args.checkpoint, device)
    overrides = {k: v for k, v in (("data", args.data), ("data_root", args.data_root)) if v is not None}
    cfg = dataclasses.replace(cfg, subset=None, **overrides)
    train_set, test_set = load_data(cfg)
    if test_set is None:
        raise ConfigError(f"data {cfg.data!r} has no test split (an image folder needs train/ and val/)")
    views = build_views(method_spec(cfg), cfg)
    tf = normalizer(views[0].mean, views[0].std)
    amp = torch.bfloat16 if device.type == "cuda" else None
    ntr = min(len(train_set), args.train_size or len(train_set))
    nte = min(len(test_set), args.test_size or len(test_set))
    t0 = time.perf_counter()
    kw = dict(transform=tf, batch_size=args.batch_size, device=device, autocast_dtype=amp)
    f_tr = extract_features(model.backbone, train_set.images[:ntr], **kw)
    f_te = extract_features(model.backbone, test_set.images[:nte], **kw)
    y_tr, y_te = train_set.labels[:ntr].to(device), test_set.labels[:nte].to(device)
    feat_s = time.perf_counter() - t0
    result = {
        "checkpoint": str(args.checkpoint),
        "method": ckpt["method"],
        "backbone": ckpt["backbone"],
        "epoch": ckpt["epoch"],
        "step": ckpt["step"],
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


def main(argv: list[str] | None = None) -> int:
    from ..data_pipelines.datasets import DatasetError
    from ..train.checkpoint import CheckpointError
    from ..train.config import ConfigError

    args = parser().parse_args(argv)
    try:
        result = evaluate(args)
    except (ConfigError, CheckpointError, DatasetError, FileNotFoundError) as e:
        print(f"sslfast eval: error: {e}", file=sys.stderr)
        return 2
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
