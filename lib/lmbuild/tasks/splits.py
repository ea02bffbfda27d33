"""Train/test membership, and the disjoint parts of the train split, that never depend on the seed.

A problem is in "test" when the hash of (family, canonical key) falls below `test_fraction`; the
canonical key states the problem itself, independent of the difficulty knobs that only change its
rendering (digit spacing, templates, names). So no test problem can appear in a training set
generated with any seed or any difficulty, as long as both use the same `test_fraction`
(raising the fraction moves problems from train to test, never the other way).

The train split is cut the same way into parts, given as a range (lo, hi) of fractions of it:
a problem is in part (lo, hi) when its hash position within train falls in [lo, hi). Stages
that draw from disjoint parts (sft, dpo, rl) can never train on one another's problems,
whatever their seeds and counts.
"""

from __future__ import annotations

from .errors import fail
from .example import digest

TEST_FRACTION = 0.2
SPLITS = ("train", "test")
Part = tuple[float, float]


def bucket(family: str, key: str) -> float:
    """The problem's position in [0, 1): uniform, stable, seed-free."""
    return int.from_bytes(digest("split", family, key), "little") / 2.0 ** 64


def in_test(family: str, key: str, test_fraction: float = TEST_FRACTION) -> bool:
    return bucket(family, key) < test_fraction


def in_split(family: str, key: str, want_test: bool, test_fraction: float = TEST_FRACTION,
             part: Part | None = None) -> bool:
    """Whether the problem is in test (want_test) or in the train split's `part` (None: all of train)."""
    b = bucket(family, key)
    if want_test:
        return b < test_fraction
    if b < test_fraction:
        return False
    if part is None:
        return True
    within = (b - test_fraction) / (1.0 - test_fraction)
    return part[0] <= within < part[1]


def check_split(split: object) -> str:
    if split not in SPLITS:
        raise fail("split", "must be 'train' or 'test'", split)
    return split  # type: ignore[return-value]


def check_test_fraction(test_fraction: object) -> float:
    if isinstance(test_fraction, bool) or not isinstance(test_fraction, (int, float)) \
            or not 0.0 < test_fraction < 1.0:
        raise fail("test_fraction", "must be a number strictly between 0 and 1", test_fraction)
    return float(test_fraction)


def check_part(part: object, split: str) -> Part | None:
    """None, or (lo, hi) with 0 <= lo < hi <= 1, for the train split only."""
    if part is None:
        return None
    ok = (isinstance(part, (tuple, list)) and len(part) == 2
          and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in part)
          and 0.0 <= part[0] < part[1] <= 1.0)
    if not ok:
        raise fail("part", "must be (lo, hi) with 0 <= lo < hi <= 1", part)
    if split != "train":
        raise fail("part", "only the train split has parts", part)
    return float(part[0]), float(part[1])
