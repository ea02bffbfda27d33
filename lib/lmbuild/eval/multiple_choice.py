"""Multiple-choice tasks scored by log-likelihood, as lm-evaluation-harness 0.4 scores them
(Gao et al. 2021): each choice, after the item's delimiter, is a continuation of the item's
query; the prediction is the choice with the highest summed log-probability (`acc`) or the
highest log-probability per character of the choice string (`acc_norm`: lm-eval divides by
len(choice), the delimiter not counted), each with its standard error over items.

Task files are JSONL, one item per line:
    {"query": str, "choices": [str, ...], "gold": int, "delimiter": " "}
`delimiter` (default " ", lm-eval's `target_delimiter`) is what separates the query from every
choice; an "id" is kept if present. A malformed line is an error naming file and line.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..shards import atomic_write_text
from ..stats import with_stderr
from .loglik import continuation_logps


class TaskFileError(ValueError):
    """A task file that cannot be read; the message names file and line."""


@dataclass(frozen=True)
class Item:
    query: str
    choices: tuple[str, ...]
    gold: int
    id: str = ""
    delimiter: str = " "


def read_items(path: Path | str) -> list[Item]:
    path = Path(path)
    if not path.is_file():
        raise TaskFileError(f"{path}: multiple-choice task file not found")
    items = []
    with path.open(encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, 1):
            if not line.strip():
                continue
            where = f"{path}:{line_no}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise TaskFileError(f"{where}: not JSON ({exc.msg})") from None
            if not isinstance(row, dict):
                raise TaskFileError(f"{where}: expected an object with query, choices, gold")
            query, choices, gold = row.get("query"), row.get("choices"), row.get("gold")
            if not isinstance(query, str) or not query:
                raise TaskFileError(f"{where}: `query` must be a non-empty string")
            if (not isinstance(choices, list) or len(choices) < 2
                    or not all(isinstance(c, str) and c for c in choices)):
                raise TaskFileError(f"{where}: `choices` must be a list of at least 2 non-empty strings")
            if isinstance(gold, bool) or not isinstance(gold, int) or not 0 <= gold < len(choices):
                raise TaskFileError(f"{where}: `gold` must be an index into choices (0..{len(choices) - 1})")
            delimiter = row.get("delimiter", " ")
            if not isinstance(delimiter, str):
                raise TaskFileError(f"{where}: `delimiter` must be a string (the text between query and choice)")
            items.append(Item(query, tuple(choices), gold, str(row.get("id", line_no)), delimiter))
    if not items:
        raise TaskFileError(f"{path}: no items")
    return items


def write_items(path: Path, items: list[Item]) -> None:
    atomic_write_text(path, "".join(json.dumps({"id": it.id, "query": it.query, "choices": list(it.choices),
                                                "gold": it.gold, "delimiter": it.delimiter}, ensure_ascii=False) + "\n"
                                    for it in items))


def _argmax(values: list[float]) -> int:
    """Index of the largest value, the first on ties (numpy's argmax, which lm-eval uses)."""
    return max(range(len(values)), key=lambda i: (values[i], -i))


def evaluate(model, items: list[Item], *, encode_pair, pad_id: int, batch_size: int, max_len: int,
             desc: str | None = None) -> tuple[dict[str, float], list[dict]]:
    """(summary, per-item rows) of one task. encode_pair(context, continuation) returns
    (context ids, continuation ids); the continuation of a choice is delimiter + choice.
    Summary: acc, acc_norm, their _stderr, the number of items and the chance accuracy. Rows:
    {id, gold, loglik (per choice), pred, pred_norm, correct, correct_norm}."""
    pairs = []
    for it in items:
        pairs.extend(encode_pair(it.query, it.delimiter + choice) for choice in it.choices)
    scores = continuation_logps(model, pairs, pad_id=pad_id, batch_size=batch_size, max_len=max_len, desc=desc)
    rows = []
    pos = 0
    for it in items:
        lls = [lp for lp, _ in scores[pos:pos + len(it.choices)]]
        pos += len(it.choices)
        pred, pred_norm = _argmax(lls), _argmax([lp / len(c) for lp, c in zip(lls, it.choices)])
        rows.append({"id": it.id, "gold": it.gold, "loglik": lls, "pred": pred, "pred_norm": pred_norm,
                     "correct": float(pred == it.gold), "correct_norm": float(pred_norm == it.gold)})
    n = len(items)
    summary = {**with_stderr("acc", [r["correct"] for r in rows]),
               **with_stderr("acc_norm", [r["correct_norm"] for r in rows]),
               "items": n, "chance": sum(1 / len(it.choices) for it in items) / n}
    return summary, rows
