"""Worked column arithmetic (lmbuild.tasks.families.worked): every line is true, the answer is the
result, and a held-out problem's steps all occur in training problems (why the families teach it)."""

import random
import re

import pytest

from lmbuild.tasks import generate
from lmbuild.tasks.answers import extract_answer, parse_number
from lmbuild.tasks.errors import TaskError
from lmbuild.tasks.families.worked import column_solution

_LINE = re.compile(r"^([0-9+\-]+)=(\d+) -> ([0-9 ]+)$")


def _check(a: int, op: str, b: int) -> None:
    text = column_solution(a, op, b)
    lines = text.splitlines()
    assert parse_number(extract_answer(text)) == (a + b if op == "+" else a - b)
    partial = ""
    for line in lines[1:-1]:
        m = _LINE.match(line)
        assert m, line
        lhs, rhs, now = m.groups()
        assert eval(lhs) == int(rhs), line  # noqa: S307 - digits and +/- only (the regex)
        digits = now.split()
        assert " ".join(digits[-len(partial.split()):]) == partial if partial else len(digits) >= 1
        assert len(digits) - len(partial.split()) in (1, 2)   # one digit a column (two: a final carry)
        partial = now
    assert parse_number(partial) == abs(a - b if op == "-" else a + b)


def test_every_line_is_true_and_the_answer_is_the_result():
    rng = random.Random(0)
    cases = [(0, "+", 0), (999, "+", 1), (5, "+", 995), (1000, "-", 1), (103, "-", 98), (7, "-", 7), (3, "-", 58)]
    cases += [(rng.randrange(10 ** rng.randint(1, 4)), rng.choice("+-"), rng.randrange(10 ** rng.randint(1, 4)))
              for _ in range(2000)]
    for a, op, b in cases:
        _check(a, op, b)


def test_format():
    assert column_solution(345, "+", 78) == "3 4 5 + 7 8\n5+8=13 -> 3\n4+7+1=12 -> 2 3\n3+0+1=4 -> 4 2 3\nAnswer: 4 2 3"
    assert column_solution(52, "-", 7, head=False) == "12-7=5 -> 5\n5-0-1=4 -> 4 5\nAnswer: 4 5"
    assert column_solution(3, "-", 5, head=False).splitlines()[0] == "3 - 5 = -(5 - 3)"
    with pytest.raises(ValueError, match="only"):
        column_solution(3, "*", 5)


def _steps(solution: str) -> set[str]:
    """The column facts of a solution (left and right of `=`), without the partial results."""
    return {line.split(" -> ")[0] for line in solution.splitlines() if " -> " in line}


@pytest.mark.parametrize("family,difficulty", [
    ("arithmetic", {"digits": 3, "min_digits": 1, "worked": True}),
    ("word_problems", {"max_value": 100, "worked": True}),
])
def test_held_out_steps_occur_in_training(family, difficulty):
    """The problems differ; their steps do not: a few hundred one-digit facts make up every
    solution, and 4,000 training problems hold all the steps of >= 98% of held-out ones (the rest
    miss a rare fact such as 10-9-1=0)."""
    train = generate(family, "train", 4000, 0, difficulty)
    test = generate(family, "test", 300, 0, difficulty)
    assert not {e.prompt for e in train} & {e.prompt for e in test}
    seen = set().union(*(_steps(e.solution) for e in train))
    assert len(seen) <= 400
    assert sum(_steps(e.solution) <= seen for e in test) >= 0.98 * len(test)
    assert all(extract_answer(e.solution) == e.answer for e in test)


def test_worked_flag_changes_solutions_only():
    plain = generate("arithmetic", "test", 50, 3, {"digits": 2, "min_digits": 1})
    worked = generate("arithmetic", "test", 50, 3, {"digits": 2, "min_digits": 1, "worked": True})
    assert [(e.id, e.prompt, e.answer) for e in plain] == [(e.id, e.prompt, e.answer) for e in worked]
    assert all("->" in e.solution for e in worked) and not any("->" in e.solution for e in plain)
    with pytest.raises(TaskError, match="worked"):
        generate("arithmetic", "train", 5, 0, {"ops": ["+", "*"], "worked": True})
    stories = generate("word_problems", "train", 40, 0, {"max_value": 20, "ops": ["+", "*"], "worked": True})
    assert {("->" in e.solution) for e in stories} == {True, False}   # * keeps the one-line solution


def test_reverse_worked_numbers_then_reads_back():
    for e in generate("reverse", "train", 50, 0, {"length": 6, "min_length": 3, "alphabet": 6, "worked": True}):
        letters = e.prompt.removeprefix("Reverse: ").split()
        first, second, last = e.solution.splitlines()
        assert first.split()[1::2] == letters and first.split()[0::2] == [str(i) for i in range(1, len(letters) + 1)]
        assert [(n, c) for n, c in zip(second.split()[0::2], second.split()[1::2])] == \
            list(reversed(list(zip(first.split()[0::2], first.split()[1::2]))))
        assert last == f"Answer: {e.answer}" and e.answer.split() == letters[::-1]


def test_max_new_tokens_must_hold_the_longest_solution():
    """A worked solution cut off by tasks.max_new_tokens would score wrong whatever the model
    knows: sft stops before any work and says what to raise."""
    from lmbuild.lm.task_setup import check_answer_room
    from lmbuild.params import ParamsError

    def words(text, add_special_tokens=False):   # a tokenizer of one token per word
        return {"input_ids": text.split()}

    exs = generate("arithmetic", "test", 20, 0, {"digits": 3, "min_digits": 3, "worked": True})
    need = max(len(e.solution.split()) for e in exs) + 1
    check_answer_room({"max_new_tokens": need}, words, exs)
    with pytest.raises(ParamsError, match=f"tasks.max_new_tokens \\({need - 1}\\).*at least {need}"):
        check_answer_room({"max_new_tokens": need - 1}, words, exs)
