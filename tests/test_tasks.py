"""lmbuild.tasks: seeded verifiable tasks. Determinism, train/test separation, verifier
behaviour, difficulty validation, correctness of the reference answers and demo-size limits."""

from __future__ import annotations

import itertools
import math
import random
import re

import pytest

from lmbuild.tasks import (DEFAULT_DIFFICULTY, FAMILIES, TEST_FRACTION, Example, Score, TaskError,
                           extract_answer, generate, generate_mix, reward, score, space_size, split_size,
                           validate_difficulty)

REQUIRED = ("arithmetic", "word_problems", "sort", "reverse", "count")

# A bigger setting per family (what a GPU user would ask for); exercises the sampled path too.
HARDER = {
    "arithmetic": {"digits": 3, "ops": ["+", "-", "*"], "negative": True},
    "word_problems": {"max_value": 100, "ops": ["+", "-", "*", "/"], "templates": 3},
    "sort": {"length": 8, "max_value": 99, "order": "mixed"},
    "reverse": {"length": 10, "alphabet": 26},
    "count": {"length": 12, "alphabet": 6},
}
# Tiny problem spaces: every problem can be listed by hand below.
TINY = {
    "arithmetic": {"digits": 1, "ops": ["*"]},
    "word_problems": {"max_value": 4, "ops": ["+"], "templates": 3},
    "sort": {"length": 2, "max_value": 3},
    "reverse": {"length": 3, "alphabet": 3},
    "count": {"length": 2, "alphabet": 3},
}


def canon(ex: Example) -> str:
    """The problem itself, whatever the wording: word problems by their equation line."""
    if ex.family == "word_problems":
        return ex.solution.splitlines()[0]
    if ex.family == "arithmetic":
        return ex.prompt.replace(" ", "")
    return ex.prompt


def test_families_registered_with_defaults():
    for name in REQUIRED:
        assert name in FAMILIES
        assert validate_difficulty(name, None) == DEFAULT_DIFFICULTY[name]
    assert 0 < TEST_FRACTION < 1


@pytest.mark.parametrize("family", REQUIRED)
def test_deterministic_and_seed_dependent(family):
    for split in ("train", "test"):
        a = generate(family, split, 15, seed=3)
        assert a == generate(family, split, 15, seed=3)
        assert a != generate(family, split, 15, seed=4)
        assert all(isinstance(e, Example) and e.family == family for e in a)
    # prefix-stable: asking for fewer gives the first ones
    assert generate(family, "train", 5, seed=3) == generate(family, "train", 15, seed=3)[:5]
    assert generate(family, "train", 0, seed=3) == []


@pytest.mark.parametrize("family", REQUIRED)
def test_test_problems_never_in_train(family):
    for difficulty in (None, HARDER[family]):
        test = set()
        n = min(20, split_size(family, "test", difficulty) or 20)
        for seed in range(3):
            test |= {canon(e) for e in generate(family, "test", n, seed, difficulty)}
        for seed in range(4):
            train = {canon(e) for e in generate(family, "train", 200, seed, difficulty)}
            assert not train & test, (family, difficulty, seed)


def all_tiny_problems(family: str) -> set[str]:
    """Every problem of the TINY setting, written independently of the library."""
    if family == "arithmetic":
        return {f"Compute:{a}*{b}" for a in range(10) for b in range(10)}
    if family == "word_problems":
        return {f"{a} + {b} = {a + b}" for a in range(1, 5) for b in range(1, 5)}
    if family == "sort":
        return {f"Sort: {a} {b}" for a in range(4) for b in range(4)}
    if family == "reverse":
        return {"Reverse: " + " ".join(t) for t in itertools.product("abc", repeat=3)}
    return {f"Count {c} in: " + " ".join(t) for c in "abc" for t in itertools.product("abc", repeat=2)}


