"""Markdown tables for `sslfast report`, one renderer per benchmark kind.

Each renderer takes one validated run (one JSON) and returns ``(full, summary)`` markdown: the
full table goes to report.md, the summary to the README. Every row names its device, torch,
triton and commit. Ratios are those stored in the run, or taken between rows of the same run;
none is ever formed across two files.
"""

from __future__ import annotations

import json
import math
import statistics
from collections import Counter

from .schema import Run, loss_size, mean_std, row_seed

RUN_COLS = ["device", "torch", "triton", "commit"]
# The goals for one H100 (time-to-accuracy: mean over >= 3 seeds).
TTA_GOALS_S = {"85": 45.0, "90": 180.0}
TTA_MIN_SEEDS = 3


def num(x, unit: str = "") -> str:
    """A readable number: '—' when absent, 'n/a' when not finite."""
    if x is None:
        return "—"
    if not math.isfinite(x):
        return "n/a"
    a = abs(x)
    text = f"{x:,.0f}" if a >= 100 else f"{x:.1f}" if a >= 10 else f"{x:.2f}" if a >= 1 else f"{x:.3g}"
    return text + unit


def ratio(x) -> str:
    return "—" if x is None else num(x, "×")


def run_cells(run: Run) -> list[str]:
    env = run.env
    return [env["device"], env["torch"], env["triton"] or "—", f"`{run.commit}`"]


