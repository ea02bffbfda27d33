"""Filter rules: each rule at and around its threshold, edge cases, configuration, and the
identity of the vectorised rules (lmbuild.filter.rules) with the per-document reference.

Every literal case goes through `decide`, which runs both implementations and asserts that
they agree, so each case is also an identity check.
"""

from __future__ import annotations

import copy
import re

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from lmbuild.filter import textstats
from lmbuild.filter.reference import apply_rules_reference
from lmbuild.filter.rules import (DEFAULTS, GROUPS, LINE_RULES, RULE_NAMES, RULE_PARAMS,
                                  apply_rules, fill_thresholds)


def decide(text: str, cfg: dict) -> tuple[str | None, str]:
    """(reason, new text) from both implementations, which must agree."""
    result = apply_rules(pa.array([text], pa.string()), cfg)
    new_text, reason, removed = apply_rules_reference(text, cfg)
    assert result.reason.to_pylist() == [reason], text
    assert result.text.to_pylist() == [new_text], text
    assert result.line_chars_removed == removed, text
    return reason, new_text


def only(group: str, **params) -> dict:
    """A config with one group enabled, every threshold of it None unless given."""
    cfg = {key: None for key in DEFAULTS[group] if key != "enabled"}
    for key in ("stop_words", "short_line_length"):
        if key in cfg:
            cfg[key] = DEFAULTS[group][key]
    for key in ("top_ngram_char_frac", "dup_ngram_char_frac"):
        if key in cfg:
            cfg[key] = {n: None for n in DEFAULTS[group][key]}
            cfg[key].update(params.pop(key, {}))
    cfg.update(params)
    return {group: {"enabled": True, **cfg}}


def words(n: int, word: str = "river") -> str:
    return " ".join([word] * n)


def prose(n_words: int) -> str:
    """Distinct lowercase words (no n-gram repeats), two stop words, ending with a full stop."""
    vocab = [f"{a}{b}{c}" for a in "bcdfg" for b in "aeiou" for c in "lmnrst"]
    return " ".join(["the", "and", *vocab[: n_words - 2]]) + "."


# ---------------------------------------------------------------- C4

C4_LINES = only("c4", remove_no_terminal_punct_lines=True)


@pytest.mark.parametrize("line, kept", [
    ("This line has five words.", True),
    ("This line has no full stop", False),
    ("Ends with a full stop and spaces.   \t", True),
    ("Trailing dots count as terminal...", True),
    ("A closing quote ends this line\"", True),
    ("A curly closing quote ends this line”", True),
    ("Is this a question?", True),
    ("An exclamation ends this line!", True),
    ("A colon does not end a line:", False),
    ("The unicode ellipsis is not terminal…", False),
])
def test_c4_terminal_punctuation(line, kept):
    text = f"First line is fine.\n{line}\nLast line is fine too."
    reason, new_text = decide(text, C4_LINES)
    assert reason is None
    assert (line in new_text) is kept
    if not kept:
        assert new_text == "First line is fine.\nLast line is fine too."


@pytest.mark.parametrize("n, kept", [(4, False), (5, True), (6, True)])
def test_c4_min_words_per_line(n, kept):
    line = words(n - 1, "word") + " end."
    _, new_text = decide(f"Keep this one.\n{line}", only("c4", min_words_per_line=5))
    assert (line in new_text) is kept


def test_c4_javascript_lines_ignore_ascii_case():
    cfg = only("c4", remove_javascript_lines=True)
    reason, new_text = decide("Please enable JAVASCRIPT now.\nThis stays here.", cfg)
    assert (reason, new_text) == (None, "This stays here.")


def test_c4_line_removal_keeps_blank_lines_and_reports_characters():
    text = "A good line of text.\r\nno punctuation here\r\n\r\nAnother good line."
    cfg = only("c4", remove_no_terminal_punct_lines=True)
    reason, new_text = decide(text, cfg)
    assert reason is None
    assert new_text == "A good line of text.\n\nAnother good line."
    result = apply_rules(pa.array([text, "untouched.\r\nalso."], pa.string()), cfg)
    assert result.line_chars_removed["c4.no_terminal_punct"] == len("no punctuation here")
    assert result.line_docs_touched == {"c4.no_terminal_punct": 1, "c4.min_words_per_line": 0,
                                        "c4.javascript": 0}
    assert result.text.to_pylist()[1] == "untouched.\r\nalso."  # no line removed: unchanged


CODE_LINE = "result = compute(alpha, beta, gamma, delta, epsilon, zeta, eta)"
PARAGRAPHS_WITH_CODE = "\n\n".join([
    "The first paragraph is a complete English sentence.", CODE_LINE, CODE_LINE,
    "The second paragraph is also a complete sentence here.", CODE_LINE, CODE_LINE,
    "The third paragraph ends the document with a sentence."])


