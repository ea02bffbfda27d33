"""The data ablation study's fit: every recipe's proxies' eval-suite metrics ranked against the
baseline recipe per metric (lmbuild.study.ablation.rank, paired by seed), as metrics and a
report page. The recipes and their proxies are lmbuild.study.data_ablation.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from .ablation import rank
from .data_ablation import ROOT
from .proxies import StudyError, read_proxies


def suite_metrics(suite: dict) -> dict[str, tuple[float, bool]]:
    """{metric: (value, higher is better)} of one proxy's eval suite: held-out bits per byte (all
    and per domain), the cloze and task-choice acc_norm and their mean, preference accuracy."""
    out = {f"bpb.{k}": (float(v), False) for k, v in suite["bpb"].items() if not k.endswith("_stderr")}
    if "mc_acc_norm_mean" in suite:
        out["mc_acc_norm_mean"] = (float(suite["mc_acc_norm_mean"]), True)
    for task, r in suite.get("mc", {}).items():
        out[f"mc.{task}.acc_norm"] = (float(r["acc_norm"]), True)
    for pset, r in suite.get("preference", {}).items():
        out[f"preference.{pset}.accuracy"] = (float(r["accuracy"]), True)
    return out


def read_runs(root: Path = ROOT / "proxies") -> dict[str, dict[int, dict]]:
    """recipe -> seed -> the proxy's eval-suite metrics."""
    runs: dict[str, dict[int, dict]] = {}
    for name, rec in read_proxies(root).items():
        suite = json.loads((root / name / "eval" / "metrics.json").read_text())
        runs.setdefault(rec["recipe"], {})[int(rec["seed"])] = suite
    return runs


def fit(params: dict, runs: dict[str, dict[int, dict]], recipes: dict[str, dict]) -> tuple[dict, str]:
    """Rank the recipes per eval-suite metric against the baseline; (metrics, report markdown)."""
    cfg = params["studies"]["ablation"]
    base = cfg["baseline"]
    if base not in runs:
        raise StudyError(f"studies.ablation.baseline {base!r} has no finished proxies (have {sorted(runs)})")
    per_metric: dict[str, dict[str, dict[int, float]]] = {}
    direction: dict[str, bool] = {}
    for recipe, seeds in runs.items():
        for seed, suite in seeds.items():
            for key, (value, higher) in suite_metrics(suite).items():
                per_metric.setdefault(key, {}).setdefault(recipe, {})[seed] = value
                direction[key] = higher
    seeds = sorted({s for r in runs.values() for s in r})
    metrics: dict = {"seeds": len(seeds), "recipes": len(runs), "metrics": {}}
    tables = []
    for key in sorted(per_metric, key=_metric_order):
        values = per_metric[key]
        # a metric the baseline lacks, or with a failed (non-finite) run, cannot be ranked
        if base not in values or len(values) < 2 or not all(math.isfinite(x) for v in values.values() for x in v.values()):
            continue
        rows = rank(values, base, higher_is_better=direction[key])
        metrics["metrics"][key] = {row.recipe: {"mean": row.mean, "sd": row.sd, "stderr": row.se, "runs": row.n,
                                                "diff": row.diff, "diff_stderr": row.diff_se, "p": _num(row.p),
                                                "p_holm": _num(row.p_holm), "beyond_noise": int(bool(row.beyond_noise)),
                                                "better": int(bool(row.better))} for row in rows}
        tables.append(_table(key, rows, base, direction[key]))
    metrics["headline"] = _headline(metrics["metrics"], base)
    return metrics, _report(cfg, metrics, sorted(runs), seeds, recipes, tables)


def _metric_order(key: str) -> tuple:
    return (0 if key == "bpb.all" else 1 if key.startswith("bpb.") else 2 if key == "mc_acc_norm_mean" else 3, key)


def moved(metrics: dict, recipe: str) -> list[str]:
    """The metrics on which `recipe` differs from the baseline beyond noise."""
    return sorted(k for k, m in metrics.items() if recipe in m and m[recipe]["beyond_noise"])


