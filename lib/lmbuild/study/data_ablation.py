"""The data ablation study (as DataDecide does, Magnusson et al. 2025): one small pretrain per data
recipe and seed, all scored by the same eval suite on the same held-out documents, and each
recipe's difference to the baseline with its standard error.

A recipe is an overlay on the data stages' params (`studies.ablation.recipes.<name>`: keys of
filter, dedup, rate, mix, decontaminate), e.g. `{dedup: {minhash: {enabled: false}}}`, and may
name `sources`: directories of raw shards (`<source>/*.parquet`, such as the rephrase stage's
rewrites) that its filter reads beside data/raw, so that they are filtered, deduplicated and
mixed like the sources acquire read (its mix overlay gives their domain a weight). Its data is
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
multiple-choice acc_norm, preference accuracy) scores it, and the fit (lmbuild.study.ablation_fit,
a module of its own so that editing the report does not invalidate the proxies) ranks the recipes
per metric with lmbuild.study.ablation.rank (paired by seed). Seeds vary the proxy's initialisation
and data order only; the recipes' data are deterministic (common.seed).
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

from ..params import ParamsError, deep_merge, validate_section
from ..shards import atomic_dir
from .proxies import StudyError, run_proxy

ROOT = Path("studies/ablation")
DATA = Path("data")
# The data stages a recipe may change (in pipeline order: main_inputs checks it against dvc.yaml)
STAGES = ("filter", "dedup", "rate", "mix", "decontaminate")
MAIN_TOKENS, MAIN_TOKENIZER, MAIN_VAL = DATA / "tokens", Path("models/tokenizer"), DATA / "mix" / "val"


def main_inputs(dvc_yaml: Path = Path("dvc.yaml"), stages: tuple[str, ...] = STAGES) -> dict[str, Path]:
    """Each stage's input in the main pipeline, as dvc.yaml declares it: the data/ dependency of
    the stage that the stage before it in `stages` writes (for the first, that any stage writes)."""
    import yaml
    declared = yaml.safe_load(dvc_yaml.read_text(encoding="utf-8"))["stages"]

    def paths(items) -> list[str]:
        return [i if isinstance(i, str) else next(iter(i)) for i in items or []]

    written = {o for st in declared.values() for o in paths(st.get("do", st).get("outs"))}
    inputs, before = {}, written
    for s in stages:
        if s not in declared:
            raise StudyError(f"{dvc_yaml}: no stage {s!r}; the data ablation builds {', '.join(stages)}")
        found = [d for d in paths(declared[s].get("deps")) if d.startswith(f"{DATA}/") and d in before]
        if len(found) != 1:
            raise StudyError(f"{dvc_yaml}: stage {s} should read exactly one data/ directory written by "
                             f"{'an earlier stage' if before is written else 'the stage before it'}; found {found or 'none'}")
        inputs[s], before = Path(found[0]), set(paths(declared[s].get("outs")))
    return inputs


def recipe_params(params: dict, name: str) -> dict:
    """The full params of recipe `name`: the data sections with its overlay, each validated by
    its stage's schema (a typo in a recipe is a one-line error naming the recipe's key)."""
    recipes = params["studies"]["ablation"]["recipes"]
    if name not in recipes:
        raise StudyError(f"unknown recipe {name!r}; studies.ablation.recipes has {', '.join(recipes)}")
    overlay = dict(recipes[name] or {})
    sources = overlay.pop("sources", [])
    if not isinstance(sources, list) or not all(isinstance(p, str) and p for p in sources):
        raise ParamsError([f"params.yaml: studies.ablation.recipes.{name}.sources: a list of directories of raw "
                           f"shards, got {sources!r}"])
    bad = sorted(set(overlay) - set(STAGES))
    if bad:
        raise ParamsError([f"params.yaml: studies.ablation.recipes.{name}: {', '.join(bad)} cannot be ablated "
                           f"here; a recipe overlays {', '.join(STAGES)} (the tokenizer and eval stay fixed so "
                           f"recipes compare)"])
    out, problems = {**params, "sources": sources}, []
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
    """The first data stage whose params the recipe changes (None: the recipe is the main data);
    a recipe with extra sources starts at the filter, which reads them."""
    if recipe.get("sources"):
        return STAGES[0]
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
            src = main_inputs()[start]
            for stage in run:
                dst = work / stage
                if stage == "filter":
                    extra = [Path(p) for p in rp["sources"]]
                    missing = [str(p) for p in extra if not p.is_dir()]
                    if missing:
                        raise StudyError(f"params.yaml: studies.ablation.recipes.{name}.sources: {', '.join(missing)} "
                                         f"missing; build it first (for the rephrased data: dvc repro "
                                         f"studies/dvc.yaml:rephrase)")
                    m, _ = filter_corpus(rp, [src, *extra], dst, work / "filter_rejected")
                    summary = {k: m[k] for k in ("documents_in", "documents_kept", "kept_fraction")}
                    summary["sources"] = {s: {k: v[k] for k in ("documents_in", "documents_kept")}
                                          for s, v in m["sources"].items() if any(s == p.name for e in extra
                                                                                  for p in e.iterdir())}
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