def test_c4_line_removal_leaves_one_blank_line_between_paragraphs():
    # Joining every kept line left "\n\n\n\n" where the code lines went: 8 line breaks for 26
    # words failed fineweb.newline_word_ratio (> 0.3) on text the document never had.
    fineweb = {"fineweb": {**DEFAULTS["fineweb"], "max_dup_line_char_ratio": None}}
    assert decide(PARAGRAPHS_WITH_CODE, fineweb)[0] is None  # the code lines repeat, hence None
    reason, new_text = decide(PARAGRAPHS_WITH_CODE, {"c4": DEFAULTS["c4"], **fineweb})
    assert reason is None
    assert "\n\n\n" not in new_text
    assert new_text == ("The first paragraph is a complete English sentence.\n\n"
                        "The second paragraph is also a complete sentence here.\n\n"
                        "The third paragraph ends the document with a sentence.")
    reason, new_text = decide(PARAGRAPHS_WITH_CODE, {"c4": DEFAULTS["c4"],
                                                     "fineweb": DEFAULTS["fineweb"]})
    assert reason is None and "\n\n\n" not in new_text


@pytest.mark.parametrize("text, expected", [
    ("no stop\n\n \nA first line.\n\n\n no stop\n\t\nA second line.\n \n", "A first line.\n\nA second line."),
    ("A first line.\nno stop\nA second line.\n\n\n\nA third line.", "A first line.\nA second line.\n\nA third line."),
    ("A first line.\r\n\r\n \r\nno stop\r\nA second line.", "A first line.\n\nA second line."),
    ("no stop\n\nA first line.", "A first line."),
])
def test_c4_line_removal_keeps_paragraphs(text, expected):
    """Kept paragraphs joined by one empty line: blank runs collapse, none at either end."""
    assert decide(text, C4_LINES) == (None, expected)
    # the later rules see that text: exactly its line breaks
    ratio = expected.count("\n") / len(expected.split())
    assert decide(text, {**C4_LINES, **only("fineweb", max_newline_word_ratio=ratio)})[0] is None
    assert (decide(text, {**C4_LINES, **only("fineweb", max_newline_word_ratio=ratio - 1e-9)})[0]
            == "fineweb.newline_word_ratio")


def test_c4_first_failing_line_rule_takes_the_characters():
    texts = ["short", "Enable javascript for this site now.", "Two words.\nA fine line is here."]
    result = apply_rules(pa.array(texts), DEFAULTS)
    assert result.line_chars_removed == {"c4.no_terminal_punct": 5,
                                         "c4.min_words_per_line": len("Two words."),
                                         "c4.javascript": len(texts[1])}
    assert result.line_docs_touched == {rule: 1 for rule in LINE_RULES}
    assert result.reason.to_pylist()[:2] == ["c4.no_lines_left", "c4.no_lines_left"]


def test_c4_no_lines_left():
    assert decide("no punctuation\nnone here either", C4_LINES)[0] == "c4.no_lines_left"
    assert decide("\n \n", C4_LINES) == (None, "\n \n")  # blank lines are never removed


@pytest.mark.parametrize("text, reason", [
    ("Some Lorem Ipsum text is here.", "c4.lorem_ipsum"),
    ("Lorem and ipsum apart are fine.", None),
    ("Code like f(x) { return x; } is here.", "c4.curly_bracket"),
    ("No brackets here at all.", None),
])
def test_c4_document_rules(text, reason):
    assert decide(text, only("c4", lorem_ipsum=True, curly_bracket=True))[0] == reason


def test_c4_document_rules_see_the_text_after_line_removal():
    text = "int main() {\nThis line is a proper sentence."
    cfg = only("c4", remove_no_terminal_punct_lines=True, curly_bracket=True)
    assert decide(text, cfg) == (None, "This line is a proper sentence.")


@pytest.mark.parametrize("text, reason", [
    ("This is a darn shame.", "c4.bad_words"),
    ("DARN, said he.", "c4.bad_words"),
    ("Darned if I know.", None),
    ("Undarn is not a word.", None),
    ("It was a very bad thing to do.", "c4.bad_words"),
    ("It was a bad  thing to do.", None),
    ("Это плохо слово.", "c4.bad_words"),
    ("Это плохое слово.", None),
])
def test_c4_bad_words_match_whole_words(text, reason):
    cfg = only("c4", bad_words=["darn", "Bad Thing", "плохо"])
    assert decide(text, cfg)[0] == reason


