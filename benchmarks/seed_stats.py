"""Two arms of a benchmark compared over seeds: the per-seed differences, their mean and standard
error, and a 95% Student's t interval (3 to 5 seeds: t = 4.30 to 2.78, not the normal 1.96),
with a verdict a table can print. Shared by the benchmarks that compare training recipes."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))

from lmbuild import stats  # noqa: E402
from lmbuild.study.figures import t95  # noqa: E402


def paired_by_seed(base: dict[int, float], other: dict[int, float]) -> dict | None:
    """other - base over the seeds both have: n, mean, sd, se, half (95% t half-width) and
    beyond (True when the interval excludes 0); None with fewer than 2 shared seeds."""
    seeds = sorted(set(base) & set(other))
    if len(seeds) < 2:
        return None
    d = stats.summarize([other[s] - base[s] for s in seeds])
    half = t95(d["n"] - 1) * d["se"]
    return {**d, "half": half, "beyond": abs(d["mean"]) > half}
