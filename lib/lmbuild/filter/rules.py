"""Text-quality rules of the filter stage (C4, Gopher, FineWeb), vectorised over a record batch.

`apply_rules(texts, cfg)` decides every document of a batch at once: the C4 line rules remove
lines, then each rule group runs in GROUPS order on the text that is left, and a document's
reason is the first rule it fails (RULE_NAMES order), null if it passes them all. The same
definitions are written per document in plain Python in lmbuild.filter.reference; the two give
identical reasons and texts (tests/test_filter_rules.py, benchmarks/filter_throughput.py).

Words, lines and characters are as in lmbuild.filter.textstats (words split on whitespace,
lines on \\r\\n, \\r or \\n, characters are code points). Further definitions:

- Blank lines (no word) are never removed by the C4 line rules themselves and keep paragraphs
  apart; every per-line ratio counts non-blank lines only. A paragraph is a maximal run of
  non-blank lines.
- The text after C4 line removal, in a document that lost at least one line, is its kept
  paragraphs: the kept non-blank lines, each paragraph's lines joined with "\\n", paragraphs
  joined with one empty line ("\\n\\n"); so no run of blank lines, and no blank line at the start
  or end, is left (an empty text if nothing is left). A document that lost no line keeps its
  text unchanged, byte for byte. Every later rule sees that text and it is the output text;
  removed characters count the characters of removed lines (line breaks excluded).
  Why: tensorflow_datasets' c4_utils rejoins the kept lines with "\\n", which loses the
  paragraphs that Gopher's paragraph rules count; joining every kept line, blank ones included,
  instead leaves a run of blank lines wherever lines went, and those empty lines alone can fail
  FineWeb's newline/word ratio (and shift the character fractions). Kept paragraphs keep the
  structure and drop only what removal emptied. Every run of blank lines of such a document is
  collapsed, not only those next to a removed line: its line breaks are already rewritten as
  "\\n", and one rule is easier to state and check than one that depends on where lines went.
- "Characters of the document" (the denominator of the line and paragraph character fractions)
  excludes line breaks, so a "\\r\\n" document is decided as its "\\n" twin.
- A terminal line ends, before trailing whitespace, in one of TERMINAL_PUNCT (so "..." counts,
  "…" does not; the sentence enders of other scripts, SCRIPT_SENTENCE_ENDERS such as 。 । ؟,
  and the Tibetan shad count too). A sentence ends at a run of . ! ? (then optionally
  SENTENCE_CLOSERS) followed by whitespace or the end of the text, and at every run of enders
  that holds one of SCRIPT_SENTENCE_ENDERS (then optionally closers), wherever it is: CJK puts
  no space after 。, so "一。二。" is two sentences. A bullet line starts, after leading
  whitespace, with one of BULLETS; an ellipsis line ends, before trailing whitespace, with "..."
  or "…".
- Matching "javascript", "lorem ipsum", stop words and bad words ignores the case of ASCII
  letters only; a bad word matches where it is not preceded or followed by a word character
  (Python's \\w), so multi-word entries work.
- Repetition: a repeat is a line, paragraph or n-gram equal to an earlier one of the same
  document. dup_*_frac = repeats / items; dup_*_char_frac = characters of repeats / characters of
  the document. top_N_gram = occurrences x characters of the most frequent N-gram (if it occurs
  at least twice; ties go to the one with most characters) / characters of all words;
  dup_N_gram = characters of the words covered by any repeat of an N-gram, each word counted
  once / characters of all words. N-gram characters are its words' characters (no spaces).
- Every ratio with a zero denominator is 0.0, so an empty document fails every "min" rule
  (gopher_quality.min_words first) and passes every "max" rule.
- A "min_*" threshold drops a document strictly below it, a "max_*" one strictly above it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from . import textstats as ts
from .doc_rules import _View, _fineweb, _gopher_quality, _gopher_repetition
from .rule_config import (  # noqa: F401  (re-exported: the rules' public names)
    ASCII_LOWER, BULLETS, DEFAULTS, DUP_NGRAMS, ELLIPSES, GROUPS, LINE_RULES,
    RULE_NAMES, RULE_PARAMS, SCRIPT_SENTENCE_ENDERS, SENTENCE_CLOSERS, SENTENCE_END_IN_WORD, TERMINAL_PUNCT, TOP_NGRAMS, fill_thresholds)

# ---------------------------------------------------------------- results

@dataclass
class RuleResult:
    text: pa.StringArray  # the text after C4 line removal (unchanged where no line rule applies)
    reason: pa.StringArray  # per document: null = kept, else the FIRST failing rule name
    line_chars_removed: dict[str, int]  # per line rule: characters removed, dropped docs included
    line_docs_touched: dict[str, int]  # per line rule: documents that lost at least one line


class _Decisions:
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


# ---------------------------------------------------------------- the rules

def apply_rules(texts: pa.StringArray | pa.ChunkedArray, cfg: dict) -> RuleResult:
    """Decide every document of a batch; see the module docstring for the definitions.

    Null texts are decided as empty documents and stay null in the returned text.
    """
    params = fill_thresholds(cfg)
    if isinstance(texts, pa.ChunkedArray):
        texts = texts.combine_chunks()
    if pa.types.is_large_string(texts.type):
        texts = texts.cast(pa.string())
    batch = _Batch(ts.split_lines(pc.fill_null(texts, "")))
    decisions = _Decisions(len(texts))
    # Words are needed only on the lines that can survive the C4 terminal-punctuation rule.
    word_lines = ~batch.lines.blank
    if "c4" in params and params["c4"]["remove_no_terminal_punct_lines"]:
        word_lines &= batch.terminal()
    batch.split_words(word_lines)

    kept = np.ones(len(batch.lines.doc), bool)
    chars_removed = {rule: 0 for rule in LINE_RULES}
    docs_touched = {rule: 0 for rule in LINE_RULES}
    new_text = texts
    if "c4" in params:
        kept, chars_removed, docs_touched, new_text = _c4(batch, params["c4"], decisions, texts)
    focused = False
    for group, check in (("gopher_repetition", _gopher_repetition),
                         ("gopher_quality", _gopher_quality), ("fineweb", _fineweb)):
        if group in params and decisions.alive.any():
            view = _View(batch, kept & decisions.alive[batch.lines.doc])
            if not focused:  # from here on only the words of these lines are looked at
                batch.focus(view.words)
                focused = True
            check(view, params[group], decisions)
    return RuleResult(new_text, decisions.reasons(), chars_removed, docs_touched)


# Per-word properties, computed once per distinct word of a batch (its vocabulary).
_VOCAB_PROPERTIES = {
    "bullet": lambda v: ts.vocab_first_char_in(v, BULLETS),
    "ellipsis_end": lambda v: ts.vocab_ends_with(v, ELLIPSES),
    "sentence_ends": lambda v: ts.vocab_count_regex(v, SENTENCE_END_IN_WORD),
    "has_letter": lambda v: ts.matches(v, ts.letter_class()),
    "javascript": lambda v: ts.contains(pc.ascii_lower(v), "javascript"),
    "curly_bracket": lambda v: ts.contains(v, "{"),
    "hashes": lambda v: ts.vocab_count(v, "#"),
    "ellipses": lambda v: sum(ts.vocab_count(v, e) for e in ELLIPSES),
}


class _Batch:
    """The lines and words of a batch, and their properties computed when first needed."""

    def __init__(self, lines: ts.Lines):
        self.lines = lines
        self.words: ts.Words | None = None
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
        self.words = ts.split_words(self.lines, index, self.word_line_strings)
        self.word_lines = selected

    def _cached(self, key, compute):
        if key not in self._cache:
            self._cache[key] = compute()
        return self._cache[key]

    def terminal(self) -> np.ndarray:
        """Lines that end, before trailing whitespace, in terminal punctuation."""
        def compute():
            trimmed = pc.utf8_rtrim_whitespace(self.lines.strings)
            return ts.matches(trimmed, f"[{TERMINAL_PUNCT}]$")
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
        return self._per_entry(prop, _VOCAB_PROPERTIES[prop])

    def stop_words(self, stop_words: list[str]) -> np.ndarray:
        key = ("stop_words", tuple(stop_words))
        return self._per_entry(key, lambda v: ts.vocab_in(v, stop_words))

    def line_id(self) -> np.ndarray:
        """Equal lines (among the lines split into words) share an id."""
        def compute():
            index = np.flatnonzero(self.word_lines)
            ids = np.full(len(self.word_lines), -1, np.int64)
            ids[index] = ts.dictionary_ids(self.word_line_strings)
            return ids
        return self._cached("line_id", compute)

    def words_with(self, prop: str, on_lines: np.ndarray | None = None) -> np.ndarray:
        """The words (indices) whose vocabulary entry has a property (is true or non-zero), of
        all lines or of those that the mask `on_lines` selects. Few words have one, so the
        line test runs on those only."""
        hit = np.flatnonzero(self.vocab(prop).astype(bool, copy=False)[self.words.vid])
        return hit if on_lines is None else hit[on_lines[self.words.line[hit]]]


def _c4(batch: _Batch, p: dict, decisions: _Decisions, texts: pa.Array):
    lines, words = batch.lines, batch.words
    n_docs, nonblank = lines.n_docs, ~lines.blank

    def javascript_lines():
        out = np.zeros(len(lines.doc), bool)
        out[words.line[batch.words_with("javascript")]] = True
        return out

    line_rules = (
        (p["remove_no_terminal_punct_lines"], lambda: nonblank & ~batch.terminal()),
        (p["min_words_per_line"], lambda: nonblank & (words.line_count < p["min_words_per_line"])),
        (p["remove_javascript_lines"], javascript_lines),
    )
    removed_by = np.full(len(lines.doc), -1, np.int8)
    chars_removed, docs_touched = {}, {}
    for k, (rule, (setting, failing)) in enumerate(zip(LINE_RULES, line_rules)):
        if setting is not None and setting is not False:
            removed_by[(removed_by < 0) & failing()] = k
        hit = removed_by == k
        chars_removed[rule] = int(lines.length[hit].sum())
        docs_touched[rule] = int(np.count_nonzero(ts.per_doc_count(lines.doc[hit], n_docs)))
    kept = removed_by < 0
    touched = ts.per_doc_count(lines.doc[~kept], n_docs) > 0
    left = ts.per_doc_count(lines.doc[kept & nonblank], n_docs)
    decisions.fail("c4.no_lines_left", touched & (left == 0))
    kept, separators = _paragraph_breaks(lines, kept, touched)
    # A separator is written as an empty line, so later rules count it with no characters.
    lines.length[separators] = 0
    new_text = _join_kept_lines(lines, kept, separators, touched, texts)

    kept_lines = np.flatnonzero(kept)
    lowered = None  # the kept lines, ASCII lowercased, once for both rules that need them
    if p["lorem_ipsum"] or p["bad_words"]:
        lowered = pc.ascii_lower(lines.take(kept_lines))
    if p["lorem_ipsum"]:
        hit = ts.contains(lowered, "lorem ipsum")
        decisions.fail("c4.lorem_ipsum", _docs_with(lines.doc[kept_lines[hit]], n_docs))
    if p["curly_bracket"]:
        hit = batch.words_with("curly_bracket", kept)
        decisions.fail("c4.curly_bracket", _docs_with(words.doc[hit], n_docs))
    if p["bad_words"]:
        hit = ts.matches(lowered, _bad_words_pattern(p["bad_words"]))
        decisions.fail("c4.bad_words", _docs_with(lines.doc[kept_lines[hit]], n_docs))
    if p["min_sentences"] is not None:
        hit = batch.words_with("sentence_ends", kept)
        ends = batch.vocab("sentence_ends")[words.vid[hit]]
        decisions.fail("c4.min_sentences",
                       ts.per_doc_sum(words.doc[hit], ends, n_docs) < p["min_sentences"])
    return kept, chars_removed, docs_touched, new_text


def _bad_words_pattern(words: list[str]) -> str:
    alternatives = "|".join(ts.re2_escape(w) for w in words)
    boundary = ts.non_word_class()
    return f"(?:^|{boundary})(?:{alternatives})(?:{boundary}|$)"


def _docs_with(doc_indices: np.ndarray, n_docs: int) -> np.ndarray:
    return ts.per_doc_count(doc_indices, n_docs) > 0


def _paragraph_breaks(lines: ts.Lines, kept: np.ndarray, touched: np.ndarray):
    """In the documents that lost a line: keep only the first blank line of each run of kept
    blank lines, and none before the first or after the last kept non-blank line. Returns the new
    kept mask and the mask of the blank lines kept (paragraph separators)."""
    index = np.flatnonzero(kept & touched[lines.doc])
    if len(index) == 0:
        return kept, np.zeros(len(kept), bool)
    blank, doc = lines.blank[index], lines.doc[index]
    nonblank_upto = np.cumsum(~blank)  # non-blank lines of these, up to and including each
    doc_start = np.r_[True, doc[1:] != doc[:-1]]
    before_doc = (nonblank_upto - ~blank)[doc_start]  # non-blank lines of earlier documents
    seg = np.cumsum(doc_start) - 1
    before = nonblank_upto - before_doc[seg] - ~blank  # in the same document, before the line
    after = np.bincount(seg, weights=~blank)[seg].astype(np.int64) - before - ~blank
    prev_blank = np.r_[False, blank[:-1]]
    separator = blank & ~prev_blank & (before > 0) & (after > 0)
    out = kept.copy()
    out[index[blank & ~separator]] = False
    separators = np.zeros(len(kept), bool)
    separators[index[separator]] = True
    return out, separators


def _join_kept_lines(lines: ts.Lines, kept: np.ndarray, separators: np.ndarray,
                     touched: np.ndarray, texts: pa.Array):
    """Texts of the documents that lost a line: kept lines joined by "\\n", separators empty."""
    if not touched.any():
        return texts
    index = np.flatnonzero(kept & touched[lines.doc])
    per_doc = ts.per_doc_count(lines.doc[index], len(touched))[touched]
    offsets = np.zeros(len(per_doc) + 1, np.int32)
    np.cumsum(per_doc, out=offsets[1:])
    strings = pc.if_else(pa.array(separators[index]), "", lines.take(index))
    joined = pc.binary_join(pa.ListArray.from_arrays(pa.array(offsets), strings), "\n")
    return pc.replace_with_mask(texts, pa.array(touched), joined)
