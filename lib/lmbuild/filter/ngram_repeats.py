"""Gopher's n-gram repetition statistics in one compiled pass (numba) over a batch's words.

Rae et al. 2021 (Gopher, appendix A, table A1) drop a document when too much of its text sits
in its most frequent 2-, 3- or 4-gram, or in repeated 5- to 10-grams. Per document and n this
module computes both numerators, exactly as lmbuild.filter.textstats defines them:

- top n-gram: occurrences x characters of the document's most frequent n-gram (among equally
  frequent ones the one with most characters), 0 if no n-gram occurs twice;
- duplicated n-grams: characters of the words covered by any non-first occurrence of an
  n-gram, each word counted once.

N-grams get exact dense ids, built up one size at a time: the id of an n-gram is the id of the
pair (id of its leading (n-1)-gram, id of its last word), looked up in an open-addressing hash
table of integer keys, so equal ids mean equal word sequences (no hash collisions). An n-gram
that occurs twice has leading and trailing (n-1)-grams that occur twice, so each size only
visits the starts that survived the size before: after n = 3 few words are left.
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, nogil=True)
def _slot(key, mask):
    # Fibonacci hashing (Knuth 6.4): the top bits of key x 2^64/phi spread consecutive keys
    return np.int64((np.uint64(key) * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(32)) & mask


@numba.njit(cache=True, nogil=True)
def dense_ids(keys):
    """(ids, distinct): equal keys get equal ids, numbered 0, 1, ... in order of first appearance.
    The table holds twice the keys (up to 2^20 slots) and grows 4x whenever it is half full."""
    n = keys.shape[0]
    size = 1024
    while size < 2 * n and size < 1 << 20:  # sized for all keys distinct, up to 8 MiB; then it grows
        size *= 2
    mask = size - 1
    table = np.full(size, -1, np.int64)  # the id in each slot; its key is distinct[id]
    distinct = np.empty(max(n, 1), np.int64)
    ids = np.empty(n, np.int64)
    count = 0
    for i in range(n):
        key = keys[i]
        j = _slot(key, mask)
        while True:
            s = table[j]
            if s < 0:
                table[j] = count
                distinct[count] = key
                ids[i] = count
                count += 1
                if 2 * count > size:
                    size *= 4
                    mask = size - 1
                    table = np.full(size, -1, np.int64)
                    for t in range(count):
                        q = _slot(distinct[t], mask)
                        while table[q] >= 0:
                            q = (q + 1) & mask
                        table[q] = t
                break
            if distinct[s] == key:
                ids[i] = s
                break
            j = (j + 1) & mask
    return ids, count


@numba.njit(cache=True, nogil=True)
def ngram_repeats(word_doc, word_vid, word_len, doc_words, n_max):
    """(top, dup), each (n_max + 1, documents) int64: row n holds the top n-gram and the
    duplicated n-gram characters of each document (rows 0 and 1 are zero). Words are grouped by
    document in text order; word_doc, word_vid (vocabulary ids) and word_len (characters) are
    per word, doc_words per document."""
    n_docs = doc_words.shape[0]
    n_words = word_vid.shape[0]
    top = np.zeros((n_max + 1, n_docs), np.int64)
    dup = np.zeros((n_max + 1, n_docs), np.int64)
    if n_words == 0:
        return top, dup
    doc_start = np.zeros(n_docs, np.int64)
    for d in range(1, n_docs):
        doc_start[d] = doc_start[d - 1] + doc_words[d - 1]
    char_before = np.zeros(n_words + 1, np.int64)
    vocab = 0
    for i in range(n_words):
        char_before[i + 1] = char_before[i] + word_len[i]
        vocab = max(vocab, word_vid[i] + 1)
    # unigram ids: one per (document, word) pair, so repeats only count within a document. Words
    # come document after document, so a vocabulary entry last seen in an earlier document is new.
    unigram = np.empty(n_words, np.int64)
    last_doc = np.full(vocab, -1, np.int64)
    last_id = np.empty(vocab, np.int64)
    base = 0
    for i in range(n_words):
        v = word_vid[i]
        if last_doc[v] != word_doc[i]:
            last_doc[v] = word_doc[i]
            last_id[v] = base
            base += 1
        unigram[i] = last_id[v]
    starts = np.arange(n_words)
    ids = unigram
    distinct = base
    repeats = np.zeros(n_words + 1, np.bool_)  # one spare entry: s + 1 is always an index
    for n in range(2, n_max + 1):
        counts = np.zeros(distinct, np.int64)
        for c in range(starts.shape[0]):
            counts[ids[c]] += 1
        for c in range(starts.shape[0]):
            repeats[starts[c]] = counts[ids[c]] >= 2
        keep = np.zeros(starts.shape[0], np.bool_)
        for c in range(starts.shape[0]):
            s = starts[c]
            left = doc_words[word_doc[s]] - (s - doc_start[word_doc[s]])
            keep[c] = repeats[s] and repeats[s + 1] and left >= n
        for c in range(starts.shape[0]):
            repeats[starts[c]] = False
        kept = np.flatnonzero(keep)
        if kept.shape[0] == 0:
            break
        starts = starts[kept]
        ids, distinct = dense_ids(ids[kept] * base + unigram[starts + n - 1])

        # the top n-gram: ids appear in text order, so the first start of id k is the k-th new one
        counts = np.zeros(distinct, np.int64)
        first_start = np.empty(distinct, np.int64)
        seen = 0
        for c in range(starts.shape[0]):
            counts[ids[c]] += 1
            if ids[c] == seen:
                first_start[seen] = starts[c]
                seen += 1
        best_count = np.zeros(n_docs, np.int64)
        best_chars = np.zeros(n_docs, np.int64)
        for k in range(distinct):
            s = first_start[k]
            d = word_doc[s]
            chars = char_before[s + n] - char_before[s]
            if counts[k] > best_count[d] or (counts[k] == best_count[d] and chars > best_chars[d]):
                best_count[d] = counts[k]
                best_chars[d] = chars
        for d in range(n_docs):
            if best_count[d] >= 2:
                top[n, d] = best_count[d] * best_chars[d]

        # duplicated n-grams: the repeats cover words [s, s + n) in text order, all of length n,
        # so the words of one not covered by the one before are [max(s, prev + n), s + n)
        seen = 0
        prev_end = 0
        for c in range(starts.shape[0]):
            if ids[c] == seen:  # a first occurrence
                seen += 1
                continue
            s = starts[c]
            dup[n, word_doc[s]] += char_before[s + n] - char_before[max(s, prev_end)]
            prev_end = s + n
    return top, dup
