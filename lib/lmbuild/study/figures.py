"""The studies' figures, rendered to deterministic PNG bytes with the report's matplotlib setup
(lmbuild.report.figures: Agg canvas, fixed style, no metadata) and linked from each study's
report.md:

- intervals: each candidate's difference to the baseline with its 95% interval (Student's t on
  the paired runs' degrees of freedom: with 3 seeds t = 4.30, not 1.96); the comparison and the
  data ablations;
- predicted vs observed: a regression's prediction per proxy against what the proxy measured
  (the mixture study), with the y = x line;
- weights over training: a training-time mixture's domain weights per step (DoReMi's proxy);
- scaling curves: loss against tokens per model size with the fitted law's curve, the held-out
  point marked (the scaling study).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from scipy import stats as sstats

from ..report.collect import read_series
from ..report.figures import STYLE, new_figure, png_bytes

DPI = 110
DOREMI_LIVE = Path("studies/doremi/proxies/proxy/live")


def t95(df: float) -> float:
    """Half-width factor of a two-sided 95% interval on df degrees of freedom (1.96 when unknown)."""
    return float(sstats.t.ppf(0.975, df)) if df and np.isfinite(df) and df > 0 else 1.96


def intervals(rows: Sequence[tuple[str, float, float, float]], title: str, xlabel: str, baseline: str) -> bytes:
    """rows: (label, diff, stderr, degrees of freedom) per candidate, the baseline left out."""
    import matplotlib

    with matplotlib.rc_context(STYLE):
        fig, (ax,) = new_figure(6.0, 0.45 * len(rows) + 1.2)
        y = np.arange(len(rows))[::-1]
        for yi, (label, d, se, df) in zip(y, rows):
            half = t95(df) * se if np.isfinite(se) else 0.0
            color = "#1f77b4" if abs(d) <= half else "#d62728"
            ax.errorbar([d], [yi], xerr=[[half], [half]], fmt="o", color=color, capsize=3, markersize=4)
        ax.axvline(0.0, color="black", linewidth=0.8)
        ax.set_yticks(y, [r[0] for r in rows])
        ax.set_xlabel(f"{xlabel} - {baseline} (95% interval)")
        ax.set_title(title)
        return png_bytes(fig, DPI)


def predicted_observed(names: Sequence[str], observed: Sequence[float], predicted: Sequence[float], title: str,
                       label: str) -> bytes:
    import matplotlib

    with matplotlib.rc_context(STYLE):
        fig, (ax,) = new_figure(4.2, 4.0)
        obs, pred = np.asarray(observed, float), np.asarray(predicted, float)
        ax.scatter(obs, pred, s=14, color="#1f77b4")
        for n, a, b in zip(names, obs, pred):
            ax.annotate(str(n), (a, b), fontsize=7, xytext=(2, 2), textcoords="offset points")
        lo, hi = float(min(obs.min(), pred.min())), float(max(obs.max(), pred.max()))
        pad = 0.05 * (hi - lo or 1.0)
        ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], color="black", linewidth=0.8, linestyle="--")
        ax.set_xlabel(f"observed {label}")
        ax.set_ylabel(f"predicted {label}")
        ax.set_title(title)
        return png_bytes(fig, DPI)


def weights_over_training(live_dir: Path, title: str) -> bytes | None:
    """The domain weights a proxy logged to dvclive (mixture/<domain>); None when it logged none."""
    import matplotlib

    d = Path(live_dir) / "plots" / "metrics" / "mixture"
    series = {p.stem: read_series(p) for p in sorted(d.glob("*.tsv"))} if d.is_dir() else {}
    series = {k: v for k, v in series.items() if v}
    if not series:
        return None
    with matplotlib.rc_context(STYLE):
        fig, (ax,) = new_figure(6.0, 3.2)
        for domain, (steps, values) in series.items():
            ax.plot(steps, values, label=domain)
        ax.set_xlabel("step")
        ax.set_ylabel("domain weight")
        ax.set_ylim(0, 1)
        ax.legend(loc="best")
        ax.set_title(title)
        return png_bytes(fig, DPI)


def scaling_curves(points: Sequence[tuple[str, float, float, float]], law, holdout: str | None) -> bytes:
    """points: (name, N, D, loss); law(N, D) -> predicted loss. One colour per model size."""
    import matplotlib

    with matplotlib.rc_context(STYLE):
        fig, (ax,) = new_figure(5.5, 3.8)
        sizes = sorted({p[1] for p in points})
        colors = matplotlib.colormaps["viridis"](np.linspace(0.0, 0.85, len(sizes)))
        d_all = np.array([p[2] for p in points], float)
        grid = np.geomspace(d_all.min() / 1.5, d_all.max() * 1.5, 50)
        for n, c in zip(sizes, colors):
            mine = [p for p in points if p[1] == n]
            fitted = [p for p in mine if p[0] != holdout]
            ax.scatter([p[2] for p in fitted], [p[3] for p in fitted], color=c, s=16, label=f"N = {n:,.0f}")
            for p in mine:
                if p[0] == holdout:
                    ax.scatter([p[2]], [p[3]], color=c, s=60, marker="*", label=f"{p[0]} (held out)")
            ax.plot(grid, law(np.full_like(grid, n), grid), color=c, linewidth=0.9)
        ax.set_xscale("log")
        ax.set_xlabel("training tokens D")
        ax.set_ylabel("held-out loss")
        ax.set_title("Scaling fit: points and L(N, D) per model size")
        ax.legend(loc="best")
        return png_bytes(fig, DPI)


def write_figures(root: Path, figures: dict[str, tuple[str, bytes | None]]) -> str:
    """Write {name: (caption, png)} as root/<name>.png; the markdown that shows them."""
    lines = []
    for name, (caption, png) in figures.items():
        if png is None:
            continue
        (Path(root) / f"{name}.png").write_bytes(png)
        lines.append(f"![{caption}]({name}.png)\n\n*{caption}*")
    return "\n\n".join(lines)


def _rows(table: dict, baseline: str) -> list[tuple[str, float, float, float]]:
    """(label, diff, stderr, df) per candidate of a ranked metric ({name: {diff, diff_stderr, runs}})."""
    return [(name, r["diff"], r["diff_stderr"], r["runs"] - 1) for name, r in table.items() if name != baseline]


def fit_figures(study: str, params: dict, proxies: dict[str, dict], metrics: dict) -> dict[str, tuple[str, bytes | None]]:
    """The figures of a study fit's report: {file stem: (caption, png)}."""
    if study == "mixture":
        pts = metrics["points"]
        reg = params["studies"]["mixture"]["regression"]
        return {"predicted_vs_observed": (
            f"Mixture study: the {reg} regression's prediction per proxy against its observed held-out bpb "
            f"({params['studies']['mixture']['target']}); points on the dashed line are predicted exactly",
            predicted_observed(list(pts), [p["observed"] for p in pts.values()], [p["predicted"] for p in pts.values()],
                               "Predicted vs observed", "bpb"))}
    if study in ("compare", "compare_full"):
        base = params["studies"]["compare"]["baseline"]
        out = {"differences": (
            f"Each mixture's mean held-out bpb minus {base}'s, paired by seed, 95% t interval (red: the "
            f"interval excludes 0)", intervals(_rows(metrics["mean"], base), "Mixtures vs the baseline",
                                                "mean bpb", base))}
        if study == "compare":  # where DoReMi's mixture came from: its proxy's weights over training
            out["doremi_weights"] = (
                "DoReMi's proxy: the domain weights at each step (Group DRO's exponentiated-gradient updates); "
                "the doremi mixture is their average", weights_over_training(
                    DOREMI_LIVE, "DoReMi: domain weights over training"))
        return out
    if study == "scaling":
        hold = params["studies"]["scaling"]["holdout"]
        pts = [(n, float(r["parameters_non_embedding"]), float(r["tokens_seen"]), float(r["val_loss"]))
               for n, r in proxies.items()]
        m = metrics

        def law(N, D):
            return m["E"] + m["A"] / np.power(N, m["alpha"]) + m["B"] / np.power(D, m["beta"])

        return {"scaling_curves": ("The scaling grid's held-out losses and the fitted L(N, D) per model size "
                                   "(N: non-embedding parameters); the star is the held-out point",
                                   scaling_curves(pts, law, hold))}
    if study == "ablation":
        base = params["studies"]["ablation"]["baseline"]
        out = {}
        for key, stem, label in (("bpb.all", "bpb_differences", "held-out bpb"),
                                 ("mc_acc_norm_mean", "cloze_differences", "cloze acc_norm")):
            if key in metrics["metrics"]:
                out[stem] = (f"Each recipe's {label} minus {base}'s, paired by seed, 95% t interval (red: the "
                             f"interval excludes 0)", intervals(_rows(metrics["metrics"][key], base),
                                                                 f"Data recipes: {key}", label, base))
        return out
    return {}
