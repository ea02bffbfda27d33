"""The document-level rule groups of the filter: Gopher repetition, Gopher quality and FineWeb,
each deciding the documents still in play over the lines the C4 rules kept (a `View`).

lmbuild.filter.rules runs them after the line rules; its module docstring holds the definitions
(what a repeat, a ratio and a threshold mean) that both modules follow.
"""

from __future__ import annotations

import numpy as np

from . import textstats as ts
from .ngram_repeats import ngram_repeats


class View:
    """The kept lines and words of the documents still in play."""

    def __init__(self, batch: ts.Batch, line_mask: np.ndarray):
        self.batch, self.line_mask = batch, line_mask
        lines, words = batch.lines, batch.words
        self.n_docs = lines.n_docs
        self.lines = np.flatnonzero(line_mask)
        self.line_doc = lines.doc[self.lines]
        self.nonblank = self.lines[~lines.blank[self.lines]]
        self.nonblank_doc = lines.doc[self.nonblank]
        self.words = np.flatnonzero(line_mask[words.line])
        self.word_doc = words.doc[self.words]
        self.word_vid = words.vid[self.words]
        self.n_words = self.count(self.word_doc)
        self.n_nonblank = self.count(self.nonblank_doc)

    def restrict(self, alive: np.ndarray) -> View:
        return View(self.batch, self.line_mask & alive[self.batch.lines.doc])

    def count(self, doc_indices: np.ndarray) -> np.ndarray:
        return ts.per_doc_count(doc_indices, self.n_docs)

    def chars(self) -> np.ndarray:
        """Per document: characters, line breaks excluded."""
        return ts.per_doc_sum(self.line_doc, self.batch.lines.length[self.lines], self.n_docs)

    def word_chars(self) -> np.ndarray:
        return ts.per_doc_sum(self.word_doc, self.word_len(), self.n_docs)

    def word_len(self) -> np.ndarray:
        """Characters of each of the view's words."""
        return self.batch.words.vocab_len[self.word_vid]

    def words_flagged(self, flag: np.ndarray) -> np.ndarray:
        """Per document: words whose vocabulary entry is flagged."""
        return self.count(self.word_doc[flag[self.word_vid]])

    def words_summed(self, values: np.ndarray) -> np.ndarray:
        """Per document: sum over words of an integer value per vocabulary entry."""
        v = values[self.word_vid]
        nonzero = v != 0
        return ts.per_doc_sum(self.word_doc[nonzero], v[nonzero], self.n_docs)

    def lines_flagged(self, flag: np.ndarray) -> np.ndarray:
        """Per document: non-blank lines flagged (flag is per line of the batch)."""
        return self.count(self.nonblank_doc[flag[self.nonblank]])

    def lines_whose(self, end: str, prop: str) -> np.ndarray:
        """Per document: non-blank lines whose first (or last) word has a vocabulary property."""
        words = self.batch.words
        word = (words.line_first if end == "first" else words.line_last)[self.nonblank]
        return self.count(self.nonblank_doc[self.batch.vocab(prop)[words.vid[word]]])

    def repeated_lines(self) -> tuple[np.ndarray, np.ndarray]:
        """Per document: non-blank lines equal to an earlier one, and their characters."""
        key = ts.pair_key(self.nonblank_doc, self.batch.line_id()[self.nonblank])
        _, first = ts.first_occurrences(key)
        repeats = self.nonblank[~first]
        doc = self.batch.lines.doc[repeats]
        return self.count(doc), ts.per_doc_sum(doc, self.batch.lines.length[repeats], self.n_docs)


def _max_rule(decisions, rule, value, threshold):
    if threshold is not None:
        decisions.fail(rule, value > threshold)


def _min_rule(decisions, rule, value, threshold):
    if threshold is not None:
        decisions.fail(rule, value < threshold)


def gopher_repetition(view: View, p: dict, decisions: ts.Decisions) -> None:
    chars = view.chars()
    rep_lines, rep_line_chars = view.repeated_lines()
    paras, rep_paras, rep_para_chars = _repeated_paragraphs(view)
    _max_rule(decisions, "gopher_repetition.dup_line_frac",
              ts.ratio(rep_lines, view.n_nonblank), p["max_dup_line_frac"])
    _max_rule(decisions, "gopher_repetition.dup_para_frac",
              ts.ratio(rep_paras, paras), p["max_dup_para_frac"])
    _max_rule(decisions, "gopher_repetition.dup_line_char_frac",
              ts.ratio(rep_line_chars, chars), p["max_dup_line_char_frac"])
    _max_rule(decisions, "gopher_repetition.dup_para_char_frac",
              ts.ratio(rep_para_chars, chars), p["max_dup_para_char_frac"])

    top = {n: t for n, t in p["top_ngram_char_frac"].items() if t is not None}
    dup = {n: t for n, t in p["dup_ngram_char_frac"].items() if t is not None}
    if not (top or dup) or not decisions.alive.any():
        return
    view = view.restrict(decisions.alive)  # n-grams only for documents still in play
    found = dict(zip(("top", "dup"), ngram_repeats(
        *(a.astype(np.int64, copy=False) for a in (view.word_doc, view.word_vid, view.word_len(), view.n_words)),
        max([*top, *dup]))))
    word_chars = view.word_chars()
    for kind, thresholds in (("top", top), ("dup", dup)):
        for n, threshold in sorted(thresholds.items()):
            _max_rule(decisions, f"gopher_repetition.{kind}_{n}_gram",
                      ts.ratio(found[kind][n], word_chars), threshold)


