"""The filter rules written plainly, one document at a time: the specification of rules.py.

`apply_rules_reference` follows the definitions in the lmbuild.filter.rules docstring with
ordinary Python strings, lists, sets and the `re` module, and stops at the first failing rule.
It exists to check the vectorised implementation (identical reasons and texts on every
document) and to measure what vectorising buys (benchmarks/filter_throughput.py); the pipeline
itself uses rules.apply_rules.
"""

from __future__ import annotations

import copy
import re
from collections import Counter

from .rule_config import (ASCII_LOWER, BULLETS, ELLIPSES, LINE_RULES, SCRIPT_SENTENCE_ENDERS,
                          SENTENCE_CLOSERS, TERMINAL_PUNCT, fill_thresholds)

LINE_BREAK = re.compile(r"\r\n|\r|\n")
_ENDERS = ".!?" + SCRIPT_SENTENCE_ENDERS
SENTENCE_END = re.compile(f"[{_ENDERS}]*[{SCRIPT_SENTENCE_ENDERS}][{_ENDERS}]*[{SENTENCE_CLOSERS}]*"
                          f"|[.!?]+[{SENTENCE_CLOSERS}]*(?:\\s|\\Z)")
TERMINAL = tuple(TERMINAL_PUNCT)
BULLET_STARTS = tuple(BULLETS)


def ascii_lower(s: str) -> str:
    return s.translate(ASCII_LOWER)


def ratio(num: int, den: int) -> float:
    return num / den if den else 0.0


_last_config: list = [None, None]  # (a copy of the last cfg, its resolution)


def _resolved(cfg: dict) -> dict:
    """fill_thresholds, remembered for the last cfg: callers pass the same one for every document."""
    if _last_config[0] is None or _last_config[0] != cfg:
        _last_config[:] = [copy.deepcopy(cfg), fill_thresholds(cfg)]
    return _last_config[1]


def apply_rules_reference(text: str, cfg: dict) -> tuple[str, str | None, dict[str, int]]:
    """Decide one document: (text after C4 line removal, first failing rule or None,
    characters removed per C4 line rule)."""
    params = _resolved(cfg)
    removed = {rule: 0 for rule in LINE_RULES}
    reason = None
    if "c4" in params:
        text, reason = _c4(text, params["c4"], removed)
    for group, check in (("gopher_repetition", _gopher_repetition),
                         ("gopher_quality", _gopher_quality), ("fineweb", _fineweb)):
        if reason is None and group in params:
            reason = check(text, params[group])
    return text, reason, removed


def _is_blank(line: str) -> bool:
    return not line.split()


def _removing_rule(line: str, p: dict) -> str | None:
    if _is_blank(line):
        return None
    if p["remove_no_terminal_punct_lines"] and not line.rstrip().endswith(TERMINAL):
        return "c4.no_terminal_punct"
    if p["min_words_per_line"] is not None and len(line.split()) < p["min_words_per_line"]:
        return "c4.min_words_per_line"
    if p["remove_javascript_lines"] and "javascript" in ascii_lower(line):
        return "c4.javascript"
    return None


def _c4(text: str, p: dict, removed: dict[str, int]) -> tuple[str, str | None]:
    lines, kept = LINE_BREAK.split(text), []
    for line in lines:
        rule = _removing_rule(line, p)
        if rule is None:
            kept.append(line)
        else:
            removed[rule] += len(line)
    if len(kept) < len(lines):
        # kept paragraphs, each its lines joined by "\n", joined by one blank line
        text = "\n\n".join("\n".join(paragraph) for paragraph in _paragraphs(kept))
        if not text:
            return text, "c4.no_lines_left"
    lowered = ascii_lower(text)
    if p["lorem_ipsum"] and "lorem ipsum" in lowered:
        return text, "c4.lorem_ipsum"
    if p["curly_bracket"] and "{" in text:
        return text, "c4.curly_bracket"
    if p["bad_words"]:
        words = "|".join(map(re.escape, p["bad_words"]))
        if re.search(rf"(?:^|\W)(?:{words})(?:\W|\Z)", lowered):
            return text, "c4.bad_words"
    if p["min_sentences"] is not None and len(SENTENCE_END.findall(text)) < p["min_sentences"]:
        return text, "c4.min_sentences"
    return text, None


def _repeated(items: list[str]) -> list[str]:
    """The items equal to an earlier item."""
    seen, out = set(), []
    for item in items:
        if item in seen:
            out.append(item)
        seen.add(item)
    return out


def _paragraphs(lines: list[str]) -> list[list[str]]:
    paragraphs, current = [], []
    for line in lines:
        if _is_blank(line):
            if current:
                paragraphs.append(current)
            current = []
        else:
            current.append(line)
    if current:
        paragraphs.append(current)
    return paragraphs


def _top_ngram_chars(words: list[str], n: int) -> int:
    counts = Counter(zip(*(words[i:] for i in range(n))))
    if not counts:
        return 0
    top = max(counts.values())
    if top < 2:
        return 0
    return top * max(sum(map(len, gram)) for gram, c in counts.items() if c == top)


