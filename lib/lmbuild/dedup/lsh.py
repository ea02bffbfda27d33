"""Locality-sensitive hashing of MinHash signatures by banding, and bucket joins.

Banding (Leskovec, Rajaraman, Ullman, "Mining of Massive Datasets", ch. 3.4): the signature is
cut into `bands` bands of `rows` values; two documents become a candidate pair when all rows of
at least one band agree. With MinHash, one band agrees with probability J^r, so a pair of
Jaccard similarity J is a candidate with probability

    P(J) = 1 - (1 - J^r)^b,

an S-curve whose steepest point is near (1/b)^(1/r). Each band of each document becomes one
64-bit band key (a hash of its r values); documents with equal keys in a band share a bucket.

Joining a band: its keys for all documents are sorted (`np.argsort`, stable, so that ties keep
document order) and each run of equal keys is a bucket. A bucket of k documents yields the k - 1
edges (member, first member): a star, enough for connected components, where all k(k-1)/2
pairs would be quadratic in a big bucket. The pair count is reported separately.

Candidate pairs are not verified against a Jaccard threshold: the S-curve alone decides, as in
FineWeb's datatrove and RefinedWeb. Verification would need both signatures of every candidate
pair at once (random access to num_perm values per document over the whole corpus), and the
default banding already keeps pairs of J <= 0.5 out with probability >= 99.5%.
"""

from __future__ import annotations

import numpy as np

from .hashing import combine, multipliers


def s_curve(j: np.ndarray | float, bands: int, rows: int) -> np.ndarray | float:
    """P(candidate | Jaccard j) for b bands of r rows."""
    return 1.0 - (1.0 - np.asarray(j, dtype=float) ** rows) ** bands


def threshold(bands: int, rows: int) -> float:
    """The similarity at the S-curve's steepest part, (1/b)^(1/r)."""
    return (1.0 / bands) ** (1.0 / rows)


def bands_rows_for(target: float, num_perm: int, fp_weight: float = 0.5) -> tuple[int, int]:
    """(bands, rows) with bands x rows <= num_perm that minimise the weighted area of false
    positives (P(J) below the target) and false negatives (1 - P(J) above it), the criterion
    datasketch's MinHashLSH uses. Ties go to the smaller bands x rows, then fewer bands."""
    grid = np.linspace(0.0, 1.0, 2001)
    below, above = grid <= target, grid >= target
    best: tuple[float, int, int, int] | None = None
    for b in range(1, num_perm + 1):
        for r in range(1, num_perm // b + 1):
            p = s_curve(grid, b, r)
            fp = np.trapezoid(p[below], grid[below]) if below.sum() > 1 else 0.0
            fn = np.trapezoid(1.0 - p[above], grid[above]) if above.sum() > 1 else 0.0
            cand = (round(fp_weight * fp + (1 - fp_weight) * fn, 12), b * r, b, r)
            if best is None or cand < best:
                best = cand
    return best[2], best[3]


def band_keys(sig: np.ndarray, bands: int, rows: int, seed: int) -> np.ndarray:
    """(bands, documents) uint64 band keys from (num_perm, documents) signatures."""
    mults = multipliers(rows, seed + 1)
    return np.stack([combine([sig[k * rows + i] for i in range(rows)], mults) for k in range(bands)])


def sort_band(keys: np.ndarray, docs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(keys, docs) sorted by key, ties in the given order."""
    order = np.argsort(keys, kind="stable")
    return keys[order], docs[order]


def bucket_edges(sorted_keys: np.ndarray, sorted_docs: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict]:
    """Star edges (member, first member) of every bucket of a sorted band, and counts:
    buckets with >= 2 documents, documents in them, candidate pairs sum k(k-1)/2."""
    n = len(sorted_keys)
    if n < 2:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), {"buckets": 0, "documents": 0, "pairs": 0}
    new = np.empty(n, bool)
    new[0] = True
    np.not_equal(sorted_keys[1:], sorted_keys[:-1], out=new[1:])
    group = np.cumsum(new) - 1
    heads = np.flatnonzero(new)
    sizes = np.diff(np.append(heads, n))
    member = ~new  # every document but the first of its bucket
    u = sorted_docs[member].astype(np.int64)
    v = sorted_docs[heads[group[member]]].astype(np.int64)
    big = sizes[sizes >= 2].astype(np.int64)
    counts = {"buckets": int(len(big)), "documents": int(big.sum()), "pairs": int((big * (big - 1) // 2).sum())}
    return u, v, counts
