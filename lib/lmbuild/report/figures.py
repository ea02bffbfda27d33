"""The report's figures, drawn with matplotlib's Agg canvas (no display, no pyplot state) and
returned as PNG bytes.

Rendering is deterministic: fixed sizes, DPI, style and the DejaVu fonts matplotlib ships; PNGs
carry no Software/date metadata. Each builder returns None when its inputs are missing, so the
report lists the section as skipped instead of failing.
"""

from __future__ import annotations

import io
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # before anything imports pyplot; we never do

from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from .collect import live_names, live_series, read_table  # noqa: E402

STYLE = {
    "font.family": "DejaVu Sans", "font.size": 9, "axes.titlesize": 10, "axes.labelsize": 9,
    "legend.fontsize": 8, "axes.grid": True, "grid.alpha": 0.3, "axes.spines.top": False,
    "axes.spines.right": False, "figure.facecolor": "white", "savefig.facecolor": "white",
    "path.simplify": True, "lines.linewidth": 1.2,
}
TRAIN_COLOR, VAL_COLOR, SMOOTH_COLOR = "#9ecae1", "#d62728", "#1f77b4"


@dataclass
class Fig:
    name: str        # file stem under reports/img/
    section: str     # report section it belongs to
    title: str       # alt text and caption
    png: bytes


def new_figure(width: float, height: float, rows: int = 1, cols: int = 1):
    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, cols, squeeze=False)
    return fig, [ax for row in axes for ax in row]


def png_bytes(fig: Figure, dpi: int) -> bytes:
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, metadata={"Software": None})
    return buf.getvalue()


def ema(values: list[float], alpha: float) -> list[float]:
    """Exponential moving average (alpha = weight of the past, 0 = no smoothing)."""
    out, acc = [], None
    for v in values:
        acc = v if acc is None else alpha * acc + (1 - alpha) * v
        out.append(acc)
    return out


def _curve(ax, series, label, color, smoothing=0.0, marker=None):
    steps, values = series
    if smoothing > 0 and len(values) > 2:
        ax.plot(steps, values, color=color, alpha=0.5, linewidth=0.8, label=f"{label} (raw)")
        ax.plot(steps, ema(values, smoothing), color=SMOOTH_COLOR, label=f"{label} (EMA {smoothing:g})")
    else:
        ax.plot(steps, values, color=color, marker=marker, markersize=3, label=label)


Z95 = 1.96  # the report's intervals: estimate +- 1.96 standard errors


def _band(ax, root: Path, stage: str, name: str, series, color=None) -> None:
    """Shade the 95% interval of a dvclive curve whose standard error was logged beside it
    (`<name>_stderr`, as every held-out estimate is)."""
    se = live_series(root, stage, f"{name}_stderr")
    if not se:
        return
    by_step = dict(zip(*se))
    pts = [(s, v, by_step[s]) for s, v in zip(*series) if s in by_step]
    if pts:
        ax.fill_between([s for s, _, _ in pts], [v - Z95 * e for _, v, e in pts], [v + Z95 * e for _, v, e in pts],
                        alpha=0.2, color=color, linewidth=0)


def loss_figure(root: Path, stage: str, p: dict) -> Fig | None:
    train, val = live_series(root, stage, "train/loss"), live_series(root, stage, "val/loss")
    domains = [n for n in live_names(root, stage, "val") if n.startswith("loss_")]
    if train is None and val is None:
        return None
    fig, axes = new_figure(9.0 if domains else 5.5, 3.2, 1, 2 if domains else 1)
    ax = axes[0]
    if train:
        _curve(ax, train, "train", TRAIN_COLOR, p["smoothing"])
    if val:
        _curve(ax, val, "val", VAL_COLOR, marker="o")
    ax.set(title=f"{stage}: loss", xlabel="step", ylabel="loss (nats/token)")
    ax.legend(loc="upper right")
    if domains:
        for name in domains:
            s = live_series(root, stage, f"val/{name}")
            if s:
                axes[1].plot(*s, marker="o", markersize=3, label=name[len("loss_"):])
        axes[1].set(title=f"{stage}: validation loss per domain", xlabel="step", ylabel="loss (nats/token)")
        axes[1].legend(loc="upper right")
    return Fig(f"loss_{stage}", "loss", f"{stage}: training and validation loss", png_bytes(fig, p["dpi"]))


