"""The interface every task family implements.

A family's problems at a given difficulty are numbered 0..size-1, and the numbering is a
bijection onto distinct prompts. That makes sampling uniform, lets small spaces be enumerated
exactly (so "only k distinct test problems exist" is a fact, not a guess), and lets test sets
hold distinct problems. Each problem also has a canonical key (the problem itself, without
rendering choices) that decides its train/test split.

Difficulty levels: the numbering is cut into contiguous blocks, one per level (sort lists of 3,
4, 5... numbers; one-, two-, three-digit arithmetic), listed by `levels`. Sampling draws the
levels in equal shares whatever their sizes (uniform over problems would be almost all of the
largest level), and accuracy is reported per level.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from math import isqrt

from ..difficulty import Param
from ..errors import fail
from ..example import Problem


@dataclass(frozen=True)
class Level:
    """One difficulty level: problems start..start+size-1 of the family's numbering."""
    name: str
    start: int
    size: int


class Family:
    name: str = ""
    kind: str = "text"          # answer kind, see lmbuild.tasks.answers
    description: str = ""
    params: dict[str, Param] = {}

    def levels(self, d: dict) -> list[Level]:
        """The difficulty levels at `d`, in order, covering 0..size-1 contiguously."""
        raise NotImplementedError

    def size(self, d: dict) -> int:
        """How many distinct problems exist at difficulty `d` (train and test together)."""
        last = self.levels(d)[-1]
        return last.start + last.size

    def locate(self, d: dict, index: int) -> tuple[Level, int]:
        """The level holding problem `index`, and the index's offset inside it."""
        for lv in self.levels(d):
            if index < lv.start + lv.size:
                return lv, index - lv.start
        raise IndexError(index)

    def level_of(self, d: dict, index: int) -> str:
        return self.locate(d, index)[0].name

    def check(self, d: dict) -> None:
        """Cross-knob checks (a minimum above its maximum); TaskError naming the key."""

    def key(self, d: dict, index: int) -> str:
        """Canonical statement of problem `index`: the same problem gives the same key at any
        difficulty that can produce it (rendering knobs must not change it)."""
        raise NotImplementedError

    def render(self, d: dict, index: int, rng: random.Random) -> Problem:
        """Prompt, answer and solution of problem `index`; `rng` may pick surface wording only."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<task family {self.name!r}>"


def length_range(family: str, d: dict, low_key: str, high_key: str) -> range:
    """The lengths low..high of a family whose levels are lengths; `low` null means `high` (one
    level, the family's behaviour before levels existed)."""
    high = d[high_key]
    low = high if d[low_key] is None else d[low_key]
    if low > high:
        raise fail(f"{family}.{low_key}", f"must be <= {high_key} ({high})", low)
    return range(low, high + 1)


def blocks(named_sizes: list[tuple[str, int]]) -> list[Level]:
    """Contiguous levels from (name, size) pairs."""
    out, start = [], 0
    for name, size in named_sizes:
        out.append(Level(name, start, size))
        start += size
    return out


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