def _headline(metrics: dict, base: str) -> dict:
    """Per recipe: its difference on bpb.all, and how many metrics it moves beyond noise and
    how many of those for the better (metrics files hold numbers; the report names them)."""
    out = {}
    for r in sorted({r for m in metrics.values() for r in m} - {base}):
        b, beyond = metrics.get("bpb.all", {}).get(r, {}), moved(metrics, r)
        out[r] = {"bpb_all_diff": b.get("diff", float("nan")), "bpb_all_diff_stderr": b.get("diff_stderr", float("nan")),
                  "metrics_beyond_noise": len(beyond), "metrics_better": sum(metrics[k][r]["better"] for k in beyond)}
    return out


def _table(key: str, rows, base: str, higher: bool) -> str:
    lines = [f"### {key} ({'higher' if higher else 'lower'} is better)", "",
             f"| rank | recipe | runs | mean | sd | stderr | diff vs {base} | stderr | p | p (Holm) | beyond noise |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        lines.append(f"| {row.rank} | {row.recipe} | {row.n} | {row.mean:.4f} | {row.sd:.4f} | {row.se:.4f} | "
                     f"{row.diff:+.4f} | {row.diff_se:.4f} | {_num(row.p):.3g} | {_num(row.p_holm):.3g} | "
                     f"{'-' if row.is_baseline else ('yes, better' if row.better else 'yes, worse') if row.beyond_noise else 'no'} |")
    return "\n".join(lines)


def _report(cfg: dict, metrics: dict, names: list[str], seeds: list[int], recipes: dict, tables: list[str]) -> str:
    rl = ["| recipe | overlay | built from | pretrain tokens |", "|---|---|---|---|"]
    for r in names:
        rec = recipes.get(r, {})
        tokens = rec.get("stages", {}).get("tokenize", {}).get("pretrain_tokens")
        rl.append(f"| {r} | `{json.dumps(rec.get('overlay', {}), sort_keys=True)}` | "
                  f"{rec.get('start') or 'the main pipeline'} | {f'{tokens:,}' if tokens else 'data/tokens'} |")
    extra = [(r, src, v) for r in names for src, v in recipes.get(r, {}).get("stages", {}).get("filter", {})
             .get("sources", {}).items()]
    if extra:   # sources a recipe adds (e.g. rephrased data): how much of each the filter kept
        rl += ["", "Sources a recipe adds beside data/raw, through the same filter:", "",
               "| recipe | source | documents | kept by the filter |", "|---|---|---|---|"]
        rl += [f"| {r} | {src} | {v['documents_in']:,} | {v['documents_kept']:,} |" for r, src, v in extra]
    hl = [f"| recipe | bpb.all diff vs {cfg['baseline']} | beyond noise on (better / worse) |", "|---|---|---|"]
    for r, h in metrics["headline"].items():
        marks = [f"{k} ({'better' if metrics['metrics'][k][r]['better'] else 'worse'})" for k in moved(metrics["metrics"], r)]
        hl.append(f"| {r} | {h['bpb_all_diff']:+.4f} +- {h['bpb_all_diff_stderr']:.4f} | {', '.join(marks) or 'nothing'} |")
    return (f"# Data ablations ({cfg['size']} size)\n\nEach recipe's data built with its params (the stages "
            f"before the first one it changes come from the main pipeline), one proxy per seed "
            f"({', '.join(map(str, seeds))}), all scored by the eval suite on the main pipeline's "
            "held-out documents. Differences are paired by seed; beyond noise = |diff| > 2 stderr. p (Holm) "
            "adjusts each metric's p-values for the number of recipes; with this many metrics, a few "
            "moves past 2 stderr by chance, so read a recipe by its bpb.all row first.\n\n## Recipes\n\n"
            + "\n".join(rl) + "\n\n## Summary\n\n" + "\n".join(hl) + "\n\n## Per metric\n\n"
            + "\n\n".join(tables) + "\n")


def _num(x) -> float:
    return float(x) if x is not None and not (isinstance(x, float) and math.isnan(x)) else float("nan")
