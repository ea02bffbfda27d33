"""What generators produce: `Example` (prompt, canonical answer, short worked solution) and the
stable hashes behind example ids and seed derivation."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass


@dataclass(frozen=True)
class Example:
    """One verifiable task.

    id: stable hash of (family, prompt): the same problem has the same id whatever the seed.
    prompt: the user message. answer: the canonical final answer (normalised string).
    solution: a short assistant reply for SFT demonstrations, whose last line is `Answer: <answer>`.
    level: the family's difficulty level the problem belongs to (`len5`, `d3`, `mul`).
    """
    id: str
    family: str
    prompt: str
    answer: str
    solution: str
    level: str = ""


@dataclass(frozen=True)
class Problem:
    """A family's rendering of one problem, before it becomes an Example."""
    prompt: str
    answer: str
    solution: str


def digest(*parts: object, size: int = 8) -> bytes:
    """blake2b of the parts, unambiguously joined (stable across runs, platforms, Python versions)."""
    h = hashlib.blake2b(digest_size=size)
    for part in parts:
        data = str(part).encode("utf-8")
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.digest()


def example_id(family: str, prompt: str) -> str:
    return digest("example", family, prompt).hex()


def derive_seed(seed: int, *parts: object) -> int:
    """A 64-bit seed for one purpose (family, split...), so that streams never share state."""
    return int.from_bytes(digest("seed", seed, *parts), "little")


def make_example(family: str, problem: Problem, level: str = "") -> Example:
    return Example(id=example_id(family, problem.prompt), family=family, prompt=problem.prompt,
                   answer=problem.answer, solution=problem.solution, level=level)
