"""The data ablation study (as DataDecide does, Magnusson et al. 2025): one small pretrain per data
recipe and seed, all scored by the same eval suite on the same held-out documents, and each
recipe's difference to the baseline with its standard error.

A recipe is an overlay on the data stages' params (`studies.ablation.recipes.<name>`: keys of
filter, dedup, rate, mix, decontaminate), e.g. `{dedup: {minhash: {enabled: false}}}`. Its data is
built from the first stage the overlay changes: the stages before it are the main pipeline's,
read from data/ (cached by DVC), and the stages from it on run into
studies/ablation/data/<recipe>/ with the recipe's params. A recipe that changes nothing (the
default) trains on data/tokens itself.

What stays fixed across recipes, so that a difference is the recipe's:
- the held-out set: the main mix's val documents are held out of every recipe's mixes (whatever
  the recipe's filter or dedup kept) and its tokens/val is the main val, tokenized alike;
- decontamination: every recipe's mixes are cut against the main pipeline's eval sets;
- the tokenizer: models/tokenizer (tokenize.path), so ids and bytes per token are the same;
- the proxy recipe (studies.proxy over pretrain, or the demo's own with size: full) and the seeds.

Then: a proxy per (recipe, seed) trains on the recipe's pretrain split, the eval suite
(lmbuild.eval.model_eval: bits per byte over the held-out documents per domain, cloze
multiple-choice acc_norm, preference accuracy) scores it, and the fit ranks the recipes per
metric with lmbuild.study.ablation.rank (paired by seed). Seeds vary the proxy's initialisation
and data order only; the recipes' data are deterministic (common.seed).
"""

from __future__ import annotations

import json
import math
import shutil
import sys
from pathlib import Path

from ..params import ParamsError, deep_merge, validate_section
from ..shards import atomic_dir
from .ablation import rank
from .proxies import StudyError, read_proxies, run_proxy

ROOT = Path("studies/ablation")
DATA = Path("data")
# The data stages a recipe may change, in pipeline order, with the main pipeline's input of each
STAGES = ("filter", "dedup", "rate", "mix", "decontaminate")
INPUT = {"filter": DATA / "raw", "dedup": DATA / "filtered", "rate": DATA / "dedup", "mix": DATA / "rated",
         "decontaminate": DATA / "mix"}
MAIN_TOKENS, MAIN_TOKENIZER, MAIN_VAL = DATA / "tokens", Path("models/tokenizer"), DATA / "mix" / "val"


def recipe_params(params: dict, name: str) -> dict:
    """The full params of recipe `name`: the data sections with its overlay, each validated by
    its stage's schema (a typo in a recipe is a one-line error naming the recipe's key)."""
    recipes = params["studies"]["ablation"]["recipes"]
    if name not in recipes:
        raise StudyError(f"unknown recipe {name!r}; studies.ablation.recipes has {', '.join(recipes)}")
    overlay = recipes[name] or {}
    bad = sorted(set(overlay) - set(STAGES))
    if bad:
        raise ParamsError([f"params.yaml: studies.ablation.recipes.{name}: {', '.join(bad)} cannot be ablated "
                           f"here; a recipe overlays {', '.join(STAGES)} (the tokenizer and eval stay fixed so "
                           f"recipes compare)"])
    out, problems = dict(params), []
    for section, values in overlay.items():
        try:
            out[section] = validate_section(section, deep_merge(params[section], values))
        except ParamsError as exc:
            problems += [line.replace(f"params.yaml: {section}.", f"params.yaml: studies.ablation.recipes.{name}."
                                      f"{section}.", 1) for line in exc.problems]
    if problems:
        raise ParamsError(problems)
    return out


def first_changed(params: dict, recipe: dict) -> str | None:
    """The first data stage whose params the recipe changes (None: the recipe is the main data)."""
    return next((s for s in STAGES if recipe[s] != params[s]), None)


def check_ablation(params: dict) -> None:
    """What the study needs before any recipe builds: the baseline among the recipes, every
    recipe valid, two seeds at least (one seed has no standard error)."""
    cfg = params["studies"]["ablation"]
    problems = []
    if cfg["baseline"] not in cfg["recipes"]:
        problems.append(f"params.yaml: studies.ablation.baseline: {cfg['baseline']!r} is not a recipe "
                        f"({', '.join(cfg['recipes']) or 'none listed'})")
    if len(set(cfg["seeds"])) < 2:
        problems.append("params.yaml: studies.ablation.seeds: list at least 2 seeds; a difference needs a "
                        "standard error")
    for name in cfg["recipes"]:
        try:
            recipe_params(params, name)
        except ParamsError as exc:
            problems += exc.problems
    if problems:
        raise ParamsError(problems)


def _log(msg: str) -> None:
    print(f"study_ablation: {msg}", file=sys.stderr)