@pytest.mark.parametrize("family", REQUIRED)
def test_tiny_space_splits_partition_the_problems(family):
    d = TINY[family]
    everything = all_tiny_problems(family)
    assert space_size(family, d) == len(everything)
    train = set()
    for seed in range(3):  # train walks shuffles of its pool: n > pool size covers it all
        train |= {canon(e) for e in generate(family, "train", 3 * len(everything), seed, d)}
    k = split_size(family, "test", d)
    assert k == len(everything) - len(train) and k > 0
    for seed in range(3):
        test = generate(family, "test", k, seed, d)
        assert len({canon(e) for e in test}) == k  # distinct
        assert {canon(e) for e in test} == everything - train
    with pytest.raises(TaskError, match="lower n"):
        generate(family, "test", k + 1, 0, d)


def test_sampled_space_keeps_splits_apart():
    # 100,000 problems: too many to enumerate, so both splits are drawn by rejection sampling;
    # a leak would show dozens of shared problems at these sizes
    d = {"length": 5, "max_value": 9}
    assert split_size("sort", "test", d) is None
    test = {e.prompt for e in generate("sort", "test", 2000, 0, d)}
    assert len(test) == 2000
    train = {e.prompt for e in generate("sort", "train", 3000, 1, d)}
    assert not test & train


def test_split_ignores_rendering_knobs():
    spaced = {canon(e) for e in generate("arithmetic", "test", 500, 0, {"digits": 2, "spaced": True})}
    plain = {canon(e) for e in generate("arithmetic", "train", 2000, 1, {"digits": 2, "spaced": False})}
    assert spaced and not spaced & plain
    # same arithmetic in other wordings / names: the split follows the arithmetic
    test1 = {canon(e) for e in generate("word_problems", "test", 20, 0, {"templates": 1})}
    train3 = {canon(e) for e in generate("word_problems", "train", 300, 5, {"templates": 3})}
    assert not test1 & train3


def test_test_split_is_distinct_and_errors_when_too_small():
    big = generate("reverse", "test", 300, 0)  # sampled (large space)
    assert len({e.prompt for e in big}) == 300
    k = split_size("arithmetic", "test")
    assert len({e.prompt for e in generate("arithmetic", "test", k, 1)}) == k
    with pytest.raises(TaskError) as err:
        generate("arithmetic", "test", k + 1, 1)
    msg = str(err.value)
    assert "\n" not in msg and "arithmetic" in msg and "raise the difficulty" in msg and "lower n" in msg


@pytest.mark.parametrize("family", REQUIRED)
def test_solutions_score_full_marks(family):
    for d in (None, HARDER[family], TINY[family]):
        for split in ("train", "test"):
            for e in generate(family, split, min(10, split_size(family, split, d) or 10), 7, d):
                lines = e.solution.splitlines()
                assert lines[-1] == f"Answer: {e.answer}"
                assert extract_answer(e.solution) == e.answer
                assert score(e, e.solution) == Score(format=1.0, correct=1.0)
                assert reward(e, e.solution) == pytest.approx(1.1)


@pytest.mark.parametrize("family", REQUIRED)
def test_wrong_answers_score_zero(family):
    for e in generate(family, "train", 10, 1, HARDER[family]):
        extra = e.answer + (" 1" if family in ("sort", "arithmetic", "word_problems", "count") else " z")
        assert score(e, f"Answer: {extra}") == Score(format=1.0, correct=0.0)
        assert reward(e, f"Answer: {extra}") == pytest.approx(0.1)
        assert score(e, "I do not know.") == Score(format=0.0, correct=0.0)
        assert reward(e, "I do not know.") == 0.0
        if FAMILIES[family].kind == "number":
            off = str(int(e.answer.replace(" ", "")) + 1)
            assert score(e, f"Answer: {off}").correct == 0.0


def ex(answer: str, family: str = "arithmetic") -> Example:
    return Example(id="x", family=family, prompt="p", answer=answer, solution=f"Answer: {answer}")


