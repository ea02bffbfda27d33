"""What the filter rules are and how they are configured: group and rule names, DEFAULTS with
the papers they come from, PII_DEFAULTS (which kinds PII masking covers, and its backend), the
character classes both implementations share, and `fill_thresholds`. The vectorised rules live
in lmbuild.filter.rules, the per-document specification in lmbuild.filter.reference; both read
their thresholds and constants from here.
"""

from __future__ import annotations

import copy

GROUPS = ("c4", "gopher_repetition", "gopher_quality", "fineweb")  # application order

TOP_NGRAMS = (2, 3, 4)
DUP_NGRAMS = (5, 6, 7, 8, 9, 10)

DEFAULTS: dict = {
    # Raffel et al. 2020, "Exploring the limits of transfer learning with a unified text-to-text
    # transformer" (JMLR 21), section 2.2; numbers as in tensorflow_datasets' c4_utils.py.
    "c4": {
        "enabled": True,
        # "We only retained lines that ended in a terminal punctuation mark (i.e. a period,
        # exclamation mark, question mark, or end quotation mark)."
        "remove_no_terminal_punct_lines": True,
        # "only retained lines that contained at least 5 words" (_MIN_WORDS_PER_LINE = 5)
        "min_words_per_line": 5,
        # "we removed any line with the word Javascript"
        "remove_javascript_lines": True,
        # "We discarded any page with fewer than 3 sentences" (_MIN_NUM_SENTENCES = 3)
        "min_sentences": 3,
        # "we removed any page where the phrase 'lorem ipsum' appeared"
        "lorem_ipsum": True,
        # "we removed any pages that contained a curly bracket"
        "curly_bracket": True,
        # "List of Dirty, Naughty, Obscene or Otherwise Bad Words": the stage fills it from a file
        "bad_words": [],
    },
    # Rae et al. 2021, "Scaling language models: methods, analysis & insights from training
    # Gopher", appendix A.1.1, table A1 (same values as datatrove's GopherRepetitionFilter).
    "gopher_repetition": {
        "enabled": True,
        "max_dup_line_frac": 0.3,  # duplicate line fraction
        "max_dup_para_frac": 0.3,  # duplicate paragraph fraction
        "max_dup_line_char_frac": 0.2,  # duplicate line character fraction
        "max_dup_para_char_frac": 0.2,  # duplicate paragraph character fraction
        "top_ngram_char_frac": {2: 0.20, 3: 0.18, 4: 0.16},  # top n-gram character fraction
        # duplicate n-gram character fraction
        "dup_ngram_char_frac": {5: 0.15, 6: 0.14, 7: 0.13, 8: 0.12, 9: 0.11, 10: 0.10},
    },
    # Rae et al. 2021 (Gopher), appendix A.1.1 "quality filters" (datatrove GopherQualityFilter).
    "gopher_quality": {
        "enabled": True,
        "min_words": 50,  # "does not contain between 50 and 100,000 words"
        "max_words": 100_000,
        "min_mean_word_length": 3,  # "mean word length is outside the range of 3 to 10"
        "max_mean_word_length": 10,
        # "symbol-to-word ratio greater than 0.1 for either the hash symbol or the ellipsis"
        "max_symbol_word_ratio": 0.1,
        "max_bullet_lines_ratio": 0.9,  # "more than 90% of lines starting with a bullet point"
        "max_ellipsis_lines_ratio": 0.3,  # "or more than 30% ending with an ellipsis"
        # "80% of words in a document contain at least one alphabetic character"
        "min_alpha_words_ratio": 0.8,
        # "at least two of the following English words: the, be, to, of, and, that, have, with"
        "min_stop_words": 2,
        "stop_words": ["the", "be", "to", "of", "and", "that", "have", "with"],
    },
    # Penedo et al. 2024, "The FineWeb datasets", section 3.6; values are the defaults of
    # datatrove's FineWebQualityFilter, which built FineWeb. The paper drops at <= / >= the
    # thresholds; here, as for every rule, only strictly below a min or above a max.
    "fineweb": {
        "enabled": True,
        "min_line_punct_ratio": 0.12,  # "fraction of lines ending with punctuation <= 0.12"
        "short_line_length": 30,  # "lines shorter than 30 characters" (datatrove: len <= 30)
        "max_short_line_ratio": 0.67,  # "... is >= 0.67"
        # datatrove char_duplicates_ratio=0.01; the paper's text says ">= 0.1" (the released
        # pipeline, datatrove examples/fineweb.py, used the default)
        "max_dup_line_char_ratio": 0.01,
        "max_newline_word_ratio": 0.3,  # datatrove new_line_ratio (lists; not in the paper)
    },
}

