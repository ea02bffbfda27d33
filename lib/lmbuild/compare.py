"""Compare two runs: every metric that changed, its difference, the standard error of that
difference, and whether it is beyond noise at 95%.

    python -m lmbuild.compare                  HEAD vs the workspace
    python -m lmbuild.compare HEAD~1           HEAD~1 vs the workspace
    python -m lmbuild.compare HEAD~1 HEAD      two commits
    python -m lmbuild.compare main my-exp      a commit vs a `dvc exp` experiment (by name)
    python -m lmbuild.compare HEAD~1 --html compare.html   also an offline HTML page

A side is a git revision, an experiment name (`dvc exp show` lists them; DVC keeps each under
refs/exps/), or `workspace`. Nothing is stored by this tool: it reads the metrics files dvc.yaml
declares, as committed at each revision, and the per-item eval results (data/eval/<stage>/items/,
committed with the metrics). Where both sides have per-item results for the same items, the
standard error of the difference is paired (lmbuild.stats: the per-item differences, or a joint
bootstrap over documents for bits per byte); otherwise it is sqrt(se_a^2 + se_b^2) from the two
`<metric>_stderr` values; metrics with no standard error show the difference alone.
"""

from __future__ import annotations

import argparse
import html
import json
import math
import subprocess
import sys
from pathlib import Path

import yaml

from . import stats
from .report.collect import flat

WORKSPACE = "workspace"
ITEM_FILES = ("tasks", "bpb", "mc", "preferences", "harness")


class CompareError(Exception):
    """A side that cannot be read; the message says which and why."""


def _git(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True)


def resolve(root: Path, side: str) -> str:
    """A git revision for `side` (an experiment name becomes its refs/exps/ ref), or WORKSPACE."""
    if side == WORKSPACE:
        return side
    if _git(root, "rev-parse", "--verify", "--quiet", f"{side}^{{commit}}").returncode == 0:
        return side
    refs = _git(root, "for-each-ref", "--format=%(refname)", "refs/exps/").stdout.split()
    hits = [r for r in refs if r.rsplit("/", 1)[-1] == side]
    if len(hits) == 1:
        return hits[0]
    if len(hits) > 1:
        raise CompareError(f"{side}: {len(hits)} experiments have this name; pass one of {', '.join(hits)}")
    raise CompareError(f"{side}: not a git revision, an experiment name (see `dvc exp show`) or 'workspace'")


def read_text(root: Path, rev: str, path: str) -> str | None:
    if rev == WORKSPACE:
        p = root / path
        return p.read_text(encoding="utf-8") if p.is_file() else None
    out = _git(root, "show", f"{rev}:{path}")
    return out.stdout if out.returncode == 0 else None


def metric_files(root: Path, rev: str) -> list[str]:
    text = read_text(root, rev, "dvc.yaml")
    if text is None:
        raise CompareError(f"{rev}: no dvc.yaml")
    return [m if isinstance(m, str) else next(iter(m)) for m in (yaml.safe_load(text) or {}).get("metrics", [])]


def read_metrics(root: Path, rev: str) -> dict[str, float]:
    """Every number of every metrics file, keyed '<file stem>.<key>' ('eval.sft.task_accuracy')."""
    out: dict[str, float] = {}
    for path in metric_files(root, rev):
        text = read_text(root, rev, path)
        if text is None:
            continue
        try:
            data = json.loads(text)
        except json.JSONDecodeError:
            raise CompareError(f"{rev}:{path}: not valid JSON") from None
        out.update({k: float(v) for k, v in flat(data, f"{Path(path).stem}.").items()
                    if isinstance(v, (int, float)) and not isinstance(v, bool)})
    if not out:
        raise CompareError(f"{rev}: no metrics found (run the pipeline, or pick a revision that has them)")
    return out