def test_extract_answer_edge_cases():
    assert extract_answer("Answer: 3\nthinking...\nAnswer: 5") == "5"  # last line wins
    assert extract_answer("the answer is 5") is None
    assert extract_answer("") is None
    assert extract_answer("Answer:   ") is None
    assert extract_answer("Answer:    9    2  \n") == "9 2"
    assert extract_answer("  answer: 7.") == "7"
    assert extract_answer("x = 1 Answer: 7") is None  # must start a line
    assert extract_answer("Answer: r e w q<|im_end|>") == "r e w q"


def test_score_edge_cases():
    assert score(ex("7"), "Answer: 07") == Score(1.0, 1.0)
    assert score(ex("7"), "Answer: 7.0") == Score(1.0, 1.0)
    assert score(ex("9 2"), "Answer: 92") == Score(1.0, 1.0)  # spaced digits are one number
    assert score(ex("-1 2"), "Answer: -12") == Score(1.0, 1.0)
    assert score(ex("7"), "Answer: 5\nAnswer: 7") == Score(1.0, 1.0)
    assert score(ex("7"), "Answer: 7\nAnswer: 5") == Score(1.0, 0.0)
    assert score(ex("7"), "no answer line") == Score(0.0, 0.0)
    assert score(ex("7"), "Answer: seven") == Score(0.0, 0.0)  # malformed for a number
    assert score(ex("7"), "Answer: 7\nand more text") == Score(0.0, 1.0)  # junk after the answer
    assert score(ex("7"), "Answer: 7<|im_end|>") == Score(1.0, 1.0)
    assert score(ex("2 4 7 9", "sort"), "Answer: 2, 4, 7, 09") == Score(1.0, 1.0)
    assert score(ex("2 4 7 9", "sort"), "Answer: 2 4 9 7") == Score(1.0, 0.0)
    assert score(ex("2 4 7 9", "sort"), "Answer: 2 4 7") == Score(1.0, 0.0)
    assert score(ex("r e w q", "reverse"), "Answer: rewq") == Score(1.0, 1.0)
    assert score(ex("r e w q", "reverse"), "Answer: r e w 1") == Score(0.0, 0.0)
    assert reward(ex("7"), "Answer: 7", format_weight=0.5) == pytest.approx(1.5)


@pytest.mark.parametrize("family, difficulty, key", [
    ("sort", {"length": "x"}, "sort.length"),
    ("sort", {"length": 1}, "sort.length"),
    ("sort", {"length": True}, "sort.length"),
    ("sort", {"order": "up"}, "sort.order"),
    ("arithmetic", {"ops": ["/"]}, "arithmetic.ops"),
    ("arithmetic", {"ops": []}, "arithmetic.ops"),
    ("arithmetic", {"spaced": 1}, "arithmetic.spaced"),
    ("word_problems", {"max_value": 10 ** 9}, "word_problems.max_value"),
    ("reverse", {"alphabet": 27}, "reverse.alphabet"),
])
def test_difficulty_errors_are_one_line_naming_the_key(family, difficulty, key):
    with pytest.raises(TaskError) as err:
        validate_difficulty(family, difficulty)
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith(f"tasks: {key}:")
    assert repr(next(iter(difficulty.values()))) in msg
    with pytest.raises(TaskError):
        generate(family, "train", 1, 0, difficulty)


def test_unknown_names_list_the_known_ones():
    with pytest.raises(TaskError, match=r"sort\.lenght.*known keys: length, min_length, max_value, order"):
        validate_difficulty("sort", {"lenght": 5})
    with pytest.raises(TaskError, match=r"'sorting'.*known families: .*sort"):
        generate("sorting", "train", 1, 0)
    with pytest.raises(TaskError, match=r"split.*'dev'"):
        generate("sort", "dev", 1, 0)
    with pytest.raises(TaskError, match=r"known families"):
        generate_mix({"sort": 1, "nope": 1}, "train", 0)


def test_difficulty_merges_and_normalises():
    d = validate_difficulty("arithmetic", {"ops": ["-", "+"]})
    assert d == {**DEFAULT_DIFFICULTY["arithmetic"], "ops": ["+", "-"]}
    assert generate("arithmetic", "train", 10, 0, {"ops": ["-", "+"]}) == \
        generate("arithmetic", "train", 10, 0, {"ops": ["+", "-"]})


