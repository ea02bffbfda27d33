"""Contamination: n-gram overlap between eval items and a stage's training data.

An eval item counts as contaminated when any of its n-grams occurs in the training text, with
n = 13 as GPT-3 (Brown et al. 2020, appendix C) and OLMo (Groeneveld et al. 2024) report. Text is
lowercased and split into word tokens (runs of letters and digits) and single punctuation marks;
unlike GPT-3 the punctuation is kept, so "6 + 2" and "6 - 2" stay different problems. Items
shorter than n tokens are checked whole (n = their length) down to `min_tokens`; shorter items
are counted as unchecked.

N-grams are hashed to 64 bits: word ids from a shared vocabulary, combined by a polynomial rolling
hash in numpy (wrapping uint64 arithmetic). Each training n-gram set is a sorted array of unique
hashes (8 bytes per distinct n-gram), queried with searchsorted.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import numpy as np

_TOKEN = re.compile(r"\w+|[^\w\s]")
_MULT = np.uint64(0x9E3779B97F4A7C15)


class Vocabulary:
    """token -> integer id >= 1, in order of first appearance. Once frozen, tokens it has not
    seen map to 0: an n-gram holding one cannot occur in any eval item, so the training index
    never stores it and its size follows the eval sets' vocabulary, not the corpus."""

    def __init__(self) -> None:
        self._ids: dict[str, int] = {}
        self.frozen = False

    def encode(self, text: str) -> np.ndarray:
        return self._ids_of([m.group().lower() for m in _TOKEN.finditer(text)])

    def encode_spans(self, text: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """ids plus each token's character start and end in `text` (for masking spans)."""
        matches = list(_TOKEN.finditer(text))
        ids = self._ids_of([m.group().lower() for m in matches])
        return (ids, np.fromiter((m.start() for m in matches), np.int64, len(matches)),
                np.fromiter((m.end() for m in matches), np.int64, len(matches)))

    def _ids_of(self, words: list[str]) -> np.ndarray:
        # tokens are found in the original text and lowercased one by one, so their character
        # spans are exact even where lowercasing changes a string's length (e.g. U+0130)
        ids = self._ids
        if self.frozen:
            out = [ids.get(w, 0) for w in words]
        else:
            out = [ids.setdefault(w, len(ids) + 1) for w in words]
        return np.asarray(out, dtype=np.uint64)


def ngram_hashes(ids: np.ndarray, n: int) -> np.ndarray:
    """64-bit hashes of every n-gram of one document's ids that holds no unknown (0) id."""
    return ngram_hashes_at(ids, n)[0]


def ngram_hashes_at(ids: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(hashes, start positions) of every n-gram of `ids` that holds no unknown (0) id. A 0 id
    between documents therefore keeps n-grams from spanning two of them."""
    if len(ids) < n:
        return np.empty(0, dtype=np.uint64), np.empty(0, dtype=np.int64)
    m = len(ids) - n + 1
    with np.errstate(over="ignore"):
        h = np.zeros(m, dtype=np.uint64)
        for j in range(n):
            h = h * _MULT + ids[j:m + j]
    unknown = np.concatenate([[0], np.cumsum(ids == 0)])
    ok = unknown[n:] - unknown[:m] == 0
    return h[ok], np.flatnonzero(ok)


class NgramIndex:
    """The distinct n-grams of a training corpus for every n it was asked about."""

    def __init__(self, docs: Iterable[str], vocab: Vocabulary, sizes: Iterable[int], chunk: int = 1 << 22) -> None:
        self.sizes = sorted(set(sizes))
        parts: dict[int, list[np.ndarray]] = {n: [] for n in self.sizes}
        pending: dict[int, list[np.ndarray]] = {n: [] for n in self.sizes}
        filled = 0
        for text in docs:
            ids = vocab.encode(text)
            for n in self.sizes:
                pending[n].append(ngram_hashes(ids, n))
            filled += len(ids)
            if filled >= chunk:  # dedupe as we go, so memory follows distinct n-grams, not tokens
                for n in self.sizes:
                    parts[n] = [np.unique(np.concatenate(parts[n] + pending[n]))]
                    pending[n] = []
                filled = 0
        self._sets = {n: np.unique(np.concatenate(parts[n] + pending[n])) if parts[n] or pending[n]
                      else np.empty(0, dtype=np.uint64) for n in self.sizes}

    def contains_any(self, hashes: np.ndarray, n: int) -> bool:
        s = self._sets[n]
        if not len(s) or not len(hashes):
            return False
        pos = np.searchsorted(s, hashes).clip(max=len(s) - 1)
        return bool((s[pos] == hashes).any())


def item_ngram_size(ids: np.ndarray, n: int, min_tokens: int) -> int | None:
    """The n-gram size an item is checked with, or None when it is too short to check."""
    if len(ids) >= n:
        return n
    return len(ids) if len(ids) >= min_tokens else None


def overlap(eval_sets: dict[str, list[str]], training_docs, *, n: int = 13, min_tokens: int = 4) -> dict[str, dict]:
    """{set: {items, checked, contaminated, overlap_rate}}; overlap_rate = contaminated / checked.
    `training_docs` is a callable returning a fresh iterable of texts (it is read once)."""
    vocab = Vocabulary()
    encoded = {name: [vocab.encode(t) for t in items] for name, items in eval_sets.items()}
    vocab.frozen = True
    sizes = {item_ngram_size(ids, n, min_tokens) for items in encoded.values() for ids in items} - {None}
    index = NgramIndex(training_docs(), vocab, sizes or {n})
    out = {}
    for name, items in encoded.items():
        checked = dirty = 0
        for ids in items:
            k = item_ngram_size(ids, n, min_tokens)
            if k is None:
                continue
            checked += 1
            dirty += index.contains_any(ngram_hashes(ids, k), k)
        out[name] = {"items": len(items), "checked": checked, "contaminated": dirty,
                     "overlap_rate": dirty / checked if checked else 0.0}
    return out
