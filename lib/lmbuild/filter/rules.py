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
from .doc_rules import View, fineweb, gopher_quality, gopher_repetition
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
    batch = ts.Batch(ts.split_lines(pc.fill_null(texts, "")))
    decisions = ts.Decisions(len(texts))
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
    for group, check in (("gopher_repetition", gopher_repetition),
                         ("gopher_quality", gopher_quality), ("fineweb", fineweb)):
        if group in params and decisions.alive.any():
            view = View(batch, kept & decisions.alive[batch.lines.doc])
            if not focused:  # from here on only the words of these lines are looked at
                batch.focus(view.words)
                focused = True
            check(view, params[group], decisions)
    return RuleResult(new_text, decisions.reasons(), chars_removed, docs_touched)


def _c4(batch: ts.Batch, p: dict, decisions: ts.Decisions, texts: pa.Array):
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
