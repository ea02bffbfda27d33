"""Per-domain document selection: which documents a mix draws, in what order, how many times.

Every random choice is a function of (seed, purpose, document id), never of the order the
documents were read in, so the selection is the same whatever the sharding or worker count.

Selection methods (`select.method`):
- `all`: every document, in a seeded random order.
- `threshold`: documents whose `quality_<rater>` score is >= `threshold`, seeded random order.
- `top_fraction`: the top `fraction` of the domain by score, best first.
- `qurating`: QuRating sampling (Wettig et al. 2024): documents drawn without replacement with
  probability proportional to exp(score / tau). Drawing k without replacement this way equals
  taking the top k of score / tau + Gumbel noise (the Gumbel-top-k trick, Kool et al. 2019),
  which is what `order` computes; tau -> 0 gives the top-k by score, tau -> inf a uniform draw.

`fill` then takes documents in that order until the domain's token target is met, repeating the
whole pool for whole epochs first when the target exceeds it, up to `max_epochs`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

_U53 = float(2**-53)


def uniform(ids: list[str], seed: int, purpose: str) -> np.ndarray:
    """A uniform [0, 1) number per id, fixed by (seed, purpose, id)."""
    salt = f"{seed}:{purpose}:".encode()
    raw = b"".join(hashlib.blake2b(salt + i.encode(), digest_size=8).digest() for i in ids)
    words = np.frombuffer(raw, dtype="<u8")
    return (words >> np.uint64(11)).astype(np.float64) * _U53


def pool_mask(n: int, scores: np.ndarray | None, select: dict) -> np.ndarray:
    """Which of a domain's n documents are eligible under the selection method."""
    method = select["method"]
    if method == "threshold":
        return scores >= select["threshold"]
    if method == "top_fraction":
        k = int(np.ceil(select["fraction"] * n))
        mask = np.zeros(n, dtype=bool)
        # best first; ties keep pool order (sorted shards, then rows)
        mask[np.argsort(-scores, kind="stable")[:k]] = True
        return mask
    return np.ones(n, dtype=bool)


def order(scores: np.ndarray | None, u: np.ndarray, select: dict) -> np.ndarray:
    """Indices of the eligible documents in the order they are drawn."""
    method = select["method"]
    if method == "qurating":
        gumbel = -np.log(-np.log(np.clip(u, 1e-300, 1 - 1e-16)))
        return np.argsort(-(scores / select["tau"] + gumbel), kind="stable")
    if method == "top_fraction":
        return np.argsort(-scores, kind="stable")
    return np.argsort(u, kind="stable")


@dataclass
class Fill:
    repeats: np.ndarray  # per document of the domain: how many times it goes in the mix
    requested: float  # tokens
    achieved: float
    available: float  # tokens of the eligible pool, one epoch
    capped: bool  # the max_epochs cap kept the request from being met


def fill(tokens: np.ndarray, eligible: np.ndarray, draw_order: np.ndarray, target: float, max_epochs: int) -> Fill:
    """Whole epochs of the eligible pool, then a partial epoch in draw order, up to max_epochs."""
    repeats = np.zeros(len(tokens), dtype=np.int32)
    idx = np.flatnonzero(eligible)
    available = float(tokens[idx].sum())
    if target <= 0 or available <= 0:
        return Fill(repeats, target, 0.0, available, capped=target > 0)
    full = min(int(target // available), max_epochs)
    repeats[idx] = full
    remaining = target - full * available
    if full < max_epochs and remaining > 0:
        ordered = idx[draw_order]
        before = np.cumsum(tokens[ordered]) - tokens[ordered]  # tokens taken before each doc
        repeats[ordered[before < remaining]] += 1
    achieved = float((repeats * tokens).sum())
    capped = full == max_epochs and remaining > 0
    return Fill(repeats, target, achieved, available, capped)