def table(header: list[str], rows: list[list[str]]) -> str:
    def esc(cell) -> str:
        return str(cell).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(esc(c) for c in r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


# --- losses -----------------------------------------------------------------------------------


def loss_elements(row: dict) -> int:
    """Input elements (N·D or V·B·D): the x axis of the speedup plot."""
    return math.prod(row[k] for k in ("V", "B", "N", "D") if k in row)


def short_size(row: dict) -> str:
    """The size label without N where V and B give it (N = V·B)."""
    return loss_size({k: v for k, v in row.items() if not (k == "N" and "V" in row and "B" in row)})


def cost_cell(r: dict, gpu: bool, short: bool = False) -> str:
    """GPU: the larger fraction of the device's peak, compute or memory; CPU: the reference's FLOPs
    ÷ this row's (the algorithmic gain). '—' where the run has no cost model or no known peak."""
    if gpu:
        f, b = r.get("flops_peak_fraction"), r.get("bytes_peak_fraction")
        if f is None and b is None:
            return "—"
        bound = ("mem" if short else "memory") if (b or 0) >= (f or 0) else ("flop" if short else "compute")
        return f"{max(f or 0, b or 0):.0%} {bound}" if short else f"{max(f or 0, b or 0):.0%} ({bound})"
    if r["impl"] in ("reference", "reference_compiled", "lightly"):
        return "—"
    return ratio(r.get("flop_ratio_vs_reference"))


def run_line(run: Run) -> str:
    """Device, versions and commit of a run, for tables that leave them out of their rows."""
    env = run.env
    return f"Measured on {env['device']}, torch {env['torch']}, triton {env['triton'] or '—'}, commit `{run.commit}`.\n"


def losses(run: Run) -> tuple[str, str]:
    gpu = run.on_gpu
    cost_head = "% of peak" if gpu else "FLOP ratio vs reference"
    full, summary = [], {}
    for r in run.doc["results"]:
        if "error" in r:
            full.append(
                [r["loss"], loss_size(r), r["mode"], r["impl"], f"failed: {r['error']}", *[""] * 6, *run_cells(run)]
            )
            continue
        mem = num(r.get("peak_memory_mb")) if gpu else "not measured on CPU"
        full.append(
            [
                r["loss"],
                loss_size(r),
                r["mode"],
                r["impl"],
                num(r["median_ms"]),
                f"{num(r.get('p20_ms'))}–{num(r.get('p80_ms'))}",
                mem,
                ratio(r.get("speedup_vs_reference")),
                ratio(r.get("speedup_vs_reference_compiled")),
                ratio(r.get("speedup_vs_lightly")),
                cost_cell(r, gpu),
                *run_cells(run),
            ]
        )
        if r["mode"] == "fwd+bwd" and r["impl"] not in ("reference", "reference_compiled", "lightly"):
            summary.setdefault(r["loss"], []).append(
                [
                    short_size(r),
                    r["impl"],
                    num(r["median_ms"]),
                    ratio(r.get("speedup_vs_reference")),
                    ratio(r.get("speedup_vs_lightly")),
                    cost_cell(r, gpu, short=True),
                ]
            )
    head = [
        "loss",
        "size",
        "mode",
        "impl",
        "median ms",
        "p20–p80 ms",
        "peak MiB",
        "× vs reference",
        "× vs reference compiled",
        "× vs lightly",
        cost_head,
        *RUN_COLS,
    ]
    text = table(head, full)
    notes = list(run.doc.get("notes", []))
    text += "".join(f"\n- {n}" for n in notes) + ("\n" if notes else "")
    # The README summary fits 80 columns: one small table per loss (fwd+bwd of our backends), the
    # run's device, versions and commit on a line above them.
    head = ["size", "impl", "fwd+bwd ms", "× ref", "× lightly", "% peak" if gpu else "FLOP ÷"]
    legend = (
        "\n× ref, × lightly: forward+backward speed-up over the reference and lightly 1.6, measured side "
        "by side in this run; "
        + (
            "% peak: the larger of achieved TFLOP/s and TB/s as a fraction of the device's peak.\n"
            if gpu
            else "FLOP ÷: the reference's FLOPs ÷ ours (the algorithmic gain, sslfast/benchmarks/costs.py).\n"
        )
    )
    warning = run.env.get("load_warning")
    short = (
        run_line(run)
        + "".join(f"\n`{loss}`:\n\n" + table(head, rows) for loss, rows in summary.items())
        + legend
        + (f"\n**Note:** {warning}.\n" if warning else "")
        if summary
        else "No fused-implementation rows in this run.\n"
    )
    return text, short


# --- augment ----------------------------------------------------------------------------------

AUGMENT_PATHS = ("fused", "dali", "baseline")


def augment(run: Run) -> tuple[str, str]:
    rows = []
    for r in run.doc["results"]:
        for p in AUGMENT_PATHS:
            if p in r:
                x = r[p]
                rows.append(
                    [
                        f"{r['preset']} ({r['n_views']}×{r['view_size']}px)",
                        p,
                        x["backend"],
                        num(x.get("n_images")),
                        num(x["views_per_s"]),
                        "1× (baseline)" if p == "baseline" else ratio(x.get("speedup_vs_baseline")),
                        *run_cells(run),
                    ]
                )
    text = table(["preset", "path", "backend", "images", "views/s", "× vs baseline", *RUN_COLS], rows)
    # The README summary fits 80 columns: the environment above the table, the backends below it.
    backends = sorted({f"{r[1]}: {r[2]}" for r in rows})
    short = (
        run_line(run)
        + "\n"
        + table(["preset", "path", "views/s", "× baseline"], [[r[0], r[1], r[4], r[5]] for r in rows])
        + "".join(f"\n- {b}" for b in backends)
        + "\n"
    )
    note = (run.doc.get("targets") or {}).get("note")
    if note:
        text += f"\n- {note}\n"
        short += f"\n- {note}\n"
    return text, short


# --- epoch ------------------------------------------------------------------------------------


def epoch_pairs(run: Run) -> dict[tuple[str, str], dict[str, dict]]:
    """(method, backbone) -> {pipeline: row}, within this run only."""
    pairs: dict[tuple[str, str], dict[str, dict]] = {}
    for r in run.doc["results"]:
        pairs.setdefault((r["method"], r.get("backbone", "")), {})[r["pipeline"]] = r
    return pairs


def epoch(run: Run) -> tuple[str, str]:
    rows = []
    for (method, backbone), by in epoch_pairs(run).items():
        ours, ref = by.get("ours"), by.get("reference")
        speedup = ref["s_per_epoch"] / ours["s_per_epoch"] if ours and ref and ours["s_per_epoch"] > 0 else None
        rows.append(
            [
                method,
                backbone or "—",
                num(ours and ours["images_per_s"]),
                num(ours and ours["s_per_epoch"], " s"),
                num(ref and ref["images_per_s"]),
                num(ref and ref["s_per_epoch"], " s"),
                ratio(speedup),
                *run_cells(run),
            ]
        )
    text = table(
        [
            "method",
            "backbone",
            "ours images/s",
            "ours s/epoch",
            "reference images/s",
            "reference s/epoch",
            "× faster than reference",
            *RUN_COLS,
        ],
        rows,
    )
    return text, text


# --- tta --------------------------------------------------------------------------------------


def mean_std_cell(values: list[float], unit: str = "") -> str:
    if not values:
        return "—"
    mean, std = mean_std(values)
    if len(values) == 1:
        return f"{num(mean, unit)} (1 seed)"
    return f"{num(mean)} ± {num(std, unit)}"


def tta_thresholds(run: Run) -> list[str]:
    keys = {k for r in run.doc["results"] for k in r["thresholds"]}
    return sorted(keys, key=float)


def tta_groups(run: Run) -> dict[tuple[str, str, str], list[dict]]:
    """(backbone, pipeline, recipe) -> runs over seeds."""
    groups: dict[tuple[str, str, str], list[dict]] = {}
    for r in run.doc["results"]:
        groups.setdefault((r["backbone"], r["pipeline"], r["recipe"]), []).append(r)
    return dict(sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1] != "ours", kv[0][2])))