def test_c4_bad_words_are_literals():
    cfg = only("c4", bad_words=["a.b", "c*d", "(x)", "[y]", "a|b", "^up$", "back\\slash", "q?"])
    for text in ["Is a.b here", "Say c*d", "See (x)", "See [y] ok", "Is a|b ok", "Is ^up$",
                 "A back\\slash", "q? yes"]:
        assert decide(text, cfg)[0] == "c4.bad_words", text
    for text in ["Is axb here", "Say ccd", "See x", "Is a or b", "A back slash", "q yes"]:
        assert decide(text, cfg)[0] is None, text


@pytest.mark.parametrize("text, reason", [
    ("One. Two. Three.", None),
    ("One. Two.", "c4.min_sentences"),
    ("One! Two? Three...", None),
    ('He said "one." She said "two." They said "three."', None),
    ("Pi is 3.14 and e is 2.71 roughly.", "c4.min_sentences"),
    ("", "c4.min_sentences"),
])
def test_c4_min_sentences(text, reason):
    assert decide(text, only("c4", min_sentences=3))[0] == reason


# ---------------------------------------------------------------- other scripts' sentence enders

CJK_LINES = "\n".join(["这是第一个完整的句子，它有很多字。", "这是第二个完整的句子，它也有很多字！",
                        "这是第三个完整的句子吗？", "这是第四个完整的句子，它有很多字。"])


def test_cjk_lines_are_terminal_and_sentences():
    # min_words_per_line counts whitespace words and a CJK line is one "word": that rule would
    # remove every line of a text without spaces, so it is off here (its semantics are unchanged).
    cfg = {"c4": {**DEFAULTS["c4"], "min_words_per_line": None},
           "fineweb": {**only("fineweb", min_line_punct_ratio=1.0)["fineweb"]}}
    assert decide(CJK_LINES, cfg) == (None, CJK_LINES)  # no line removed, every line terminal
    # four sentences over four one-word lines: each 。！？ ends one
    assert decide(CJK_LINES, only("c4", min_sentences=4)) == (None, CJK_LINES)
    assert decide(CJK_LINES, only("c4", min_sentences=5))[0] == "c4.min_sentences"


@pytest.mark.parametrize("text, sentences", [
    ("一。二。三。", 3),  # no spaces: a CJK ender ends a sentence when more text follows
    ("一。」二！？三", 2),  # a run of enders is one end
    ("他说：“一。”二。", 2),  # closers after an ender belong to it
    ("半角｡全角．", 2),
    ("One. 二。Three?", 3),
    ("Pi is 3.14 and e is 2.71 here", 0),  # Latin . still needs whitespace or the end after it
    ("यह पहला वाक्य है। यह दूसरा है। तीसरा॥", 3),
    ("هل هذا سؤال؟ نعم۔ وهذا أيضا؟", 3),
    ("Սա նախադասություն է։ Եվ սա։", 2),
    ("ይህ ዓረፍተ ነገር ነው። ይህስ፧", 2),
    ("ဒါက စာကြောင်းပါ။ နောက်တစ်ခု။", 2),
    ("នេះជាប្រយោគ។ មួយទៀត៕", 2),
    ("བོད་ཡིག་ཡིན། ཡིན།", 0),  # the Tibetan shad ends lines, not sentences
])
def test_sentences_of_other_scripts(text, sentences):
    assert decide(text, only("c4", min_sentences=sentences))[0] is None
    assert decide(text, only("c4", min_sentences=sentences + 1))[0] == "c4.min_sentences"


def test_sentence_ends_in_words_equal_the_reference_in_text():
    """The vectorised count (matches per word) equals the reference's (matches in the text) on
    every string of up to 4 characters over enders, closers, a letter and a digit."""
    import itertools
    from lmbuild.filter.reference import SENTENCE_END
    from lmbuild.filter.rule_config import SENTENCE_END_IN_WORD
    alphabet = ".!?。！؟।\"”)a1"
    words_ = ["".join(p) for n in range(1, 5) for p in itertools.product(alphabet, repeat=n)]
    counts = pc.count_substring_regex(pa.array(words_), SENTENCE_END_IN_WORD).to_pylist()
    assert counts == [len(SENTENCE_END.findall(w)) for w in words_]


@pytest.mark.parametrize("line", [
    "यह एक पूरा वाक्य है जो हिंदी में लिखा गया है।",
    "هل هذا سطر كامل مكتوب باللغة العربية؟",
    "یہ اردو میں لکھا ہوا ایک مکمل جملہ ہے۔",
    "Սա հայերեն գրված ամբողջական նախադասություն է։",
    "བོད་ཡིག་གི་ཚིག་གྲུབ་འདི་ཡིན།",
])
def test_other_scripts_line_ends_are_terminal(line):
    text = f"First line is fine.\n{line}\nLast line is fine too."
    assert decide(text, C4_LINES) == (None, text)
    # FineWeb: all three lines end in punctuation
    assert decide(line, only("fineweb", min_line_punct_ratio=1.0))[0] is None
    assert decide(line[:-1], only("fineweb", min_line_punct_ratio=1.0))[0] == "fineweb.line_punct_ratio"
    assert decide(f"First line is fine.\n{line[:-1]}", C4_LINES)[1] == "First line is fine."