def read_items(root: Path, rev: str, stage: str) -> dict[str, list[dict]]:
    out = {}
    for name in ITEM_FILES:
        text = read_text(root, rev, f"data/eval/{stage}/items/{name}.jsonl")
        if text is not None:
            out[name] = [json.loads(line) for line in text.splitlines() if line.strip()]
    return out


def _select(key: str, items: dict[str, list[dict]]) -> tuple[str, dict[str, tuple[float, float]]] | None:
    """For a metric key of one stage's eval ('task_accuracy_sort', 'bpb.code', 'mc.cloze_news.acc'),
    ('mean' or 'ratio', {item id: (value, weight)}) from its per-item rows; None when no rows
    back this metric."""
    parts = key.split(".")
    if parts[0].startswith("task_") and len(parts) == 1 and "tasks" in items:
        rows = items["tasks"]
        field = "format" if key == "task_format" else "correct" if key.startswith("task_accuracy") else None
        family = key[len("task_accuracy_"):] if key.startswith("task_accuracy_") else None
        if field is None:
            return None
        sel = {r["id"]: (r[field], 1.0) for r in rows if family is None or r["family"] == family}
        return ("mean", sel) if sel else None
    if parts[0] == "bpb" and len(parts) == 2 and "bpb" in items:
        rows = items["bpb"]
        sel = {r["id"]: (r["bits"], r["bytes"]) for r in rows if parts[1] == "all" or r["domain"] == parts[1]}
        return ("ratio", sel) if sel else None
    if parts[0] == "mc" and len(parts) == 3 and parts[2] in ("acc", "acc_norm") and "mc" in items:
        field = "correct" if parts[2] == "acc" else "correct_norm"
        sel = {r["id"]: (r[field], 1.0) for r in items["mc"] if r["task"] == parts[1]}
        return ("mean", sel) if sel else None
    if parts[0] == "harness" and len(parts) == 3 and "harness" in items:   # harness.<task>.<metric>
        sel = {r["id"]: (r[parts[2]], 1.0) for r in items["harness"] if r["task"] == parts[1] and parts[2] in r}
        return ("mean", sel) if sel else None
    if parts[0] == "preference" and len(parts) == 3 and "preferences" in items:
        rows = [r for r in items["preferences"] if r["set"] == parts[1]]
        if parts[2] == "margin":
            sel = {r["index"]: (r["chosen"] - r["rejected"], 1.0) for r in rows}
        elif parts[2] in ("accuracy", "accuracy_per_token"):
            sel = {r["index"]: (r["correct" if parts[2] == "accuracy" else "correct_per_token"], 1.0) for r in rows}
        else:
            return None
        return ("mean", sel) if sel else None
    return None


def paired_stderr(key: str, items_a: dict, items_b: dict) -> float | None:
    """The paired standard error of B - A for an eval metric, when both sides scored the same items."""
    a, b = _select(key, items_a), _select(key, items_b)
    if a is None or b is None or a[0] != b[0] or set(a[1]) != set(b[1]) or len(a[1]) < 2:
        return None
    ids = sorted(a[1], key=str)
    if a[0] == "mean":
        return stats.paired([a[1][i][0] for i in ids], [b[1][i][0] for i in ids])[1]
    if any(a[1][i][1] != b[1][i][1] for i in ids):
        return None  # not the same documents (other bytes)
    return stats.paired_ratio([a[1][i][0] for i in ids], [b[1][i][0] for i in ids], [a[1][i][1] for i in ids])[1]