def crossing_seconds(runs: list[dict], key: str) -> list[float] | None:
    """Seconds to threshold for every seed, or None when some seed never crossed it."""
    hits = [r["thresholds"].get(key) for r in runs]
    return None if any(h is None for h in hits) else [h["seconds"] for h in hits]


def _crossing_cell(runs: list[dict], key: str) -> str:
    secs = crossing_seconds(runs, key)
    if secs is None:
        reached = sum(r["thresholds"].get(key) is not None for r in runs)
        return f"not reached ({reached}/{len(runs)} seeds)"
    epochs = [r["thresholds"][key]["epoch"] for r in runs]
    return f"{mean_std_cell(secs, ' s')} (epoch {num(statistics.mean(epochs))})"


def tta_speedup(run: Run, backbone: str, runs: list[dict], key: str) -> str:
    """Reference mean seconds / ours mean seconds to ``key``, both from this run, same backbone,
    and only when there is exactly one reference recipe to compare with.

    A reference seed that never crossed ``key`` would have needed more than its whole training
    time, so that time stands in for its crossing and the ratio is a lower bound ("> x×").
    """
    refs = [g for (b, p, _), g in tta_groups(run).items() if b == backbone and p == "reference"]
    mine = crossing_seconds(runs, key)
    if len(refs) != 1 or not mine or statistics.mean(mine) <= 0:
        return ratio(None)
    hits = [r["thresholds"].get(key) for r in refs[0]]
    theirs = [h["seconds"] if h else r["train_seconds"] for h, r in zip(hits, refs[0])]
    x = statistics.mean(theirs) / statistics.mean(mine)
    return ratio(x) if all(hits) else f"> {ratio(x)} (reference not reached)"


def tta_goals(run: Run) -> list[str]:
    """Goal verdicts (one H100, >= 3 seeds); judged only on GPU runs."""
    if not run.on_gpu:
        return [f"CPU run: the time-to-accuracy goals ({_goal_text()}) are for one H100 and are not judged here."]
    lines = []
    for (backbone, pipeline, recipe), runs in tta_groups(run).items():
        if pipeline != "ours":
            continue
        for key, limit in TTA_GOALS_S.items():
            secs = crossing_seconds(runs, key)
            if secs is None:
                verdict = "not met: not reached by every seed"
            elif len(runs) < TTA_MIN_SEEDS:
                verdict = f"not judged: {len(runs)} seed(s), the goal needs ≥ {TTA_MIN_SEEDS}"
            else:
                m = statistics.mean(secs)
                verdict = f"{'met' if m <= limit else 'not met'}: {mean_std_cell(secs, ' s')} over {len(runs)} seeds"
            lines.append(f"{recipe} / {backbone}: ≥ {key}% in ≤ {num(limit)} s on {run.env['device']}: {verdict}")
    return lines


def _goal_text() -> str:
    return ", ".join(f"≥ {k}% in ≤ {num(v)} s" for k, v in TTA_GOALS_S.items())