# ---------------------------------------------------------------- Gopher repetition

def lines_with_repeats(n_lines: int, n_repeats: int, sep: str = "\n") -> str:
    unique = [f"line number {i} says something" for i in range(n_lines - n_repeats)]
    return sep.join(unique + [unique[0]] * n_repeats)


@pytest.mark.parametrize("repeats, reason", [(3, None), (4, "gopher_repetition.dup_line_frac")])
def test_gopher_dup_line_frac(repeats, reason):
    text = lines_with_repeats(10, repeats)
    assert decide(text, only("gopher_repetition", max_dup_line_frac=0.3))[0] == reason


@pytest.mark.parametrize("repeats, reason", [(3, None), (4, "gopher_repetition.dup_para_frac")])
def test_gopher_dup_para_frac(repeats, reason):
    text = lines_with_repeats(10, repeats, sep="\n\n")
    assert decide(text, only("gopher_repetition", max_dup_para_frac=0.3))[0] == reason


def test_gopher_paragraphs_are_runs_of_non_blank_lines():
    para = "first line\nsecond line"
    text = f"{para}\n\n{para}\n \n{para}\nthird line"
    cfg = only("gopher_repetition", max_dup_para_frac=0.5)
    assert decide(text, cfg)[0] is None  # 1 repeat of 3 paragraphs
    assert decide(f"{para}\n\n{para}\n\n{para}", cfg)[0] == "gopher_repetition.dup_para_frac"


def test_gopher_dup_line_char_frac():
    # 4 lines of 10 characters, one repeated: 10 / 40 characters
    text = "aaaaaaaaaa\nbbbbbbbbbb\ncccccccccc\naaaaaaaaaa"
    assert decide(text, only("gopher_repetition", max_dup_line_char_frac=0.25))[0] is None
    assert (decide(text, only("gopher_repetition", max_dup_line_char_frac=0.24))[0]
            == "gopher_repetition.dup_line_char_frac")


def test_gopher_dup_para_char_frac_excludes_line_breaks():
    # paragraphs of 2 x 5 characters; the repeat is 10 of 30 characters
    text = "aaaaa\nbbbbb\n\nccccc\nddddd\n\naaaaa\nbbbbb"
    cfg = {"gopher_repetition": only("gopher_repetition")["gopher_repetition"]}
    cfg["gopher_repetition"]["max_dup_para_char_frac"] = 1 / 3
    assert decide(text, cfg)[0] is None
    cfg["gopher_repetition"]["max_dup_para_char_frac"] = 0.33
    assert decide(text, cfg)[0] == "gopher_repetition.dup_para_char_frac"


def unique_words(n: int) -> list[str]:
    return [f"w{i:03d}" for i in range(n)]  # 4 characters each


@pytest.mark.parametrize("k, reason", [(5, None), (6, "gopher_repetition.top_2_gram")])
def test_gopher_top_2_gram(k, reason):
    # "ab cd" occurs k times: 4k characters of 4k + 80
    text = " ".join(["ab cd"] * k + unique_words(20))
    cfg = only("gopher_repetition", top_ngram_char_frac={2: 0.2})
    assert decide(text, cfg)[0] == reason


def test_gopher_top_ngram_needs_a_repeat():
    cfg = only("gopher_repetition", top_ngram_char_frac={2: 0.01, 3: 0.01, 4: 0.01})
    assert decide("one two three", cfg)[0] is None


@pytest.mark.parametrize("m, reason", [(25, None), (20, "gopher_repetition.dup_5_gram")])
def test_gopher_dup_5_gram(m, reason):
    # a 5-gram of 20 characters repeated once, then m unique words: 20 / (40 + 4m)
    five = unique_words(5)
    text = " ".join(five + five + [w.upper() for w in unique_words(m)])
    cfg = only("gopher_repetition", dup_ngram_char_frac={5: 0.15})
    assert decide(text, cfg)[0] == reason


def test_gopher_dup_ngram_counts_each_word_once():
    # "a b c d e" three times: every word after the first five is covered once (10 of 15)
    text = " ".join(["a", "b", "c", "d", "e"] * 3)
    ok = only("gopher_repetition", dup_ngram_char_frac={5: 10 / 15})
    assert decide(text, ok)[0] is None
    tight = only("gopher_repetition", dup_ngram_char_frac={5: 0.66})
    assert decide(text, tight)[0] == "gopher_repetition.dup_5_gram"