# PII masking (lmbuild.filter.pii), applied to kept documents: which kinds, and which detector.
# `regex` is the default: vectorised RE2 over whole batches (about 80 MB/s on one core) with the
# IPv4 context rules; `presidio` is Microsoft Presidio's pattern recognizers (the optional `pii`
# extra; per document, over a hundred times slower), which find phone numbers of more countries
# but mask section and version numbers as IPv4 and slices or "::=" as IPv6
# (benchmarks/pii_backends.py measures both side by side; docs/data.md, "Filter", weighs them).
PII_BACKENDS = ("regex", "presidio")
PII_DEFAULTS: dict = {
    "enabled": True,
    "backend": "regex",
    "emails": True,
    "ip_addresses": True,
    "phone_numbers": True,
}

LINE_RULES = ("c4.no_terminal_punct", "c4.min_words_per_line", "c4.javascript")

RULE_NAMES: tuple[str, ...] = (
    *LINE_RULES,
    "c4.no_lines_left",
    "c4.lorem_ipsum",
    "c4.curly_bracket",
    "c4.bad_words",
    "c4.min_sentences",
    "gopher_repetition.dup_line_frac",
    "gopher_repetition.dup_para_frac",
    "gopher_repetition.dup_line_char_frac",
    "gopher_repetition.dup_para_char_frac",
    *(f"gopher_repetition.top_{n}_gram" for n in TOP_NGRAMS),
    *(f"gopher_repetition.dup_{n}_gram" for n in DUP_NGRAMS),
    "gopher_quality.min_words",
    "gopher_quality.max_words",
    "gopher_quality.min_mean_word_length",
    "gopher_quality.max_mean_word_length",
    "gopher_quality.hash_word_ratio",
    "gopher_quality.ellipsis_word_ratio",
    "gopher_quality.bullet_lines_ratio",
    "gopher_quality.ellipsis_lines_ratio",
    "gopher_quality.alpha_words_ratio",
    "gopher_quality.min_stop_words",
    "fineweb.line_punct_ratio",
    "fineweb.short_line_ratio",
    "fineweb.dup_line_char_ratio",
    "fineweb.newline_word_ratio",
)

# The parameter that sets (or, set to null, disables) each rule.
RULE_PARAMS: dict[str, str] = {
    "c4.no_terminal_punct": "c4.remove_no_terminal_punct_lines",
    "c4.min_words_per_line": "c4.min_words_per_line",
    "c4.javascript": "c4.remove_javascript_lines",
    "c4.no_lines_left": "c4 (any line rule)",
    "c4.lorem_ipsum": "c4.lorem_ipsum",
    "c4.curly_bracket": "c4.curly_bracket",
    "c4.bad_words": "c4.bad_words",
    "c4.min_sentences": "c4.min_sentences",
    "gopher_repetition.dup_line_frac": "gopher_repetition.max_dup_line_frac",
    "gopher_repetition.dup_para_frac": "gopher_repetition.max_dup_para_frac",
    "gopher_repetition.dup_line_char_frac": "gopher_repetition.max_dup_line_char_frac",
    "gopher_repetition.dup_para_char_frac": "gopher_repetition.max_dup_para_char_frac",
    **{f"gopher_repetition.top_{n}_gram": f"gopher_repetition.top_ngram_char_frac.{n}"
       for n in TOP_NGRAMS},
    **{f"gopher_repetition.dup_{n}_gram": f"gopher_repetition.dup_ngram_char_frac.{n}"
       for n in DUP_NGRAMS},
    "gopher_quality.min_words": "gopher_quality.min_words",
    "gopher_quality.max_words": "gopher_quality.max_words",
    "gopher_quality.min_mean_word_length": "gopher_quality.min_mean_word_length",
    "gopher_quality.max_mean_word_length": "gopher_quality.max_mean_word_length",
    "gopher_quality.hash_word_ratio": "gopher_quality.max_symbol_word_ratio",
    "gopher_quality.ellipsis_word_ratio": "gopher_quality.max_symbol_word_ratio",
    "gopher_quality.bullet_lines_ratio": "gopher_quality.max_bullet_lines_ratio",
    "gopher_quality.ellipsis_lines_ratio": "gopher_quality.max_ellipsis_lines_ratio",
    "gopher_quality.alpha_words_ratio": "gopher_quality.min_alpha_words_ratio",
    "gopher_quality.min_stop_words": "gopher_quality.min_stop_words",
    "fineweb.line_punct_ratio": "fineweb.min_line_punct_ratio",
    "fineweb.short_line_ratio": "fineweb.max_short_line_ratio",
    "fineweb.dup_line_char_ratio": "fineweb.max_dup_line_char_ratio",
    "fineweb.newline_word_ratio": "fineweb.max_newline_word_ratio",
}