def backbone_label(backbone: str, kwargs: dict | None) -> str:
    """The backbone with its size overrides (a width-16 ResNet is not the published ResNet-18)."""
    return backbone + (f" ({', '.join(f'{k}={v}' for k, v in kwargs.items())})" if kwargs else "")


def tta(run: Run) -> tuple[str, str]:
    keys = tta_thresholds(run)
    rows = []
    for (backbone, pipeline, recipe), runs in tta_groups(run).items():
        if pipeline == "reference":
            vs_ref = "(reference)"
        else:
            vs_ref = ", ".join(f"{k}%: {tta_speedup(run, backbone, runs, k)}" for k in keys) or "—"
        top1 = [r["final_linear_top1"] for r in runs if r["final_linear_top1"] is not None]
        untrained = [acc for r in runs for sec, _epoch, acc in r["curve"] if sec == 0]
        rows.append(
            [
                recipe,
                pipeline,
                backbone_label(backbone, runs[0].get("config", {}).get("backbone_kwargs")),
                str(len(runs)),
                *(_crossing_cell(runs, k) for k in keys),
                mean_std_cell(top1, " %"),
                mean_std_cell(untrained, " %"),
                mean_std_cell([r["train_seconds"] for r in runs], " s"),
                num(statistics.mean(r["eval_seconds"] for r in runs), " s"),
                vs_ref,
                *run_cells(run),
            ]
        )
    head = [
        "recipe",
        "pipeline",
        "backbone",
        "seeds",
        *(f"s to {k}% (mean ± std)" for k in keys),
        "final linear top-1",
        "untrained top-1",
        "train s",
        "eval s (mean)",
        "× faster than reference",
        *RUN_COLS,
    ]
    protocol = [
        f"{recipe} / {backbone}: linear probe on {feats}"
        for (backbone, _p, recipe), runs in tta_groups(run).items()
        if (feats := runs[0].get("config", {}).get("linear_probe_features"))
    ]
    notes = list(run.doc.get("notes", []))
    text = table(head, rows) + "\n" + "".join(f"- {line}\n" for line in notes + protocol + tta_goals(run))
    return text, text


# --- convergence ------------------------------------------------------------------------------


def convergence_verdict(row: dict) -> str:
    """Whether a convergence run met its targets: finite loss, kNN gain over the untrained network."""
    target = row.get("target_gain_points")
    if row["diverged"] or not row["all_losses_finite"]:
        return "✗ non-finite loss"
    gain = row.get("gain_points")
    if gain is None or target is None:
        return "—"
    return f"{'✓' if gain >= target else '✗'} (target ≥ {num(target)})"


# The fields of a convergence row that say what ran, besides its recipe (or --set) and its seed.
RUN_FIELDS = ("method", "backbone", "backbone_kwargs", "epochs", "batch_size")


def recipe_key(row: dict) -> str:
    """What a convergence row ran, all but its seed: rows with equal keys are seeds of one recipe.
    Rows that record their whole ``recipe`` are keyed by it (a --set on one day's SHORT_BUDGET and
    the same values as a later default are one recipe); older rows by their --set overrides."""
    what = {"recipe": row["recipe"]} if row.get("recipe") is not None else {"overrides": row.get("overrides") or {}}
    return json.dumps({**{k: row.get(k) for k in RUN_FIELDS}, **what}, sort_keys=True, default=str)


def _off_budget(row: dict, run: Run) -> dict:
    """``{"epochs": n}`` when the row trained for other epochs than its file's (an --epochs shard
    merged into a sweep), else ``{}``."""
    epochs = (run.doc.get("config") or {}).get("epochs")
    return {"epochs": row.get("epochs")} if epochs is not None and row.get("epochs") != epochs else {}


def recipe_changes(row: dict, run: Run) -> str:
    """A row's departures from its file's recipe: its --set overrides, and its epochs when they
    differ from the file's."""
    changes = {**(row.get("overrides") or {}), **_off_budget(row, run)}
    return ", ".join(f"{k}={v}" for k, v in changes.items())


