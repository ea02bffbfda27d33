"""The SFT mixture: task demonstrations and user chat files, each source with a count or weight
(a Tulu-style mixture), encoded with the chat template (labels on assistant tokens only).

Every file source holds out `val_fraction` of its conversations, chosen by a hash of their
content (so the split does not move when counts change); the task source's validation
examples are the held-out test problems. Rows a reader cannot use are returned as rejects with
their file:line and reason.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..lm.chat import encode_conversation
from ..lm.chat_data import ChatDataError, read_conversations
from ..lm.chat_data import in_heldout as _in_val
from ..lm.task_setup import draw_stats, heldout, training_examples
from ..params import ParamsError
from ..tasks import Example


@dataclass
class SftData:
    train: list[tuple[list[int], list[int]]] = field(default_factory=list)
    val: list[tuple[list[int], list[int]]] = field(default_factory=list)
    records: list[dict] = field(default_factory=list)    # {"source", "messages"} per train example, in order
    families: list[str | None] = field(default_factory=list)  # task family per train example (None: a file's)
    rejects: list[dict] = field(default_factory=list)    # {"source", "location", "reason"}
    per_source: dict[str, dict] = field(default_factory=dict)


def task_messages(ex: Example) -> list[dict]:
    """A task example as a two-turn chat: the prompt from the user, the worked solution from the assistant."""
    return [{"role": "user", "content": ex.prompt}, {"role": "assistant", "content": ex.solution}]


def _choose(n_have: int, n_want: int, seed: int, name: str) -> list[int]:
    """n_want indices into n_have items: a seeded sample, or whole seeded passes plus a sample."""
    rng = np.random.default_rng([seed, int.from_bytes(hashlib.blake2b(name.encode(), digest_size=4).digest(), "big")])
    out: list[int] = []
    while len(out) < n_want:
        out.extend(rng.permutation(n_have)[: n_want - len(out)].tolist())
    return out


def build(sources: list[dict], tasks_params: dict, tok, seq_len: int, seed: int, root: Path, *,
          heldout_seed: int | None = None) -> SftData:
    data = SftData()
    for src in sources:
        name, stats = src["name"], {"examples": 0, "val_examples": 0, "rejected": 0, "dropped_by_truncation": 0,
                                    "assistant_tokens": 0, "tokens": 0}
        if src["type"] == "tasks":
            n = src.get("count") or 1000
            train_exs = training_examples(tasks_params, n, seed, "sft")
            train_convs = [task_messages(ex) for ex in train_exs]
            train_fams = [ex.family for ex in train_exs]
            stats["problems"] = draw_stats(tasks_params, train_exs)
            val_convs = [task_messages(ex) for ex in heldout(tasks_params, seed if heldout_seed is None else heldout_seed)]
        else:
            if not src.get("path"):
                raise ParamsError([f"params.yaml: sft.sources.{name}.path: a file source needs a path"])
            path = root / src["path"]
            try:
                convs, rejects = read_conversations(path, src["format"])
            except ChatDataError as exc:
                raise ParamsError([f"sft.sources.{name}: {exc}"]) from None
            data.rejects.extend({"source": name, "location": r.location, "reason": r.reason} for r in rejects)
            stats["rejected"] = len(rejects)
            val_convs = [c for c in convs if _in_val(c, src["val_fraction"])]
            pool = [c for c in convs if not _in_val(c, src["val_fraction"])]
            if not pool:
                raise ParamsError([f"sft.sources.{name}: {src['path']} has no usable conversations "
                                   f"({len(rejects)} rejected); see data/sft/rejected.jsonl"])
            want = src["count"] if src.get("count") else round(src.get("weight", 1.0) * len(pool))
            train_convs = [pool[i] for i in _choose(len(pool), want, seed, name)]
            train_fams = [None] * len(train_convs)
        for convs, target, is_train in ((train_convs, data.train, True), (val_convs, data.val, False)):
            for k, messages in enumerate(convs):
                enc = encode_conversation(tok, messages, seq_len)
                if enc is None:
                    stats["dropped_by_truncation"] += 1
                    continue
                target.append(enc)
                if is_train:
                    data.records.append({"source": name, "messages": messages})
                    data.families.append(train_fams[k])
                    stats["examples"] += 1
                    stats["tokens"] += len(enc[0])
                    stats["assistant_tokens"] += sum(1 for t in enc[1] if t != -100)
                else:
                    stats["val_examples"] += 1
        data.per_source[name] = stats
    return data
