"""Train/test membership that never depends on the seed.

A problem is in "test" when the hash of (family, canonical key) falls below `test_fraction`; the
canonical key states the problem itself, independent of the difficulty knobs that only change its
rendering (digit spacing, templates, names). So no test problem can appear in a training set
generated with any seed or any difficulty, as long as both use the same `test_fraction`
(raising the fraction moves problems from train to test, never the other way).
"""

from __future__ import annotations

from .errors import fail
from .example import digest

TEST_FRACTION = 0.2
SPLITS = ("train", "test")


def bucket(family: str, key: str) -> float:
    """The problem's position in [0, 1): uniform, stable, seed-free."""
    return int.from_bytes(digest("split", family, key), "little") / 2.0 ** 64


def in_test(family: str, key: str, test_fraction: float = TEST_FRACTION) -> bool:
    return bucket(family, key) < test_fraction


def check_split(split: object) -> str:
    if split not in SPLITS:
        raise fail("split", "must be 'train' or 'test'", split)
    return split  # type: ignore[return-value]


def check_test_fraction(test_fraction: object) -> float:
    if isinstance(test_fraction, bool) or not isinstance(test_fraction, (int, float)) \
            or not 0.0 < test_fraction < 1.0:
        raise fail("test_fraction", "must be a number strictly between 0 and 1", test_fraction)
    return float(test_fraction)
