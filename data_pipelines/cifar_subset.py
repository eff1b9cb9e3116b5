"""A CIFAR-10 subset as one .npz file, for a GPU machine that is sent at most 64 MiB per command.

The full binary set is 184 MB, so it reaches a lent GPU machine only over three commands; a
subset travels with the code in one. Built on the CPU side from a verified CIFAR-10 folder
(``load_cifar10`` checks the official sha256 sums), never committed (keep it under the ignored
``.cifar/`` and name it in the device call's carry list):

    python -m sslfast.data_pipelines.cifar_subset --out .cifar/cifar10-subset.npz [--train 10000] [--test 2000]

The one run setup reads it wherever CIFAR-10 is read (``sslfast.train.setup.load_data``: a
``data_root`` ending in ``.npz``), so ``sslfast train``, ``sslfast bench epoch`` and ``sslfast
bench tta`` all take ``--data-root .cifar/cifar10-subset.npz``. The file records
the sha256 of the arrays it holds, checked on load, so a truncated transfer is an error, not a
smaller data set.
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

from .datasets import DatasetError

SUFFIX = ".npz"
# 10,000 train + 2,000 test images: 36.9 MB of uint8 pixels, well inside 64 MiB with the code.
DEFAULT_TRAIN, DEFAULT_TEST = 10_000, 2_000


def is_subset(root) -> bool:
    """Whether a CIFAR-10 ``data_root`` names a subset file (``.npz``) rather than a folder."""
    return str(root or "").endswith(SUFFIX)


class SubsetError(DatasetError):
    """A subset file that is missing, truncated or not one written by ``build``."""


def _digest(arrays: dict) -> str:
    h = hashlib.sha256()
    for key in sorted(arrays):
        h.update(key.encode())
        h.update(arrays[key].tobytes())
    return h.hexdigest()


def build(root, out, n_train: int = DEFAULT_TRAIN, n_test: int = DEFAULT_TEST) -> Path:
    """Write the first ``n_train`` train and ``n_test`` test images of the CIFAR-10 at ``root``."""
    import numpy as np

    from . import load_cifar10

    train, test = load_cifar10(root, train=True), load_cifar10(root, train=False)
    if not (1 <= n_train <= len(train) and 1 <= n_test <= len(test)):
        raise SubsetError(
            f"--train must be in [1, {len(train)}] and --test in [1, {len(test)}], got {n_train}, {n_test}"
        )
    arrays = {
        "train_images": train.images[:n_train].numpy(),
        "train_labels": train.labels[:n_train].numpy(),
        "test_images": test.images[:n_test].numpy(),
        "test_labels": test.labels[:n_test].numpy(),
    }
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp.npz")
    np.savez(tmp, classes=np.array(train.classes), sha256=np.array(_digest(arrays)), **arrays)
    tmp.replace(out)
    return out


def load(path):
    """(train, test) ImageDatasets from a file written by ``build``; SubsetError when it is not one."""
    import numpy as np
    import torch

    from .datasets import ImageDataset

    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in ("train_images", "train_labels", "test_images", "test_labels")}
            classes, digest = tuple(str(c) for c in f["classes"]), str(f["sha256"])
    except FileNotFoundError:
        raise SubsetError(f"CIFAR-10 subset not found: {path}") from None
    except (OSError, ValueError, KeyError, EOFError) as e:
        raise SubsetError(
            f"{path}: not a CIFAR-10 subset written by sslfast.data_pipelines.cifar_subset ({e})"
        ) from None
    if _digest(arrays) != digest:
        raise SubsetError(f"{path}: contents do not match the sha256 recorded when it was built (truncated copy?)")

    def dataset(split: str) -> ImageDataset:
        return ImageDataset(
            torch.from_numpy(arrays[f"{split}_images"]), torch.from_numpy(arrays[f"{split}_labels"]).long(), classes
        )

    return dataset("train"), dataset("test")


def main(argv: list[str] | None = None) -> int:
    from sslfast._checks import arg_type, check_int

    p = argparse.ArgumentParser(prog="python -m sslfast.data_pipelines.cifar_subset", description=__doc__)
    p.add_argument("--root", default=None, help="CIFAR-10 folder (default: $SSLFAST_DATA)")
    p.add_argument("--out", required=True, help="the .npz to write, e.g. .cifar/cifar10-subset.npz")
    p.add_argument("--train", type=arg_type(int, check_int, min=1), default=DEFAULT_TRAIN)
    p.add_argument("--test", type=arg_type(int, check_int, min=1), default=DEFAULT_TEST)
    args = p.parse_args(argv)
    if not args.out.endswith(SUFFIX):
        p.error(f"--out must end in {SUFFIX}, got {args.out!r}")
    try:
        out = build(args.root, args.out, args.train, args.test)
    except SubsetError as e:
        p.error(str(e))
    print(f"{out}: {args.train} train + {args.test} test images, {out.stat().st_size / 2**20:.1f} MiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