# ---------------------------------------------------------------- Gopher quality

@pytest.mark.parametrize("n, reason", [(49, "gopher_quality.min_words"), (50, None)])
def test_gopher_min_words(n, reason):
    assert decide(prose(n), only("gopher_quality", min_words=50))[0] == reason


def test_gopher_max_words():
    cfg = only("gopher_quality", max_words=60)
    assert decide(prose(60), cfg)[0] is None
    assert decide(prose(61), cfg)[0] == "gopher_quality.max_words"


@pytest.mark.parametrize("short, long, reason", [
    (24, 24, None),  # mean exactly 3.0
    (25, 23, "gopher_quality.min_mean_word_length"),
])
def test_gopher_min_mean_word_length(short, long, reason):
    text = " ".join(["ab"] * short + ["abcd"] * long + ["the", "and"])
    assert decide(text, only("gopher_quality", min_mean_word_length=3))[0] == reason


def test_gopher_max_mean_word_length():
    cfg = only("gopher_quality", max_mean_word_length=10)
    assert decide(words(10, "abcdefghij"), cfg)[0] is None
    assert decide(words(10, "abcdefghijk"), cfg)[0] == "gopher_quality.max_mean_word_length"


@pytest.mark.parametrize("symbols, reason", [
    (["#tag"] * 5, None),
    (["#tag"] * 6, "gopher_quality.hash_word_ratio"),
    (["wait..."] * 3 + ["so…"] * 2, None),
    (["wait...."] * 4 + ["so…"] * 2, "gopher_quality.ellipsis_word_ratio"),
])
def test_gopher_symbol_word_ratio(symbols, reason):
    text = prose(50 - len(symbols))[:-1] + " " + " ".join(symbols)
    assert decide(text, only("gopher_quality", max_symbol_word_ratio=0.1))[0] == reason


@pytest.mark.parametrize("bullets, reason", [(9, None), (10, "gopher_quality.bullet_lines_ratio")])
def test_gopher_bullet_lines_ratio(bullets, reason):
    lines = [("  • " if i < bullets else "") + f"item number {i} here" for i in range(10)]
    text = "\n\n".join(lines)  # blank lines do not count
    assert decide(text, only("gopher_quality", max_bullet_lines_ratio=0.9))[0] == reason


@pytest.mark.parametrize("ellipses, reason",
                         [(3, None), (4, "gopher_quality.ellipsis_lines_ratio")])
def test_gopher_ellipsis_lines_ratio(ellipses, reason):
    ends = ["...", "…  ", "...", "…"][:ellipses] + ["."] * (10 - ellipses)
    text = "\n".join(f"line {i} goes on{end}" for i, end in enumerate(ends))
    assert decide(text, only("gopher_quality", max_ellipsis_lines_ratio=0.3))[0] == reason


@pytest.mark.parametrize("numbers, reason", [(10, None), (11, "gopher_quality.alpha_words_ratio")])
def test_gopher_alpha_words_ratio(numbers, reason):
    text = " ".join(["слово"] * 20 + ["x1"] * (30 - numbers) + ["1,234"] * numbers)
    assert decide(text, only("gopher_quality", min_alpha_words_ratio=0.8))[0] == reason


@pytest.mark.parametrize("text, reason", [
    ("The river AND the sea", None),
    ("the river, the, sea", "gopher_quality.min_stop_words"),
    ("tHe wİth river", "gopher_quality.min_stop_words"),  # non-ASCII letters are not folded
])
def test_gopher_stop_words(text, reason):
    assert decide(text, only("gopher_quality", min_stop_words=2))[0] == reason


# ---------------------------------------------------------------- FineWeb

@pytest.mark.parametrize("terminal, reason", [(3, None), (2, "fineweb.line_punct_ratio")])
def test_fineweb_line_punct_ratio(terminal, reason):
    lines = [f"line {i}" + ("." if i < terminal else "") for i in range(25)]
    assert decide("\n".join(lines), only("fineweb", min_line_punct_ratio=0.12))[0] == reason


@pytest.mark.parametrize("short, reason", [(6, None), (7, "fineweb.short_line_ratio")])
def test_fineweb_short_line_ratio(short, reason):
    lines = ["x" * (30 if i < short else 31) for i in range(9)]  # 6/9 = 0.667, 7/9 = 0.778
    cfg = only("fineweb", short_line_length=30, max_short_line_ratio=0.67)
    assert decide("\n".join(lines), cfg)[0] == reason


