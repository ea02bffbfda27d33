"""Vectorised building blocks for the filter rules: segment a batch once, then aggregate.

A batch of documents (a pyarrow string array) is split once into lines (`split_lines`) and the
lines that matter into words (`split_words`): a vocabulary of the batch's distinct words and
integer arrays tying words to lines and lines to documents. A per-document statistic is then
an `np.bincount` of per-line or per-word values; a per-word property (length, "has a letter",
"ends with a full stop") is computed once per distinct word on the vocabulary and gathered.
Repeated lines, paragraphs and n-grams are found by exact dictionary encoding of integer keys
(`first_occurrences`), so there are no hash collisions and the results equal a plain Python
computation over each document (lmbuild.filter.reference).

Definitions shared with the reference implementation:
- A line break is "\\r\\n", "\\r" or "\\n"; a document of k line breaks has k + 1 lines.
- Whitespace is what `str.isspace()` accepts (pyarrow's utf8_split_whitespace, utf8_*trim_
  whitespace and utf8_is_space use the same set, which a test checks); a word is a maximal run of non-whitespace
  characters; a blank line has no word.
- Characters are Unicode code points.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

LINE_BREAK = r"\r\n|\r|\n"


@dataclass
class Lines:
    """Every line of every document of a batch, in text order."""

    strings: pa.Array  # without line-break characters
    doc: np.ndarray  # document of each line
    length: np.ndarray  # characters of each line
    blank: np.ndarray  # whitespace only
    n_docs: int

    def take(self, index: np.ndarray) -> pa.Array:
        return self.strings if len(index) == len(self.strings) else pc.take(self.strings, index)


@dataclass
class Words:
    """The words of some of the lines of a batch (lines outside the selection have none)."""

    vid: np.ndarray  # vocabulary id of each word, in text order
    line: np.ndarray  # line of each word
    line_count: np.ndarray  # words of each line
    line_first: np.ndarray  # index of each line's first word (meaningless where it has none)
    vocab: pa.Array  # the distinct words
    doc: np.ndarray  # document of each word

    @property
    def line_last(self) -> np.ndarray:
        return self.line_first + self.line_count - 1

    @functools.cached_property
    def vocab_len(self) -> np.ndarray:
        return pc.utf8_length(self.vocab).to_numpy().astype(np.int64)


def split_lines(texts: pa.Array) -> Lines:
    """Split a batch of non-null documents into lines."""
    if _may_contain(texts, ord("\r")):
        line_lists = pc.split_pattern_regex(texts, LINE_BREAK)
    else:
        line_lists = pc.split_pattern(texts, "\n")
    strings = line_lists.flatten()
    return Lines(
        strings=strings,
        doc=pc.list_parent_indices(line_lists).to_numpy(),
        length=pc.utf8_length(strings).to_numpy().astype(np.int64),
        # empty, or whitespace only (utf8_is_space is false on "")
        blank=pc.utf8_is_space(strings).to_numpy(zero_copy_only=False)
        | (pc.binary_length(strings).to_numpy() == 0),
        n_docs=len(texts),
    )


def split_words(lines: Lines, index: np.ndarray, strings: pa.Array | None = None) -> Words:
    """Split the lines `index` (their strings, if already taken) into words and encode them
    against a batch vocabulary."""
    token_lists = pc.utf8_split_whitespace(lines.take(index) if strings is None else strings)
    token_line = index[pc.list_parent_indices(token_lists).to_numpy()]
    encoded = pc.dictionary_encode(token_lists.flatten())
    vid = encoded.indices.to_numpy().astype(np.int64)
    # Leading and trailing whitespace leave empty tokens: they are not words.
    empty = pc.index(encoded.dictionary, "").as_py()
    if empty >= 0:
        is_word = vid != empty
        vid, token_line = vid[is_word], token_line[is_word]
    line_count = np.bincount(token_line, minlength=len(lines.doc))
    line_first = np.zeros(len(line_count), np.int64)
    np.cumsum(line_count[:-1], out=line_first[1:])
    return Words(vid=vid, line=token_line, line_count=line_count, line_first=line_first,
                 vocab=encoded.dictionary, doc=lines.doc[token_line])


def _may_contain(texts: pa.Array, byte: int) -> bool:
    """Whether a byte occurs in the array's data buffer (a superset check: the buffer may hold
    bytes outside a sliced array, which only costs the slower path)."""
    data = texts.buffers()[2]
    return data is not None and bool((np.frombuffer(data, np.uint8) == byte).any())


# ---------------------------------------------------------------- properties of distinct words

def matches(strings: pa.Array, pattern: str) -> np.ndarray:
    """Which strings match an RE2 pattern (searched, not anchored)."""
    return pc.match_substring_regex(strings, pattern).to_numpy(zero_copy_only=False)


def contains(strings: pa.Array, needle: str) -> np.ndarray:
    """Which strings contain a literal."""
    return pc.match_substring(strings, needle).to_numpy(zero_copy_only=False)


def vocab_first_char_in(vocab: pa.Array, chars: str) -> np.ndarray:
    first = pc.utf8_slice_codeunits(vocab, 0, 1)
    return pc.is_in(first, value_set=pa.array(list(chars))).to_numpy(zero_copy_only=False)


def vocab_ends_with(vocab: pa.Array, suffixes: tuple[str, ...]) -> np.ndarray:
    hit = np.zeros(len(vocab), bool)
    for suffix in suffixes:
        hit |= pc.ends_with(vocab, suffix).to_numpy(zero_copy_only=False)
    return hit


def vocab_count(vocab: pa.Array, needle: str) -> np.ndarray:
    """Non-overlapping occurrences of needle in each vocabulary entry (as str.count)."""
    return pc.count_substring(vocab, needle).to_numpy().astype(np.int64)


def vocab_count_regex(vocab: pa.Array, pattern: str) -> np.ndarray:
    """Non-overlapping matches of an RE2 pattern in each vocabulary entry (as len(re.findall))."""
    return pc.count_substring_regex(vocab, pattern).to_numpy().astype(np.int64)


def vocab_in(vocab: pa.Array, words: list[str]) -> np.ndarray:
    """Which entries, ASCII letters lowercased, equal one of words (given in lowercase)."""
    if not words:
        return np.zeros(len(vocab), bool)
    value_set = pa.array(words, pa.string())
    return pc.is_in(pc.ascii_lower(vocab), value_set=value_set).to_numpy(zero_copy_only=False)


# ---------------------------------------------------------------- character classes

def _ranges_class(codepoints: list[int], negate: bool = False) -> str:
    """An explicit RE2 character class of the given code points (ranges, \\x{...} escapes)."""
    parts, start, prev = [], None, None
    for cp in codepoints:
        if start is None:
            start = prev = cp
        elif cp == prev + 1:
            prev = cp
        else:
            parts.append((start, prev))
            start = prev = cp
    if start is not None:
        parts.append((start, prev))
    body = "".join(f"\\x{{{a:x}}}" if a == b else f"\\x{{{a:x}}}-\\x{{{b:x}}}" for a, b in parts)
    return f"[{'^' if negate else ''}{body}]"


def _all_codepoints() -> str:
    return "".join(chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF)


@functools.cache
def letter_class() -> str:
    """RE2 class of the characters for which this Python's str.isalpha() is true.

    RE2's \\pL follows a different Unicode version than the running Python; an explicit class
    makes both implementations agree on every code point.
    """
    return _ranges_class([c for c in range(0x110000) if chr(c).isalpha()])


@functools.cache
def non_word_class() -> str:
    """RE2 class of the characters that Python's re does not count as \\w (i.e. Python's \\W)."""
    return _ranges_class(sorted(ord(c) for c in re.findall(r"\w", _all_codepoints())), negate=True)


def re2_escape(literal: str) -> str:
    """Escape a literal for RE2 (re.escape writes escapes such as '\\ ' that RE2 rejects)."""
    return "".join("\\" + ch if ch in r"\.^$|?*+()[]{}-/" else ch for ch in literal)


# ---------------------------------------------------------------- aggregation

def per_doc_count(doc: np.ndarray, n_docs: int) -> np.ndarray:
    return np.bincount(doc, minlength=n_docs).astype(np.int64)


def per_doc_sum(doc: np.ndarray, values: np.ndarray, n_docs: int) -> np.ndarray:
    """Exact integer sums per document (float64 bincount is exact below 2**53)."""
    if len(doc) == 0:
        return np.zeros(n_docs, np.int64)
    return np.rint(np.bincount(doc, weights=values, minlength=n_docs)).astype(np.int64)


def ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den in float64, defined as 0.0 where den is 0."""
    out = np.zeros(len(num), np.float64)
    np.divide(num, den, out=out, where=den > 0)
    return out


