"""Checkpoints that load with ``torch.load(..., weights_only=True)``, are written atomically and
carry a digest of their payload.

Everything stored is a tensor or a primitive container (RNG states are converted to tensors),
so loading never unpickles arbitrary objects. Writes go to a temporary file in the same folder,
are fsync'ed, then ``os.replace``'d over the target: a crash leaves the old checkpoint or the
new one, never a truncated file.

Integrity (format 2): the payload is serialised with ``torch.save`` to bytes, and the file holds
``{"format": 2, "sha256": hex digest of those bytes, "payload": the bytes as a uint8 tensor}``.
``load_checkpoint`` recomputes the digest before it deserialises the payload, so a checkpoint
damaged in place (same size, bytes zeroed: torch's zip reader does not notice) raises
``CheckpointError`` in resume and in ``sslfast eval`` instead of loading wrong weights. Format 1
files (no digest, written before) still load, with a warning that they cannot be verified.
"""

from __future__ import annotations

import hashlib
import io
import os
import random
import warnings
from pathlib import Path

import numpy as np
import torch

__all__ = ["CheckpointError", "get_rng_state", "load_checkpoint", "save_checkpoint", "set_rng_state"]

FORMAT = 2
FORMATS_READ = (1, 2)


class CheckpointError(RuntimeError):
    """A checkpoint is missing, unreadable, or does not match the run."""


def get_rng_state() -> dict:
    """torch CPU (+ every CUDA device), numpy and Python RNG states, as tensors."""
    np_state = np.random.get_state()
    py_version, py_internal, py_gauss = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "python": {
            "version": int(py_version),
            "internal": torch.tensor(py_internal, dtype=torch.int64),
            "gauss_next": py_gauss,
        },
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    npd = state["numpy"]
    np.random.set_state(
        (
            "MT19937",
            npd["keys"].numpy().astype(np.uint32),
            npd["pos"],
            npd["has_gauss"],
            npd["cached_gaussian"],
        )
    )
    py = state["python"]
    random.setstate((py["version"], tuple(int(v) for v in py["internal"].tolist()), py["gauss_next"]))
    if "cuda" in state and torch.cuda.is_available():
        cuda = state["cuda"]
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)


def save_checkpoint(payload: dict, path: str | os.PathLike) -> Path:
    """Write ``payload`` atomically (temp file + fsync + ``os.replace``) and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    torch.save(payload, buf)
    data = bytearray(buf.getbuffer())
    del buf
    doc = {
        "format": FORMAT,
        "sha256": hashlib.sha256(data).hexdigest(),
        "payload": torch.frombuffer(data, dtype=torch.uint8) if data else torch.zeros(0, dtype=torch.uint8),
    }
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            torch.save(doc, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    # fsync the folder so the rename itself survives a power loss
    if hasattr(os, "O_DIRECTORY"):
        fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    return path


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Delete temp files that a killed writer left behind (never a finished checkpoint)."""
    folder = Path(folder)
    stale = list(folder.glob(".*.pt.*.tmp")) if folder.is_dir() else []
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


def load_checkpoint(path: str | os.PathLike, map_location="cpu") -> dict:
    """Load with ``weights_only=True`` after checking the payload's sha256; a clear
    ``CheckpointError`` if missing, unreadable, damaged or not an sslfast checkpoint."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # truncated zip, foreign pickle, ...
        raise CheckpointError(f"checkpoint {path} cannot be loaded with weights_only=True: {e}") from e
    if not isinstance(ckpt, dict) or ckpt.get("format") not in FORMATS_READ:
        seen = ckpt.get("format") if isinstance(ckpt, dict) else type(ckpt).__name__
        raise CheckpointError(
            f"checkpoint {path} is not an sslfast training checkpoint (format {seen!r}, expected one of {FORMATS_READ})"
        )
    if ckpt["format"] == 1:
        warnings.warn(f"checkpoint {path} has no digest (format 1): its integrity cannot be checked", stacklevel=2)
        return ckpt
    payload, want = ckpt.get("payload"), ckpt.get("sha256")
    if not isinstance(payload, torch.Tensor) or payload.dtype != torch.uint8 or not isinstance(want, str):
        raise CheckpointError(f"checkpoint {path} is damaged: its payload or sha256 digest is missing")
    data = payload.numpy().tobytes()
    got = hashlib.sha256(data).hexdigest()
    if got != want:
        raise CheckpointError(
            f"checkpoint {path} is damaged: the sha256 of its payload is {got[:16]}..., "
            f"but it was written with {want[:16]}... (the file changed after it was saved)"
        )
    try:
        inner = torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)
    except Exception as e:
        raise CheckpointError(f"checkpoint {path} has a payload that cannot be loaded: {e}") from e
    if not isinstance(inner, dict):
        raise CheckpointError(f"checkpoint {path} holds a {type(inner).__name__}, not a checkpoint dict")
    return {"format": FORMAT, **inner}
