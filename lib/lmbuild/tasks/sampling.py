"""Drawing examples: `generate` (one family) and `generate_mix` (several, interleaved).

Problems of a family are numbered 0..size-1 (see families/base.py). Small spaces (at most
ENUMERATE_LIMIT problems) are enumerated: the split's pool is listed exactly, test takes distinct
problems from a seeded shuffle of it (TaskError when there are fewer than n), and train walks
seeded shuffles of its pool, so every train problem appears once before any repeats. Large
spaces are sampled: test draws distinct problems by rejection, train draws independently
(repeats are then rare). Everything comes from random.Random streams derived from the seed,
family and split; no global RNG, no set or dict iteration order. Outputs are prefix-stable: the
first k examples of n are the k examples asked for with n = k.
"""

from __future__ import annotations

import json
import random
from functools import lru_cache
from typing import Iterator

from .errors import fail
from .example import Example, derive_seed, make_example
from .families import FAMILIES, Family, get_family, validate_difficulty
from .splits import TEST_FRACTION, check_split, check_test_fraction, in_test

ENUMERATE_LIMIT = 50_000


def _check_int(key: str, value: object, lo: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or (lo is not None and value < lo):
        raise fail(key, "must be an int" + (f" >= {lo}" if lo is not None else ""), value)
    return value


def space_size(family: str, difficulty: dict | None = None) -> int:
    """How many distinct problems the family has at this difficulty (train and test together)."""
    fam = get_family(family)
    return fam.size(validate_difficulty(family, difficulty))


def _too_few(family: str, found: int, n: int, d: dict, exact: bool) -> Exception:
    what = f"only {found} distinct test problems exist" if exact else \
        f"found only {found} distinct test problems after many draws"
    return fail(f"{family}.n", f"{what} at difficulty {d}", n,
                hint="raise the difficulty (a bigger problem space) or lower n")


@lru_cache(maxsize=32)
def _pools(family: str, d_json: str, test_fraction: float) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(train, test) problem indices of an enumerable space, in index order (cached: pure)."""
    fam, d = FAMILIES[family], json.loads(d_json)
    train: list[int] = []
    test: list[int] = []
    for i in range(fam.size(d)):
        (test if in_test(family, fam.key(d, i), test_fraction) else train).append(i)
    return tuple(train), tuple(test)


def split_size(family: str, split: str, difficulty: dict | None = None, *,
               test_fraction: float = TEST_FRACTION) -> int | None:
    """How many distinct problems `split` holds at this difficulty: exact for spaces of at most
    ENUMERATE_LIMIT problems, None (too many to count; about size * fraction) above."""
    fam = get_family(family)
    d = validate_difficulty(family, difficulty)
    check_split(split)
    test_fraction = check_test_fraction(test_fraction)
    if fam.size(d) > ENUMERATE_LIMIT:
        return None
    return len(_pools(family, json.dumps(d, sort_keys=True), test_fraction)[split == "test"])


def _indices(fam: Family, d: dict, want_test: bool, n: int, rng: random.Random,
             test_fraction: float) -> Iterator[int]:
    size = fam.size(d)
    if size <= ENUMERATE_LIMIT:
        pool = list(_pools(fam.name, json.dumps(d, sort_keys=True), test_fraction)[want_test])
        if want_test and len(pool) < n:
            raise _too_few(fam.name, len(pool), n, d, exact=True)
        if not pool:
            raise fail(f"{fam.name}.n", f"no train problems exist at difficulty {d}", n,
                       hint="raise the difficulty (a bigger problem space)")
        given = 0
        while given < n:
            rng.shuffle(pool)
            for i in pool[:n - given]:
                yield i
            given += len(pool)
        return
    wanted = test_fraction if want_test else 1.0 - test_fraction
    max_draws = int(20 * n / wanted) + 10_000
    seen: set[int] = set()
    given = draws = 0
    while given < n:
        if draws >= max_draws:
            if want_test:
                raise _too_few(fam.name, given, n, d, exact=False)
            raise fail(f"{fam.name}.n", f"too few train problems found at difficulty {d}", n)
        draws += 1
        i = rng.randrange(size)
        if in_test(fam.name, fam.key(d, i), test_fraction) != want_test:
            continue
        if want_test:
            if i in seen:
                continue
            seen.add(i)
        given += 1
        yield i


def generate(family: str, split: str, n: int, seed: int, difficulty: dict | None = None, *,
             test_fraction: float = TEST_FRACTION) -> list[Example]:
    """n examples of `family` from `split` ("train" or "test"); same arguments, same list.

    test holds distinct problems (TaskError when fewer than n exist at this difficulty); train
    may repeat problems when its pool is small. A problem's split depends only on its family and
    canonical form (never on the seed), so no test problem is in any train list.
    """
    fam = get_family(family)
    d = validate_difficulty(family, difficulty)
    check_split(split)
    _check_int("n", n, 0)
    _check_int("seed", seed)
    test_fraction = check_test_fraction(test_fraction)
    pick = random.Random(derive_seed(seed, family, split, "pick"))
    surface = random.Random(derive_seed(seed, family, split, "surface"))
    out = []
    for i in _indices(fam, d, split == "test", n, pick, test_fraction):
        out.append(make_example(family, fam.render(d, i, random.Random(surface.getrandbits(64)))))
    return out


def generate_mix(counts: dict[str, int], split: str, seed: int, difficulty: dict[str, dict] | None = None, *,
                 test_fraction: float = TEST_FRACTION) -> list[Example]:
    """Several families in one list: family f contributes exactly generate(f, split, counts[f],
    seed, difficulty[f]), in that order, at positions given by a seeded shuffle (the result does
    not depend on the order of the keys of `counts`)."""
    if not isinstance(counts, dict):
        raise fail("counts", "must be a mapping of family name to count", counts)
    difficulty = {} if difficulty is None else difficulty
    if not isinstance(difficulty, dict):
        raise fail("difficulty", "must be a mapping of family name to difficulty", difficulty)
    for name in counts:
        get_family(name)
    for name, d in difficulty.items():  # checked even when not drawn from: a typo must not pass
        validate_difficulty(name, d)
    for name, count in counts.items():
        _check_int(f"counts.{name}", count, 0)
    check_split(split)
    _check_int("seed", seed)
    names = sorted(counts)
    streams = {name: iter(generate(name, split, counts[name], seed, difficulty.get(name),
                                   test_fraction=test_fraction)) for name in names}
    slots = [name for name in names for _ in range(counts[name])]
    random.Random(derive_seed(seed, "mix", split)).shuffle(slots)
    return [next(streams[name]) for name in slots]


__all__ = ["ENUMERATE_LIMIT", "FAMILIES", "generate", "generate_mix", "space_size", "split_size"]
