"""Decontamination: remove from the training mixes what overlaps the eval sets.

The contamination stage measures; this module acts on the same definition, so what it removes is
exactly what the measurement counts. An eval item's n-grams (n = eval.contamination.ngram, 13 as
GPT-3 and OLMo use; items shorter than n checked whole down to min_tokens) are hashed with the
tokenisation and rolling hash of contamination.py into one sorted table per n-gram size, each
hash carrying the item it came from. Every training document is scanned against the tables; a
matching n-gram marks its tokens. Then, per `mode`:

- `mask`: the character spans of the marked tokens are cut out of the document (the text between
  two marked runs stays). A document that would lose more than `drop_above` of its characters is
  dropped whole: what is left is fragments. This is the span-level removal dolma's decontamination
  performs on paragraphs, at n-gram grain.
- `drop`: every document with a match is dropped, as open-instruct drops training instances that
  overlap an eval set (Lambert et al. 2024, Tulu 3 decontamination).
- `off`: documents pass unchanged (the overlap is still measured).

The scan is vectorised over a record batch: the batch's token ids are concatenated with an unknown
id (0) between documents, which keeps every n-gram inside one document (contamination.py's hashes
skip n-grams holding a 0), so each n-gram size is one rolling hash and one searchsorted per batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .contamination import Vocabulary, item_ngram_size, ngram_hashes, ngram_hashes_at

MODES = ("mask", "drop", "off")


class EvalIndex:
    """Hashes of every eval item's n-grams, per n-gram size, sorted, with the item of each.

    Items are numbered globally in set order; `item_set[i]` is the index in `names` of item i's
    set. `checked[s]` counts the items of set s long enough to check (as contamination.overlap).
    """

    def __init__(self, sets: dict[str, list[str]], n: int = 13, min_tokens: int = 4) -> None:
        self.vocab = Vocabulary()
        self.names = list(sets)
        by_size: dict[int, list[tuple[np.ndarray, int]]] = {}
        item_set, checked = [], []
        item = 0
        for s, name in enumerate(self.names):
            checked.append(0)
            for text in sets[name]:
                ids = self.vocab.encode(text)
                k = item_ngram_size(ids, n, min_tokens)
                if k is not None:
                    checked[s] += 1
                    by_size.setdefault(k, []).append((np.unique(ngram_hashes(ids, k)), item))
                item_set.append(s)
                item += 1
        self.vocab.frozen = True
        self.item_set = np.asarray(item_set, dtype=np.int64)
        self.checked = checked
        self.tables: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        for k, parts in sorted(by_size.items()):
            hashes = np.concatenate([h for h, _ in parts])
            items = np.concatenate([np.full(len(h), i, np.int64) for h, i in parts])
            order = np.lexsort((items, hashes))  # by hash, then item: deterministic
            self.tables[k] = (hashes[order], items[order])


@dataclass
class Scan:
    """What the eval n-grams matched in a batch of documents.

    covered: per document, a boolean array over its tokens (True = inside a matching n-gram)
    items:   the distinct eval items matched anywhere in the batch
    doc_sets: per document, the set indices it matched (sorted, distinct)
    """

    covered: list[np.ndarray]
    starts: list[np.ndarray]
    ends: list[np.ndarray]
    items: np.ndarray
    doc_sets: list[np.ndarray]


def scan(index: EvalIndex, texts: list[str]) -> Scan:
    """Match every n-gram of `texts` against the eval tables (one pass per n-gram size)."""
    encoded = [index.vocab.encode_spans(t) for t in texts]
    lengths = np.fromiter((len(e[0]) for e in encoded), np.int64, len(encoded))
    offsets = np.concatenate([[0], np.cumsum(lengths + 1)])  # +1: the 0 id after each document
    ids = np.zeros(int(offsets[-1]), dtype=np.uint64)
    for d, (doc_ids, _, _) in enumerate(encoded):
        ids[offsets[d]:offsets[d] + len(doc_ids)] = doc_ids
    diff = np.zeros(len(ids) + 1, dtype=np.int64)
    hit_docs, hit_items = [], []
    for k, (table, table_items) in index.tables.items():
        hashes, pos = ngram_hashes_at(ids, k)
        lo = np.searchsorted(table, hashes, side="left")
        hi = np.searchsorted(table, hashes, side="right")
        hit = hi > lo
        if not hit.any():
            continue
        pos, lo, hi = pos[hit], lo[hit], hi[hit]
        np.add.at(diff, pos, 1)  # tokens pos .. pos+k-1 are covered: a +1/-1 difference array
        np.add.at(diff, pos + k, -1)
        counts = hi - lo  # every item holding this hash (several items may share an n-gram)
        first = np.repeat(lo - np.concatenate([[0], np.cumsum(counts)[:-1]]), counts)
        rows = first + np.arange(counts.sum())
        hit_items.append(table_items[rows])
        hit_docs.append(np.repeat(np.searchsorted(offsets, pos, side="right") - 1, counts))
    covered_all = np.cumsum(diff[:-1]) > 0
    covered = [covered_all[offsets[d]:offsets[d] + lengths[d]] for d in range(len(texts))]
    items = np.unique(np.concatenate(hit_items)) if hit_items else np.empty(0, np.int64)
    doc_sets = [np.empty(0, np.int64)] * len(texts)
    if hit_items:
        docs, sets = np.concatenate(hit_docs), index.item_set[np.concatenate(hit_items)]
        pairs = np.unique(np.stack([docs, sets], axis=1), axis=0)
        split = np.searchsorted(pairs[:, 0], np.arange(len(texts) + 1))
        doc_sets = [pairs[split[d]:split[d + 1], 1] for d in range(len(texts))]
    return Scan(covered, [e[1] for e in encoded], [e[2] for e in encoded], items, doc_sets)


def cut_spans(text: str, covered: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> tuple[str, int, int]:
    """`text` without the character spans of its covered token runs; (text, spans, chars cut)."""
    if not covered.any():
        return text, 0, 0
    edges = np.diff(np.concatenate([[0], covered.astype(np.int8), [0]]))
    run_start, run_end = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1) - 1
    pieces, prev, cut = [], 0, 0
    for a, b in zip(starts[run_start], ends[run_end]):
        pieces.append(text[prev:a])
        cut += int(b - a)
        prev = int(b)
    pieces.append(text[prev:])
    return "".join(pieces), len(run_start), cut


@dataclass
class Decision:
    """The outcome for one document: its new text (None = dropped) and what was removed."""

    text: str | None
    spans: int
    chars_cut: int
    sets: np.ndarray


def decide(texts: list[str], result: Scan, mode: str, drop_above: float) -> list[Decision]:
    out = []
    for d, text in enumerate(texts):
        sets = result.doc_sets[d]
        if mode == "off" or not len(sets):
            out.append(Decision(text, 0, 0, sets))
            continue
        new, spans, cut = cut_spans(text, result.covered[d], result.starts[d], result.ends[d])
        if mode == "drop" or cut > drop_above * len(text):
            out.append(Decision(None, spans, len(text), sets))
        else:
            out.append(Decision(new, spans, cut, sets))
    return out
