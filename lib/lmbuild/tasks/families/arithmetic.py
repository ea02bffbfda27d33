"""Arithmetic: `Compute: 3 4 + 5 8` -> `3 4 + 5 8 = 9 2` / `Answer: 9 2`.

Two operands of up to `digits` digits each and one operator from `ops`. With `spaced` (the
default) every digit is written apart so that a cl100k-style tokenizer, which groups up to 3
digits into one token, sees one token per digit. Without `negative`, subtraction keeps the first
operand >= the second. With `worked`, the solution adds column by column
(lmbuild.tasks.families.worked: `5+8=13 -> 3`, ...) instead of stating the result; + and - only.

Levels: level k holds the problems whose larger operand has exactly k digits (level 1: both in
0..9), for k from `min_digits` to `digits`; so `min_digits: 2, digits: 3` mixes two- and
three-digit problems in equal shares. With `min_digits` null there is one level holding every
pair of up to `digits` digits (operands uniform in 0..10**digits-1).
"""

from __future__ import annotations

import random

from ..difficulty import BoolParam, IntParam, SubsetParam
from ..example import Problem
from ..errors import fail
from .base import Family, Level, blocks, length_range, spaced, triangle
from .worked import column_solution


def _floor(k: int, d: dict) -> int:
    """Smallest bound of level k: operands of level k are < 10**k, the larger one >= this."""
    return 0 if k == 1 or d["min_digits"] is None else 10 ** (k - 1)


class Arithmetic(Family):
    name = "arithmetic"
    kind = "number"
    description = "a op b with up to `digits` digits per operand"
    params = {
        "digits": IntParam(1, 1, 18, "max digits per operand"),
        "min_digits": IntParam(None, 1, 18, "fewest digits of the larger operand (the easiest level)",
                               null_means="same as digits"),
        "ops": SubsetParam(("+", "-"), ("+", "-", "*"), "operators to draw from"),
        "spaced": BoolParam(True, "write digits apart ('3 4'), one token each"),
        "negative": BoolParam(False, "allow subtraction results below zero"),
        "worked": BoolParam(False, "solutions work column by column (+ and - only)"),
    }

    def check(self, d: dict) -> None:
        length_range(self.name, d, "min_digits", "digits")
        if d["worked"] and "*" in d["ops"]:
            raise fail(f"{self.name}.worked", "has column solutions for + and - only: drop * from ops "
                       "or set worked: false", d["ops"])

    def _block_size(self, op: str, k: int, d: dict) -> int:
        hi, lo = 10 ** k, _floor(k, d)
        if op == "-" and not d["negative"]:  # pairs a >= b with a in lo..hi-1
            return hi * (hi + 1) // 2 - lo * (lo + 1) // 2
        return hi * hi - lo * lo                # pairs below hi with the larger >= lo

    def levels(self, d: dict) -> list[Level]:
        return blocks([(f"d{k}", sum(self._block_size(op, k, d) for op in d["ops"]))
                       for k in length_range(self.name, d, "min_digits", "digits")])

    def _decode(self, d: dict, index: int) -> tuple[int, str, int]:
        lv, r = self.locate(d, index)
        k = int(lv.name[1:])
        hi, lo = 10 ** k, _floor(k, d)
        for op in d["ops"]:
            size = self._block_size(op, k, d)
            if r < size:
                if op == "-" and not d["negative"]:
                    a, b = triangle(r + lo * (lo + 1) // 2)  # triangle lists pairs by growing a
                    return a, op, b
                if r < (hi - lo) * hi:                        # larger-or-equal first operand in lo..hi-1
                    return lo + r // hi, op, r % hi
                r -= (hi - lo) * hi                           # first operand below lo, second in lo..hi-1
                return r // (hi - lo), op, lo + r % (hi - lo)
            r -= size
        raise IndexError(index)  # pragma: no cover - the levels cover the numbering

    def key(self, d: dict, index: int) -> str:
        a, op, b = self._decode(d, index)
        return f"{a}{op}{b}"

    def render(self, d: dict, index: int, rng: random.Random) -> Problem:
        a, op, b = self._decode(d, index)
        result = a + b if op == "+" else a - b if op == "-" else a * b
        fmt = spaced if d["spaced"] else (lambda s: s)
        fa, fb, fr = fmt(str(a)), fmt(str(b)), fmt(str(result))
        # the prompt spells the digits out when spaced: no need to restate them
        solution = (column_solution(a, op, b, head=not d["spaced"]) if d["worked"]
                    else f"{fa} {op} {fb} = {fr}\nAnswer: {fr}")
        return Problem(prompt=f"Compute: {fa} {op} {fb}", answer=fr, solution=solution)