def test_reference_answers_are_correct():
    ops = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b}
    for d in (None, HARDER["arithmetic"], {"digits": 4, "spaced": False}):
        for e in generate("arithmetic", "train", 50, 2, d):
            m = re.fullmatch(r"Compute: ([\d ]+) ([-+*]) ([\d ]+)", e.prompt)
            a, op, b = int(m[1].replace(" ", "")), m[2], int(m[3].replace(" ", ""))
            assert int(e.answer.replace(" ", "")) == ops[op](a, b)
            if d is None or d.get("negative") is not True:
                assert ops[op](a, b) >= 0
    for d in (None, HARDER["sort"]):
        for e in generate("sort", "train", 50, 2, d):
            verb, _, nums = e.prompt.partition(": ")
            values = sorted(map(int, nums.split()), reverse=verb == "Sort descending")
            assert e.answer == " ".join(map(str, values))
    for e in generate("reverse", "train", 50, 2, HARDER["reverse"]):
        assert e.answer.split() == e.prompt.removeprefix("Reverse: ").split()[::-1]
    for e in generate("count", "train", 50, 2, HARDER["count"]):
        m = re.fullmatch(r"Count (\w) in: ([a-z ]+)", e.prompt)
        assert int(e.answer) == m[2].split().count(m[1])
    words = {"+": ("more", "on Tuesday"), "-": ("loses", "takes out", "gave"),
             "*": ("bags of", "rows of", "packs of"), "/": ("among", "equal bags", "equal rows")}
    for e in generate("word_problems", "train", 80, 2, HARDER["word_problems"]):
        x, y = map(int, re.findall(r"\d+", e.prompt))
        op = next(o for o, cues in words.items() if any(c in e.prompt for c in cues))
        want = {"+": x + y, "-": x - y, "*": x * y, "/": x / y}[op]
        assert want == int(e.answer) and want >= 0


def estimate_tokens(text: str) -> int:
    """Rough BPE token count: cl100k-style pre-tokens (digit runs of up to 3), long words split."""
    pieces = re.findall(r"[^\r\n\w]?[^\W\d_]+|\d{1,3}| ?[^\s\w]+[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+", text)
    return sum(max(1, math.ceil(len(p.strip()) / 6)) for p in pieces)


@pytest.mark.parametrize("family", REQUIRED)
def test_demo_examples_are_short(family):
    examples = generate(family, "train", 200, 0) + generate(family, "test", 10, 0)
    longest = max(estimate_tokens(e.prompt) + estimate_tokens(e.solution) for e in examples)
    assert longest <= 40, (family, longest)


def test_ids_are_stable_hashes_of_the_prompt():
    a = generate("sort", "train", 400, 0)
    b = generate("sort", "train", 400, 1)
    by_prompt = {e.prompt: e.id for e in a}
    shared = [e for e in b if e.prompt in by_prompt]
    assert shared and all(by_prompt[e.prompt] == e.id for e in shared)
    assert len({e.id for e in a}) == len({e.prompt for e in a})


def test_generate_mix():
    counts = {"sort": 7, "arithmetic": 5, "reverse": 6}
    mix = generate_mix(counts, "train", 11)
    assert mix == generate_mix(dict(reversed(list(counts.items()))), "train", 11)
    assert mix != generate_mix(counts, "train", 12)
    for name, n in counts.items():
        assert [e for e in mix if e.family == name] == generate(name, "train", n, 11)
    switches = sum(a.family != b.family for a, b in zip(mix, mix[1:]))
    assert switches >= 6  # interleaved, not three blocks
    hard = generate_mix({"sort": 3}, "test", 0, {"sort": HARDER["sort"]})
    assert hard == generate("sort", "test", 3, 0, HARDER["sort"])


# --- difficulty levels, train parts, pass@k ---------------------------------------------------