def _dup_ngram_chars(words: list[str], n: int) -> int:
    seen, covered = set(), [False] * len(words)
    for i, gram in enumerate(zip(*(words[i:] for i in range(n)))):
        if gram in seen:
            covered[i:i + n] = [True] * n
        seen.add(gram)
    return sum(len(w) for w, c in zip(words, covered) if c)


def _gopher_repetition(text: str, p: dict) -> str | None:
    lines = LINE_BREAK.split(text)
    nonblank = [line for line in lines if not _is_blank(line)]
    chars = sum(map(len, lines))
    paragraphs = ["\n".join(para) for para in _paragraphs(lines)]
    rep_lines, rep_paras = _repeated(nonblank), _repeated(paragraphs)
    rep_line_chars = sum(map(len, rep_lines))
    rep_para_chars = sum(len(para) - para.count("\n") for para in rep_paras)  # breaks excluded
    checks = (
        ("dup_line_frac", ratio(len(rep_lines), len(nonblank)), p["max_dup_line_frac"]),
        ("dup_para_frac", ratio(len(rep_paras), len(paragraphs)), p["max_dup_para_frac"]),
        ("dup_line_char_frac", ratio(rep_line_chars, chars), p["max_dup_line_char_frac"]),
        ("dup_para_char_frac", ratio(rep_para_chars, chars), p["max_dup_para_char_frac"]),
    )
    for name, value, threshold in checks:
        if threshold is not None and value > threshold:
            return f"gopher_repetition.{name}"
    words = text.split()
    word_chars = sum(map(len, words))
    for n, threshold in sorted(p["top_ngram_char_frac"].items()):
        if threshold is not None and ratio(_top_ngram_chars(words, n), word_chars) > threshold:
            return f"gopher_repetition.top_{n}_gram"
    for n, threshold in sorted(p["dup_ngram_char_frac"].items()):
        if threshold is not None and ratio(_dup_ngram_chars(words, n), word_chars) > threshold:
            return f"gopher_repetition.dup_{n}_gram"
    return None


def _gopher_quality(text: str, p: dict) -> str | None:
    words = text.split()
    nonblank = [line for line in LINE_BREAK.split(text) if not _is_blank(line)]
    mean_len = ratio(sum(map(len, words)), len(words))
    symbols = p["max_symbol_word_ratio"]
    stop_words = set(p["stop_words"])
    checks = (
        ("min_words", lambda: len(words) < p["min_words"], p["min_words"]),
        ("max_words", lambda: len(words) > p["max_words"], p["max_words"]),
        ("min_mean_word_length", lambda: mean_len < p["min_mean_word_length"],
         p["min_mean_word_length"]),
        ("max_mean_word_length", lambda: mean_len > p["max_mean_word_length"],
         p["max_mean_word_length"]),
        ("hash_word_ratio", lambda: ratio(text.count("#"), len(words)) > symbols, symbols),
        ("ellipsis_word_ratio",
         lambda: ratio(sum(text.count(e) for e in ELLIPSES), len(words)) > symbols, symbols),
        ("bullet_lines_ratio",
         lambda: ratio(sum(line.lstrip().startswith(BULLET_STARTS) for line in nonblank),
                       len(nonblank)) > p["max_bullet_lines_ratio"],
         p["max_bullet_lines_ratio"]),
        ("ellipsis_lines_ratio",
         lambda: ratio(sum(line.rstrip().endswith(ELLIPSES) for line in nonblank),
                       len(nonblank)) > p["max_ellipsis_lines_ratio"],
         p["max_ellipsis_lines_ratio"]),
        ("alpha_words_ratio",
         lambda: ratio(sum(any(c.isalpha() for c in w) for w in words),
                       len(words)) < p["min_alpha_words_ratio"],
         p["min_alpha_words_ratio"]),
        ("min_stop_words",
         lambda: sum(ascii_lower(w) in stop_words for w in words) < p["min_stop_words"],
         p["min_stop_words"]),
    )
    for name, fails, threshold in checks:
        if threshold is not None and fails():
            return f"gopher_quality.{name}"
    return None


def _fineweb(text: str, p: dict) -> str | None:
    lines = LINE_BREAK.split(text)
    nonblank = [line for line in lines if not _is_blank(line)]
    terminal = sum(line.rstrip().endswith(TERMINAL) for line in nonblank)
    if p["min_line_punct_ratio"] is not None:
        if ratio(terminal, len(nonblank)) < p["min_line_punct_ratio"]:
            return "fineweb.line_punct_ratio"
    if p["max_short_line_ratio"] is not None and p["short_line_length"] is not None:
        short = sum(len(line) <= p["short_line_length"] for line in nonblank)
        if ratio(short, len(nonblank)) > p["max_short_line_ratio"]:
            return "fineweb.short_line_ratio"
    if p["max_dup_line_char_ratio"] is not None:
        rep_chars = sum(map(len, _repeated(nonblank)))
        if ratio(rep_chars, sum(map(len, lines))) > p["max_dup_line_char_ratio"]:
            return "fineweb.dup_line_char_ratio"
    if p["max_newline_word_ratio"] is not None:
        if ratio(len(lines) - 1, len(text.split())) > p["max_newline_word_ratio"]:
            return "fineweb.newline_word_ratio"
    return None