def test_fineweb_dup_line_char_ratio():
    text = "\n".join(["a long line of ninety nine characters " * 2 + "x" * 23] * 2 + ["y"] * 2)
    cfg = only("fineweb", max_dup_line_char_ratio=0.01)
    assert decide(text, cfg)[0] == "fineweb.dup_line_char_ratio"
    assert decide("\n".join(["z" * 99, "q" * 99]), cfg)[0] is None


@pytest.mark.parametrize("n_words, reason", [(30, None), (29, "fineweb.newline_word_ratio")])
def test_fineweb_newline_word_ratio(n_words, reason):
    lines = [words(3)] * 9 + [words(n_words - 27)]  # 9 line breaks
    assert decide("\n".join(lines), only("fineweb", max_newline_word_ratio=0.3))[0] == reason


# ---------------------------------------------------------------- edge cases

EDGE_CASES = {
    "empty": "",
    "one word": "word",
    "punctuation": "?!... ,;: —",
    "whitespace": " \n\n\t \r\n\u3000\u00a0",
    "cyrillic": "Это предложение написано по-русски. " * 20,
    "cjk": "这是一个用中文写的句子。" * 50,
    "crlf": ("This is a line of text that ends well.\r\n" * 3 + "\r\n") * 5,
    "cr": "Old Mac line endings are here.\rAnd another one is here too.\r",
    "long line": "lorem " * 50_000 + "end.",
    "long word": "x" * 200_000,
    "nul and controls": "a\x00b\x1cc\x1fd\x85e\u2028f.",
}


@pytest.mark.parametrize("name", EDGE_CASES)
@pytest.mark.parametrize("groups", [GROUPS, GROUPS[1:], ("gopher_quality",), ("fineweb",)])
def test_edge_cases_agree(name, groups):
    cfg = {g: DEFAULTS[g] for g in groups}
    decide(EDGE_CASES[name], cfg)


def test_empty_document_reasons():
    assert decide("", DEFAULTS)[0] == "c4.min_sentences"
    no_c4 = {g: DEFAULTS[g] for g in GROUPS[1:]}
    assert decide("", no_c4)[0] == "gopher_quality.min_words"
    assert decide("", {"fineweb": DEFAULTS["fineweb"]})[0] == "fineweb.line_punct_ratio"


def test_crlf_documents_are_decided_as_their_lf_twins():
    texts = [EDGE_CASES["crlf"], EDGE_CASES["crlf"].replace("\r\n", "\n")]
    for groups in (GROUPS, GROUPS[1:]):
        result = apply_rules(pa.array(texts), {g: DEFAULTS[g] for g in groups})
        reasons = result.reason.to_pylist()
        assert reasons[0] == reasons[1]


def test_nulls_chunked_and_large_string_input():
    chunked = pa.chunked_array([["A short text."], [None, "Another text here."]],
                               pa.large_string())
    result = apply_rules(chunked, DEFAULTS)
    assert result.text.type == pa.string()
    assert result.text.to_pylist()[1] is None
    assert result.reason.to_pylist()[1] == "c4.min_sentences"  # decided as an empty document


# ---------------------------------------------------------------- configuration

def test_rule_names_are_complete_and_ordered():
    assert len(set(RULE_NAMES)) == len(RULE_NAMES)
    assert set(LINE_RULES) <= set(RULE_NAMES)
    assert set(RULE_PARAMS) == set(RULE_NAMES)
    groups = [name.split(".")[0] for name in RULE_NAMES]
    assert groups == sorted(groups, key=GROUPS.index)
    assert {"c4.lorem_ipsum", "gopher_quality.min_words",
            "gopher_repetition.top_2_gram"} <= set(RULE_NAMES)


def test_absent_or_disabled_groups_do_nothing():
    text = "no punctuation\nat all"
    assert decide(text, {}) == (None, text)
    disabled = {g: {**DEFAULTS[g], "enabled": False} for g in GROUPS}
    assert decide(text, disabled) == (None, text)
    assert decide(text, {"c4": None}) == (None, text)


def test_a_null_threshold_disables_only_its_rule():
    text = prose(40)
    assert decide(text, {"gopher_quality": {}})[0] == "gopher_quality.min_words"
    assert decide(text, {"gopher_quality": {"min_words": None}})[0] is None
    line = "One. Two. Three. And a last sentence without a stop"
    assert decide(line, {"c4": {}})[0] == "c4.no_lines_left"
    assert decide(line, {"c4": {"remove_no_terminal_punct_lines": None}}) == (None, line)


def test_missing_keys_take_the_defaults():
    resolved = fill_thresholds({"gopher_repetition": {"top_ngram_char_frac": {"3": None}}})
    assert resolved["gopher_repetition"]["top_ngram_char_frac"] == {2: 0.2, 3: None, 4: 0.16}
    assert resolved["gopher_repetition"]["max_dup_line_frac"] == 0.3