# Post-training curves: panel title -> [(dvclive metric, label)]; panels with no data are left out.
REWARD_PANELS = {
    "dpo": {
        "reward accuracy": [("train/reward_accuracy", "train"), ("val/reward_accuracy", "val")],
        "reward margin (chosen - rejected)": [("train/reward_margin", "train"), ("val/reward_margin", "val")],
        "implicit rewards (train)": [("train/reward_chosen", "chosen"), ("train/reward_rejected", "rejected")],
        "held-out task accuracy": [("val/task_accuracy", "greedy")],
    },
    "rlvr": {
        "reward": [("train/reward", "train (sampled)"), ("val/sampled_reward", "val (sampled)")],
        "correct": [("train/correct", "train samples"), ("train/groups_any_correct", "groups with any correct"),
                    ("val/task_accuracy", "val greedy"), ("val/sampled_accuracy", "val sampled")],
        "KL to reference": [("train/kl", "kl")],
        "response length (tokens)": [("train/response_length", "mean length")],
    },
}


def reward_figure(root: Path, stage: str, p: dict) -> Fig | None:
    panels = {}
    for title, names in REWARD_PANELS[stage].items():
        lines = [(label, name, s) for name, label in names if (s := live_series(root, stage, name))]
        if lines:
            panels[title] = lines
    if not panels:
        return None
    cols = min(2, len(panels))
    rows = -(-len(panels) // cols)
    fig, axes = new_figure(4.6 * cols, 2.9 * rows, rows, cols)
    for ax, (title, lines) in zip(axes, panels.items()):
        for label, name, (steps, values) in lines:
            line, = ax.plot(steps, values, marker="o" if len(steps) <= 20 else None, markersize=3, label=label)
            _band(ax, root, stage, name, (steps, values), line.get_color())
        ax.set(title=f"{stage}: {title}", xlabel="step")
        if len(lines) > 1:
            ax.legend(loc="best")
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    return Fig(f"rewards_{stage}", "rewards", f"{stage}: reward curves", png_bytes(fig, p["dpi"]))


def filter_figure(root: Path, p: dict) -> Fig | None:
    rows = read_table(root / "plots/filter_removals.csv", {"source": str, "rule": str, "documents": int})
    if rows is None:
        return None
    totals: dict[str, int] = defaultdict(int)
    for r in rows:
        totals[r["rule"]] += r["documents"]
    ranked = sorted(((n, rule) for rule, n in totals.items() if n > 0), key=lambda t: (-t[0], t[1]))
    ranked = ranked[:p["filter_top_rules"]][::-1]  # largest at the top
    fig, (ax,) = new_figure(7.5, 0.9 + 0.26 * max(len(ranked), 1))
    log = bool(ranked) and ranked[-1][0] > 30 * ranked[0][0]  # one rule dominates: log scale
    if ranked:
        ax.barh([r for _, r in ranked], [n for n, _ in ranked], color="#4c72b0", log=log)
        for i, (n, _) in enumerate(ranked):
            ax.text(n, i, f" {n:,}", va="center", fontsize=8)
        ax.margins(x=0.12)
    else:
        ax.text(0.5, 0.5, "no documents removed", ha="center", va="center", transform=ax.transAxes)
    ax.set(title="filter: documents removed per rule (all sources)",
           xlabel="documents (log scale)" if log else "documents")
    ax.grid(axis="y", visible=False)
    return Fig("filter_removals", "filter", "filter: documents removed per rule", png_bytes(fig, p["dpi"]))


def dedup_figure(root: Path, p: dict) -> Fig | None:
    rows = read_table(root / "plots/dedup_cluster_sizes.csv", {"size": int, "clusters": int})
    if rows is None:
        return None
    rows = sorted(r for r in ((r["size"], r["clusters"]) for r in rows) if r[1] > 0)
    fig, (ax,) = new_figure(5.5, 3.0)
    ax.bar([str(s) for s, _ in rows], [c for _, c in rows], color="#55a868")
    ax.set_yscale("log")
    ax.set(title="dedup: clusters by size (size 1 = unique documents)", xlabel="cluster size (documents)",
           ylabel="clusters (log scale)")
    return Fig("dedup_cluster_sizes", "dedup", "dedup: cluster size distribution", png_bytes(fig, p["dpi"]))


def rate_figure(root: Path, p: dict) -> Fig | None:
    rows = read_table(root / "plots/rate_scores.csv",
                      {"rater": str, "source": str, "bin_low": float, "bin_high": float, "documents": int})
    if rows is None:
        return None
    by: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        by[r["rater"]][r["source"]].append((r["bin_low"], r["bin_high"], r["documents"]))
    raters = sorted(by)
    cols = min(2, len(raters))
    nrows = -(-len(raters) // cols)
    fig, axes = new_figure(5.2 * cols, 3.2 * nrows, nrows, cols)
    for ax, rater in zip(axes, raters):
        for source in sorted(by[rater]):
            bins = sorted(by[rater][source])
            total = sum(b[2] for b in bins) or 1
            edges = [bins[0][0]] + [b[1] for b in bins]
            ax.stairs([b[2] / total for b in bins], edges, label=source, linewidth=1.3)
        ax.set(title=f"rate: quality_{rater} by source", xlabel=f"quality_{rater} score",
               ylabel="share of the source's documents")
        ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    for ax in axes[len(raters):]:
        ax.set_visible(False)
    return Fig("rate_scores", "rate", "rate: quality-score histograms", png_bytes(fig, p["dpi"]))


def mix_figure(root: Path, p: dict) -> Fig | None:
    rows = read_table(root / "plots/mix_shares.csv",
                      {"split": str, "domain": str, "requested_share": float, "achieved_share": float})
    if rows is None:
        return None
    splits = sorted({r["split"] for r in rows}, key=lambda s: ({"pretrain": 0, "anneal": 1}.get(s, 2), s))
    fig, axes = new_figure(4.6 * len(splits), 3.2, 1, len(splits))
    for ax, split in zip(axes, splits):
        part = sorted((r for r in rows if r["split"] == split), key=lambda r: r["domain"])
        x = list(range(len(part)))
        ax.bar([i - 0.2 for i in x], [r["requested_share"] for r in part], 0.4, label="requested", color="#c7c7c7")
        ax.bar([i + 0.2 for i in x], [r["achieved_share"] for r in part], 0.4, label="achieved", color="#4c72b0")
        ax.set_xticks(x, [r["domain"] for r in part], rotation=20, ha="right")
        top = max([r["requested_share"] for r in part] + [r["achieved_share"] for r in part] + [0.01])
        ax.set(title=f"mix: {split} domain shares (tokens)", ylabel="share", ylim=(0, top * 1.3))  # room for legend
        ax.legend(loc="best")
    return Fig("mix_shares", "mix", "mix: requested vs achieved domain shares", png_bytes(fig, p["dpi"]))


def task_accuracy_figure(root: Path, stages: list[str], p: dict) -> Fig | None:
    """Held-out greedy task accuracy as each post-training stage trained (one panel per stage:
    steps restart at 0 in every stage)."""
    found = [(s, c) for s in stages if (c := live_series(root, s, "val/task_accuracy"))]
    if not found:
        return None
    fig, axes = new_figure(3.4 * len(found), 2.9, 1, len(found))
    for ax, (stage, (steps, values)) in zip(axes, found):
        ax.plot(steps, values, marker="o", markersize=3, color="#8172b2")
        _band(ax, root, stage, "val/task_accuracy", (steps, values), "#8172b2")
        ax.set(title=f"{stage}: held-out task accuracy", xlabel="step", ylim=(-0.02, 1.02))
    return Fig("task_accuracy", "task", "held-out task accuracy during post-training (95% intervals shaded)",
               png_bytes(fig, p["dpi"]))


# The eval figure's panels: (title, key path in metrics/eval.json, y label).
EVAL_PANELS = (("held-out task accuracy", ("task_accuracy",), "accuracy"),
               ("bits per byte (held-out text)", ("bpb", "all"), "bits/byte"),
               ("multiple choice (mean acc_norm)", ("mc_acc_norm_mean",), "accuracy"),
               ("preference accuracy", ("preference", "preferences", "accuracy"), "accuracy"))


def _lookup(tree: dict, path: tuple[str, ...]) -> tuple[float | None, float | None]:
    node = tree
    for part in path[:-1]:
        node = node.get(part, {}) if isinstance(node, dict) else {}
    if not isinstance(node, dict):
        return None, None
    return node.get(path[-1]), node.get(f"{path[-1]}_stderr")


def eval_figure(results: dict[str, dict], p: dict) -> Fig | None:
    """The main eval numbers of every stage as points with 95% intervals (estimate +- 1.96 se)."""
    panels = []
    for title, path, ylabel in EVAL_PANELS:
        pts = [(s, v, e) for s, m in results.items() for v, e in [_lookup(m, path)] if isinstance(v, (int, float))]
        if pts:
            panels.append((title, ylabel, pts))
    if not panels:
        return None
    fig, axes = new_figure(3.3 * len(panels), 2.9, 1, len(panels))
    for ax, (title, ylabel, pts) in zip(axes, panels):
        x = list(range(len(pts)))
        ax.errorbar(x, [v for _, v, _ in pts], yerr=[Z95 * e if isinstance(e, (int, float)) else 0 for _, _, e in pts],
                    fmt="o", capsize=3, color="#4c72b0")
        ax.set_xticks(x, [s for s, _, _ in pts])
        ax.set(title=title, ylabel=ylabel)
    return Fig("eval_stages", "eval", "eval across stages: estimates with 95% intervals", png_bytes(fig, p["dpi"]))