def _repeated_paragraphs(view: View):
    """Per document: paragraphs, paragraphs equal to an earlier one, and their characters."""
    lines = view.batch.lines
    if len(view.nonblank) == 0:
        zeros = np.zeros(view.n_docs, np.int64)
        return zeros, zeros, zeros
    blank = lines.blank[view.lines]
    new_doc = np.r_[True, view.line_doc[1:] != view.line_doc[:-1]]
    after_blank = np.r_[True, blank[:-1]]
    starts_para = (new_doc | after_blank)[~blank]  # over the non-blank lines
    para_start = np.flatnonzero(starts_para)
    para_of_line = np.cumsum(starts_para) - 1
    para_doc = view.nonblank_doc[para_start]
    para_chars = ts.per_doc_sum(para_of_line, lines.length[view.nonblank], len(para_start))
    para_id = ts.sequence_ids(view.batch.line_id()[view.nonblank], para_start)
    _, first = ts.first_occurrences(ts.pair_key(para_doc, para_id))
    rep_doc = para_doc[~first]
    return (view.count(para_doc), view.count(rep_doc),
            ts.per_doc_sum(rep_doc, para_chars[~first], view.n_docs))


def gopher_quality(view: View, p: dict, decisions: ts.Decisions) -> None:
    batch, n_words = view.batch, view.n_words
    _min_rule(decisions, "gopher_quality.min_words", n_words, p["min_words"])
    _max_rule(decisions, "gopher_quality.max_words", n_words, p["max_words"])
    mean_len = ts.ratio(view.word_chars(), n_words)
    _min_rule(decisions, "gopher_quality.min_mean_word_length", mean_len, p["min_mean_word_length"])
    _max_rule(decisions, "gopher_quality.max_mean_word_length", mean_len, p["max_mean_word_length"])
    if p["max_symbol_word_ratio"] is not None:
        for rule, prop in (("hash_word_ratio", "hashes"), ("ellipsis_word_ratio", "ellipses")):
            _max_rule(decisions, f"gopher_quality.{rule}",
                      ts.ratio(view.words_summed(batch.vocab(prop)), n_words),
                      p["max_symbol_word_ratio"])
    if p["max_bullet_lines_ratio"] is not None:
        _max_rule(decisions, "gopher_quality.bullet_lines_ratio",
                  ts.ratio(view.lines_whose("first", "bullet"), view.n_nonblank),
                  p["max_bullet_lines_ratio"])
    if p["max_ellipsis_lines_ratio"] is not None:
        _max_rule(decisions, "gopher_quality.ellipsis_lines_ratio",
                  ts.ratio(view.lines_whose("last", "ellipsis_end"), view.n_nonblank),
                  p["max_ellipsis_lines_ratio"])
    if p["min_alpha_words_ratio"] is not None:
        _min_rule(decisions, "gopher_quality.alpha_words_ratio",
                  ts.ratio(view.words_flagged(batch.vocab("has_letter")), n_words),
                  p["min_alpha_words_ratio"])
    if p["min_stop_words"] is not None:
        _min_rule(decisions, "gopher_quality.min_stop_words",
                  view.words_flagged(batch.stop_words(p["stop_words"])),
                  p["min_stop_words"])


def fineweb(view: View, p: dict, decisions: ts.Decisions) -> None:
    lines = view.batch.lines
    if p["min_line_punct_ratio"] is not None:
        _min_rule(decisions, "fineweb.line_punct_ratio",
                  ts.ratio(view.lines_flagged(view.batch.terminal()), view.n_nonblank),
                  p["min_line_punct_ratio"])
    if p["max_short_line_ratio"] is not None and p["short_line_length"] is not None:
        _max_rule(decisions, "fineweb.short_line_ratio",
                  ts.ratio(view.lines_flagged(lines.length <= p["short_line_length"]),
                           view.n_nonblank),
                  p["max_short_line_ratio"])
    if p["max_dup_line_char_ratio"] is not None:
        _, rep_chars = view.repeated_lines()
        _max_rule(decisions, "fineweb.dup_line_char_ratio", ts.ratio(rep_chars, view.chars()),
                  p["max_dup_line_char_ratio"])
    if p["max_newline_word_ratio"] is not None:
        newlines = np.maximum(view.count(view.line_doc) - 1, 0)
        _max_rule(decisions, "fineweb.newline_word_ratio", ts.ratio(newlines, view.n_words),
                  p["max_newline_word_ratio"])