def recipe_text(row: dict, run: Run) -> str:
    """The whole recipe a row ran (sorted fields, its epochs when not the file's), or its
    --set overrides with "recipe not recorded" for rows older than the ``recipe`` field: their
    --set was relative to the short-budget recipe of their day."""
    if row.get("recipe") is None:
        return "; ".join(x for x in (recipe_changes(row, run), "recipe not recorded") if x)
    fields = {**dict(sorted(row["recipe"].items())), **_off_budget(row, run)}
    return ", ".join(f"{k}={v}" for k, v in fields.items())


def row_labels(run: Run) -> dict[str, str]:
    """recipe_key -> the label of its rows after the method name: a sweep names every row's whole
    recipe; a benchmark its --set changes, unless two different recipes of one method would read
    the same (rows merged from files of different recipes), which are then named whole too."""
    rows = run.doc["results"]
    if run.doc.get("sweep"):
        return {recipe_key(r): recipe_text(r, run) for r in rows}
    # per recipe, how its rows read in the tables (what they show, and the short label): a recipe
    # whose rows read two ways, or that reads like another recipe, is named whole
    short: dict[str, set] = {}
    for r in rows:
        short.setdefault(recipe_key(r), set()).add((json.dumps([r.get(k) for k in RUN_FIELDS]), recipe_changes(r, run)))
    reads = Counter(v for labels in short.values() for v in labels)
    labels: dict[str, str] = {}
    for r in rows:
        key = recipe_key(r)
        (only, *more) = short[key]
        labels.setdefault(key, recipe_text(r, run) if more or reads[only] > 1 else only[1])
    return labels


def convergence_groups(run: Run) -> dict[tuple, list[dict]]:
    """One recipe's runs over its seeds: (method, backbone with sizes, batch, label) -> its rows in
    file order; rows are seeds of one recipe when their ``recipe_key`` is equal."""
    labels = row_labels(run)
    groups: dict[str, list[dict]] = {}
    for r in run.doc["results"]:
        groups.setdefault(recipe_key(r), []).append(r)
    out = {}
    for k, g in groups.items():
        backbone = backbone_label(g[0]["backbone"], g[0].get("backbone_kwargs"))
        out[g[0]["method"], backbone, g[0].get("batch_size"), labels[k]] = g
    return out


def _over_seeds(group: list[dict]) -> tuple[list[float], float | None, float | None, bool]:
    """(gains, mean, sample std, every loss finite); no mean when a seed has no gain (diverged):
    the other seeds' mean would flatter the recipe."""
    gains = [r["gain_points"] for r in group if r.get("gain_points") is not None]
    mean, std = mean_std(gains) if gains and len(gains) == len(group) else (None, None)
    finite = all(r["all_losses_finite"] and not r["diverged"] for r in group)
    return gains, mean, std, finite


def _mean_cell(gains: list[float], mean: float | None, std: float | None) -> str:
    if mean is None:
        return "—"
    return f"{mean:+.1f} ± {std:.1f}" if len(gains) > 1 else f"{mean:+.1f} (one seed)"


def convergence_seed_summary(run: Run) -> tuple[str, int, int]:
    """Per recipe (method, backbone, batch, changes) over its seeds: every seed's gain, their mean
    ± sample std and how many seeds met the target; the verdict is on the mean (every loss
    finite). Returns the table, the recipes meeting their target on the mean, and their number."""
    rows, met = [], 0
    groups = convergence_groups(run)
    for (method, backbone, batch, changes), group in groups.items():
        gains, mean, std, finite = _over_seeds(group)
        target = group[0].get("target_gain_points")
        ok = finite and mean is not None and target is not None and mean >= target
        met += ok
        if not finite:
            verdict = "✗ non-finite loss"
        else:
            verdict = "—" if target is None else f"{'✓' if ok else '✗'} (target ≥ {num(target)})"
        rows.append(
            [
                method + (f" ({changes})" if changes else ""),
                backbone,
                "—" if batch is None else str(batch),
                ", ".join(str(row_seed(r, run.doc)) for r in group),
                ", ".join("—" if r.get("gain_points") is None else f"{r['gain_points']:+.1f}" for r in group),
                _mean_cell(gains, mean, std),
                "—" if target is None else f"{sum(g >= target for g in gains)} of {len(group)}",
                verdict,
            ]
        )
    head = ["method", "backbone", "batch", "seeds", "gain per seed", "mean gain ± std", "seeds at target"]
    head.append("target (on the mean)")
    return table(head, rows), met, len(groups)


