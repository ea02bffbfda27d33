"""The registry of task families: name -> family object, their demo defaults, and the
difficulty check that every generator call goes through."""

from __future__ import annotations

from ..difficulty import check_difficulty, defaults
from ..errors import fail
from .arithmetic import Arithmetic
from .base import Family, Level
from .sorting import Sort
from .strings import Count, Reverse
from .word_problems import WordProblems

FAMILIES: dict[str, Family] = {f.name: f for f in (Arithmetic(), WordProblems(), Sort(), Reverse(), Count())}

# The easiest settings of each family: what the ~1M-parameter CPU demo model can learn.
DEFAULT_DIFFICULTY: dict[str, dict] = {name: defaults(f.params) for name, f in FAMILIES.items()}


def get_family(name: object) -> Family:
    if not isinstance(name, str) or name not in FAMILIES:
        raise fail("family", "unknown task family", name, hint=f"known families: {', '.join(FAMILIES)}")
    return FAMILIES[name]


def validate_difficulty(family: str, difficulty: dict | None = None) -> dict:
    """The family's defaults with `difficulty` merged over them, every value checked.
    TaskError (one line naming `<family>.<key>`) on an unknown key, a wrong type or a value out
    of range, or a level range whose lower end is above its upper end; unknown keys list the
    known ones."""
    fam = get_family(family)
    d = check_difficulty(family, fam.params, difficulty)
    fam.check(d)
    return d


__all__ = ["FAMILIES", "DEFAULT_DIFFICULTY", "Family", "Level", "get_family", "validate_difficulty"]
