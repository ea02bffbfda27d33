"""MinHash signatures of word n-grams, vectorised over a batch of documents.

MinHash (Broder 1997, "On the resemblance and containment of documents"): for a random
permutation h of the shingle universe, P[min h(A) = min h(B)] = |A & B| / |A | B|, the
Jaccard similarity of the shingle sets A and B; with `num_perm` independent permutations the
fraction of equal minima estimates it with standard error sqrt(J (1 - J) / num_perm).

Shingles are word n-grams of the normalised text (lmbuild.dedup.normalize); a word is a run of
non-whitespace characters. A document with fewer than n words (but at least one) has one
shingle: its whole text. A document with no word at all has no shingle and an all-0xFFFFFFFF
signature; the stage leaves such documents out of near-duplicate search.

How a batch is processed (no Python loop over words or shingles):

1. find the words of every text and hash each word once, straight from the Arrow UTF-8 buffer
   (lmbuild.dedup.words: a byte mask for word boundaries, a vectorised polynomial hash);
2. n-gram hashes from word hashes: sum_i w[t+i] * m_i over the n words of each window
   (distinct random odd multipliers m_i, so word order counts), then fmix64; the top 32 bits
   are the shingle's value x;
3. permutations h_k(x) = (a_k x + b_k) mod 2^32, a_k odd, i.e. random affine bijections of
   the 32-bit shingle values (the shingle values are already uniformly distributed hashes, as
   in datasketch 2's default `affine32` scheme, which permutes fmix32-mixed 32-bit SHA-1
   prefixes the same way), and the minimum per document, in one compiled pass over the
   shingles (numba): no (permutations x shingles) matrix is ever stored.

Signatures come out permutation-major, (num_perm, documents): band k is rows
[k r, (k+1) r), which lmbuild.dedup.lsh turns into one band key per document.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numba
import numpy as np
import pyarrow as pa

from .hashing import combine, multipliers
from .words import Words, split_and_hash

EMPTY = np.uint32(0xFFFFFFFF)

@numba.njit(cache=True, nogil=True)
def _permute_min(values, starts, a, b, out):
    """out[g, k] = min(out[g, k], min over x in group g of (a[k] x + b[k]) mod 2^32), where group g
    is values[starts[g]:starts[g + 1]] (the last one runs to the end).

    One pass over the shingles, four at a time: for each permutation k the four permuted values
    and the running minimum in row g of `out` (which stays in L1), so the row is loaded and
    stored once per four shingles; the loop over k is SIMD-vectorised by LLVM. One shingle at a
    time was 3x slower on an AMD EPYC, bound by those loads and stores. The uint32 products and
    sums wrap, which is the mod 2^32."""
    n, groups, perms = values.shape[0], starts.shape[0], a.shape[0]
    for g in range(groups):
        hi = starts[g + 1] if g + 1 < groups else n
        row = out[g]
        i = starts[g]
        while i + 4 <= hi:
            x0, x1, x2, x3 = values[i], values[i + 1], values[i + 2], values[i + 3]
            for k in range(perms):
                ak, bk = a[k], b[k]
                m01 = min(np.uint32(ak * x0 + bk), np.uint32(ak * x1 + bk))
                m23 = min(np.uint32(ak * x2 + bk), np.uint32(ak * x3 + bk))
                row[k] = min(row[k], min(m01, m23))
            i += 4
        while i < hi:
            x = values[i]
            for k in range(perms):
                row[k] = min(row[k], np.uint32(a[k] * x + b[k]))
            i += 1


@dataclass
class Shingles:
    """The shingle values of a batch, grouped by document in document order."""

    values: np.ndarray  # uint32, shingles of documents with >= n words, document after document
    starts: np.ndarray  # index in `values` of the first shingle of each such document
    docs: np.ndarray  # which documents those are
    short_values: np.ndarray  # uint32, the one whole-text shingle of each short document
    short_docs: np.ndarray  # documents with 1..n-1 words
    words: np.ndarray  # words per document (0: no shingle at all)


@dataclass
class MinHasher:
    """Signatures with `num_perm` permutations over word `ngram`s, fixed by `seed`."""

    ngram: int = 5
    num_perm: int = 240
    seed: int = 1
    a: np.ndarray = field(init=False, repr=False)
    b: np.ndarray = field(init=False, repr=False)
    gram_mults: np.ndarray = field(init=False, repr=False)

    def __post_init__(self):
        if self.ngram < 1 or self.num_perm < 1:
            raise ValueError(f"ngram and num_perm must be >= 1, got {self.ngram} and {self.num_perm}")
        rng = np.random.default_rng([self.seed, 0x4D696E48617368])  # second word: "MinHash"
        self.a = (rng.integers(0, 2**32, self.num_perm, dtype=np.uint64) | 1).astype(np.uint32)
        self.b = rng.integers(0, 2**32, self.num_perm, dtype=np.uint64).astype(np.uint32)
        self.gram_mults = multipliers(self.ngram + 1, self.seed)

    # ------------------------------------------------------------------ shingles

    def shingles(self, words: Words) -> Shingles:
        """Shingle values of a batch from its words (lmbuild.dedup.words.split_and_hash)."""
        w, doc, words_per_doc, first = words.hashes, words.doc, words.count, words.first
        n_docs = len(words_per_doc)
        n = self.ngram
        long_docs = np.flatnonzero(words_per_doc >= n)
        short_docs = np.flatnonzero((words_per_doc > 0) & (words_per_doc < n))

        # n-grams: window t covers words t..t+n-1; it is valid when they are all in t's document
        windows = len(w) - n + 1
        if windows > 0 and len(long_docs):
            pos = np.arange(windows, dtype=np.int64) - first[doc[:windows]]
            valid = np.flatnonzero(pos <= words_per_doc[doc[:windows]] - n)
            cols = [w[i:i + windows] for i in range(n)]
            grams = combine(cols, self.gram_mults)[valid]
            values = (grams >> np.uint64(32)).astype(np.uint32)
        else:
            values = np.zeros(0, np.uint32)
        per_doc = np.maximum(words_per_doc[long_docs] - n + 1, 0)
        starts = np.zeros(len(long_docs), np.int64)
        np.cumsum(per_doc[:-1], out=starts[1:])

        # short documents: one shingle of all their words (word count mixed in, see combine)
        k = len(short_docs)
        if k:
            acc = np.zeros(k, np.uint64)
            for i in range(n - 1):  # positions, not words: at most n - 1 vectorised steps
                has = words_per_doc[short_docs] > i
                idx = first[short_docs[has]] + i
                acc[has] += w[idx] * self.gram_mults[i]
            acc += words_per_doc[short_docs].astype(np.uint64) * self.gram_mults[n]
            short_values = (combine([acc], self.gram_mults[:1]) >> np.uint64(32)).astype(np.uint32)
        else:
            short_values = np.zeros(0, np.uint32)
        return Shingles(values, starts, long_docs, short_values, short_docs, words_per_doc)

    # ------------------------------------------------------------------ signatures

    def permute_min(self, values: np.ndarray, starts: np.ndarray) -> np.ndarray:
        """(num_perm, groups) minima of the permuted values over groups values[starts[i]:starts[i+1]]."""
        out = np.full((len(starts), self.num_perm), EMPTY, np.uint32)
        if len(values):
            _permute_min(values, starts.astype(np.int64), self.a, self.b, out)
        return np.ascontiguousarray(out.T)

    def signatures(self, normalised: pa.Array, words: Words | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(signatures as a (num_perm, documents) uint32 matrix, words per document) of a batch
        of normalised texts (pass `words` if the batch was already split)."""
        sh = self.shingles(words if words is not None else split_and_hash(normalised, self.seed))
        sig = np.full((self.num_perm, len(sh.words)), EMPTY, np.uint32)
        if len(sh.docs):
            sig[:, sh.docs] = self.permute_min(sh.values, sh.starts)
        if len(sh.short_docs):
            sig[:, sh.short_docs] = self.permute_min(sh.short_values, np.arange(len(sh.short_docs)))
        return sig, sh.words


def estimate_jaccard(sig_a: np.ndarray, sig_b: np.ndarray) -> np.ndarray:
    """Fraction of equal MinHash values; signatures as (num_perm, pairs) or (num_perm,)."""
    return (sig_a == sig_b).mean(axis=0)