def build_recipe(params: dict, name: str, out: Path = ROOT / "data") -> dict:
    """Build recipe `name`'s tokens into out/<name>/ (atomically) and return its record."""
    from ..dedup.config import resolve
    from ..dedup.run import dedup_corpus
    from ..eval.decontam_run import decontaminate
    from ..filter.run import filter_corpus
    from ..mix.run import mix
    from ..rate.run import rate_corpus
    from ..tokenize.run import tokenize

    check_ablation(params)
    rp = recipe_params(params, name)
    start = first_changed(params, rp)
    record = {"recipe": name, "overlay": params["studies"]["ablation"]["recipes"][name] or {}, "start": start,
              "stages": {}}
    with atomic_dir(out / name) as tmp:
        if start is None:
            _log(f"{name}: the recipe changes no data stage; its proxies train on {MAIN_TOKENS}")
            record["tokens"] = str(MAIN_TOKENS)
        else:
            work = tmp / "work"
            run = list(STAGES[STAGES.index(start):])
            _log(f"{name}: {', '.join(STAGES[:STAGES.index(start)]) or 'nothing'} from the main pipeline, "
                 f"{', '.join(run)} with the recipe's params")
            src = INPUT[start]
            for stage in run:
                dst = work / stage
                if stage == "filter":
                    m, _ = filter_corpus(rp, src, dst, work / "filter_rejected")
                    summary = {k: m[k] for k in ("documents_in", "documents_kept", "kept_fraction")}
                elif stage == "dedup":
                    m, _, _ = dedup_corpus(resolve(rp), rp["common"], src, dst, work / "dedup_removed")
                    summary = {k: m[k] for k in ("documents_in", "documents_kept", "exact_duplicate_rate",
                                                 "near_duplicate_rate")}
                elif stage == "rate":
                    m, _, _ = rate_corpus(rp, src, dst, work / "raters")
                    summary = {"raters": sorted(m["raters"])}
                elif stage == "mix":
                    # no pool split: the proxies train on the recipe's pretrain mix
                    m, _ = mix({**rp, "mix": {**rp["mix"], "pool": False}}, src, dst, heldout=MAIN_VAL)
                    summary = {"pretrain_tokens_est": m["pretrain"]["tokens_est"],
                               "pretrain_documents": m["pretrain"]["documents"]}
                else:
                    cfg = {**rp["decontaminate"], "splits": ["pretrain", "anneal"]}
                    m = decontaminate({**rp, "decontaminate": cfg}, src, dst, val_dir=MAIN_VAL)
                    summary = {"pretrain_documents_matched": m["pretrain"]["documents_matched"],
                               "pretrain_documents_dropped": m["pretrain"]["documents_dropped"],
                               "pretrain_chars_removed": m["pretrain"]["chars_removed"]}
                record["stages"][stage] = summary
                src = dst
            tok = {**rp, "tokenize": {**rp["tokenize"], "path": str(MAIN_TOKENIZER)}}
            m = tokenize(tok, DATA / "mix", tmp / "tokenizer", tmp / "tokens", train_dir=src)
            record["stages"]["tokenize"] = {"pretrain_tokens": m["pretrain"]["tokens"], "val_tokens": m["val"]["tokens"]}
            record["tokens"] = str(out / name / "tokens")
            shutil.rmtree(work)  # the recipe's intermediate shards: only its tokens and metrics are kept
        (tmp / "recipe.json").write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
    return record


def proxy_size(params: dict) -> dict:
    """params for the proxies: the proxy recipe (size proxy) or the demo's own pretrain (full)."""
    if params["studies"]["ablation"]["size"] == "full":
        return {**params, "studies": {**params["studies"], "proxy": {}}}
    return params


def run_recipe_proxy(params: dict, name: str, seed: int, out: Path = ROOT / "proxies") -> dict:
    """Train recipe `name`'s proxy with `seed` on its tokens, then score it with the eval suite."""
    from ..eval.model_eval import evaluate_stage

    recipe_file = ROOT / "data" / name / "recipe.json"
    if not recipe_file.is_file():
        raise StudyError(f"{recipe_file}: missing; build the recipe first (dvc repro studies/dvc.yaml:ablation_data@{name})")
    tokens = Path(json.loads(recipe_file.read_text())["tokens"])
    tok_metrics = json.loads(Path("metrics/tokenize.json").read_text())  # the main val: bytes per token alike
    dest = out / f"{name}-{seed}"
    m = run_proxy(proxy_size(params), {"kind": "none"}, dest, tokens, MAIN_TOKENIZER, tok_metrics, seed,
                  {"recipe": name})
    suite = evaluate_stage(params, "pretrain", dest / "model", dest / "eval", MAIN_VAL)
    return {**m, "suite": suite}


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
        values = {r: v for r, v in per_metric[key].items() if base in per_metric[key]}
        if len(values) < 2 or not all(math.isfinite(x) for v in values.values() for x in v.values()):
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
        b = metrics.get("bpb.all", {}).get(r, {})
        out[r] = {"bpb_all_diff": b.get("diff", float("nan")), "bpb_all_diff_stderr": b.get("diff_stderr", float("nan")),
                  "metrics_beyond_noise": len(moved(metrics, r)),
                  "metrics_better": sum(metrics[k][r]["better"] for k in moved(metrics, r))}
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
