"""Letter-string tasks, one letter per token (" q" is one token for a byte-level BPE):

- reverse: `Reverse: q w e r` -> `Answer: r e w q`
- count:   `Count a in: b a c a d a` -> `Answer: 3`

Letters come from the first `alphabet` letters of a..z; strings have `length` letters.
"""

from __future__ import annotations

import random
import string

from ..difficulty import IntParam
from ..example import Problem
from .base import Family, mixed_radix

LETTERS = string.ascii_lowercase


def _letters(index: int, d: dict) -> list[str]:
    return [LETTERS[i] for i in mixed_radix(index, d["alphabet"], d["length"])]


class Reverse(Family):
    name = "reverse"
    kind = "letters"
    description = "reverse a sequence of letters"
    params = {
        "length": IntParam(4, 2, 64, "how many letters"),
        "alphabet": IntParam(26, 2, 26, "letters are drawn from the first `alphabet` of a..z"),
    }

    def size(self, d: dict) -> int:
        return d["alphabet"] ** d["length"]

    def key(self, d: dict, index: int) -> str:
        return "".join(_letters(index, d))

    def render(self, d: dict, index: int, rng: random.Random) -> Problem:
        letters = _letters(index, d)
        answer = " ".join(reversed(letters))
        return Problem(prompt=f"Reverse: {' '.join(letters)}", answer=answer, solution=f"Answer: {answer}")


class Count(Family):
    name = "count"
    kind = "number"
    description = "count one letter in a sequence of letters"
    params = {
        "length": IntParam(6, 2, 64, "how many letters"),
        "alphabet": IntParam(4, 2, 26, "letters (and the one to count) come from the first `alphabet` of a..z"),
    }

    def _decode(self, d: dict, index: int) -> tuple[str, list[str]]:
        target, rest = divmod(index, d["alphabet"] ** d["length"])
        return LETTERS[target], _letters(rest, d)

    def size(self, d: dict) -> int:
        return d["alphabet"] ** (d["length"] + 1)

    def key(self, d: dict, index: int) -> str:
        target, letters = self._decode(d, index)
        return f"{target}:{''.join(letters)}"

    def render(self, d: dict, index: int, rng: random.Random) -> Problem:
        target, letters = self._decode(d, index)
        answer = str(letters.count(target))
        return Problem(prompt=f"Count {target} in: {' '.join(letters)}", answer=answer,
                       solution=f"Answer: {answer}")
