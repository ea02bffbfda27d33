"""Difficulty parameters: the typed, ranged knobs each task family declares, and their checks.

A family lists its knobs as `Param` objects (an int range, a choice, a subset, a flag), each with
its default. `check_difficulty` merges a user's dict over the defaults and rejects unknown keys,
wrong types and out-of-range values with one line naming `<family>.<key>`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .errors import fail


@dataclass(frozen=True)
class IntParam:
    """An int in [lo, hi] (bools are refused: `True` is not a length); null too when `null_means`
    says what null stands for (a level range's lower end: null = the upper end)."""
    default: int | None
    lo: int
    hi: int
    doc: str = ""
    null_means: str = ""

    def rule(self) -> str:
        return f"must be an int between {self.lo} and {self.hi}" + (
            f" or null ({self.null_means})" if self.null_means else "")

    def check(self, key: str, value: Any) -> int | None:
        if value is None and self.null_means:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or not self.lo <= value <= self.hi:
            raise fail(key, self.rule(), value)
        return value


@dataclass(frozen=True)
class ChoiceParam:
    """One value from a fixed list of strings."""
    default: str
    choices: tuple[str, ...]
    doc: str = ""

    def rule(self) -> str:
        return f"must be one of {', '.join(repr(c) for c in self.choices)}"

    def check(self, key: str, value: Any) -> str:
        if not isinstance(value, str) or value not in self.choices:
            raise fail(key, self.rule(), value)
        return value


@dataclass(frozen=True)
class SubsetParam:
    """A non-empty list of distinct values from a fixed list; returned in the list's order, so
    `["-", "+"]` and `["+", "-"]` are the same difficulty (and generate the same examples)."""
    default: tuple[str, ...]
    choices: tuple[str, ...]
    doc: str = ""

    def rule(self) -> str:
        return f"must be a non-empty list of distinct values from {list(self.choices)}"

    def check(self, key: str, value: Any) -> list[str]:
        if (not isinstance(value, (list, tuple)) or not value or len(set(map(repr, value))) != len(value)
                or not all(isinstance(v, str) and v in self.choices for v in value)):
            raise fail(key, self.rule(), value)
        return [c for c in self.choices if c in value]


@dataclass(frozen=True)
class BoolParam:
    """true or false."""
    default: bool
    doc: str = ""

    def rule(self) -> str:
        return "must be true or false"

    def check(self, key: str, value: Any) -> bool:
        if not isinstance(value, bool):
            raise fail(key, self.rule(), value)
        return value


Param = IntParam | ChoiceParam | SubsetParam | BoolParam


def defaults(params: dict[str, Param]) -> dict:
    return {k: (list(p.default) if isinstance(p, SubsetParam) else p.default) for k, p in params.items()}


def check_difficulty(family: str, params: dict[str, Param], difficulty: dict | None) -> dict:
    """`difficulty` merged over the defaults, every value checked; TaskError on the first problem
    (cross-knob rules, such as a level range's ends, are the family's `check`)."""
    if difficulty is None:
        difficulty = {}
    if not isinstance(difficulty, dict):
        raise fail(family, "difficulty must be a mapping of keys to values (or null for the defaults)",
                   difficulty)
    out = defaults(params)
    for key in difficulty:
        if key not in params:
            raise fail(f"{family}.{key}", "unknown difficulty key", hint=f"known keys: {', '.join(params)}")
    for key, value in difficulty.items():
        out[key] = params[key].check(f"{family}.{key}", value)
    return out
