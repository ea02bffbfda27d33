"""Run the report stage: collect the eval results into metrics/eval.json, render the figures
into reports/img/, and write reports/report.md and the self-contained reports/report.html.

Inputs that are missing are skipped and listed in the report's "Skipped" section; only the
absence of every evaluation result is an error (there would be nothing to report).
"""

from __future__ import annotations

import json
from pathlib import Path

from ..shards import atomic_dir, atomic_write_text
from . import figures as F
from .collect import MODEL_STAGES, ReportError, collect_eval, flat, read_json, stage_metrics
from .render import fmt, to_html, to_markdown

EVAL_METRICS = Path("metrics/eval.json")
REPORTS = Path("reports")
TRAIN_KEYS = ("steps", "tokens_seen", "epochs", "train_loss", "val_loss", "task_accuracy", "task_accuracy_gain",
              "tokens_per_s", "mfu", "wall_time_s")


def _n(value, spec: str = ",.0f") -> str:
    return format(value, spec) if isinstance(value, (int, float)) else "?"


def data_summary(root: Path) -> tuple[list[str], list[str]]:
    """One line per data stage from metrics/<stage>.json; and the stages whose metrics are missing."""
    lines: list[str] = []
    m = {s: stage_metrics(root, s) for s in ("acquire", "filter", "dedup", "rate", "mix", "tokenize")}
    missing = [f"data summary: {s} (no metrics/{s}.json)" for s, v in m.items() if v is None]
    if a := m["acquire"]:
        sources = sorted({k.split(".")[1] for k in a if k.startswith("sources.")})
        lines.append(f"acquire: {_n(a.get('documents'))} documents, {_n(a.get('bytes'))} bytes from "
                     f"{len(sources)} sources; {_n(a.get('quarantined'))} records quarantined.")
    if f := m["filter"]:
        rules = sorted(((v, k[len("removed."):-len(".documents")]) for k, v in f.items()
                        if k.startswith("removed.") and k.endswith(".documents") and v), key=lambda t: (-t[0], t[1]))
        top = ", ".join(f"{r} {_n(v)}" for v, r in rules[:5]) or "none"
        pii = ", ".join(f"{k[len('pii.'):]} {_n(v)}" for k, v in sorted(f.items()) if k.startswith("pii."))
        lines.append(f"filter: kept {_n(f.get('documents_kept'))} of {_n(f.get('documents_in'))} documents "
                     f"({_n(f.get('kept_fraction'), '.1%')}); most removals: {top}."
                     + (f" PII masked: {pii}." if pii else ""))
    if d := m["dedup"]:
        lines.append(f"dedup: kept {_n(d.get('documents_kept'))} of {_n(d.get('documents_in'))} documents; "
                     f"{_n(d.get('exact_duplicates'))} exact and {_n(d.get('near_duplicates'))} near duplicates "
                     f"removed, {_n(d.get('clusters'))} clusters (largest {_n(d.get('largest_cluster'))}).")
    if r := m["rate"]:
        raters = sorted({k.split(".")[1] for k in r if k.startswith("raters.")})
        parts = [f"{x} (held-out accuracy {_n(r.get(f'raters.{x}.heldout_accuracy'), '.3f')}, "
                 f"mean score {_n(r.get(f'raters.{x}.score.mean'), '.3f')})" for x in raters]
        lines.append(f"rate: {_n(r.get('documents'))} documents scored by {', '.join(parts) or 'no rater'}.")
    if x := m["mix"]:
        parts = [f"{s} {_n(x.get(f'{s}.documents'))} documents, ~{_n(x.get(f'{s}.tokens_est'))} tokens"
                 + (f" (budget {_n(x[f'{s}.token_budget'])})" if f"{s}.token_budget" in x else "")
                 for s in ("pretrain", "anneal", "val") if f"{s}.documents" in x]
        lines.append(f"mix: {'; '.join(parts)}; {_n(x.get('shortfalls'))} shortfalls.")
    if t := m["tokenize"]:
        parts = [f"{s} {_n(t.get(f'{s}.tokens'))} tokens ({_n(t.get(f'{s}.bytes_per_token'), '.2f')} bytes/token)"
                 for s in ("pretrain", "anneal", "val") if f"{s}.tokens" in t]
        lines.append(f"tokenize: vocabulary {_n(t.get('vocab_size'))}; {'; '.join(parts)}.")
    return lines, missing


def _with_interval(values: dict, key: str, digits: int) -> str:
    """'0.2487 ± 0.0616': the estimate and the half-width of its 95% interval, where it has a
    standard error."""
    v, se = values.get(key), values.get(f"{key}_stderr")
    if isinstance(v, (int, float)) and isinstance(se, (int, float)):
        return f"{fmt(v, digits)} ± {fmt(F.Z95 * se, digits)}"
    return fmt(v, digits)


def _eval_tables(results: dict[str, dict], digits: int) -> tuple[tuple, tuple | None]:
    stages = list(results)
    flats = {s: flat({k: v for k, v in results[s].items() if k != "contamination"}) for s in stages}
    keys = sorted(k for k in set().union(*flats.values()) if not k.endswith("_stderr"))
    main = ("table", ["metric", *stages], [[k, *(_with_interval(flats[s], k, digits) for s in stages)] for k in keys])
    rows, fields = [], []
    for s in stages:
        for eval_set, vals in sorted(results[s].get("contamination", {}).items()):
            vals = flat(vals) if isinstance(vals, dict) else {"value": vals}
            fields += [f for f in vals if f not in fields]
            rows.append((f"{s} / {eval_set}", vals))
    if not rows:
        return main, None
    return main, ("table", ["stage / eval set", *fields],
                  [[name, *(fmt(v.get(f), digits) for f in fields)] for name, v in rows])


