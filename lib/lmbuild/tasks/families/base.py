"""The interface every task family implements.

A family's problems at a given difficulty are numbered 0..size-1, and the numbering is a
bijection onto distinct prompts. That makes sampling uniform, lets small spaces be enumerated
exactly (so "only k distinct test problems exist" is a fact, not a guess), and lets test sets
hold distinct problems. Each problem also has a canonical key (the problem itself, without
rendering choices) that decides its train/test split.
"""

from __future__ import annotations

import random
from math import isqrt

from ..difficulty import Param
from ..example import Problem


class Family:
    name: str = ""
    kind: str = "text"          # answer kind, see lmbuild.tasks.answers
    description: str = ""
    params: dict[str, Param] = {}

    def size(self, d: dict) -> int:
        """How many distinct problems exist at difficulty `d` (train and test together)."""
        raise NotImplementedError

    def key(self, d: dict, index: int) -> str:
        """Canonical statement of problem `index`: the same problem gives the same key at any
        difficulty that can produce it (rendering knobs must not change it)."""
        raise NotImplementedError

    def render(self, d: dict, index: int, rng: random.Random) -> Problem:
        """Prompt, answer and solution of problem `index`; `rng` may pick surface wording only."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<task family {self.name!r}>"


def triangle(r: int) -> tuple[int, int]:
    """The r-th pair (a, b) with 0 <= b <= a, in order (0,0), (1,0), (1,1), (2,0)..."""
    a = (isqrt(8 * r + 1) - 1) // 2
    return a, r - a * (a + 1) // 2


def mixed_radix(r: int, base: int, length: int) -> list[int]:
    """`r` written as `length` digits in `base`, most significant first."""
    out = [0] * length
    for pos in range(length - 1, -1, -1):
        r, out[pos] = divmod(r, base)
    return out


def spaced(text: str) -> str:
    """'347' -> '3 4 7' and '-12' -> '-1 2': one token per digit for a byte-level BPE."""
    sign, digits = ("-", text[1:]) if text.startswith("-") else ("", text)
    return sign + " ".join(digits)
