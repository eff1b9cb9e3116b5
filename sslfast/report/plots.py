"""PNG plots for `sslfast report`, one function per benchmark kind.

matplotlib is imported inside the functions and drawn through ``matplotlib.figure.Figure`` (the
Agg canvas), so no pyplot state or global backend is touched. Each function draws one run (one
JSON) and returns the written file names (possibly none).
"""

from __future__ import annotations

import math
from pathlib import Path

from .schema import ReportError, Run, row_seed
from .tables import AUGMENT_PATHS, convergence_groups, epoch_pairs, loss_elements, tta_groups, tta_thresholds

PNG_META = {"Software": None}  # no version string in the file: the same data gives the same bytes


def _figure(width: float, height: float):
    try:
        from matplotlib.figure import Figure
    except ModuleNotFoundError:
        raise ReportError(
            "matplotlib is needed for the plots: pip install 'sslfast[bench]' (or pass --no-plots)"
        ) from None
    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def _title(run: Run, what: str) -> str:
    env = run.env
    return f"{what}\n{env['device']} · torch {env['torch']} · triton {env['triton'] or '—'} · {run.commit}"


def _legend(ax, size: int) -> None:
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=size)


def _save(fig, out: Path, name: str) -> list[str]:
    fig.savefig(out / name, format="png", metadata=PNG_META)
    return [name]


def losses(run: Run, out: Path, stem: str) -> list[str]:
    rows = [r for r in run.doc["results"] if "median_ms" in r]
    names = sorted({r["loss"] for r in rows})
    if not names:
        return []
    written = []
    cols = min(3, len(names))
    nrows = math.ceil(len(names) / cols)
    fig = _figure(4.2 * cols, 3.2 * nrows + 0.6)
    fig.suptitle(_title(run, "speedup vs the eager reference (same run), by input size"), fontsize=9)
    for i, loss in enumerate(names):
        ax = fig.add_subplot(nrows, cols, i + 1)
        for impl, mode in sorted({(r["impl"], r["mode"]) for r in rows if r["loss"] == loss}):
            if impl == "reference":
                continue
            pts = sorted(
                (loss_elements(r), r["speedup_vs_reference"])
                for r in rows
                if r["loss"] == loss
                and r["impl"] == impl
                and r["mode"] == mode
                and r.get("speedup_vs_reference") is not None
            )
            if pts:
                ax.plot(*zip(*pts, strict=True), marker="o", label=f"{impl} {mode}")
        ax.axhline(1.0, color="grey", lw=0.8, ls=":")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(loss, fontsize=9)
        ax.set_xlabel("input elements (N·D or V·B·D)", fontsize=8)
        ax.set_ylabel("× vs reference (log)", fontsize=8)
        _legend(ax, 7)
    written += _save(fig, out, f"{stem}-speedup.png")
    if run.on_gpu:  # CPU runs record no peak memory
        fig = _figure(4.2 * cols, 3.2 * nrows + 0.6)
        fig.suptitle(_title(run, "peak memory during the call (MiB), fwd+bwd"), fontsize=9)
        for i, loss in enumerate(names):
            ax = fig.add_subplot(nrows, cols, i + 1)
            for impl in sorted({r["impl"] for r in rows if r["loss"] == loss}):
                pts = sorted(
                    (loss_elements(r), r["peak_memory_mb"])
                    for r in rows
                    if r["loss"] == loss
                    and r["impl"] == impl
                    and r["mode"] == "fwd+bwd"
                    and r.get("peak_memory_mb") is not None
                )
                if pts:
                    ax.plot(*zip(*pts, strict=True), marker="o", label=impl)
            ax.set_xscale("log")
            ax.set_title(loss, fontsize=9)
            ax.set_xlabel("input elements (N·D or V·B·D)", fontsize=8)
            ax.set_ylabel("peak MiB", fontsize=8)
            _legend(ax, 7)
        written += _save(fig, out, f"{stem}-memory.png")
    return written


