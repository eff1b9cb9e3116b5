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
import os
import sys
import time
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
from .config import ConfigError, TrainConfig
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
    now = architecture(cfg)
    if saved != now:
        raise CheckpointError(f"checkpoint {path} has architecture {saved}, this run has {now}")


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


def train(cfg: TrainConfig, resume: bool = False) -> dict:
    """Train ``cfg``; returns the summary dict (also written to ``out/summary.json`` on rank 0)."""
    if not isinstance(cfg, TrainConfig):
        raise TypeError(f"cfg must be a TrainConfig, got {type(cfg).__name__}")
    cfg.validate()
    world, rk, device = setup_distributed(cfg)
    main = rk == 0
    out = Path(cfg.out)
    ckpt_path = out / CHECKPOINT
    if main:
        out.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(out)
        if ckpt_path.exists() and not resume:
            raise ConfigError(f"{ckpt_path} exists: pass --resume to continue that run, or choose another --out")

    run = build_run(cfg, device=device, world=world, rank=rk)
    spec, inner, opt = run.spec, run.model, run.optimizer
    if run.channels_last:  # before DDP wraps it: gradient buckets take the parameters' strides
        inner.to(memory_format=torch.channels_last)
    step = build_step(run, _wrap_ddp(run) if world > 1 else inner)

    start_epoch, start_i = 0, 0
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
        if main:
            print(f"resumed from {ckpt_path} at epoch {start_epoch}, step {step.step}", file=sys.stderr)
    elif resume and main:
        print(f"no checkpoint at {ckpt_path}: starting from scratch", file=sys.stderr)

    logger = _Logger(out, cfg.tensorboard, main)
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

    def save(epoch: int, step_in_epoch: int) -> None:
        if not main:
            return
        save_checkpoint(
            {
                "method": spec.name,
                "backbone": cfg.backbone,
                "arch": architecture(cfg),
                "config": dataclasses.asdict(cfg),
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

    last = {"loss": float("nan")}
    knn_top1 = None
    t_start, n_images, t_log, imgs_log = time.perf_counter(), 0, time.perf_counter(), 0
    stopped = False
    try:
        for epoch in range(start_epoch, spec.epochs):
            first_i = start_i if epoch == start_epoch else 0
            if feed is None:
                batches = device_batches(run, images, epoch, first_i)
            else:
                batches = feed.batches(epoch)
            for i, batch in enumerate(batches, start=first_i):
                result = step(batch) if feed is None else step.run_views(batch)
                n_images += run.global_batch
                imgs_log += run.global_batch
                if step.step % cfg.log_every == 0 or step.step == run.total_steps:
                    now = time.perf_counter()
                    last = {
                        "step": step.step,
                        "epoch": epoch,
                        "loss": float(result["loss"]),  # host sync
                        "lr": float(run.schedule(step.step - 1)),
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
        if feed is not None:
            feed.close()
    elapsed = time.perf_counter() - t_start
    summary = {
        "method": spec.name,
        "backbone": cfg.backbone,
        "steps": step.step,
        "total_steps": run.total_steps,
        "finished": step.step >= run.total_steps,
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
