"""Word problems: one-step stories over + - * /, e.g.
`Tom has 3 apples and gets 4 more. How many apples now?` -> `3 + 4 = 7` / `Answer: 7`.

The problem is the arithmetic (op, x, y) with operands in 1..`max_value` (subtraction never goes
below zero, division is exact); its split is decided by that arithmetic alone, so renaming the
person or the object never moves a problem between train and test. The wording is one of the
first `templates` templates of the operator, with a name and an object picked by the seed.
Levels are the operators (`add`, `sub`, `mul`, `div`), drawn in equal shares. With `worked`, a +
or - story's solution restates the numbers digit by digit and adds column by column
(lmbuild.tasks.families.worked); * and / keep the one-line solution.
"""

from __future__ import annotations

import random

from ..difficulty import BoolParam, IntParam, SubsetParam
from ..example import Problem
from .base import Family, Level, blocks, spaced, triangle
from .worked import column_solution

# Short, common words: the demo tokenizer (4096 byte-level BPE) keeps them to 1-2 tokens each.
NAMES = ("Tom", "Ann", "Sam", "Ben", "Max", "Kim", "Tim", "Amy")
ITEMS = (("apple", "apples"), ("pen", "pens"), ("book", "books"), ("card", "cards"),
         ("coin", "coins"), ("egg", "eggs"), ("car", "cars"), ("toy", "toys"))


def _n(k: int, item: tuple[str, str]) -> str:
    return f"{k} {item[0] if k == 1 else item[1]}"


# Per operator: functions (name, x, y, item) -> prompt, the shortest first (the demo uses only
# the first). x op y is the arithmetic shown in the solution: for "/", x is the total and y the
# number of groups.
TEMPLATES = {
    "+": (
        lambda n, x, y, it: f"{n} has {_n(x, it)} and gets {y} more. How many {it[1]} now?",
        lambda n, x, y, it: f"A box has {_n(x, it)}. {n} puts in {y} more. How many {it[1]} are in the box?",
        lambda n, x, y, it: f"{n} found {_n(x, it)} on Monday and {y} on Tuesday. How many {it[1]} in all?",
    ),
    "-": (
        lambda n, x, y, it: f"{n} has {_n(x, it)} and loses {y}. How many {it[1]} now?",
        lambda n, x, y, it: f"A box has {_n(x, it)}. {n} takes out {y}. How many {it[1]} are in the box?",
        lambda n, x, y, it: f"{n} had {_n(x, it)} and gave {y} to a friend. How many {it[1]} are left?",
    ),
    "*": (
        lambda n, x, y, it: f"{n} has {x} bags of {_n(y, it)}. How many {it[1]} in all?",
        lambda n, x, y, it: f"A box has {x} rows of {_n(y, it)}. How many {it[1]} are in the box?",
        lambda n, x, y, it: f"{n} buys {x} packs of {_n(y, it)}. How many {it[1]} did {n} buy?",
    ),
    "/": (
        lambda n, x, y, it: f"{n} shares {_n(x, it)} among {y} friends. How many {it[1]} each?",
        lambda n, x, y, it: f"{n} puts {_n(x, it)} into {y} equal bags. How many {it[1]} in each bag?",
        lambda n, x, y, it: f"A box has {_n(x, it)} in {y} equal rows. How many {it[1]} in each row?",
    ),
}


_LEVEL = {"+": "add", "-": "sub", "*": "mul", "/": "div"}


class WordProblems(Family):
    name = "word_problems"
    kind = "number"
    description = "one-step arithmetic stories"
    params = {
        "max_value": IntParam(10, 2, 10 ** 6, "operands (and quotients) are drawn from 1..max_value"),
        "ops": SubsetParam(("+", "-"), ("+", "-", "*", "/"), "operators to draw from"),
        "templates": IntParam(1, 1, 3, "how many wordings per operator"),
        "worked": BoolParam(False, "+ and - solutions work column by column"),
    }

    def _blocks(self, d: dict) -> list[tuple[str, int]]:
        m = d["max_value"]
        return [(op, m * (m + 1) // 2 if op == "-" else m * m) for op in d["ops"]]

    def levels(self, d: dict) -> list[Level]:
        return blocks([(_LEVEL[op], size) for op, size in self._blocks(d)])

    def _decode(self, d: dict, index: int) -> tuple[str, int, int, int]:
        """(op, x, y, result) of problem `index`."""
        m = d["max_value"]
        for op, size in self._blocks(d):
            if index < size:
                if op == "-":
                    a, b = triangle(index)  # 0 <= b <= a < m
                    return op, a + 1, b + 1, a - b
                a, b = index // m + 1, index % m + 1
                if op == "+":
                    return op, a, b, a + b
                if op == "*":
                    return op, a, b, a * b
                return op, a * b, b, a  # "/": total a*b in b groups of a
            index -= size
        raise IndexError(index)

    def key(self, d: dict, index: int) -> str:
        op, x, y, _ = self._decode(d, index)
        return f"{x}{op}{y}"

    def render(self, d: dict, index: int, rng: random.Random) -> Problem:
        op, x, y, result = self._decode(d, index)
        template = TEMPLATES[op][rng.randrange(d["templates"])]
        prompt = template(rng.choice(NAMES), x, y, rng.choice(ITEMS))
        if d["worked"] and op in "+-":
            return Problem(prompt=prompt, answer=spaced(str(result)), solution=column_solution(x, op, y))
        return Problem(prompt=prompt, answer=str(result), solution=f"{x} {op} {y} = {result}\nAnswer: {result}")
