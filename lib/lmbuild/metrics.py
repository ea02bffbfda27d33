"""Stage metrics and plot data in the shapes DVC reads.

`metrics/<stage>.json` is flat and numbers only (keys joined with '.'), so `dvc metrics show`
and `dvc metrics diff` can compare every number across commits. Plot data are CSV tables that
dvc.yaml declares under top-level `plots`.
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any, Iterable

from .shards import atomic_write_text


def flatten(tree: dict, prefix: str = "") -> dict[str, float]:
    out: dict[str, float] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, name + "."))
        elif isinstance(value, bool):
            out[name] = int(value)
        elif isinstance(value, (int, float)):
            out[name] = value if not (isinstance(value, float) and not math.isfinite(value)) else None
        else:
            raise TypeError(f"metric {name} is {type(value).__name__}, metrics must be numbers")
    return out


def write_metrics(path: Path | str, tree: dict[str, Any]) -> dict[str, float]:
    flat = flatten(tree)
    atomic_write_text(path, json.dumps(flat, indent=1, sort_keys=True) + "\n")
    return flat


def write_csv(path: Path | str, rows: Iterable[dict], fields: list[str]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow(row)
    atomic_write_text(path, buf.getvalue())


def ratio(num: float, den: float) -> float:
    return float(num) / den if den else 0.0