@pytest.mark.parametrize("cfg, message", [
    ({"gopher": {}}, "unknown rule group 'gopher'"),
    ({"c4": {"min_word_per_line": 3}}, "filter.c4: unknown key(s) min_word_per_line"),
    ({"gopher_repetition": {"top_ngram_char_frac": {7: 0.1}}}, "n-gram sizes must be among"),
    ({"c4": {"bad_words": "darn"}}, "must be a list of strings"),
])
def test_bad_config_raises(cfg, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        apply_rules(pa.array(["text"]), cfg)


def test_defaults_are_not_modified():
    before = copy.deepcopy(DEFAULTS)
    fill_thresholds({"gopher_repetition": {"dup_ngram_char_frac": {5: None}}, "c4": {}})
    assert DEFAULTS == before


def test_spec_defaults_are_the_rule_defaults():
    """rule_config.DEFAULTS is the one source of the thresholds; the params schema repeats them so
    `params.yaml` validates and normalises on its own: every copy must equal the source."""
    from lmbuild.filter.rule_config import PII_BACKENDS, PII_DEFAULTS
    from lmbuild.params import load_spec
    _, registry = load_spec("filter")
    assert registry.get("rules")["pii"]["schema"]["backend"]["allowed"] == list(PII_BACKENDS)
    assert set(registry.get("rules")["pii"]["schema"]) == set(PII_DEFAULTS)
    for group, defaults in {**DEFAULTS, "pii": PII_DEFAULTS}.items():
        spec = registry.get("rules")[group]["schema"]
        for key, value in defaults.items():
            if key == "bad_words":  # the spec names a file (bad_words_file), filled by the stage
                continue
            assert key in spec, f"specs/filter.yaml: rules.{group}.{key} is missing"
            given = spec[key]["default"]
            if isinstance(value, dict):
                given = {int(k): v for k, v in given.items()}
            assert given == value, f"specs/filter.yaml: rules.{group}.{key} default {given!r} != {value!r}"


# ---------------------------------------------------------------- character sets

@pytest.fixture(scope="module")
def every_char():
    chars = [chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF]
    return chars, pa.array(chars)


def test_pyarrow_whitespace_is_python_whitespace(every_char):
    chars, arr = every_char
    python = np.array([c.isspace() for c in chars])
    split = pc.list_value_length(pc.utf8_split_whitespace(pc.binary_join_element_wise(
        "a", arr, "b", ""))).to_numpy() == 2
    trimmed = pc.binary_length(pc.utf8_trim_whitespace(arr)).to_numpy() == 0
    is_space = pc.utf8_is_space(arr).to_numpy(zero_copy_only=False)  # blank lines (textstats)
    assert (split == python).all() and (trimmed == python).all() and (is_space == python).all()


def test_character_classes_match_python(every_char):
    chars, arr = every_char
    letters = textstats.matches(arr, textstats.letter_class())
    assert (letters == np.array([c.isalpha() for c in chars])).all()
    non_word = textstats.matches(arr, textstats.non_word_class())
    assert (non_word == np.array([re.match(r"\W", c) is not None for c in chars])).all()


# ---------------------------------------------------------------- identity on a generated corpus

STOP = ["the", "be", "to", "of", "and", "that", "have", "with", "The", "AND", "a", "in", "is"]
SPACES = [" "] * 30 + ["  ", "\t", "\u00a0", "\u3000", "\u2003", " \u200a", "\x1c"]
ENDS = [".", ".", ".", ".", "!", "?", "...", "…", '"', "'", "”", ".)", ":", ",", "", '."', "?!"]
BREAKS = ["\n"] * 14 + ["\r\n", "\n\n", "\n \n", "\r", "\n\t\n", "\n\n\n"]
CODE = ["def f(x):", "    return x + 1", "int main() {", '  printf("%d\\n", a);', "}",
        "for (i = 0; i < n; i++) {", "#include <stdio.h>", "x = [1, 2, 3]", "# comment ..."]
OTHER = ["Please enable JavaScript in your browser to see all of the comments.",
         "Lorem ipsum dolor sit amet, consectetur adipiscing elit.", "   !?.!?.  ",
         "#tag #another #more", "Read more...", "Click here…", "这是中文。日本語のテキスト",
         "Это предложение написано по-русски и оно длинное.", "• a bullet point line."]
TINY = ["", " ", "\n", "\r\n\r\n", "...", "!!!", "word", "\t \u3000", "Привет, мир.", "{", "\r"]


class Corpus:
    """Deterministic documents mixing prose, code, repeats, bullets and non-Latin text."""

    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)
        syllables = ["ka", "lo", "mi", "ne", "ru", "sta", "ver", "ion", "al", "th", "qu", "ex"]
        vocab = {"".join(self.rng.choice(syllables, int(self.rng.integers(1, 5))))
                 for _ in range(4000)}  # Zipf-distributed pseudo-words
        self.vocab = sorted(vocab)
        zipf = np.cumsum(1.0 / np.arange(1, len(self.vocab) + 1))
        self.cdf = zipf / zipf[-1]

    def pick(self, seq):
        return seq[int(self.rng.integers(0, len(seq)))]

    def sentence(self) -> str:
        out = []
        for _ in range(int(self.rng.integers(3, 16))):
            r = self.rng.random()
            word = (self.pick(STOP) if r < 0.3 else str(int(self.rng.integers(0, 2000)))
                    if r < 0.33 else self.vocab[np.searchsorted(self.cdf, self.rng.random())])
            out.append(word + self.pick(SPACES))
        return "".join(out).capitalize().rstrip() + self.pick(ENDS)

    def line(self, previous: list[str]) -> str:
        r = self.rng.random()
        if previous and r < 0.06:
            return self.pick(previous)
        if r < 0.72:
            return " ".join(self.sentence() for _ in range(int(self.rng.integers(1, 5))))
        if r < 0.78:
            return self.pick(["• ", "- ", "* ", "-"]) + self.sentence()
        if r < 0.83:
            return self.pick(CODE)
        if r < 0.93:
            return self.pick(OTHER)
        if r < 0.935:
            return " ".join(["the same words again"] * int(self.rng.integers(3, 30))) + "."
        return self.sentence()[: int(self.rng.integers(1, 30))]

    def document(self) -> str:
        if self.rng.random() < 0.03:
            return self.pick(TINY)
        lines: list[str] = []
        for _ in range(int(self.rng.integers(1, 40))):
            lines.append(self.line(lines))
        if self.rng.random() < 0.1:
            lines += lines[: int(self.rng.integers(1, 4))] * int(self.rng.integers(1, 4))
        text = "".join(line + self.pick(BREAKS) for line in lines)
        return text if self.rng.random() < 0.5 else text.rstrip("\r\n")