def convergence(run: Run) -> tuple[str, str]:
    rows = []
    labels = row_labels(run)
    for r in run.doc["results"]:
        curve = ", ".join(num(acc) for _epoch, acc in r["knn_curve"]) or "—"
        gain = r.get("gain_points")
        changes = labels[recipe_key(r)]
        rows.append(
            [
                r["method"] + (f" ({changes})" if changes else ""),
                backbone_label(r["backbone"], r.get("backbone_kwargs")),
                str(row_seed(r, run.doc)),
                str(r["epochs"]),
                f"{r['batch_size']} ({r['steps']})" if r.get("steps") else str(r.get("batch_size", "—")),
                str(r.get("views_per_image", "—")),
                num(r["untrained_knn_top1"], " %"),
                curve,
                num(r["final_knn_top1"], " %") if r["final_knn_top1"] is not None else "—",
                "—" if gain is None else f"{gain:+.1f}",
                "yes" if r["all_losses_finite"] and not r["diverged"] else "**no**",
                convergence_verdict(r),
                num(r.get("train_seconds"), " s"),
                *run_cells(run),
            ]
        )
    head = [
        "method",
        "backbone",
        "seed",
        "epochs",
        "batch (steps)",
        "views/image",
        "untrained kNN",
        "kNN after each epoch (%)",
        "final kNN",
        "gain (points)",
        "finite loss",
        "target",
        "train s",
        *RUN_COLS,
    ]
    notes = list(run.doc.get("notes", []))
    met = sum(convergence_verdict(r).startswith("✓") for r in run.doc["results"])
    notes.append(f"{met} of {len(run.doc['results'])} runs met their target")
    groups = convergence_groups(run)
    seeded = any(len({row_seed(r, run.doc) for r in g}) > 1 for g in groups.values())
    if seeded and not run.doc.get("sweep"):  # several seeds: the verdict that counts is on each mean
        summary_table, met_mean, n_groups = convergence_seed_summary(run)
        notes.append(f"{met_mean} of {n_groups} method/backbone recipes met their target on their mean gain over seeds")
        tail = "".join(f"- {line}\n" for line in notes)
        text = table(head, rows) + "\n" + summary_table + "\n" + tail
        return text, summary_table + "\n" + tail
    text = table(head, rows) + "\n" + "".join(f"- {line}\n" for line in notes)
    if not run.doc.get("sweep"):
        return text, text
    # A sweep's README summary: per method and backbone, its variations and the best one on its
    # mean over seeds; the seeds it ran on are named (one seed: no spread shown). The table is in
    # the report.
    by_method: dict[tuple[str, str], list[tuple[str, list[dict]]]] = {}
    for (method, _backbone, _batch, changes), group in groups.items():
        by_method.setdefault((method, group[0]["backbone"]), []).append((changes, group))
    lines = []
    for (method, backbone), variations in by_method.items():
        scored = [(v, _over_seeds(v[1])) for v in variations]
        scored = [(v, stats) for v, stats in scored if stats[1] is not None]
        # ranked within the file's budget when it has such runs: a 10-epoch run is not a better recipe
        budget = (run.doc.get("config") or {}).get("epochs")
        in_budget = [(v, stats) for v, stats in scored if v[1][0].get("epochs") == budget]
        scored = in_budget or scored
        runs = sum(len(g) for _c, g in variations)

        def shown(best) -> str:
            (changes, group), (gains, mean, std, _f) = best
            seeds = ", ".join(str(row_seed(r, run.doc)) for r in group)
            spread = f" ± {std:.1f}" if len(gains) > 1 else ""
            return f"{mean:+.1f}{spread} over seed{'s' * (len(group) > 1)} {seeds} ({changes or 'the recipe'})"

        line = f"- {method} on {backbone}: {len(variations)} variation(s), {runs} run(s); best mean gain "
        if not scored:
            lines.append(line + "—")
            continue
        best = max(scored, key=lambda x: x[1][1])
        line += shown(best)
        # one lucky seed can top the table: the best over several seeds too, when it is another
        several = [x for x in scored if len(x[0][1]) > 1]
        steady = max(several, key=lambda x: x[1][1]) if several else None
        if steady is not None and steady is not best:
            line += f"; over several seeds {shown(steady)}"
        lines.append(line)
    n_var = sum(len(v) for v in by_method.values())
    budget = (run.doc.get("config") or {}).get("epochs")
    within = f" (the best among those of {budget} epochs where there are such)" if budget else ""
    summary = (
        f"{len(run.doc['results'])} runs of {n_var} variations of the short-budget recipe, one row per run "
        f"in the report's table; per method its best variation on the mean over its seeds{within}:\n\n"
        + "\n".join(lines)
        + "\n"
    )
    return text, summary


