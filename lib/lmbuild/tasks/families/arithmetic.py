"""Arithmetic: `Compute: 3 4 + 5 8` -> `3 4 + 5 8 = 9 2` / `Answer: 9 2`.

Two operands of up to `digits` digits each (uniform in 0..10**digits-1) and one operator from
`ops`. With `spaced` (the default) every digit is written apart so that a cl100k-style
tokenizer, which groups up to 3 digits into one token, sees one token per digit. Without
`negative`, subtraction keeps the first operand >= the second.
"""

from __future__ import annotations

import random

from ..difficulty import BoolParam, IntParam, SubsetParam
from ..example import Problem
from .base import Family, spaced, triangle


class Arithmetic(Family):
    name = "arithmetic"
    kind = "number"
    description = "a op b with up to `digits` digits per operand"
    params = {
        "digits": IntParam(1, 1, 18, "max digits per operand (operands uniform in 0..10**digits-1)"),
        "ops": SubsetParam(("+", "-"), ("+", "-", "*"), "operators to draw from"),
        "spaced": BoolParam(True, "write digits apart ('3 4'), one token each"),
        "negative": BoolParam(False, "allow subtraction results below zero"),
    }

    def _blocks(self, d: dict) -> list[tuple[str, int]]:
        n = 10 ** d["digits"]
        return [(op, n * (n + 1) // 2 if op == "-" and not d["negative"] else n * n) for op in d["ops"]]

    def size(self, d: dict) -> int:
        return sum(size for _, size in self._blocks(d))

    def _decode(self, d: dict, index: int) -> tuple[int, str, int]:
        n = 10 ** d["digits"]
        for op, size in self._blocks(d):
            if index < size:
                if op == "-" and not d["negative"]:
                    a, b = triangle(index)
                    return a, op, b
                return index // n, op, index % n
            index -= size
        raise IndexError(index)

    def key(self, d: dict, index: int) -> str:
        a, op, b = self._decode(d, index)
        return f"{a}{op}{b}"

    def render(self, d: dict, index: int, rng: random.Random) -> Problem:
        a, op, b = self._decode(d, index)
        result = a + b if op == "+" else a - b if op == "-" else a * b
        fmt = spaced if d["spaced"] else (lambda s: s)
        fa, fb, fr = fmt(str(a)), fmt(str(b)), fmt(str(result))
        return Problem(prompt=f"Compute: {fa} {op} {fb}", answer=fr,
                       solution=f"{fa} {op} {fb} = {fr}\nAnswer: {fr}")
