"""The training loop: ``train(cfg, resume=...)``, what ``sslfast train`` runs.

A run folder holds ``config.yaml``, ``metrics.jsonl`` (one JSON object per logged step / kNN
evaluation), ``tb/`` (TensorBoard, when installed), ``checkpoint.pt`` (latest, atomic) and
``summary.json``. The run itself is built by ``sslfast.train.setup.build_run``.

Reproducibility: the data order of epoch e comes from a generator seeded by (seed, e) and the
views of step s from one seeded by (seed, s), so a resumed run replays exactly the batches and
augmentations of an uninterrupted run; the checkpoint carries model, optimizer, loss buffers,
EMA weights and the torch/numpy/python RNG states.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import math
import os
import sys
import time
import uuid
import warnings
from pathlib import Path

import torch
from torch import nn

from .checkpoint import (
    CheckpointError,
    get_rng_state,
    load_checkpoint,
    remove_stale_temporaries,
    save_checkpoint,
    set_rng_state,
)
from .config import RESUME_SAFE, ConfigError, TrainConfig, resume_changes
from .guard import TrainingDiverged, nonfinite_state
from .lock import RunLock
from .methods import get_method
from .setup import (
    ReferenceFeed,
    Run,
    architecture,
    build_run,
    build_step,
    device_batches,
    knn_monitor,
    setup_distributed,
)

__all__ = ["CHECKPOINT", "train"]

CHECKPOINT = "checkpoint.pt"
SUMMARY = "summary.json"


class _Logger:
    """metrics.jsonl (+ TensorBoard, lazily imported) on rank 0."""

    def __init__(self, out: Path, tensorboard: bool, enabled: bool, run_id: str = ""):
        self.enabled, self.run_id = enabled, run_id
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
        self.jsonl.write(json.dumps({"run_id": self.run_id, **record}) + "\n")
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
    """Refuse a checkpoint of another run: method, backbone, architecture and every config field
    not listed in ``config.RESUME_SAFE`` must match (all differences are listed at once)."""
    for key, want in (("method", get_method(cfg.method).name), ("backbone", cfg.backbone)):
        if ckpt.get(key) != want:
            raise CheckpointError(
                f"checkpoint {path} is from {key} {ckpt.get(key)!r}, but this run uses "
                f"{key} {want!r}: use a matching config or another --out folder"
            )
    saved = ckpt.get("arch", {})
    now = architecture(cfg)
    if saved != now:
        raise CheckpointError(f"checkpoint {path} has architecture {saved}, this run has {now}")
    changes = resume_changes(ckpt.get("config") or {}, cfg)
    if changes:
        raise ConfigError(
            f"--resume refuses a changed config: {path} was written with different values of "
            + "; ".join(changes)
            + ". Resume with the run's own config (its config.yaml), or start a new run in another --out. "
            f"Fields that may change on resume: {', '.join(RESUME_SAFE)} (epochs only upwards)."
        )


def _dump_yaml(d: dict) -> str:
    import yaml

    return yaml.safe_dump({k: (list(v) if isinstance(v, tuple) else v) for k, v in d.items()}, sort_keys=False)


def _wrap_ddp(run: Run) -> nn.Module:
    # broadcast_buffers=False: loss buffers are updated from the gathered global batch on every rank
    # already; BN running stats stay per rank (rank 0's are checkpointed)
    ddp = nn.parallel.DistributedDataParallel
    # torch >= 2.13 renames broadcast_buffers (deprecated) to forward_sync_buffers
    no_sync = (
        {"forward_sync_buffers": False}
        if "forward_sync_buffers" in inspect.signature(ddp).parameters
        else {"broadcast_buffers": False}
    )
    return ddp(run.model, device_ids=[run.device.index] if run.device.type == "cuda" else None, **no_sync)


def _finite_or_none(x):
    return x if isinstance(x, (int, float)) and math.isfinite(x) else None


def _write_json(path: Path, doc: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(doc, indent=2))
    os.replace(tmp, path)


def train(cfg: TrainConfig, resume: bool = False) -> dict:
    """Train ``cfg``; returns the summary dict (also written to ``out/summary.json`` on rank 0).

    Raises ``TrainingDiverged`` (after writing ``"diverged": true, "finished": false`` to
    summary.json, and without checkpointing anything non-finite) when the loss or the weights
    become non-finite; ``RunLocked`` when another live run holds ``out``; ``ConfigError`` /
    ``CheckpointError`` for a resume that does not match the checkpoint.
    """
    if not isinstance(cfg, TrainConfig):
        raise TypeError(f"cfg must be a TrainConfig, got {type(cfg).__name__}")
    cfg.validate()
    world, rk, device = setup_distributed(cfg)
    main = rk == 0
    out = Path(cfg.out)
    lock = None
    if main:
        out.mkdir(parents=True, exist_ok=True)
        # before anything in the folder is read or written: a second run fails fast
        lock = RunLock(out, run_id=uuid.uuid4().hex[:12]).acquire()
        if lock.took_over:
            print(
                f"taking over the lock of a run that is no longer running (pid {lock.took_over.get('pid')} "
                f"on {lock.took_over.get('host')})",
                file=sys.stderr,
            )
    try:
        return _train(cfg, resume, world, rk, device, out)
    finally:
        if lock is not None:
            lock.release()


def _train(cfg: TrainConfig, resume: bool, world: int, rk: int, device: torch.device, out: Path) -> dict:
    main = rk == 0
    ckpt_path = out / CHECKPOINT
    if main:
        remove_stale_temporaries(out)
        if ckpt_path.exists() and not resume:
            raise ConfigError(f"{ckpt_path} exists: pass --resume to continue that run, or choose another --out")

    ckpt = None
    if resume and ckpt_path.exists():  # checked before the run is built: a mismatch fails fast
        ckpt = load_checkpoint(ckpt_path)
        _check_resume(ckpt, cfg, ckpt_path)
    elif resume and main:
        print(f"no checkpoint at {ckpt_path}: starting from scratch", file=sys.stderr)

    run = build_run(cfg, device=device, world=world, rank=rk)
    spec, inner, opt = run.spec, run.model, run.optimizer

    if ckpt is not None:
        if int(ckpt["step"]) >= run.total_steps:
            # a finished run stays as it is: no config, metrics, checkpoint or summary is rewritten
            summary_path = out / SUMMARY
            if main:
                print(
                    f"{ckpt_path} is a finished run ({int(ckpt['step'])}/{run.total_steps} steps): nothing to do "
                    "(raise --epochs to train further)",
                    file=sys.stderr,
                )
            if summary_path.is_file():
                return json.loads(summary_path.read_text())
            return {"method": spec.name, "steps": int(ckpt["step"]), "total_steps": run.total_steps, "finished": True}

    if run.channels_last:  # before DDP wraps it: gradient buckets take the parameters' strides
        inner.to(memory_format=torch.channels_last)
    step = build_step(run, _wrap_ddp(run) if world > 1 else inner)

    start_epoch, start_i = 0, 0
    run_id, attempt = uuid.uuid4().hex[:12], 0
    if ckpt is not None:
        try:
            inner.load_state_dict(ckpt["model"])
        except RuntimeError as e:
            raise CheckpointError(f"checkpoint {ckpt_path} does not match this run's model: {e}") from None
        try:
            opt.load_state_dict(ckpt["optimizer"])
        except (ValueError, KeyError) as e:  # other parameter groups (e.g. a recipe's static-lr heads)
            raise CheckpointError(f"checkpoint {ckpt_path} does not match this run's optimizer: {e}") from None
        for g in opt.param_groups:  # keep the lr a device tensor after loading
            g["lr"] = torch.tensor(float(g["lr"]), device=device)
        step.step = int(ckpt["step"])
        step.guard.reset(device, step=step.step)
        start_epoch, start_i = int(ckpt["epoch"]), int(ckpt["step_in_epoch"])
        set_rng_state(ckpt["rng"])
        run_id, attempt = str(ckpt.get("run_id") or run_id), int(ckpt.get("attempt", 0)) + 1
        if main:
            print(f"resumed from {ckpt_path} at epoch {start_epoch}, step {step.step}", file=sys.stderr)

    logger = _Logger(out, cfg.tensorboard, main, run_id)
    # kNN on rank 0 only (its BN statistics are the checkpointed ones); the others wait in the next collective
    monitor = knn_monitor(run) if main else None
    if main:
        (out / "config.yaml").write_text(_dump_yaml(dataclasses.asdict(cfg)))
    feed = None
    if cfg.pipeline == "reference":
        feed = ReferenceFeed(run, run.train_set.images, run.train_set.labels)
    else:
        images = run.train_set.images.to(device)
    prog, task = _progress(cfg, main, run.total_steps, step.step)

    last = {"loss": float("nan")}
    knn_top1 = None
    saved_step = int(ckpt["step"]) if ckpt is not None else None
    t_start, n_images, t_log, imgs_log = time.perf_counter(), 0, time.perf_counter(), 0

    def summary(**extra) -> dict:
        elapsed = time.perf_counter() - t_start
        return {
            "method": spec.name,
            "backbone": cfg.backbone,
            "run_id": run_id,
            "steps": step.step,
            "total_steps": run.total_steps,
            "finished": step.step >= run.total_steps,
            "diverged": False,
            "final_loss": _finite_or_none(last.get("loss")),  # JSON has no NaN: null, and "diverged" says why
            "knn_top1": knn_top1,
            "images_per_s": n_images / elapsed if elapsed > 0 else None,
            "elapsed_s": elapsed,
            "world_size": world,
            "rank": rk,
            "device": str(device),
            "checkpoint": str(ckpt_path),
            **extra,
        }

    def diverged(what: str, rec) -> None:
        """Stop: write the summary (diverged, not finished) and raise; nothing is checkpointed."""
        kept = (
            f"{ckpt_path} still holds the last good state (step {saved_step})"
            if saved_step is not None
            else "no checkpoint was written"
        )
        message = (
            f"training diverged: {what}; stopped at step {step.step} of {run.total_steps}. Nothing "
            f"non-finite was saved: {kept}. Try a lower --lr or a longer --warmup-epochs."
        )
        s = summary(
            finished=False,
            diverged=True,
            diverged_at_step=rec.first_bad_step if not rec.finite else step.step,
            last_finite_loss=_finite_or_none(rec.last_finite_loss),
            last_finite_step=rec.last_finite_step,
            error=message,
        )
        if main:
            logger.log({"step": step.step, "diverged": True, "error": message}, step.step)
            _write_json(out / SUMMARY, s)
        raise TrainingDiverged(message, s)

    def check_loss():
        rec = step.guard.read()  # host sync, only where the loop syncs anyway
        if not rec.finite:
            diverged(rec.describe(), rec)
        return rec

    def save(epoch: int, step_in_epoch: int) -> None:
        nonlocal saved_step
        rec = check_loss()  # never checkpoint after a non-finite loss ...
        bad = nonfinite_state(inner, opt)  # ... or non-finite weights, buffers or optimizer state
        if bad:
            more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
            diverged(f"non-finite values in {', '.join(bad[:5])}{more} (last loss {rec.loss:.6g})", rec)
        if not main:
            return
        save_checkpoint(
            {
                "method": spec.name,
                "backbone": cfg.backbone,
                "arch": architecture(cfg),
                "config": dataclasses.asdict(cfg),
                "run_id": run_id,
                "attempt": attempt,
                "model": inner.state_dict(),
                "optimizer": opt.state_dict(),
                "scheduler": {
                    "name": "warmup_cosine",
                    "step": step.step,
                    "total_steps": run.total_steps,
                    "warmup_steps": run.warmup_steps,
                    "base_lr": run.base_lr,
                },
                "epoch": epoch,
                "step": step.step,
                "step_in_epoch": step_in_epoch,
                "rng": get_rng_state(),
            },
            ckpt_path,
        )
        saved_step = step.step

    stopped = False
    try:
        for epoch in range(start_epoch, spec.epochs):
            first_i = start_i if epoch == start_epoch else 0
            if feed is None:
                batches = device_batches(run, images, epoch, first_i)
            else:
                batches = feed.batches(epoch)
            for i, batch in enumerate(batches, start=first_i):
                if feed is None:
                    step(batch)
                else:
                    step.run_views(batch)
                n_images += run.global_batch
                imgs_log += run.global_batch
                if step.step % cfg.log_every == 0 or step.step == run.total_steps:
                    rec = step.guard.read()  # the logging sync: loss and the finite flag in one copy
                    now = time.perf_counter()
                    last = {
                        "step": step.step,
                        "epoch": epoch,
                        "loss": rec.loss,
                        "lr": float(run.schedule(step.step - 1)),
                        "images_per_s": imgs_log / max(now - t_log, 1e-9),
                        "elapsed_s": now - t_start,
                    }
                    t_log, imgs_log = now, 0
                    logger.log(last, step.step)
                    if prog is not None:
                        prog.update(task, completed=step.step, ips=last["images_per_s"], loss=last["loss"])
                    if not rec.finite:
                        diverged(rec.describe(), rec)
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
            check_loss()  # epoch end: no kNN of a diverged network
            if monitor is not None and monitor.due(epoch + 1):
                knn_top1 = monitor(inner.backbone, epoch + 1)
                logger.log({"epoch": epoch + 1, "step": step.step, "knn_top1": knn_top1}, step.step)
            save(epoch + 1, 0)
    finally:
        if prog is not None:
            prog.stop()
        logger.close()
        if feed is not None:
            feed.close()
    result = summary()
    if main:
        _write_json(out / SUMMARY, result)
    return result
