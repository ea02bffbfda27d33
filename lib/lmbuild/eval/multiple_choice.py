"""Multiple-choice tasks scored by log-likelihood, as lm-evaluation-harness scores them
(Gao et al. 2021): each choice is a continuation of the item's query; the prediction is the
choice with the highest summed log-probability (`acc`) or the highest log-probability per
character of the choice (`acc_norm`, which removes the bias towards short choices).

Task files are JSONL, one item per line: {"query": str, "choices": [str, ...], "gold": int}
(an "id" is kept if present). Choices are scored as written, so start them with the space or
newline that separates them from the query. A malformed line is an error naming file and line.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..shards import atomic_write_text
from .loglik import continuation_logps


class TaskFileError(ValueError):
    """A task file that cannot be read; the message names file and line."""


@dataclass(frozen=True)
class Item:
    query: str
    choices: tuple[str, ...]
    gold: int
    id: str = ""


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
            items.append(Item(query, tuple(choices), gold, str(row.get("id", line_no))))
    if not items:
        raise TaskFileError(f"{path}: no items")
    return items


def write_items(path: Path, items: list[Item]) -> None:
    atomic_write_text(path, "".join(json.dumps({"id": it.id, "query": it.query, "choices": list(it.choices),
                                                "gold": it.gold}, ensure_ascii=False) + "\n" for it in items))


def evaluate(model, items: list[Item], *, encode_context, encode_choice, pad_id: int, batch_size: int,
             max_len: int, desc: str | None = None) -> dict[str, float]:
    """acc, acc_norm, the number of items and the chance accuracy of one task.
    encode_context(query) and encode_choice(choice) return token ids."""
    pairs = []
    for it in items:
        ctx = encode_context(it.query)
        pairs.extend((ctx, encode_choice(choice)) for choice in it.choices)
    scores = continuation_logps(model, pairs, pad_id=pad_id, batch_size=batch_size, max_len=max_len, desc=desc)
    raw = norm = 0
    pos = 0
    for it in items:
        s = scores[pos:pos + len(it.choices)]
        pos += len(it.choices)
        lls = [lp for lp, _ in s]
        per_char = [lp / len(c) for lp, c in zip(lls, it.choices)]
        raw += max(range(len(lls)), key=lambda i: (lls[i], -i)) == it.gold
        norm += max(range(len(per_char)), key=lambda i: (per_char[i], -i)) == it.gold
    n = len(items)
    return {"acc": raw / n, "acc_norm": norm / n, "items": n,
            "chance": sum(1 / len(it.choices) for it in items) / n}