# Sentence enders of scripts other than Latin: marks whose only use is to end a sentence, from
# the Unicode Sentence_Terminal property (PropList.txt; UAX #29 "Unicode Text Segmentation",
# class STerm): CJK and fullwidth 。 ！ ？ ． and halfwidth ｡ (U+3002, FF01, FF1F, FF0E, FF61),
# Arabic question mark ؟ and Arabic full stop ۔ (U+061F, 06D4; ۔ is the Urdu full stop),
# Devanagari danda । and double danda ॥ (U+0964, 0965), Armenian full stop ։ (U+0589), Ethiopic
# full stop ። and question mark ፧ (U+1362, 1367), Myanmar section ။ (U+104B), Khmer khan ។ and
# bariyoosan ៕ (U+17D4, 17D5). Unlike ".", none is also a decimal point or an abbreviation dot,
# and CJK text puts no space after them, so each run of them ends a sentence wherever it occurs
# (the fullwidth ． is a decimal point in fullwidth digits, "３．１４": counted anyway).
SCRIPT_SENTENCE_ENDERS = "。！？．｡؟۔।॥։።፧။។៕"
# A line ending in one of these is kept by C4. tensorflow_datasets' c4_utils uses . ? ! " and
# also drops lines ending in "..."; here "..." counts as terminal, and so do the sentence enders
# of other scripts above and the Tibetan shad ། and nyis shad ༎ (U+0F0D, 0F0E; Unicode
# Terminal_Punctuation, not Sentence_Terminal: a shad also ends clauses, so it ends a line but
# does not count as a sentence). FineWeb's line punctuation ratio uses the same set.
TERMINAL_PUNCT = ".!?\"'”’»" + SCRIPT_SENTENCE_ENDERS + "།༎"
SENTENCE_CLOSERS = "\"'”’)»"
# The sentence ends inside one word (RE2 and Python re agree on it; `$` is the end of the word it
# is searched in, and matches never span whitespace, so counting its matches word by word counts
# them in the text): a run of enders that holds a script ender, or a run of . ! ? at the end of
# the word; then optionally closers.
_ENDERS = ".!?" + SCRIPT_SENTENCE_ENDERS
SENTENCE_END_IN_WORD = (f"[{_ENDERS}]*[{SCRIPT_SENTENCE_ENDERS}][{_ENDERS}]*[{SENTENCE_CLOSERS}]*"
                        f"|[.!?]+[{SENTENCE_CLOSERS}]*$")
BULLETS = "•‣◦⁃∙●○▪■►▶➢-*"  # a line starting with one of these is a bullet line
ELLIPSES = ("...", "…")
ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def fill_thresholds(cfg: dict | None) -> dict[str, dict]:
    """The enabled groups with every threshold filled in from DEFAULTS.

    A group that is absent or has `enabled: false` is left out; a threshold set to None
    disables its rule. Unknown groups or keys raise ValueError (a typo must not do nothing).
    """
    resolved = {}
    for group, given in (cfg or {}).items():
        if group not in DEFAULTS:
            raise ValueError(f"filter: unknown rule group {group!r}; known: {', '.join(GROUPS)}")
        if given is None:
            continue
        unknown = sorted(set(given) - set(DEFAULTS[group]))
        if unknown:
            raise ValueError(f"filter.{group}: unknown key(s) {', '.join(map(str, unknown))}")
        params = copy.deepcopy(DEFAULTS[group])
        for key, value in given.items():
            if isinstance(params[key], dict) and value is not None:
                params[key].update(_ngram_thresholds(group, key, value))
            else:
                params[key] = value
        for key in ("bad_words", "stop_words"):
            if key in params:
                params[key] = _word_list(group, key, params[key])
        if params["enabled"]:
            resolved[group] = params
    return resolved


def _word_list(group: str, key: str, words) -> list[str]:
    """A word list as both implementations use it: ASCII-lowercased, unique, sorted."""
    if words is None:
        return []
    if isinstance(words, str) or not all(isinstance(w, str) for w in words):
        raise ValueError(f"filter.{group}.{key}: must be a list of strings, got {words!r}")
    return sorted({w.translate(ASCII_LOWER) for w in words if w.strip()})


def _ngram_thresholds(group: str, key: str, value: dict) -> dict[int, float | None]:
    out = {}
    allowed = DEFAULTS[group][key]
    for n, frac in value.items():
        try:
            n = int(n)
        except (TypeError, ValueError):
            n = None
        if n not in allowed:
            raise ValueError(f"filter.{group}.{key}: n-gram sizes must be among "
                             f"{sorted(allowed)}, got {value!r}")
        out[n] = frac
    return out
