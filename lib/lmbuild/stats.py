"""Standard errors and comparisons: every eval number is an estimate from a finite set of items.

- Means of per-item scores (accuracy as 0/1, log-probs, rewards): the standard error of the mean
  with the sample standard deviation, sd(x, ddof=1) / sqrt(n), which is how lm-evaluation-harness
  reports `acc_stderr` (its `mean_stderr`); for 0/1 scores it is the binomial error
  sqrt(p (1 - p) / n) up to the factor sqrt(n / (n - 1)).
- Ratios of sums over documents (bits per byte = sum of bits / sum of bytes): a bootstrap over
  documents (Efron & Tibshirani 1993): documents are resampled with replacement, the ratio is
  recomputed, and the standard deviation of the replicates is the standard error. Documents of
  different lengths weigh as much as their bytes, exactly as in the point estimate.
- Paired comparisons (two models scored on the same items): the standard error of the mean of
  per-item differences, which removes the variance the items share; for ratios, the same
  bootstrap applied to both models with the same resampled documents.
- Unpaired comparisons: sqrt(se_a^2 + se_b^2).
A difference is "beyond noise at 95%" when |difference| > 1.96 x its standard error (a two-sided
z-test; with the few hundred items of the demo the normal approximation is adequate).

The bootstrap draws from a fixed-seed generator, so the same inputs give the same bytes.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

Z95 = 1.959963984540054  # two-sided 95% normal quantile
BOOTSTRAP_REPS = 1000
BOOTSTRAP_SEED = 20240601


def mean(values: Sequence[float]) -> float:
    return float(np.mean(np.asarray(values, dtype=np.float64))) if len(values) else float("nan")


def mean_stderr(values: Sequence[float]) -> float:
    """sd(values, ddof=1) / sqrt(n); nan for fewer than 2 values."""
    x = np.asarray(values, dtype=np.float64)
    if x.size < 2:
        return float("nan")
    return float(x.std(ddof=1) / math.sqrt(x.size))


def with_stderr(name: str, values: Sequence[float]) -> dict[str, float]:
    """{name: mean, name_stderr: standard error of the mean}."""
    return {name: mean(values), f"{name}_stderr": mean_stderr(values)}


def paired(before: Sequence[float], after: Sequence[float]) -> tuple[float, float]:
    """(mean of after - before, its standard error) over the same items in the same order."""
    a, b = np.asarray(before, dtype=np.float64), np.asarray(after, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired comparison needs the same items on both sides ({a.size} vs {b.size})")
    d = b - a
    return (float(d.mean()) if d.size else float("nan")), mean_stderr(d)


def _resamples(n: int, reps: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, n, size=(reps, n))


def ratio_stderr(num: Sequence[float], den: Sequence[float], *, reps: int = BOOTSTRAP_REPS,
                 seed: int = BOOTSTRAP_SEED) -> float:
    """Bootstrap standard error of sum(num) / sum(den) over items (documents)."""
    x, w = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)
    if x.size < 2:
        return float("nan")
    idx = _resamples(x.size, reps, seed)
    return float((x[idx].sum(axis=1) / w[idx].sum(axis=1)).std(ddof=1))


def paired_ratio(num_a: Sequence[float], num_b: Sequence[float], den: Sequence[float], *,
                 reps: int = BOOTSTRAP_REPS, seed: int = BOOTSTRAP_SEED) -> tuple[float, float]:
    """(ratio_b - ratio_a, its bootstrap standard error): two models' sums over the same
    documents (same denominators), resampled together."""
    a, b, w = (np.asarray(v, dtype=np.float64) for v in (num_a, num_b, den))
    diff = float(b.sum() / w.sum() - a.sum() / w.sum())
    if a.size < 2:
        return diff, float("nan")
    idx = _resamples(a.size, reps, seed)
    ws = w[idx].sum(axis=1)
    return diff, float(((b[idx].sum(axis=1) - a[idx].sum(axis=1)) / ws).std(ddof=1))


def unpaired_stderr(se_a: float | None, se_b: float | None) -> float:
    if se_a is None or se_b is None or not (math.isfinite(se_a) and math.isfinite(se_b)):
        return float("nan")
    return math.hypot(se_a, se_b)


def beyond_noise(diff: float, se: float, z: float = Z95) -> bool | None:
    """|diff| > z x se; None when the standard error is unknown."""
    if se is None or not math.isfinite(se):
        return None
    if se == 0:
        return diff != 0
    return abs(diff) > z * se


def summarize(values: Sequence[float]) -> dict[str, float]:
    """n, mean, sd (ddof=1), se of the mean, min and max of a set of runs (finite values only)."""
    x = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=np.float64)
    if not x.size:
        return {"n": 0, "mean": float("nan"), "sd": float("nan"), "se": float("nan"),
                "min": float("nan"), "max": float("nan")}
    sd = float(x.std(ddof=1)) if x.size > 1 else float("nan")
    return {"n": int(x.size), "mean": float(x.mean()), "sd": sd,
            "se": sd / math.sqrt(x.size) if x.size > 1 else float("nan"),
            "min": float(x.min()), "max": float(x.max())}