def compare(root: Path, side_a: str, side_b: str) -> list[dict]:
    """One row per metric present on both sides whose value changed (and per metric on one side only)."""
    rev_a, rev_b = resolve(root, side_a), resolve(root, side_b)
    ma, mb = read_metrics(root, rev_a), read_metrics(root, rev_b)
    items: dict[tuple[str, str], dict] = {}
    rows = []
    for key in sorted(set(ma) | set(mb)):
        if key.endswith("_stderr"):
            continue
        va, vb = ma.get(key), mb.get(key)
        if va is not None and vb is not None and (va == vb or (math.isnan(va) and math.isnan(vb))):
            continue
        row = {"metric": key, "a": va, "b": vb, "diff": None, "stderr": None, "paired": False, "beyond_noise": None}
        if va is not None and vb is not None:
            row["diff"] = vb - va
            se = None
            parts = key.split(".", 2)
            if parts[0] == "eval" and len(parts) == 3:
                stage = parts[1]
                for rev in (rev_a, rev_b):
                    if (rev, stage) not in items:
                        items[(rev, stage)] = read_items(root, rev, stage)
                se = paired_stderr(parts[2], items[(rev_a, stage)], items[(rev_b, stage)])
                row["paired"] = se is not None
            if se is None and f"{key}_stderr" in ma and f"{key}_stderr" in mb:
                se = stats.unpaired_stderr(ma[f"{key}_stderr"], mb[f"{key}_stderr"])
            if se is not None and math.isfinite(se):
                row["stderr"] = se
                row["beyond_noise"] = stats.beyond_noise(row["diff"], se)
        rows.append(row)
    # the metrics with a standard error first (what a reader can judge), each group in key order
    return sorted(rows, key=lambda r: r["stderr"] is None)


def _fmt(v, digits: int = 4) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "yes" if v else "no"
    if float(v).is_integer() and abs(v) < 1e15:
        return str(int(v))
    return f"{v:.{digits}g}" if abs(v) < 1e6 else f"{v:.4e}"


HEADER = ["metric", "A", "B", "B - A", "stderr", "paired", "beyond noise (95%)"]


def table_rows(rows: list[dict]) -> list[list[str]]:
    return [[r["metric"], _fmt(r["a"]), _fmt(r["b"]), _fmt(r["diff"]), _fmt(r["stderr"]),
             "yes" if r["paired"] else "", _fmt(r["beyond_noise"])] for r in rows]


def to_markdown(rows: list[dict], a: str, b: str) -> str:
    with_se = [r for r in rows if r["stderr"] is not None]
    sig = sum(1 for r in with_se if r["beyond_noise"])
    lines = [f"# {b} vs {a}", "",
             f"{len(rows)} metrics changed; {len(with_se)} have a standard error, {sig} of them beyond noise at 95%.",
             "", "| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(cells) + " |" for cells in table_rows(rows)]
    return "\n".join(lines) + "\n"


def to_html(rows: list[dict], a: str, b: str) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in HEADER)
    body = "".join("<tr" + (' class="sig"' if r["beyond_noise"] else "") + ">"
                   + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>"
                   for r, cells in zip(rows, table_rows(rows)))
    return ("<!DOCTYPE html><html><head><meta charset='utf-8'><title>lmbuild compare</title><style>"
            "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}td,th{border:1px solid #ccc;"
            "padding:2px 8px;text-align:right}td:first-child{text-align:left}tr.sig{background:#fff3c4}</style>"
            f"</head><body><h1>{html.escape(b)} vs {html.escape(a)}</h1><p>Highlighted: beyond noise at 95%.</p>"
            f"<table><tr>{head}</tr>{body}</table></body></html>\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lmbuild.compare", description=__doc__.split("\n\n")[0])
    ap.add_argument("a", nargs="?", default="HEAD", help="git revision or experiment name (default HEAD)")
    ap.add_argument("b", nargs="?", default=WORKSPACE, help="git revision, experiment name or 'workspace' (default)")
    ap.add_argument("--html", type=Path, help="also write an offline HTML page here")
    ap.add_argument("--repo", type=Path, default=Path("."), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    try:
        rows = compare(args.repo, args.a, args.b)
    except CompareError as exc:
        print(f"compare: {exc}", file=sys.stderr)
        return 2
    sys.stdout.write(to_markdown(rows, args.a, args.b))
    if args.html:
        args.html.write_text(to_html(rows, args.a, args.b), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
