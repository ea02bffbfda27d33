"""Where the eval stages find their inputs: the held-out documents, the eval sets (built by the
eval_sets stage, plus a user's own files under evals/), and the training text of every model
stage (for the contamination check).

Layout of data/eval_sets/ (written by the eval_sets stage):
    mc/<task>.jsonl        multiple-choice items {id, query, choices, gold}
    preferences.jsonl      held-out pairs {id, family, prompt, chosen, rejected}
    manifest.json          item counts
A user's own sets go in evals/mc/<task>.jsonl (same format) and evals/preferences/<name>.jsonl
(any pair format dpo reads); the eval stages pick them up and dvc.yaml tracks evals/.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Iterator

from ..lm.chat_data import ChatDataError, read_pairs
from ..shards import list_shards, read_batches
from .multiple_choice import Item, read_items

SETS = Path("data/eval_sets")
USER = Path("evals")


class EvalDataError(ValueError):
    """An eval input that is missing or malformed; the message names the file."""


def read_docs(root: Path, max_docs_per_domain: int | None = None) -> list[dict]:
    """Documents (id, domain, text) of a mix split, in shard order, at most `max_docs_per_domain`
    per domain."""
    shards = list_shards(root)
    if not shards:
        raise EvalDataError(f"{root}: no Parquet shards; run `dvc repro mix` first")
    seen: dict[str, int] = defaultdict(int)
    out = []
    for shard in shards:
        for batch in read_batches(shard, columns=["id", "domain", "text"]):
            for row in batch.to_pylist():
                if max_docs_per_domain is not None and seen[row["domain"]] >= max_docs_per_domain:
                    continue
                seen[row["domain"]] += 1
                out.append(row)
    return out


def cap_bytes(docs: list[dict], max_bytes: int | None) -> list[dict]:
    """The first `max_bytes` UTF-8 bytes of held-out text per domain: documents in order, the
    last one cut at a character boundary."""
    if max_bytes is None:
        return docs
    used: dict[str, int] = defaultdict(int)
    out = []
    for doc in docs:
        room = max_bytes - used[doc["domain"]]
        if room <= 0:
            continue
        raw = doc["text"].encode("utf-8")
        text = doc["text"] if len(raw) <= room else raw[:room].decode("utf-8", errors="ignore")
        used[doc["domain"]] += len(text.encode("utf-8"))
        out.append({**doc, "text": text})
    return out


def heldout_docs(val_root: Path, bpb: dict) -> list[dict]:
    """The held-out documents bits per byte is measured on (eval.bpb limits)."""
    return cap_bytes(read_docs(val_root, bpb["max_docs_per_domain"]), bpb["max_bytes_per_domain"])


def mc_tasks(sets: Path = SETS, user: Path = USER) -> dict[str, list[Item]]:
    """Every multiple-choice task: the built ones, then the user's (a user task may not reuse a
    built task's name)."""
    out: dict[str, list[Item]] = {}
    for path in sorted((sets / "mc").glob("*.jsonl")):
        out[path.stem] = read_items(path)
    for path in sorted((user / "mc").glob("*.jsonl")):
        if path.stem in out:
            raise EvalDataError(f"{path}: a task named {path.stem!r} is built by the eval_sets stage; rename the file")
        out[path.stem] = read_items(path)
    return out


def preference_sets(sets: Path = SETS, user: Path = USER) -> dict[str, list[dict]]:
    """{name: [{prompt (messages), chosen, rejected}]}: the built held-out pairs and the user's files."""
    out: dict[str, list[dict]] = {}
    built = sets / "preferences.jsonl"
    files = ([("preferences", built)] if built.is_file() else []) + \
        [(f"preferences_{p.stem}", p) for p in sorted((user / "preferences").glob("*.jsonl"))]
    for name, path in files:
        try:
            pairs, rejects = read_pairs(path)
        except ChatDataError as exc:
            raise EvalDataError(str(exc)) from None
        if rejects:
            raise EvalDataError(f"{rejects[0].location}: {rejects[0].reason} ({len(rejects)} bad rows in {path})")
        out[name] = [{"prompt": p.prompt, "chosen": p.chosen, "rejected": p.rejected} for p in pairs]
    return out


def _jsonl(path: Path) -> Iterator[dict]:
    if not path.is_file():
        raise EvalDataError(f"{path}: not found; run the stage that writes it (dvc repro)")
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                yield json.loads(line)


def sft_texts(path: Path) -> Iterator[str]:
    for row in _jsonl(path):
        for m in row["messages"]:
            yield m["content"]


def dpo_texts(path: Path) -> Iterator[str]:
    for row in _jsonl(path):
        if row.get("split", "train") != "train":
            continue
        yield from (m["content"] for m in row["prompt"])
        yield row["chosen"]
        yield row["rejected"]


def mix_texts(root: Path) -> Iterator[str]:
    for shard in list_shards(root):
        for batch in read_batches(shard, columns=["text"]):
            yield from batch.column("text").to_pylist()
