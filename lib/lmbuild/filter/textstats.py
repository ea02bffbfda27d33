"""Vectorised building blocks for the filter rules: segment a batch once, then aggregate.

A batch of documents (a pyarrow string array) is split once into lines (`split_lines`) and the
lines that matter into words (`split_words`): a vocabulary of the batch's distinct words and
integer arrays tying words to lines and lines to documents. A per-document statistic is then
an `np.bincount` of per-line or per-word values; a per-word property (length, "has a letter",
"ends with a full stop") is computed once per distinct word on the vocabulary and gathered.
Repeated lines and paragraphs are found by exact dictionary encoding of integer keys
(`first_occurrences`; repeated n-grams in lmbuild.filter.ngram_repeats), so there are no hash
collisions and the results equal a plain Python computation over each document
(lmbuild.filter.reference).

The rules read a batch through a `Batch`: its lines, the words of the lines that matter, and the
per-line and per-word properties they ask for (VOCAB_PROPERTIES: bullet, ellipsis, sentence
ends, ...), each computed once, when first asked. They record each document's first failing rule
(RULE_NAMES order) in a `Decisions`. The C4 rules (lmbuild.filter.rules) and the document-level
groups (lmbuild.filter.doc_rules) share both.

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

from .rule_config import BULLETS, ELLIPSES, RULE_NAMES, SENTENCE_END_IN_WORD, TERMINAL_PUNCT

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


# ---------------------------------------------------------------- a batch as the rules read it

# Per-word properties, computed once per distinct word of a batch (its vocabulary).
VOCAB_PROPERTIES = {
    "bullet": lambda v: vocab_first_char_in(v, BULLETS),
    "ellipsis_end": lambda v: vocab_ends_with(v, ELLIPSES),
    "sentence_ends": lambda v: vocab_count_regex(v, SENTENCE_END_IN_WORD),
    "has_letter": lambda v: matches(v, letter_class()),
    "javascript": lambda v: contains(pc.ascii_lower(v), "javascript"),
    "curly_bracket": lambda v: contains(v, "{"),
    "hashes": lambda v: vocab_count(v, "#"),
    "ellipses": lambda v: sum(vocab_count(v, e) for e in ELLIPSES),
}


class Batch:
    """The lines and words of a batch, and their properties computed when first needed."""

    def __init__(self, lines: Lines):
        self.lines = lines
        self.words: Words | None = None
        self.word_lines: np.ndarray | None = None  # the lines split into words
        self.word_line_strings: pa.Array | None = None  # and their strings
        self._cache: dict = {}
        # Vocabulary entries that properties computed from now on must be right for (None: all).
        # The C4 rules read the words of every document; later groups only those of the
        # documents C4 kept, often a small part of the batch's vocabulary.
        self._focus: np.ndarray | None = None

    def split_words(self, selected: np.ndarray) -> None:
        index = np.flatnonzero(selected)
        self.word_line_strings = self.lines.take(index)  # kept for line_id
        self.words = split_words(self.lines, index, self.word_line_strings)
        self.word_lines = selected

    def _cached(self, key, compute):
        if key not in self._cache:
            self._cache[key] = compute()
        return self._cache[key]

    def terminal(self) -> np.ndarray:
        """Lines that end, before trailing whitespace, in terminal punctuation."""
        def compute():
            trimmed = pc.utf8_rtrim_whitespace(self.lines.strings)
            return matches(trimmed, f"[{TERMINAL_PUNCT}]$")
        return self._cached("terminal", compute)

    def focus(self, words: np.ndarray) -> None:
        """Properties computed after this call need only be right for these words' entries
        (others read as False or 0); those computed before stay right for every entry."""
        used = np.zeros(len(self.words.vocab), bool)
        used[self.words.vid[words]] = True
        self._focus = np.flatnonzero(used)

    def _per_entry(self, key, compute) -> np.ndarray:
        """A property of the vocabulary entries, computed on the entries in focus only."""
        def on_focus():
            if self._focus is None or len(self._focus) == len(self.words.vocab):
                return compute(self.words.vocab)
            values = compute(self.words.vocab.take(self._focus))
            out = np.zeros(len(self.words.vocab), values.dtype)
            out[self._focus] = values
            return out
        return self._cached(key, on_focus)

    def vocab(self, prop: str) -> np.ndarray:
        return self._per_entry(prop, VOCAB_PROPERTIES[prop])

    def stop_words(self, stop_words: list[str]) -> np.ndarray:
        key = ("stop_words", tuple(stop_words))
        return self._per_entry(key, lambda v: vocab_in(v, stop_words))

    def line_id(self) -> np.ndarray:
        """Equal lines (among the lines split into words) share an id."""
        def compute():
            index = np.flatnonzero(self.word_lines)
            ids = np.full(len(self.word_lines), -1, np.int64)
            ids[index] = dictionary_ids(self.word_line_strings)
            return ids
        return self._cached("line_id", compute)

    def words_with(self, prop: str, on_lines: np.ndarray | None = None) -> np.ndarray:
        """The words (indices) whose vocabulary entry has a property (is true or non-zero), of
        all lines or of those that the mask `on_lines` selects. Few words have one, so the
        line test runs on those only."""
        hit = np.flatnonzero(self.vocab(prop).astype(bool, copy=False)[self.words.vid])
        return hit if on_lines is None else hit[on_lines[self.words.line[hit]]]


class Decisions:
    """The first failing rule of each document, filled in rule order."""

    def __init__(self, n_docs: int):
        self.code = np.full(n_docs, -1, np.int16)

    def fail(self, rule: str, mask: np.ndarray) -> None:
        self.code[(self.code < 0) & mask] = RULE_NAMES.index(rule)

    @property
    def alive(self) -> np.ndarray:
        return self.code < 0

    def reasons(self) -> pa.Array:
        codes = pa.array(self.code, mask=self.code < 0)
        return pc.take(pa.array(RULE_NAMES, pa.string()), codes)
