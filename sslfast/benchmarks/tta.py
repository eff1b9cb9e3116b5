"""`sslfast bench tta`: time-to-accuracy speed runs on CIFAR-10 (linear probe ≥ 85% / 90%).

Honesty rules (after airbench):
- one untimed warm-up run per recipe compiles the step and the kernels; the N timed runs
  (seeds) then reuse that compiled step, re-initialised from a freshly seeded model;
- the dataset is resident on the device as uint8 and every view is made on the device;
- training time is measured with CUDA events around the training steps only (perf_counter on
  CPU); kNN monitors and linear probes are timed separately and excluded from the training clock;
- per run: the training seconds and epoch at which each threshold is first crossed (by the
  linear probe, and by the kNN monitor), the accuracy-vs-seconds curve, the config, the seed,
  the code hash and the environment.

A recipe is a set of ``TrainConfig`` overrides (built by the one run setup,
``sslfast.train.setup``, exactly as ``sslfast train`` would build it) plus its evaluation
settings. Recipes (``RECIPES``): EMP-SSL on ResNet-18 and on ViT-Tiny (many patches, TCR +
invariance, bf16, compiled, fused kernels), VICReg and SimCLR short-budget recipes, and the
*reference* recipe: the official EMP-SSL settings run with ``pipeline="reference"`` (fp32 eager,
the textbook losses, the CPU augmentation baseline), measured in the same command for the ratio.
Every ``sslfast train`` option is also a flag here and overrides the recipes (sizes for CPU runs:
``--width`` reaches ResNet recipes only, ``--vit-depth``/``--vit-dim`` ViT recipes only).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from ..report.schema import mean_std
from .common import write_results

DEFAULT_THRESHOLDS = (85.0, 90.0)
# EMP-SSL's own evaluation averages 128 patch embeddings per image; 16 keeps a probe to
# ~1M forward passes on CIFAR-10, so several probes per run fit the device budget.
EMP_EVAL_PATCHES = 16


@dataclass(frozen=True)
class Recipe:
    """One speed-run recipe: ``TrainConfig`` overrides (``train``; fields not given take the
    method's published default) and how the run is evaluated."""

    name: str
    train: dict
    knn_every: int = 1  # epochs between kNN monitors (0: off)
    probe_epochs: tuple[int, ...] = ()  # linear probes besides the last epoch
    # > 0: the linear probe sees the mean embedding of this many random training-style patches
    # per image (EMP-SSL's bag-of-features evaluation; the paper uses 128), else the whole image
    eval_patches: int = 0
    source: str = ""

    @property
    def method(self) -> str:
        return self.train["method"]

    @property
    def pipeline(self) -> str:
        return self.train.get("pipeline", "ours")

    @property
    def backbone(self) -> str:
        return self.train.get("backbone", "resnet18_cifar")


RECIPES: dict[str, Recipe] = {
    r.name: r
    for r in (
        # EMP-SSL (Tong et al. 2023): 20 patches, batch 100, LARS lr 0.3, no warm-up; the paper
        # reports CIFAR-10 linear-probe accuracy after very few epochs, so the budget is 10.
        Recipe(
            "emp_ssl",
            dict(method="emp_ssl", epochs=10),
            probe_epochs=(1, 2, 5),
            eval_patches=EMP_EVAL_PATCHES,
            source="tsb0601/EMP-SSL settings (sslfast.train.methods), 10 epochs",
        ),
        # The same EMP-SSL recipe on the second backbone: ViT-Tiny with 4x4 patches (65 tokens on
        # 32x32 crops), about ResNet-18-CIFAR's cost per image.
        Recipe(
            "emp_ssl_vit_tiny",
            dict(method="emp_ssl", backbone="vit_tiny", patch_size=4, epochs=10),
            probe_epochs=(1, 2, 5),
            eval_patches=EMP_EVAL_PATCHES,
            source="emp_ssl recipe, ViT-Tiny/4 backbone",
        ),
        # Short-budget VICReg / SimCLR: solo-learn CIFAR heads and losses, larger batch for
        # throughput, a 2-epoch warm-up (5% of the run; the warm-up keeps its slope at any budget, so
        # a shorter --epochs run never ramps faster). The CPU convergence benchmark checks the same
        # short-budget rule (one warm-up epoch of three) keeps every method finite and learning;
        # provisional until tuned on a GPU.
        Recipe(
            "vicreg",
            dict(method="vicreg", epochs=40, batch_size=512, warmup_epochs=2),
            knn_every=5,
            probe_epochs=(20,),
            source="solo-learn cifar/vicreg.yaml, short budget (provisional)",
        ),
        Recipe(
            "simclr",
            dict(method="simclr", epochs=40, batch_size=512, warmup_epochs=2),
            knn_every=5,
            probe_epochs=(20,),
            source="solo-learn cifar/simclr.yaml, short budget (provisional)",
        ),
        # The official EMP-SSL settings as the reference code runs them: fp32, eager, reference
        # losses, CPU per-image augmentation in DataLoader workers.
        Recipe(
            "emp_ssl_reference",
            dict(method="emp_ssl", pipeline="reference", epochs=10),
            probe_epochs=(1, 2, 5),
            eval_patches=EMP_EVAL_PATCHES,
            source="tsb0601/EMP-SSL main.py as published: fp32 eager, CPU augmentation",
        ),
    )
}

DEFAULT_RECIPES = ("emp_ssl", "emp_ssl_vit_tiny", "emp_ssl_reference")
# TrainConfig fields that belong to a backbone family: a command-line size override reaches only
# the recipes whose backbone has it (one --width and one --vit-dim for a mixed set of recipes).
RESNET_ONLY = ("width",)
VIT_ONLY = ("vit_depth", "vit_dim", "patch_size")
# TrainConfig fields the speed run sets itself (per timed run, or not meaningful here)
NOT_FLAGS = (
    "out",
    "seed",
    "knn_every",
    "knn_k",
    "knn_train_size",
    "knn_test_size",
    "log_every",
    "checkpoint_every",
    "stop_after_steps",
    "tensorboard",
    "progress",
    "dist_timeout_s",
    "sync_bn",
)


def recipe_config(recipe: Recipe, overrides: dict):
    """The recipe's ``TrainConfig``: its overrides, then the command line's (sizes by backbone family)."""
    from sslfast.train.config import TrainConfig

    values = {**recipe.train, **overrides}
    vit = values.get("backbone", "resnet18_cifar").startswith("vit")
    for name in VIT_ONLY if not vit else RESNET_ONLY:
        values.pop(name, None)
    return TrainConfig(**values).validate()


def code_hash() -> str:
    """sha256 over the sources of sslfast and its mapped subpackages (what ran, even from a dirty tree)."""
    import importlib

    h = hashlib.sha256()
    for name in ("sslfast", "sslfast.kernels", "sslfast.data_pipelines"):
        for root in map(Path, importlib.import_module(name).__path__):
            for path in sorted(p for p in root.rglob("*.py") if "__pycache__" not in p.parts):
                h.update(f"{name}/{path.relative_to(root)}".encode())
                h.update(path.read_bytes())
    return h.hexdigest()[:16]


class Timer:
    """Training-only clock: CUDA events on GPU, perf_counter on CPU. ``read`` syncs."""

    def __init__(self, device: torch.device):
        self.device, self.total, self._events = device, 0.0, []

    def start(self):
        if self.device.type == "cuda":
            ev = torch.cuda.Event(enable_timing=True)
            ev.record()
            self._events.append([ev, None])
        else:
            self._t0 = time.perf_counter()

    def stop(self):
        if self.device.type == "cuda":
            ev = torch.cuda.Event(enable_timing=True)
            ev.record()
            self._events[-1][1] = ev
        else:
            self.total += time.perf_counter() - self._t0

    def read(self) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.total += sum(a.elapsed_time(b) for a, b in self._events) / 1e3
            self._events.clear()
        return self.total


class RecipeRunner:
    """One recipe built once (the warm-up compiles it), then timed runs per seed."""

    def __init__(self, recipe: Recipe, overrides: dict, data, device: torch.device, args):
        from sslfast.data_pipelines import preset
        from sslfast.eval import KNNMonitor, LinearProbeEvaluator, normalizer
        from sslfast.train.setup import ReferenceFeed, build_run, build_step, first

        self.recipe, self.device, self.args = recipe, device, args
        train, test = data
        self.cfg = recipe_config(recipe, overrides)
        self.run = build_run(self.cfg, device=device, data=(train, test))
        self.step = build_step(self.run)
        run = self.run
        self.feed = ReferenceFeed(run, train.images, train.labels) if recipe.pipeline == "reference" else None
        self.images = train.images.to(device) if self.feed is None else None
        self.eval_patches = args.eval_patches if args.eval_patches is not None else recipe.eval_patches
        if args.quick and args.eval_patches is None:
            self.eval_patches = min(self.eval_patches, 2)
        amp = self.step.amp_dtype
        transform = normalizer(run.views[0].mean, run.views[0].std)
        bank = first(train, args.knn_train)
        train_d, test_d = train.to(device), test.to(device)
        self.knn = KNNMonitor(
            bank.images.to(device),
            bank.labels.to(device),
            test_d.images,
            test_d.labels,
            transform=transform,
            k=min(200, len(bank)),
            temperature=0.1,
            batch_size=1024,
            device=device,
            autocast_dtype=amp,
            num_classes=10,
        )
        self.probe = LinearProbeEvaluator(
            train_d.images,
            train_d.labels,
            test_d.images,
            test_d.labels,
            transform=transform,
            patch_views=preset("emp_ssl", n_patches=self.eval_patches) if self.eval_patches else None,
            device=device,
            autocast_dtype=amp,
            epochs=args.probe_epochs,
            num_classes=10,
        )
        spec = run.spec
        self.config = {
            "method": spec.name,
            "epochs": spec.epochs,
            "batch_size": run.global_batch,
            "lr": run.base_lr,
            "warmup_steps": run.warmup_steps,
            "optimizer": spec.optimizer,
            "weight_decay": spec.weight_decay,
            "num_views": len(run.views),
            "backbone": self.cfg.backbone,
            "backbone_kwargs": _backbone_kwargs(self.cfg),
            "loss_backend": "reference" if recipe.pipeline == "reference" else self.cfg.backend,
            "compiled": bool(run.compile),
            "amp": str(amp),
            "channels_last": self.step.channels_last,
            "augmentation": "fused on-device views" if self.feed is None else "CPU DataLoader + PIL per image",
            "linear_probe_features": self.probe.protocol,
            "knn_features": "whole image",
            "train_config": dataclasses.asdict(self.cfg),
            "source": recipe.source,
        }

    def reset(self, seed: int) -> None:
        """A freshly seeded model loaded *into* the compiled one: no recompilation between runs."""
        self.run.model.load_state_dict(self.run.fresh_weights(seed))
        self.run.optimizer.state.clear()
        self.run.cfg = dataclasses.replace(self.run.cfg, seed=seed)  # the data order of this seed
        self.step.step, self.step.seed = 0, seed
        self.step.guard.reset(self.device, step=0)  # the divergence guard watches this run only

    def _batches(self, epoch: int):
        from sslfast.train.setup import device_batches

        if self.feed is None:
            return device_batches(self.run, self.images, epoch)
        return self.feed.batches(epoch)

    def train_step(self, batch) -> None:
        if self.feed is None:
            self.step(batch)
        else:
            self.step.run_views(batch)

    def warm_up(self, steps: int) -> float:
        from sslfast._device import sync

        t0 = time.perf_counter()
        for i, batch in enumerate(self._batches(0)):
            if i >= steps:
                break
            self.train_step(batch)
        sync(self.device)
        return time.perf_counter() - t0

    def close(self) -> None:
        if self.feed is not None:
            self.feed.close()

    def run_seed(self, seed: int, thresholds, max_seconds: float | None = None, probe_init: bool = False) -> dict:
        self.reset(seed)
        timer, eval_s = Timer(self.device), 0.0
        curve, knn_curve = [], []
        backbone = self.run.model.backbone
        if probe_init:
            t0 = time.perf_counter()
            curve.append([0.0, 0, self.probe(backbone)])
            if self.recipe.knn_every:
                knn_curve.append([0.0, 0, self.knn(backbone)])
            eval_s += time.perf_counter() - t0
        epochs = self.run.spec.epochs
        probes = {e for e in self.recipe.probe_epochs if e < epochs} | {epochs}
        guard = None
        for epoch in range(1, epochs + 1):
            self.run.model.train()
            timer.start()
            for batch in self._batches(epoch):
                self.train_step(batch)
            timer.stop()
            # divergence guard: the device-side finite flag, read once per epoch outside the clock
            guard = self.step.guard.read()
            if not guard.finite:
                break  # no probe of a diverged network, and no threshold crossing
            over_budget = max_seconds is not None and timer.read() >= max_seconds
            last = epoch == epochs or over_budget
            knn_due = self.recipe.knn_every and (epoch % self.recipe.knn_every == 0 or last)
            if knn_due or epoch in probes or last:
                seconds = timer.read()
                t0 = time.perf_counter()
                if knn_due:
                    knn_curve.append([seconds, epoch, self.knn(backbone)])
                if epoch in probes or last:
                    curve.append([seconds, epoch, self.probe(backbone)])
                eval_s += time.perf_counter() - t0
            if over_budget:
                break
        diverged = guard is not None and not guard.finite
        return {
            "recipe": self.recipe.name,
            "pipeline": self.recipe.pipeline,
            "seed": seed,
            "diverged": diverged,
            "divergence": guard.describe() if diverged else None,
            "backbone": self.cfg.backbone,
            "curve": curve,
            "knn_curve": knn_curve,
            "thresholds": crossings(curve, thresholds),
            "knn_thresholds": crossings(knn_curve, thresholds),
            "final_linear_top1": curve[-1][2] if curve and not diverged else None,
            "train_seconds": timer.read(),
            "eval_seconds": eval_s,
            "steps": self.step.step,
            "epochs_run": epoch,
            "max_train_seconds": max_seconds,
            "config": self.config,
        }


def _backbone_kwargs(cfg) -> dict:
    from sslfast.train.setup import backbone_kwargs

    return {k: v for k, v in backbone_kwargs(cfg).items() if k != "img_size"}


def crossings(curve: list, thresholds) -> dict:
    """First (seconds, epoch) at which top1 ≥ each threshold; None if never. The untrained
    network's point (epoch 0, from --probe-init) is a floor, never a crossing."""
    out = {}
    for t in thresholds:
        hit = next((p for p in curve if p[1] > 0 and p[2] >= t), None)
        out[f"{t:g}"] = None if hit is None else {"seconds": hit[0], "epoch": hit[1]}
    return out


def summarise(rows: list[dict]) -> list[dict]:
    """Per recipe over seeds: final accuracy, training seconds and, per threshold, how many seeds
    crossed it and the seconds to cross (mean ± sample std over the seeds that did)."""
    out = []
    for name in dict.fromkeys(r["recipe"] for r in rows):
        group = [r for r in rows if r["recipe"] == name]
        finals = [r["final_linear_top1"] for r in group if r["final_linear_top1"] is not None]
        thresholds = {}
        for key in group[0]["thresholds"]:
            hits = [r["thresholds"][key] for r in group if r["thresholds"].get(key)]
            thresholds[key] = {
                "seeds_reached": len(hits),
                "seconds_mean_std": mean_std([h["seconds"] for h in hits]),
                "epoch_mean": mean_std([h["epoch"] for h in hits])[0],
            }
        out.append(
            {
                "recipe": name,
                "runs": len(group),
                "final_linear_top1_mean_std": mean_std(finals),
                "train_seconds_mean_std": mean_std([r["train_seconds"] for r in group]),
                "thresholds": thresholds,
            }
        )
    return out


def _seeds(recipe: Recipe, args) -> int:
    if recipe.pipeline == "reference" and args.reference_seeds is not None:
        return args.reference_seeds
    return args.seeds


def _budget(recipe: Recipe, args) -> float | None:
    if recipe.pipeline == "reference" and args.reference_max_train_seconds is not None:
        return args.reference_max_train_seconds
    return args.max_train_seconds


# --quick: a reduced run for CPUs and tests (given values win)
QUICK = dict(
    subset=512,
    test_subset=256,
    epochs=2,
    batch_size=64,
    width=8,
    num_views=4,
    vit_depth=2,
    vit_dim=48,
    proj_hidden=[64],
    proj_out=32,
    seeds=1,
    warmup_steps=2,
    knn_train=512,
    probe_epochs=30,
)
DEFAULTS = dict(seeds=3, warmup_steps=20, knn_train=10_000, probe_epochs=100)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line, with ``--quick``'s reduced settings filled in where not given."""
    from sslfast.train.config import add_config_flags

    p = argparse.ArgumentParser(
        prog="sslfast bench tta", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--recipe",
        action="append",
        choices=sorted(RECIPES),
        help=f"recipes to run (repeatable; default: {', '.join(DEFAULT_RECIPES)})",
    )
    p.add_argument(
        "--seeds", type=int, default=None, help="timed runs per recipe after one warm-up (default 3; quick 1)"
    )
    p.add_argument(
        "--reference-seeds",
        type=int,
        default=None,
        help="timed runs of reference recipes (default: --seeds); the slow reference may need fewer",
    )
    p.add_argument(
        "--probe-init",
        action="store_true",
        help="also probe the untrained network (epoch 0, 0 s): the floor that training must beat",
    )
    p.add_argument("--test-subset", type=int, default=None, help="evaluate on the first N test images")
    p.add_argument(
        "--max-train-seconds",
        type=float,
        default=None,
        help="stop a run after the epoch whose training clock passes this budget (thresholds not crossed "
        "by then are reported as not reached; a slow reference then gives a lower bound on the ratio)",
    )
    p.add_argument(
        "--reference-max-train-seconds",
        type=float,
        default=None,
        help="the same budget for reference recipes only (default: --max-train-seconds)",
    )
    p.add_argument("--thresholds", type=float, nargs="*", default=list(DEFAULT_THRESHOLDS))
    p.add_argument(
        "--knn-train", type=int, default=None, help="train images in the kNN monitor's bank (default 10000; quick 512)"
    )
    p.add_argument(
        "--probe-epochs", type=int, default=None, help="linear-probe optimisation epochs (default 100; quick 30)"
    )
    p.add_argument(
        "--eval-patches",
        type=int,
        default=None,
        help="linear probe on the mean embedding of this many random patches per image (EMP-SSL's "
        f"evaluation; 0: whole image; default: the recipe's, {EMP_EVAL_PATCHES} for EMP-SSL, 2 with --quick)",
    )
    p.add_argument(
        "--warmup-steps", type=int, default=None, help="untimed steps of the warm-up run (default 20; quick 2)"
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="reduced run: synthetic 512 images, width-8 ResNet / 2-block 48-wide ViT, 2 epochs, 1 seed",
    )
    p.add_argument("--out", default=None, help="results folder (default bench/results/)")
    add_config_flags(p, exclude=NOT_FLAGS, group="recipe overrides (sslfast train options)")
    args = p.parse_args(argv)
    if args.quick:
        args.data = args.data or ("synthetic" if args.data_root is None else "cifar10")
        for k, v in QUICK.items():
            if getattr(args, k) is None:
                setattr(args, k, v)
    for k, v in DEFAULTS.items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    args.data = args.data or "cifar10"
    if args.data not in ("cifar10", "synthetic"):
        p.error(f"--data must be 'cifar10' or 'synthetic', got {args.data!r}")
    for name in ("seeds", "knn_train", "probe_epochs"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    if args.reference_seeds is not None and args.reference_seeds < 0:
        p.error(f"--reference-seeds must be at least 0, got {args.reference_seeds}")
    return args


def load_data(args):
    """(train, test, label): CIFAR-10 (--data-root, $SSLFAST_DATA, ../shared/data; or a subset .npz
    written by ``sslfast.data_pipelines.cifar_subset`` as --data-root) or synthetic."""
    from sslfast.data_pipelines.cifar_subset import is_subset
    from sslfast.data_pipelines.datasets import DatasetError
    from sslfast.train.config import TrainConfig
    from sslfast.train.setup import first
    from sslfast.train.setup import load_data as setup_load_data

    cfg = TrainConfig(data=args.data, data_root=args.data_root, synthetic_size=args.subset or 5000)
    try:
        train, test = setup_load_data(cfg, search=True)
    except DatasetError as e:
        raise SystemExit(
            f"sslfast bench tta: error: {e}; pass --data-root or set SSLFAST_DATA, or use --data synthetic"
        ) from None
    if args.data != "cifar10":
        label = "synthetic (class-structured, 32x32)"
    elif is_subset(args.data_root):
        label = f"CIFAR-10 subset {args.data_root} ({len(train)} train / {len(test)} test images)"
    else:
        label = "CIFAR-10"
    return first(train, args.subset), first(test, args.test_subset), label


def main(argv: list[str] | None = None) -> int:
    from sslfast.train.config import ConfigError, config_overrides
    from sslfast.train.setup import resolve_device

    args = parse_args(argv)
    overrides = config_overrides(args)
    for name in ("data", "data_root", "subset", "synthetic_size"):  # the speed run loads the data once
        overrides.pop(name, None)
    try:
        device = resolve_device(args.device)
    except ConfigError as e:
        raise SystemExit(f"sslfast bench tta: error: {e}") from None
    train, test, data_label = load_data(args)
    rows, warmups = [], {}
    names = args.recipe or list(DEFAULT_RECIPES)
    notes = [f"data: {data_label}" + (f", first {len(train)} train / {len(test)} test images" if args.subset else "")]
    if device.type != "cuda":
        notes.append("CPU run: evidence that the harness runs end to end, not a speed or accuracy result")
    if args.quick:
        notes.append("quick: reduced run (tiny model, few epochs)")
    planned = sum(_seeds(RECIPES[n], args) for n in names)
    source_hash = code_hash()  # once: what ran, even if the checkout is edited during a long run

    def payload(done: bool) -> dict:
        progress = [] if done else [f"incomplete: {len(rows)} of {planned} timed runs finished when this was written"]
        return {
            "quick": args.quick,
            "notes": notes + progress,
            "code_hash": source_hash,
            "thresholds": args.thresholds,
            "warmup_seconds": warmups,
            "summary": summarise(rows),
            "results": rows,
        }

    path = None  # rewritten after every run, so a command cut off by a time limit keeps its finished runs
    for name in names:
        recipe = RECIPES[name]
        try:
            runner = RecipeRunner(recipe, overrides, (train, test), device, args)
        except ConfigError as e:
            raise SystemExit(f"sslfast bench tta: error: recipe {name}: {e}") from None
        try:
            warmups[name] = runner.warm_up(args.warmup_steps)
            for seed in range(_seeds(recipe, args)):
                row = runner.run_seed(seed, args.thresholds, _budget(recipe, args), args.probe_init)
                rows.append(row)
                if row["diverged"]:
                    notes.append(f"{name} seed {seed} DIVERGED: {row['divergence']}")
                    print(f"{name} seed {seed}: DIVERGED: {row['divergence']}", file=sys.stderr)
                else:
                    print(
                        f"{name} seed {seed}: {row['train_seconds']:.1f} s training, final linear top-1 "
                        f"{row['final_linear_top1']:.2f}%, thresholds {row['thresholds']}",
                        file=sys.stderr,
                    )
                if len(rows) < planned:
                    path = write_results("tta", payload(False), args.out, device, path=path)
        finally:
            runner.close()
    path = write_results("tta", payload(True), args.out, device, path=path)
    for s in summarise(rows):
        print(
            f"{s['recipe']}: {s['runs']} runs, final linear top-1 {s['final_linear_top1_mean_std']}, "
            f"training seconds {s['train_seconds_mean_std']}"
        )
    print(f"results: {path}")
    diverged = [f"{r['recipe']} seed {r['seed']}" for r in rows if r["diverged"]]
    if diverged:  # a broken run is never reported as a result: the command fails
        print(f"sslfast bench tta: error: diverged (non-finite loss): {', '.join(diverged)}", file=sys.stderr)
        return 1
    return 0