# where each stage's metrics say which task problems it drew (lmbuild.lm.task_setup.draw_stats)
DRAWS = (("sft", "metrics/sft.json", "sources.tasks.problems."), ("dpo_pairs", "metrics/dpo_pairs.json", "problems."),
         ("rlvr", "metrics/rlvr.json", "pool."))


def task_space_table(root: Path) -> tuple | None:
    """family x (space, distinct (drawn) per stage) from the stages' metrics, or None."""
    per: dict[str, dict[str, dict]] = {}
    for stage, path, prefix in DRAWS:
        flat_m = read_json(root / path) or {}
        for key, value in flat_m.items():
            if key.startswith(prefix) and key.count(".") == prefix.count(".") + 1:
                family, field = key[len(prefix):].split(".")
                per.setdefault(family, {}).setdefault(stage, {})[field] = value
    if not per:
        return None
    rows = []
    for family, by_stage in sorted(per.items()):
        space = next((v["space"] for v in by_stage.values() if "space" in v), None)
        rows.append([family, _n(space), *(f"{_n(by_stage[s]['distinct'])} ({_n(by_stage[s]['drawn'])})"
                                          if s in by_stage else "" for s, _, _ in DRAWS)])
    return ("table", ["family", "problems", *(s for s, _, _ in DRAWS)], rows)


def _figure(build, skipped: list[str], what: str, source: str, *args):
    try:
        fig = build(*args)
    except ReportError as exc:
        skipped.append(f"{what}: {exc}")
        return None
    if fig is None:
        skipped.append(f"{what} (no {source})")
    return fig


def build_report(params: dict, root: Path | str = ".") -> dict:
    """Write metrics/eval.json, reports/img/*.png, reports/report.md and reports/report.html
    under `root`; return a summary (stages, figures, skipped). Raises ReportError."""
    root = Path(root)
    p = params["report"]
    stages = [s for s in MODEL_STAGES if s in p["stages"]]
    results, notes = collect_eval(root, stages)
    digits = p["digits"]
    skipped: list[str] = [f"evaluation of {s} (no data/eval/{s}/metrics.json)" for s in stages if s not in results]

    blocks: list[tuple] = [("h1", p["title"]),
                           ("p", f"Evaluated model stages, in pipeline order: {', '.join(results)}.")]
    main, contamination = _eval_tables(results, digits)
    blocks += [("h2", "Evaluation across stages"),
               ("p", "Each estimate with the half-width of its 95% interval (1.96 standard errors over the "
                     "held-out items; bits per byte: bootstrap over documents)."), main]
    if contamination:
        blocks += [("h2", "Contamination of the evaluation sets"),
                   ("p", "Overlap of each evaluation set with the data the stage was trained on."), contamination]

    figs: list[F.Fig] = []

    def add(fig):
        if fig is not None:
            figs.append(fig)
            blocks.append(("img", fig))

    add(_figure(F.eval_figure, skipped, "eval across stages", "eval results", results, p))

    lines, missing = data_summary(root)
    skipped += missing
    blocks.append(("h2", "Data"))
    if lines:
        blocks.append(("ul", lines))
    add(_figure(F.filter_figure, skipped, "filter removals", "plots/filter_removals.csv", root, p))
    add(_figure(F.dedup_figure, skipped, "dedup cluster sizes", "plots/dedup_cluster_sizes.csv", root, p))
    add(_figure(F.rate_figure, skipped, "quality-score histograms", "plots/rate_scores.csv", root, p))
    add(_figure(F.mix_figure, skipped, "achieved mixture", "plots/mix_shares.csv", root, p))

    blocks.append(("h2", "Training"))
    trained = {s: m for s in stages if (m := stage_metrics(root, s))}
    keys = [k for k in TRAIN_KEYS if any(k in m for m in trained.values())]
    if keys:
        blocks.append(("table", ["metric", *trained], [[k, *(fmt(m.get(k), digits) for m in trained.values())]
                                                       for k in keys]))
    for s in stages:
        add(_figure(F.loss_figure, skipped, f"loss curves of {s}", f"dvclive/{s}/plots/metrics/{{train,val}}/loss.tsv",
                    root, s, p))

    blocks.append(("h2", "Post-training"))
    spaces = task_space_table(root)
    if spaces:
        blocks += [("p", "Verifiable task problems: how many each family's space holds (train and test at "
                         "tasks.difficulty) and how many distinct problems each stage drew from its own part "
                         "of the train split (drawn in brackets); the held-out problems are in none of them."),
                   spaces]
    post = [s for s in stages if s in ("sft", "dpo", "rlvr")]
    if post:
        add(_figure(F.task_accuracy_figure, skipped, "task accuracy curves",
                    "dvclive/<stage>/plots/metrics/val/task_accuracy.tsv", root, post, p))
    for s in ("dpo", "rlvr"):
        if s in stages:
            add(_figure(F.reward_figure, skipped, f"reward curves of {s}", f"dvclive/{s} reward curves", root, s, p))
    if blocks[-1] == ("h2", "Post-training"):
        blocks.pop()

    if skipped or notes:
        blocks += [("h2", "Skipped"), ("ul", skipped + notes)]

    with atomic_dir(root / REPORTS / "img") as tmp:
        for fig in figs:
            (tmp / f"{fig.name}.png").write_bytes(fig.png)
    atomic_write_text(root / REPORTS / "report.md", to_markdown(blocks))
    atomic_write_text(root / REPORTS / "report.html", to_html(blocks, p["title"]))
    atomic_write_text(root / EVAL_METRICS, json.dumps(results, indent=1) + "\n")
    return {"stages": list(results), "figures": len(figs), "skipped": skipped, "notes": notes}