# --- gate -------------------------------------------------------------------------------------

GATE_CHECK_COLS = (("compiles", "comp"), ("smem", "smem"), ("spills", "spil"), ("tensor_cores", "tc"),
                   ("fp64_scalars", "f64"), ("wave", "wave"))


def gate_table(docs: list[dict]) -> str:
    """Per kernel (rows stay in the JSON): variants, worst registers/smem (KiB), dot paths, and per
    check `ok`, `-` (never applies) or the failing variant count (`*` all allow-listed in
    KNOWN_FAILURES, `!` new). Fits 80 columns."""
    by: dict[str, list[dict]] = {}
    for doc in docs:
        for r in doc["results"]:
            by.setdefault(r["kernel"], []).append(r)
    head = f"{'kernel':<26} {'var':>3} {'regs':>4} {'smemK':>5} {'dot':<5}" + "".join(
        f" {c:>4}" for _, c in GATE_CHECK_COLS)
    lines = [head, "-" * len(head)]
    for kernel in sorted(by):
        rows = by[kernel]

        def most(key, rows=rows):
            vals = [r.get(key) for r in rows if r.get(key) is not None]
            return max(vals) if vals else None

        paths = sorted({r.get("dot_path") or "none" for r in rows} - {"none"})
        dot = "-" if not paths else paths[0] if len(paths) == 1 else "mixed"
        cells = []
        for check_name, _ in GATE_CHECK_COLS:
            applies = [r for r in rows if check_name in r.get("checks", {})]
            bad = [r for r in applies if not r["checks"][check_name]]
            if not applies:
                cells.append("-")
            elif not bad:
                cells.append("ok")
            else:
                known = all(check_name in r.get("known", []) for r in bad)
                cells.append(f"{len(bad)}{'*' if known else '!'}")
        smem = most("smem_bytes")
        name = kernel.lstrip("_").removesuffix("_kernel")[:26]
        lines.append(f"{name:<26} {len(rows):>3} {most('registers') or '-':>4} "
                     f"{'-' if smem is None else round(smem / 1024):>5} {dot:<5}" + "".join(f" {c:>4}" for c in cells))
    return "\n".join(lines)


def gate(run: Run) -> tuple[str, str]:
    doc = run.doc
    if doc["target"] == "launch":
        rows = [[r["kernel"], str(r.get("launched", "—")), "yes" if r["passed"] else "**no**",
                 "; ".join(r.get("errors", []))[:120]] for r in doc["results"]]
        text = table(["kernel", "launches", "passed", "errors"], rows)
        return text, text
    s = doc["summary"]
    notes = [f"{s['variants']} variants from {s['cases']} cases, {s['failing_variants']} failing; "
             f"{len(s.get('routed_torch', []))} cases routed to the torch backend",
             "per check: `ok`, or the count of failing variants (`*` allow-listed in KNOWN_FAILURES, `!` new)"]
    notes += [f"new failure: `{x}`" for x in s.get("new_failures", [])]
    notes += [f"stale allow-list entry: `{x}`" for x in s.get("stale_known_failures", [])]
    text = "```\n" + gate_table([doc]) + "\n```\n\n" + "".join(f"- {line}\n" for line in notes)
    return text, text


RENDER = {"losses": losses, "augment": augment, "epoch": epoch, "tta": tta, "convergence": convergence, "gate": gate}