# ---------------------------------------------------------------- repeats

def dictionary_ids(values: pa.Array | np.ndarray) -> np.ndarray:
    """Dense ids, equal for equal values, numbered in order of first appearance."""
    return pc.dictionary_encode(pa.array(values)).indices.to_numpy().astype(np.int64)


def first_occurrences(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Dense ids of integer keys (in order of first appearance) and a mask of first appearances."""
    ids = dictionary_ids(keys)
    first = np.ones(len(ids), bool)
    if len(ids) > 1:
        # ids count up from 0 as new keys appear, so a key is new iff its id exceeds all before it
        np.greater(ids[1:], np.maximum.accumulate(ids)[:-1], out=first[1:])
    return ids, first


def pair_key(doc: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """One integer key per (document, id) pair: repeats then only count within a document."""
    return doc * (int(ids.max(initial=-1)) + 1) + ids


def sequence_ids(item_ids: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Ids of variable-length sequences of item ids (sequence k = items[starts[k]:starts[k+1]]).

    Each sequence becomes the bytes of its int32 item ids, and equal byte strings are equal
    sequences, so dictionary encoding them is exact.
    """
    data = np.ascontiguousarray(item_ids, dtype="<i4")
    offsets = (np.append(starts, len(item_ids)) * 4).astype("<i4")
    seqs = pa.Array.from_buffers(pa.binary(), len(starts),
                                 [None, pa.py_buffer(offsets), pa.py_buffer(data)])
    return dictionary_ids(seqs)


@dataclass
class NGrams:
    """The n-grams of one size n that may repeat: those whose leading and trailing (n-1)-grams
    both repeat.

    Every other n-gram of the documents occurs once, so it cannot be a repeat or a top n-gram.
    """

    n: int
    starts: np.ndarray  # word index of each n-gram's first word, in text order
    ids: np.ndarray  # dense ids in order of first appearance; ids differ across documents
    first: np.ndarray  # first occurrence of its n-gram in its document


def ngrams(word_doc: np.ndarray, word_vid: np.ndarray, doc_words: np.ndarray, n_max: int):
    """Yield NGrams for n = 2 .. n_max over words grouped by document in text order.

    The id of an n-gram is the dense id of the pair (id of its leading (n-1)-gram, id of its last
    word), so each size costs one dictionary encoding of an integer array and ids stay exact.
    An n-gram that occurs twice has a leading and a trailing (n-1)-gram that occur twice, so
    only those n-grams are encoded: most of the words of a text do not start a repeated 3-gram.
    """
    n_words = len(word_vid)
    doc_start = np.zeros(len(doc_words), np.int64)
    np.cumsum(doc_words[:-1], out=doc_start[1:])
    words_left = doc_words[word_doc] - (np.arange(n_words) - doc_start[word_doc])
    unigram = dictionary_ids(pair_key(word_doc, word_vid))
    starts, ids, base = np.arange(n_words), unigram, int(unigram.max(initial=-1)) + 1
    # repeats[i]: the (n-1)-gram starting at word i occurs at least twice in its document
    # (one spare entry, so that i + 1 is a valid index for the last word)
    repeats = np.zeros(n_words + 1, bool)
    for n in range(2, n_max + 1):
        repeated = np.bincount(ids)[ids] >= 2
        repeats[starts] = repeated
        may_repeat = repeated & repeats[starts + 1] & (words_left[starts] >= n)
        repeats[starts] = False  # cleared for the next size
        starts, ids = starts[may_repeat], ids[may_repeat]
        if len(starts) == 0:
            return
        ids, first = first_occurrences(ids * base + unigram[starts + n - 1])
        yield NGrams(n, starts, ids, first)


def top_ngram_chars(g: NGrams, word_doc: np.ndarray, char_before: np.ndarray,
                    n_docs: int) -> np.ndarray:
    """Per document: occurrences x characters of its most frequent n-gram, 0 if none repeats.

    Characters of an n-gram are the characters of its words; among equally frequent n-grams the
    one with most characters counts. char_before[i] is the characters of words 0..i-1.
    """
    if len(g.ids) == 0:
        return np.zeros(n_docs, np.int64)
    counts = np.bincount(g.ids)
    first_start = g.starts[g.first]  # id k first appears at first_start[k]
    chars = char_before[first_start + g.n] - char_before[first_start]
    doc = word_doc[first_start]  # non-decreasing: ids appear in text order
    big = int(char_before[-1]) + 1
    score = counts * big + chars
    seg = np.flatnonzero(np.r_[True, doc[1:] != doc[:-1]])
    best = np.zeros(n_docs, np.int64)
    best[doc[seg]] = np.maximum.reduceat(score, seg)
    top_count, top_chars = best // big, best % big
    return np.where(top_count >= 2, top_count * top_chars, 0)


def dup_ngram_chars(g: NGrams, word_doc: np.ndarray, char_before: np.ndarray,
                    n_docs: int) -> np.ndarray:
    """Per document: characters of the words covered by any repeat (non-first occurrence) of an
    n-gram, each word counted once. char_before[i] is the characters of words 0..i-1.

    The repeats cover words [s, s + n) for their starts s, in text order; as all have the same
    length, the words of one not covered by the one before are [max(s, s_prev + n), s + n), and
    an n-gram never crosses a document boundary, so the sum runs over the repeats only.
    """
    s = g.starts[~g.first]
    if len(s) == 0:
        return np.zeros(n_docs, np.int64)
    new_from = np.maximum(s, np.r_[0, s[:-1] + g.n])
    return per_doc_sum(word_doc[s], char_before[s + g.n] - char_before[new_from], n_docs)