LEVELLED = {
    "arithmetic": {"digits": 2, "min_digits": 1, "ops": ["+", "-", "*"]},
    "sort": {"length": 4, "min_length": 2, "max_value": 3, "order": "mixed"},
    "reverse": {"length": 4, "min_length": 2, "alphabet": 3},
    "count": {"length": 4, "min_length": 2, "alphabet": 3},
    "word_problems": {"max_value": 10, "ops": ["+", "-", "*", "/"]},
}


def _level_truth(family: str, ex) -> str:
    """The level a problem belongs to, read from its prompt (independently of the numbering)."""
    words = ex.prompt.split(":", 1)[-1].split()
    if family == "arithmetic":
        a, _, b = re.fullmatch(r"(\d+)([-+*])(\d+)", ex.prompt.removeprefix("Compute: ").replace(" ", "")).groups()
        return f"d{max(len(a), len(b))}"
    if family in ("sort", "reverse", "count"):
        return f"len{len(words)}"
    return {"+": "add", "-": "sub", "*": "mul", "/": "div"}[ex.solution.split()[1]]


@pytest.mark.parametrize("family", sorted(LEVELLED))
def test_levels_number_every_problem_once_and_say_their_level(family):
    from lmbuild.tasks import level_sizes, space_size, validate_difficulty
    from lmbuild.tasks.families import FAMILIES
    d = validate_difficulty(family, LEVELLED[family])
    fam = FAMILIES[family]
    sizes = level_sizes(family, LEVELLED[family])
    assert len(sizes) > 1 and sum(sizes.values()) == space_size(family, LEVELLED[family])
    keys = [fam.key(d, i) for i in range(fam.size(d))]
    assert len(set(keys)) == len(keys)  # a bijection onto distinct problems
    from lmbuild.tasks.example import make_example
    for i in range(fam.size(d)):
        ex = make_example(family, fam.render(d, i, random.Random(0)), fam.level_of(d, i))
        assert ex.level == _level_truth(family, ex), (i, ex)


def test_arithmetic_levels_hold_exactly_the_problems_of_their_digit_count():
    from lmbuild.tasks import level_sizes
    # d1: 10 x 10 ordered pairs for + and *, 55 pairs a >= b for -; d2: 100^2 - 10^2, 5050 - 55
    assert level_sizes("arithmetic", LEVELLED["arithmetic"]) == {"d1": 255, "d2": 2 * 9900 + 4995}
    # one level (min_digits null) is the space as it was: every operand pair of up to `digits` digits
    assert level_sizes("arithmetic", {"digits": 2}) == {"d2": 100 * 100 + 5050}


@pytest.mark.parametrize("family", sorted(LEVELLED))
def test_levels_are_drawn_in_equal_shares(family):
    from collections import Counter
    for split in ("train", "test"):
        exs = generate(family, split, 20 if split == "test" else 200, 5, LEVELLED[family])
        counts = Counter(e.level for e in exs)
        if split == "train":
            assert max(counts.values()) - min(counts.values()) <= 1, counts


def test_a_test_level_that_runs_out_leaves_the_cycle():
    from collections import Counter
    from lmbuild.tasks import split_size
    d = {"length": 4, "min_length": 2, "alphabet": 3}
    have = split_size("reverse", "test", d)
    exs = generate("reverse", "test", have, 1, d)
    assert len({e.id for e in exs}) == have  # every distinct test problem, the small levels exhausted
    c = Counter(e.level for e in exs)
    assert c["len4"] > c["len2"]
    with pytest.raises(TaskError, match=r"reverse\.n: only .* distinct test problems"):
        generate("reverse", "test", have + 1, 1, d)


def test_a_minimum_above_its_maximum_is_one_line():
    with pytest.raises(TaskError, match=r"^tasks: sort\.min_length: must be <= length \(3\), got 5$"):
        generate("sort", "train", 1, 0, {"length": 3, "min_length": 5})
    with pytest.raises(TaskError, match=r"arithmetic\.min_digits: must be an int between 1 and 18 or null"):
        generate("arithmetic", "train", 1, 0, {"min_digits": "2"})


