"""Drawing examples: `generate` (one family) and `generate_mix` (several, interleaved).

Problems of a family are numbered 0..size-1 in contiguous difficulty levels (see
families/base.py). Draws cycle through the levels in seeded order, so every level gets an equal
share (to within one) whatever its size. Within a level, small spaces (at most ENUMERATE_LIMIT
problems) are enumerated: the pool of the split (or of a part of the train split) is listed
exactly, test takes distinct problems from a seeded shuffle of it, and train walks seeded
shuffles of its pool, so every train problem appears once before any repeats. Large levels are
sampled: test draws distinct problems by rejection, train draws independently (repeats are then
rare). A test level that runs out of distinct problems leaves the cycle; TaskError when all have.
Everything comes from random.Random streams derived from the seed, family and split; no global
RNG, no set or dict iteration order. Outputs are prefix-stable: the first k examples of n are
the k examples asked for with n = k.
"""

from __future__ import annotations

import json
import random
from functools import lru_cache
from typing import Iterator

from .errors import fail
from .example import Example, derive_seed, make_example
from .families import FAMILIES, Family, Level, get_family, validate_difficulty
from .splits import TEST_FRACTION, Part, check_part, check_split, check_test_fraction, in_split

ENUMERATE_LIMIT = 50_000


def _check_int(key: str, value: object, lo: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or (lo is not None and value < lo):
        raise fail(key, "must be an int" + (f" >= {lo}" if lo is not None else ""), value)
    return value


def space_size(family: str, difficulty: dict | None = None) -> int:
    """How many distinct problems the family has at this difficulty (train and test together)."""
    fam = get_family(family)
    return fam.size(validate_difficulty(family, difficulty))


def level_sizes(family: str, difficulty: dict | None = None) -> dict[str, int]:
    """level name -> how many distinct problems it holds (train and test together)."""
    fam = get_family(family)
    return {lv.name: lv.size for lv in fam.levels(validate_difficulty(family, difficulty))}


@lru_cache(maxsize=64)
def _pool(family: str, d_json: str, level: int, want_test: bool, test_fraction: float,
          part: Part | None) -> tuple[int, ...]:
    """Problem indices of one enumerable level in the split (or train part), in index order
    (cached: pure)."""
    fam, d = FAMILIES[family], json.loads(d_json)
    lv = fam.levels(d)[level]
    return tuple(i for i in range(lv.start, lv.start + lv.size)
                 if in_split(family, fam.key(d, i), want_test, test_fraction, part))


def split_size(family: str, split: str, difficulty: dict | None = None, *,
               test_fraction: float = TEST_FRACTION, part: Part | None = None) -> int | None:
    """How many distinct problems `split` (or its `part`) holds at this difficulty: exact when
    every level has at most ENUMERATE_LIMIT problems, None (too many to count; about size x
    fraction) otherwise."""
    fam = get_family(family)
    d = validate_difficulty(family, difficulty)
    check_split(split)
    test_fraction = check_test_fraction(test_fraction)
    part = check_part(part, split)
    levels = fam.levels(d)
    if any(lv.size > ENUMERATE_LIMIT for lv in levels):
        return None
    d_json = json.dumps(d, sort_keys=True)
    return sum(len(_pool(family, d_json, k, split == "test", test_fraction, part)) for k in range(len(levels)))


def _level_indices(fam: Family, d: dict, k: int, lv: Level, want_test: bool, rng: random.Random,
                   test_fraction: float, part: Part | None) -> Iterator[int]:
    """Problems of one level, endless for train, until exhausted for test."""
    if lv.size <= ENUMERATE_LIMIT:
        pool = list(_pool(fam.name, json.dumps(d, sort_keys=True), k, want_test, test_fraction, part))
        if not pool:
            return
        rng.shuffle(pool)
        if want_test:
            yield from pool
            return
        while True:
            yield from pool
            rng.shuffle(pool)
    wanted = test_fraction if want_test else (1.0 - test_fraction) * (1.0 if part is None else part[1] - part[0])
    seen: set[int] = set()
    misses = 0
    while True:
        i = lv.start + rng.randrange(lv.size)
        if not in_split(fam.name, fam.key(d, i), want_test, test_fraction, part) or (want_test and i in seen):
            misses += 1
            if misses > 20 / wanted + 10_000:   # this level has (almost) nothing left to give
                return
            continue
        misses = 0
        if want_test:
            seen.add(i)
        yield i


def _indices(fam: Family, d: dict, want_test: bool, n: int, rng: random.Random, test_fraction: float,
             part: Part | None) -> Iterator[tuple[int, str]]:
    """(problem index, level name) n times: cycles over the levels in a seeded order."""
    levels = fam.levels(d)
    streams = {k: _level_indices(fam, d, k, lv, want_test, random.Random(rng.getrandbits(64)), test_fraction, part)
               for k, lv in enumerate(levels)}
    order = random.Random(rng.getrandbits(64))
    given = 0
    while given < n:
        if not streams:
            if want_test:
                raise fail(f"{fam.name}.n", f"only {given} distinct test problems exist at difficulty {d}", n,
                           hint="raise the difficulty (a bigger problem space) or lower n")
            raise fail(f"{fam.name}.n", f"no train problems found at difficulty {d}"
                       + (f" in part {part}" if part else ""), n, hint="raise the difficulty (a bigger problem space)")
        cycle = sorted(streams)
        order.shuffle(cycle)
        for k in cycle:
            if given == n:
                break
            i = next(streams[k], None)
            if i is None:
                del streams[k]
                continue
            given += 1
            yield i, levels[k].name


def generate(family: str, split: str, n: int, seed: int, difficulty: dict | None = None, *,
             test_fraction: float = TEST_FRACTION, part: Part | None = None) -> list[Example]:
    """n examples of `family` from `split` ("train" or "test"); same arguments, same list.

    test holds distinct problems (TaskError when fewer than n exist at this difficulty); train
    may repeat problems when its pool is small. A problem's split depends only on its family and
    canonical form (never on the seed), so no test problem is in any train list. `part` (lo, hi)
    draws from that range of the train split only: disjoint parts never share a problem.
    """
    fam = get_family(family)
    d = validate_difficulty(family, difficulty)
    check_split(split)
    _check_int("n", n, 0)
    _check_int("seed", seed)
    test_fraction = check_test_fraction(test_fraction)
    part = check_part(part, split)
    pick = random.Random(derive_seed(seed, family, split, "pick", *(part or ())))
    surface = random.Random(derive_seed(seed, family, split, "surface", *(part or ())))
    out = []
    for i, level in _indices(fam, d, split == "test", n, pick, test_fraction, part):
        out.append(make_example(family, fam.render(d, i, random.Random(surface.getrandbits(64))), level))
    return out


def generate_mix(counts: dict[str, int], split: str, seed: int, difficulty: dict[str, dict] | None = None, *,
                 test_fraction: float = TEST_FRACTION, part: Part | None = None) -> list[Example]:
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
                                   test_fraction=test_fraction, part=part)) for name in names}
    slots = [name for name in names for _ in range(counts[name])]
    random.Random(derive_seed(seed, "mix", split)).shuffle(slots)
    return [next(streams[name]) for name in slots]


__all__ = ["ENUMERATE_LIMIT", "FAMILIES", "generate", "generate_mix", "level_sizes", "space_size", "split_size"]
