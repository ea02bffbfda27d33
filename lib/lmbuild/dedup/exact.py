"""Exact duplicates: a 128-bit hash of each document's normalised text, and the join on it.

With `normalize.collapse_whitespace` on (the default), the normalised text is its sequence of
words joined by single spaces, so the key is taken over the sequence of word hashes the MinHash
pass computes anyway (two polynomial hashes with different bases over the 64-bit word hashes):
no second pass over the text. With it off, the key is two polynomial hashes over the normalised
text's bytes, whitespace included. Documents without any word (empty after normalisation) get
no key: they are never exact duplicates of anything (two texts made only of punctuation are not
the same document just because stripping left nothing of either).

The join sorts the keys of all documents (lexsort on the two halves, stable, so ties keep the
global document order; `key_runs`, which paragraph dedup shares) and links each document of a
run of equal keys to the run's first one.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from .hashing import BASES, hash_sequences, hash_strings
from .words import Words


def exact_keys(normalised: pa.Array, words: Words, collapse_whitespace: bool,
               seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(high, low) uint64 halves of every document's 128-bit exact key."""
    if collapse_whitespace:
        starts, ends = words.first[:-1], words.first[1:]
        return (hash_sequences(words.hashes, starts, ends, BASES[0], seed + 11),
                hash_sequences(words.hashes, starts, ends, BASES[1], seed + 12))
    return hash_strings(normalised, BASES[0], seed + 11), hash_strings(normalised, BASES[1], seed + 12)


def key_runs(high: np.ndarray, low: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(order, new): `order` sorts the 128-bit keys (lexsort on the two halves, stable, so equal
    keys keep their input order) and new[i] is True where order[i] starts a run of equal keys.
    The dedup stage's sorted-hash join: exact document keys here, paragraph keys in
    lmbuild.dedup.paragraphs."""
    n = len(high)
    order = np.lexsort((low, high))
    h, lo_ = high[order], low[order]
    new = np.empty(n, bool)
    if n:
        new[0] = True
        new[1:] = (h[1:] != h[:-1]) | (lo_[1:] != lo_[:-1])
    return order, new


def exact_edges(high: np.ndarray, low: np.ndarray, docs: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict]:
    """Edges (document, first document with the same key) among `docs` (global indices in
    increasing order, with their keys), and counts: groups with >= 2 documents, documents in
    them."""
    n = len(docs)
    if n < 2:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), {"groups": 0, "documents": 0}
    order, new = key_runs(high, low)
    group = np.cumsum(new) - 1
    heads = np.flatnonzero(new)
    sizes = np.diff(np.append(heads, n))
    member = ~new
    u = docs[order[member]].astype(np.int64)
    v = docs[order[heads[group[member]]]].astype(np.int64)
    big = sizes[sizes >= 2]
    return u, v, {"groups": int(len(big)), "documents": int(big.sum())}
