"""Letter-string tasks, one letter per token (" q" is one token for a byte-level BPE):

- reverse: `Reverse: q w e r` -> `Answer: r e w q`
- count:   `Count a in: b a c a d a` -> `Answer: 3`

Letters come from the first `alphabet` letters of a..z; strings have `length` letters. Levels are
string lengths, from `min_length` (null: `length`, one level) to `length`.

With `worked`, reverse numbers the letters, then reads them back from the highest number:

    Reverse: q w e r   ->   1 q 2 w 3 e 4 r
                            4 r 3 e 2 w 1 q
                            Answer: r e w q

Each step is then a lookup by content (the letter after "3" in the line above) or a copy in
order, which attention does by matching tokens, instead of a jump to the mirrored position,
which a small model must learn for every length (the scratchpad idea of Nye et al. 2021,
arXiv:2112.00114).
"""

from __future__ import annotations

import random
import string

from ..difficulty import BoolParam, IntParam
from ..example import Problem
from .base import Family, Level, blocks, length_range, mixed_radix

LETTERS = string.ascii_lowercase


def _letters(index: int, alphabet: int, length: int) -> list[str]:
    return [LETTERS[i] for i in mixed_radix(index, alphabet, length)]


class _LengthLevels(Family):
    """Levels by string length; `_per_length(d, n)` problems of length n."""

    def _per_length(self, d: dict, n: int) -> int:
        raise NotImplementedError

    def check(self, d: dict) -> None:
        length_range(self.name, d, "min_length", "length")

    def levels(self, d: dict) -> list[Level]:
        return blocks([(f"len{n}", self._per_length(d, n)) for n in length_range(self.name, d, "min_length", "length")])

    def _locate(self, d: dict, index: int) -> tuple[int, int]:
        """(length, index within that length's block)."""
        lv, r = self.locate(d, index)
        return int(lv.name[3:]), r


class Reverse(_LengthLevels):
    name = "reverse"
    kind = "letters"
    description = "reverse a sequence of letters"
    params = {
        "length": IntParam(4, 2, 64, "how many letters (the longest level)"),
        "min_length": IntParam(None, 2, 64, "the shortest strings (the easiest level)", null_means="same as length"),
        "alphabet": IntParam(26, 2, 26, "letters are drawn from the first `alphabet` of a..z"),
        "worked": BoolParam(False, "number the letters, then read them back from the last"),
    }

    def _per_length(self, d: dict, n: int) -> int:
        return d["alphabet"] ** n

    def key(self, d: dict, index: int) -> str:
        n, r = self._locate(d, index)
        return "".join(_letters(r, d["alphabet"], n))

    def render(self, d: dict, index: int, rng: random.Random) -> Problem:
        n, r = self._locate(d, index)
        letters = _letters(r, d["alphabet"], n)
        answer = " ".join(reversed(letters))
        solution = f"Answer: {answer}"
        if d["worked"]:
            numbered = [f"{i} {c}" for i, c in enumerate(letters, 1)]
            solution = f"{' '.join(numbered)}\n{' '.join(reversed(numbered))}\n{solution}"
        return Problem(prompt=f"Reverse: {' '.join(letters)}", answer=answer, solution=solution)


class Count(_LengthLevels):
    name = "count"
    kind = "number"
    description = "count one letter in a sequence of letters"
    params = {
        "length": IntParam(6, 2, 64, "how many letters (the longest level)"),
        "min_length": IntParam(None, 2, 64, "the shortest strings (the easiest level)", null_means="same as length"),
        "alphabet": IntParam(4, 2, 26, "letters (and the one to count) come from the first `alphabet` of a..z"),
    }

    def _per_length(self, d: dict, n: int) -> int:
        return d["alphabet"] ** (n + 1)   # the letter to count, then the string

    def _decode(self, d: dict, index: int) -> tuple[str, list[str]]:
        n, r = self._locate(d, index)
        target, rest = divmod(r, d["alphabet"] ** n)
        return LETTERS[target], _letters(rest, d["alphabet"], n)

    def key(self, d: dict, index: int) -> str:
        target, letters = self._decode(d, index)
        return f"{target}:{''.join(letters)}"

    def render(self, d: dict, index: int, rng: random.Random) -> Problem:
        target, letters = self._decode(d, index)
        answer = str(letters.count(target))
        return Problem(prompt=f"Count {target} in: {' '.join(letters)}", answer=answer,
                       solution=f"Answer: {answer}")
