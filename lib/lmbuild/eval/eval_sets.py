"""The demo's eval sets, built from data no model trained on: the held-out documents of the mix
(data/mix/val) and the test split of the verifiable tasks. Every set is a file a user can read
and replace, and the same seed gives the same bytes.

- `cloze_<domain>`: LAMBADA/HellaSwag-style continuation choice. A held-out document is cut at a
  seeded word position; the query is the `context_words` words before the cut, the gold choice
  the `continuation_words` words after it, and the distractors are continuations cut the same
  way from other held-out documents of the same domain.
- `task_choice`: each held-out task problem as "<prompt>\\nAnswer:" with the right answer among
  near misses (numbers a small distance away; for list answers, other orders of the same items).
- `preferences.jsonl`: each held-out problem's worked solution (chosen) against the same
  solution with a near-miss final answer (rejected), in the prompt/chosen/rejected format dpo
  reads, so a model that prefers correct answers scores high.
"""

from __future__ import annotations

import itertools
import random
import re
from collections import defaultdict
from decimal import Decimal

from ..tasks import Example
from ..tasks.answers import answer_kind, parse_number
from ..tasks.example import derive_seed
from .multiple_choice import Item

_WORD = re.compile(r"\S+")


def _cuts(text: str, rng: random.Random, context_words: int, continuation_words: int,
          per_doc: int) -> list[tuple[str, str]]:
    """Up to `per_doc` (query, continuation) cuts of one document, at seeded word positions in
    disjoint stretches of it."""
    spans = [m.span() for m in _WORD.finditer(text)]
    width = context_words + continuation_words
    room = len(spans) - width + 1
    k = min(per_doc, len(spans) // width)
    out = []
    for j in range(k):
        lo, hi = j * room // k, (j + 1) * room // k - 1
        cut = rng.randint(lo, max(lo, hi)) + context_words
        query = text[spans[cut - context_words][0]:spans[cut][0]].rstrip()
        continuation = " ".join(text[a:b] for a, b in spans[cut:cut + continuation_words])
        out.append((query, continuation))  # the choice; the item's delimiter " " goes between
    return out


def cloze_items(docs: list[dict], *, per_domain: int, per_doc: int, context_words: int, continuation_words: int,
                choices: int, seed: int) -> dict[str, list[Item]]:
    """docs: rows with id, domain, text (held-out). Returns {"cloze_<domain>": items}; a domain
    whose documents give fewer than `choices` cuts gets no task."""
    cuts: dict[str, list[tuple[str, int, str, str]]] = defaultdict(list)  # domain -> (doc id, cut, query, gold)
    for doc in sorted(docs, key=lambda d: d["id"]):
        rng = random.Random(derive_seed(seed, "cloze", doc["id"]))
        for j, (query, cont) in enumerate(_cuts(doc["text"], rng, context_words, continuation_words, per_doc)):
            cuts[doc["domain"]].append((doc["id"], j, query, cont))
    out = {}
    for domain in sorted(cuts):
        pool = cuts[domain]
        rng = random.Random(derive_seed(seed, "cloze-items", domain))
        items = []
        for doc_id, j, query, gold in pool[:per_domain]:
            others = sorted({c for d, _, _, c in pool if d != doc_id and c != gold})
            if len(others) < choices - 1:
                continue
            options = rng.sample(others, choices - 1)
            g = rng.randrange(choices)
            options.insert(g, gold)
            items.append(Item(query, tuple(options), g, f"{doc_id}-{j}"))
        if items:
            out[f"cloze_{domain}"] = items
    return out


def near_misses(example: Example, n: int, rng: random.Random) -> list[str]:
    """Up to n wrong answers close to the right one, in the answer's own format."""
    answer, kind = example.answer, answer_kind(example.family)
    value = parse_number(answer)
    if kind in ("number", "text") and value is not None:
        offsets = [d for d in (-10, -3, -2, -1, 1, 2, 3, 10) if value + d >= 0 or value < 0]
        picks = rng.sample(offsets, min(n, len(offsets)))
        spaced = re.fullmatch(r"-?\d( \d)+", answer) is not None  # digits written apart, as the demo does
        return [" ".join(str(value + Decimal(d))) if spaced else str(value + Decimal(d)) for d in picks]
    sep = ", " if "," in answer else " "
    tokens = [t for t in re.split(r"[\s,]+", answer) if t]
    if len(tokens) > 1:
        perms = {sep.join(p) for p in itertools.islice(itertools.permutations(tokens), 720)}
        perms.discard(sep.join(tokens))
        others = sorted(perms)
        return rng.sample(others, min(n, len(others)))
    return []


def task_choice_items(examples: list[Example], *, choices: int, seed: int) -> list[Item]:
    items = []
    for ex in examples:
        rng = random.Random(derive_seed(seed, "task-choice", ex.id))
        wrong = near_misses(ex, choices - 1, rng)
        if not wrong:
            continue
        options = list(wrong)
        g = rng.randrange(len(options) + 1)
        options.insert(g, ex.answer)
        items.append(Item(f"{ex.prompt}\nAnswer:", tuple(options), g, ex.id))
    return items


def preference_rows(examples: list[Example], *, seed: int) -> list[dict]:
    rows = []
    for ex in examples:
        wrong = near_misses(ex, 1, random.Random(derive_seed(seed, "preference", ex.id)))
        if not wrong or not ex.solution.endswith(ex.answer):
            continue
        rejected = ex.solution[:len(ex.solution) - len(ex.answer)] + wrong[0]
        rows.append({"id": ex.id, "family": ex.family, "prompt": ex.prompt, "chosen": ex.solution,
                     "rejected": rejected})
    return rows