@pytest.mark.parametrize("family", sorted(LEVELLED))
def test_train_parts_are_disjoint_cover_train_and_never_touch_test(family):
    from lmbuild.tasks import split_size
    d = LEVELLED[family]
    parts = [(0.0, 0.5), (0.5, 0.75), (0.75, 1.0)]
    sizes = [split_size(family, "train", d, part=p) for p in parts]
    assert sum(sizes) == split_size(family, "train", d)
    drawn = [{e.prompt for e in generate(family, "train", 400, 3, d, part=p)} for p in parts]
    test = {e.prompt for e in generate(family, "test", split_size(family, "test", d), 3, d)}
    for i in range(3):
        assert not drawn[i] & test
        for j in range(i + 1, 3):
            assert not drawn[i] & drawn[j], (parts[i], parts[j])


def test_large_levels_are_sampled_within_their_part():
    from lmbuild.tasks.splits import in_split
    d = {"length": 8, "min_length": 7, "max_value": 9}  # 10^7 and 10^8 problems: sampled, not listed
    from lmbuild.tasks.families import FAMILIES
    from lmbuild.tasks import validate_difficulty
    exs = generate("sort", "train", 50, 0, d, part=(0.25, 0.5))
    assert {e.level for e in exs} == {"len7", "len8"}
    key = lambda e: "asc:" + ",".join(e.prompt.removeprefix("Sort: ").split())  # noqa: E731
    assert all(in_split("sort", key(e), False, part=(0.25, 0.5)) for e in exs)
    assert FAMILIES["sort"].size(validate_difficulty("sort", d)) == 10 ** 7 + 10 ** 8


def test_parts_are_refused_where_they_mean_nothing():
    with pytest.raises(TaskError, match="only the train split has parts"):
        generate("sort", "test", 1, 0, part=(0.0, 0.5))
    with pytest.raises(TaskError, match=r"part: must be \(lo, hi\)"):
        generate("sort", "train", 1, 0, part=(0.5, 0.5))


def test_pass_at_k_by_hand_and_against_the_combinatorial_definition():
    from math import comb
    from lmbuild.lm.generation import ks_for, pass_at_k
    assert pass_at_k(4, 1, 2) == pytest.approx(1 - comb(3, 2) / comb(4, 2))  # 0.5
    assert pass_at_k(8, 0, 8) == 0.0 and pass_at_k(8, 8, 1) == 1.0 and pass_at_k(8, 2, 1) == 0.25
    for n in (1, 5, 16):
        for c in range(n + 1):
            for k in range(1, n + 1):
                assert pass_at_k(n, c, k) == pytest.approx(1 - comb(n - c, k) / comb(n, k), abs=1e-12)
    assert ks_for(8) == [1, 2, 4, 8] and ks_for(6) == [1, 2, 4, 6] and ks_for(1) == [1]
    with pytest.raises(ValueError):
        pass_at_k(4, 5, 1)


def test_pass_k_summary_per_family_and_level_with_headroom():
    from lmbuild.lm.generation import pass_k_summary
    rows = [{"family": "sort", "level": "len3", "samples": 4, "correct": c} for c in (0, 2, 4)] + \
           [{"family": "count", "level": "len5", "samples": 4, "correct": 1}]
    s = pass_k_summary(rows)
    # pass@1 = c/n; pass@4 = 1 when any sample is right
    assert s["pass@1"] == pytest.approx((0 + 0.5 + 1 + 0.25) / 4)
    assert s["pass@4"] == pytest.approx(3 / 4)
    assert s["sort.pass@4"] == pytest.approx(2 / 3) and s["count.len5.pass@2"] == pytest.approx(0.5)
    assert s["headroom"] == pytest.approx(s["pass@4"] - s["pass@1"])
    assert s["sort.len3.headroom"] == pytest.approx((0 + 0.5 + 0) / 3)
    assert s["samples"] == 4 and s["pass@1_stderr"] > 0