IDENTITY_CONFIGS = {
    "defaults": DEFAULTS,
    "no_c4": {g: DEFAULTS[g] for g in GROUPS[1:]},
    "c4_document_rules": {**DEFAULTS, "c4": {
        **DEFAULTS["c4"], "remove_no_terminal_punct_lines": False, "min_words_per_line": None,
        "min_sentences": 4, "bad_words": ["ka", "lo mi", "мир", "x + 1"]}},
    "quality_strict": only("gopher_quality", max_words=600, min_mean_word_length=4.0,
                           max_mean_word_length=6.5, max_symbol_word_ratio=0.02,
                           max_bullet_lines_ratio=0.2, max_ellipsis_lines_ratio=0.1,
                           min_alpha_words_ratio=0.9, min_stop_words=6),
    "repetition_strict": only("gopher_repetition", max_dup_para_char_frac=0.03,
                              top_ngram_char_frac={2: 0.05, 3: 0.04, 4: 0.03},
                              dup_ngram_char_frac={5: 0.03, 7: 0.02, 9: 0.01, 10: 0.01}),
    "fineweb_strict": only("fineweb", min_line_punct_ratio=0.6, short_line_length=60,
                           max_short_line_ratio=0.3, max_newline_word_ratio=0.05),
}


@pytest.fixture(scope="module")
def corpus() -> list[str]:
    c = Corpus(seed=1234)
    return [c.document() for _ in range(1500)]


@pytest.mark.parametrize("name", IDENTITY_CONFIGS)
def test_vectorised_equals_reference_on_generated_corpus(corpus, name):
    cfg = IDENTITY_CONFIGS[name]
    result = apply_rules(pa.array(corpus), cfg)
    reference = [apply_rules_reference(text, cfg) for text in corpus]
    reasons, texts = result.reason.to_pylist(), result.text.to_pylist()
    differ = [i for i, (t, r, _) in enumerate(reference) if (t, r) != (texts[i], reasons[i])]
    assert not differ, (f"{len(differ)} documents differ, e.g. {corpus[differ[0]][:200]!r}: "
                        f"{reasons[differ[0]]} vs {reference[differ[0]][1]}")
    removed = {rule: sum(r[2][rule] for r in reference) for rule in LINE_RULES}
    assert result.line_chars_removed == removed
    touched = {rule: sum(r[2][rule] > 0 for r in reference) for rule in LINE_RULES}
    assert result.line_docs_touched == touched
    # the corpus exercises the config: several reasons and kept documents
    assert len(set(reasons)) >= 4 and reasons.count(None) > 0