def augment(run: Run, out: Path, stem: str) -> list[str]:
    labels, values, colors = [], [], []
    for r in run.doc["results"]:
        for p in AUGMENT_PATHS:
            if p in r and math.isfinite(r[p]["views_per_s"]) and r[p]["views_per_s"] > 0:
                labels.append(f"{r['preset']}\n{p}: {r[p]['backend']}")
                values.append(r[p]["views_per_s"])
                colors.append({"fused": "tab:blue", "dali": "tab:green", "baseline": "tab:grey"}[p])
    if not values:
        return []
    fig = _figure(8, 0.55 * len(values) + 1.4)
    ax = fig.add_subplot()
    ax.barh(range(len(values)), values, color=colors)
    ax.set_yticks(range(len(values)), labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("views / s (log)")
    target = (run.doc.get("targets") or {}).get("fused_views_per_s")
    if target:
        ax.axvline(target, color="tab:red", ls="--", lw=1, label=f"GPU target {target:,.0f} views/s")
        _legend(ax, 7)
    ax.set_title(_title(run, "augmentation throughput"), fontsize=9)
    return _save(fig, out, f"{stem}-throughput.png")


def epoch(run: Run, out: Path, stem: str) -> list[str]:
    pairs = epoch_pairs(run)
    fig = _figure(max(5, 1.4 * len(pairs) + 2), 3.8)
    ax = fig.add_subplot()
    labels = [f"{m}\n{b}" if b else m for m, b in pairs]
    for j, (pipeline, color) in enumerate((("ours", "tab:blue"), ("reference", "tab:grey"))):
        pts = [
            (i + (j - 0.5) * 0.38, by[pipeline]["s_per_epoch"]) for i, by in enumerate(pairs.values()) if pipeline in by
        ]
        if pts:
            ax.bar(*zip(*pts, strict=True), width=0.38, color=color, label=pipeline)
        for i, by in enumerate(pairs.values()):
            if pipeline not in by:  # say so rather than draw a zero-height bar
                ax.text(
                    i + (j - 0.5) * 0.38,
                    0,
                    f"no {pipeline}\nin this run",
                    ha="center",
                    va="bottom",
                    fontsize=7,
                    rotation=90,
                )
    ax.set_xlim(-0.7, len(pairs) - 0.3)
    ax.set_xticks(range(len(pairs)), labels, fontsize=8)
    ax.set_ylabel("seconds / epoch (lower is better)")
    _legend(ax, 8)
    ax.set_title(_title(run, "epoch time, ours vs reference (same run)"), fontsize=9)
    return _save(fig, out, f"{stem}-time.png")


def tta(run: Run, out: Path, stem: str) -> list[str]:
    groups = tta_groups(run)
    backbones = sorted({b for b, _, _ in groups})
    recipes = sorted({r for _, _, r in groups})
    colors = {r: f"C{i % 10}" for i, r in enumerate(recipes)}
    fig = _figure(6 * len(backbones), 4.4)
    fig.suptitle(_title(run, "accuracy vs training wall-clock, ours vs reference (each seed)"), fontsize=9)
    for i, backbone in enumerate(backbones):
        ax = fig.add_subplot(1, len(backbones), i + 1)
        for (b, pipeline, recipe), runs in groups.items():
            if b != backbone:
                continue
            init = [acc for r in runs for s, _epoch, acc in r["curve"] if s == 0]
            if init:  # --probe-init: the untrained network's accuracy, the floor (0 s has no log-x)
                ax.axhline(
                    sum(init) / len(init),
                    color=colors[recipe],
                    lw=0.8,
                    ls="-.",
                    alpha=0.6,
                    label=f"{recipe} untrained",
                )
            for k, r in enumerate(runs):
                pts = [(s, acc) for s, _epoch, acc in r["curve"] if s > 0]
                if pts:
                    ax.plot(
                        *zip(*pts, strict=True),
                        color=colors[recipe],
                        lw=1.2,
                        ls="-" if pipeline == "ours" else "--",
                        label=f"{recipe} ({pipeline})" if k == 0 else None,
                    )
        for key in tta_thresholds(run):
            ax.axhline(float(key), color="grey", lw=0.7, ls=":")
        ax.set_xscale("log")
        ax.set_xlabel("training seconds (log; evaluation excluded)", fontsize=8)
        ax.set_ylabel("top-1 %", fontsize=8)
        ax.set_title(backbone, fontsize=9)
        _legend(ax, 7)
    return _save(fig, out, f"{stem}-accuracy.png")


def convergence(run: Run, out: Path, stem: str) -> list[str]:
    """Per recipe, one panel per backbone: the kNN gain over the untrained network after each
    epoch (epoch 0: the untrained network, gain 0; the target dotted), the mean over its seeds with
    their range shaded (the untrained floor differs per seed, so gains are comparable where
    accuracies are not); below it the training loss scaled to [0, 1] per run (the losses differ
    in size and sign), averaged over the seeds. Runs with ``--set`` overrides are dashed and named
    with them; a diverged seed is drawn and named on its own, its losses stopping at its last finite
    one. A sweep (dozens of variations) gets no plot: its table carries it."""
    if run.doc.get("sweep"):
        return []
    rows = run.doc["results"]
    backbones = sorted({r["backbone"] for r in rows})
    if not rows:
        return []
    colors = {m: f"C{i % 10}" for i, m in enumerate(dict.fromkeys(r["method"] for r in rows))}
    # losses against epochs, not steps, so runs at other batch sizes (TiCo's 3,750 steps) line up
    images = (run.doc.get("config") or {}).get("train_size")  # whole batches per epoch
    fig = _figure(6.5 * len(backbones), 8)
    n_seeds = len({row_seed(r, run.doc) for r in rows})
    seeds = "one seed" if n_seeds == 1 else f"mean over {n_seeds} seeds, their range shaded"
    fig.suptitle(_title(run, f"convergence: kNN gain per epoch and training loss ({seeds})"), fontsize=9)
    targets = sorted({r["target_gain_points"] for r in rows if r.get("target_gain_points") is not None})
    for i, backbone in enumerate(backbones):
        acc_ax = fig.add_subplot(2, len(backbones), i + 1)
        loss_ax = fig.add_subplot(2, len(backbones), len(backbones) + i + 1)
        for target in targets:
            acc_ax.axhline(target, color="0.6", ls=":", lw=0.8)
        acc_ax.axhline(0, color="0.3", lw=0.6)
        for (method, _b, _batch, changes), group in convergence_groups(run).items():
            if group[0]["backbone"] != backbone:
                continue
            name = method + (f" ({changes})" if changes else "")
            style = dict(color=colors[method], ls="--" if changes else "-", lw=1.2)
            finite = [r for r in group if not r["diverged"]]
            for r in (r for r in group if r["diverged"]):  # each diverged seed on its own, named
                label = f"{name} DIVERGED (seed {row_seed(r, run.doc)})"
                acc_ax.plot(*zip(*_gains(r), strict=True), marker="x", ms=4, label=label, **style)
                _plot_loss(loss_ax, [r], images, style)
            if not finite:
                continue
            epochs, per_epoch = _at_shared([dict(_gains(r)) for r in finite])
            label = name + (f" ({len(finite)} seeds)" if len(finite) > 1 else "")
            acc_ax.plot(epochs, [sum(v) / len(v) for v in per_epoch], marker="o", ms=3, label=label, **style)
            if len(finite) > 1:
                lo, hi = [min(v) for v in per_epoch], [max(v) for v in per_epoch]
                acc_ax.fill_between(epochs, lo, hi, color=style["color"], alpha=0.12, lw=0)
            _plot_loss(loss_ax, finite, images, style)
        acc_ax.set_xlabel("epoch (0: untrained)", fontsize=8)
        acc_ax.set_ylabel("kNN top-1 gain over the untrained network (points)", fontsize=8)
        acc_ax.set_title(backbone, fontsize=9)
        _legend(acc_ax, 6)
        loss_ax.set_xlabel("epoch" if images else "step", fontsize=8)
        loss_ax.set_ylabel("training loss, scaled to [0, 1] per run", fontsize=8)
    return _save(fig, out, f"{stem}-knn.png")


def _gains(row: dict) -> list[tuple[float, float]]:
    """(epoch, kNN gain over the untrained network), from (0, 0)."""
    floor = row["untrained_knn_top1"]
    return [(0, 0.0)] + [(e, a - floor) for e, a in row["knn_curve"]]


def _plot_loss(ax, group: list[dict], images: int | None, style: dict) -> None:
    """The runs' losses, each scaled to [0, 1] (finite values only), averaged over the runs at
    the steps they share, against epochs (steps without ``images``)."""
    scaled = []
    for r in group:
        per_epoch = images // r["batch_size"] if images and r.get("batch_size") else 0
        losses = [(s / per_epoch if per_epoch else s, v) for s, v in r.get("loss_curve", []) if math.isfinite(v)]
        if len(losses) > 1:
            lo, hi = min(v for _, v in losses), max(v for _, v in losses)
            scaled.append({s: (v - lo) / (hi - lo) if hi > lo else 0.0 for s, v in losses})
    if not scaled:
        return
    steps, per_step = _at_shared(scaled)
    if not steps:  # no logged step in common (another --log-every): each run on its own
        for c in scaled:
            ax.plot(list(c), list(c.values()), **style)
        return
    ax.plot(steps, [sum(v) / len(v) for v in per_step], **style)


def _at_shared(curves: list[dict]) -> tuple[list, list[list[float]]]:
    """The x values every curve (x -> y) has, sorted, and at each the curves' y values."""
    xs = sorted(set.intersection(*(set(c) for c in curves)))
    return xs, [[c[x] for c in curves] for x in xs]


def gate(run, out, stem) -> list[str]:
    return []  # a pass/fail table: nothing to plot


PLOT = {"losses": losses, "augment": augment, "epoch": epoch, "tta": tta, "convergence": convergence, "gate": gate}
