"""Sorting: `Sort: 7 2 9 4` -> `Answer: 2 4 7 9` (`Sort descending: ...` for the other order).

`length` numbers drawn uniformly (repeats allowed) from 0..`max_value`, separated by spaces.
`order` is "asc", "desc" or "mixed" (both, each prompt saying which). Levels are list lengths,
from `min_length` (null: `length`, one level) to `length`.
"""

from __future__ import annotations

import random

from ..difficulty import ChoiceParam, IntParam
from ..example import Problem
from .base import Family, Level, blocks, length_range, mixed_radix

_ORDERS = {"asc": ("asc",), "desc": ("desc",), "mixed": ("asc", "desc")}


class Sort(Family):
    name = "sort"
    kind = "numbers"
    description = "sort a list of numbers"
    params = {
        "length": IntParam(4, 2, 64, "how many numbers (the longest level)"),
        "min_length": IntParam(None, 2, 64, "the shortest lists (the easiest level)", null_means="same as length"),
        "max_value": IntParam(9, 1, 10 ** 6, "numbers are drawn from 0..max_value"),
        "order": ChoiceParam("asc", ("asc", "desc", "mixed"), "sort order asked for"),
    }

    def check(self, d: dict) -> None:
        length_range(self.name, d, "min_length", "length")

    def levels(self, d: dict) -> list[Level]:
        return blocks([(f"len{n}", len(_ORDERS[d["order"]]) * (d["max_value"] + 1) ** n)
                       for n in length_range(self.name, d, "min_length", "length")])

    def _decode(self, d: dict, index: int) -> tuple[str, list[int]]:
        lv, r = self.locate(d, index)
        n = int(lv.name[3:])
        per_order = (d["max_value"] + 1) ** n
        order = _ORDERS[d["order"]][r // per_order]
        return order, mixed_radix(r % per_order, d["max_value"] + 1, n)

    def key(self, d: dict, index: int) -> str:
        order, values = self._decode(d, index)
        return f"{order}:{','.join(map(str, values))}"

    def render(self, d: dict, index: int, rng: random.Random) -> Problem:
        order, values = self._decode(d, index)
        answer = " ".join(map(str, sorted(values, reverse=order == "desc")))
        verb = "Sort:" if order == "asc" else "Sort descending:"
        return Problem(prompt=f"{verb} {' '.join(map(str, values))}", answer=answer,
                       solution=f"Answer: {answer}")
