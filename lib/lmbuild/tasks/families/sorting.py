"""Sorting: `Sort: 7 2 9 4` -> `Answer: 2 4 7 9` (`Sort descending: ...` for the other order).

`length` numbers drawn uniformly (repeats allowed) from 0..`max_value`, separated by spaces.
`order` is "asc", "desc" or "mixed" (both, each prompt saying which).
"""

from __future__ import annotations

import random

from ..difficulty import ChoiceParam, IntParam
from ..example import Problem
from .base import Family, mixed_radix

_ORDERS = {"asc": ("asc",), "desc": ("desc",), "mixed": ("asc", "desc")}


class Sort(Family):
    name = "sort"
    kind = "numbers"
    description = "sort a list of numbers"
    params = {
        "length": IntParam(4, 2, 64, "how many numbers"),
        "max_value": IntParam(9, 1, 10 ** 6, "numbers are drawn from 0..max_value"),
        "order": ChoiceParam("asc", ("asc", "desc", "mixed"), "sort order asked for"),
    }

    def _decode(self, d: dict, index: int) -> tuple[str, list[int]]:
        per_order = (d["max_value"] + 1) ** d["length"]
        order = _ORDERS[d["order"]][index // per_order]
        return order, mixed_radix(index % per_order, d["max_value"] + 1, d["length"])

    def size(self, d: dict) -> int:
        return len(_ORDERS[d["order"]]) * (d["max_value"] + 1) ** d["length"]

    def key(self, d: dict, index: int) -> str:
        order, values = self._decode(d, index)
        return f"{order}:{','.join(map(str, values))}"

    def render(self, d: dict, index: int, rng: random.Random) -> Problem:
        order, values = self._decode(d, index)
        answer = " ".join(map(str, sorted(values, reverse=order == "desc")))
        verb = "Sort:" if order == "asc" else "Sort descending:"
        return Problem(prompt=f"{verb} {' '.join(map(str, values))}", answer=answer,
                       solution=f"Answer: {answer}")
