"""Read the report's inputs: per-stage evaluation results, the contamination check, dvclive
curves and the data stages' plot tables and metrics.

Every reader returns None (or an empty result) for a missing file, so a partial pipeline still
gets a report; a file that exists but cannot be read raises ReportError with one line naming it.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

from ..model_stages import MODEL_STAGES  # noqa: F401  (pipeline order: that of metrics/eval.json and the tables)

EVAL_DIR = Path("data/eval")
CONTAMINATION = EVAL_DIR / "contamination.json"
JUDGE = Path("metrics/judge.json")   # the judge stage's win rates, flat: {"dpo.win_rate": ...}


class ReportError(Exception):
    """An input the report cannot use; the message is one line."""


def read_json(path: Path) -> Any | None:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ReportError(f"{path}: not valid JSON ({str(exc).splitlines()[0]})") from None


def clean_metrics(tree: dict, dropped: list[str], prefix: str = "") -> dict:
    """Numbers only, keys sorted (stable bytes): bools become 0/1, non-finite floats null; any
    other value (strings, lists) is left out and its key appended to `dropped`."""
    out: dict[str, Any] = {}
    for key in sorted(tree, key=str):
        value, name = tree[key], f"{prefix}{key}"
        if isinstance(value, dict):
            sub = clean_metrics(value, dropped, name + ".")
            if sub:
                out[str(key)] = sub
        elif isinstance(value, bool):
            out[str(key)] = int(value)
        elif isinstance(value, (int, float)):
            out[str(key)] = value if math.isfinite(value) else None
        else:
            dropped.append(name)
    return out


def collect_eval(root: Path, stages: list[str]) -> tuple[dict[str, dict], list[str]]:
    """{stage: metrics} in pipeline order for the stages whose eval exists, with the contamination
    check merged under `<stage>.contamination` and the judge's win rates (metrics/judge.json)
    under `<stage>.judge`; and notes on what was left out."""
    notes: list[str] = []
    dropped: list[str] = []
    wanted = [s for s in MODEL_STAGES if s in stages]
    results: dict[str, dict] = {}
    for stage in wanted:
        path = EVAL_DIR / stage / "metrics.json"
        data = read_json(root / path)
        if data is None:
            continue
        if not isinstance(data, dict):
            raise ReportError(f"{path}: must hold a JSON object of metrics, got {type(data).__name__}")
        results[stage] = clean_metrics(data, dropped, f"{stage}.")
    if not results:
        paths = ", ".join(str(EVAL_DIR / s / "metrics.json") for s in wanted)
        raise ReportError(f"report: no evaluation results found (looked for {paths}): "
                          f"run the eval stage first (dvc repro eval, or python -m stages.eval)")
    contamination = read_json(root / CONTAMINATION)
    if contamination is not None:
        if not isinstance(contamination, dict):
            raise ReportError(f"{CONTAMINATION}: must hold a JSON object {{stage: {{eval_set: {{...}}}}}}")
        for stage, sets in sorted(contamination.items()):
            if stage not in results or not isinstance(sets, dict):
                notes.append(f"contamination for '{stage}' ignored (no evaluated stage of that name)")
                continue
            results[stage]["contamination"] = clean_metrics(sets, dropped, f"{stage}.contamination.")
    judged = read_json(root / JUDGE)
    if judged is not None:
        if not isinstance(judged, dict):
            raise ReportError(f"{JUDGE}: must hold a flat JSON object {{\"<stage>.<metric>\": number}}")
        for key, value in sorted(judged.items()):
            stage, _, name = key.partition(".")
            if stage in results and name:  # the baseline's own row (mean_length) included
                results[stage].setdefault("judge", {})[name] = value
        results = {s: {**r, "judge": clean_metrics(r["judge"], dropped, f"{s}.judge.")} if "judge" in r else r
                   for s, r in results.items()}
    if dropped:
        notes.append(f"non-numeric metrics left out: {', '.join(dropped)}")
    return results, notes


def flat(tree: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def read_series(path: Path) -> tuple[list[float], list[float]] | None:
    """A dvclive TSV (`step<TAB>name`, maybe more columns): (steps, values); rows that do not
    parse are skipped. None when the file is missing or holds no rows."""
    if not path.is_file():
        return None
    steps, values = [], []
    with path.open(newline="") as f:
        reader = csv.DictReader(f, delimiter="\t")
        fields = reader.fieldnames or []
        col = path.stem if path.stem in fields else (fields[-1] if len(fields) > 1 else None)
        if "step" not in fields or col is None:
            return None
        for row in reader:
            try:
                s, v = float(row["step"]), float(row[col])
            except (TypeError, ValueError):
                continue
            if math.isfinite(v):
                steps.append(s)
                values.append(v)
    return (steps, values) if steps else None


def live_series(root: Path, stage: str, name: str) -> tuple[list[float], list[float]] | None:
    """The curve `name` ("train/loss", "val/reward_accuracy") that dvclive logged for `stage`."""
    return read_series(root / "dvclive" / stage / "plots" / "metrics" / f"{name}.tsv")


def live_names(root: Path, stage: str, group: str) -> list[str]:
    """Sorted metric names under dvclive/<stage>/plots/metrics/<group>/ ("val" -> ["loss", ...])."""
    d = root / "dvclive" / stage / "plots" / "metrics" / group
    return sorted(p.stem for p in d.glob("*.tsv")) if d.is_dir() else []


def read_table(path: Path, columns: dict[str, type]) -> list[dict] | None:
    """A CSV with (at least) `columns`, values converted; None when missing or empty."""
    if not path.is_file():
        return None
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in columns if c not in (reader.fieldnames or [])]
        if missing:
            raise ReportError(f"{path}: missing column(s) {', '.join(missing)}")
        rows = []
        for i, row in enumerate(reader, start=2):
            try:
                rows.append({c: conv(row[c]) for c, conv in columns.items()})
            except (TypeError, ValueError):
                raise ReportError(f"{path}: line {i}: cannot read {row}") from None
    return rows or None


def stage_metrics(root: Path, stage: str) -> dict | None:
    """metrics/<stage>.json (flat, as the stages write it), or None."""
    data = read_json(root / "metrics" / f"{stage}.json")
    return data if isinstance(data, dict) else None
