"""Rank data recipes on an eval suite, with each recipe's difference to a baseline and its noise.

Input per recipe: metric values per seed (a recipe trained with several seeds) or per item (one
model scored on the items of an eval, in the eval's order). Per recipe: n, mean, the sample sd
and the standard error of the mean sd / sqrt(n) (lmbuild.stats.summarize). Against the baseline:

- paired, when both sides carry the same units: seeds given as {seed: value} with the same seed
  set as the baseline, or items (unit="item") in the same order. d_s = x_s - b_s,
  diff = mean(d), se = sd(d) / sqrt(n), t = diff / se on n - 1 degrees of freedom (the paired
  t-test, scipy.stats.ttest_rel). Pairing removes what the seeds (data order, init) or the items
  share, so it sees smaller differences.
- otherwise Welch's t-test (Welch 1947; scipy.stats.ttest_ind(equal_var=False)):
  se = sqrt(s_a^2 / n_a + s_b^2 / n_b), degrees of freedom by Welch-Satterthwaite
  (v_a + v_b)^2 / (v_a^2 / (n_a - 1) + v_b^2 / (n_b - 1)), v = s^2 / n.
p is two-sided from Student's t (not the normal: with 3 seeds the 95% point is t_2 = 4.30, not
1.96). "beyond noise" is the screen |diff| > 2 se (lmbuild.stats.beyond_noise with z = 2): with few
seeds it is looser than p < 0.05, so read p too. p_holm adjusts the p-values of all recipes
against the baseline for the number of comparisons (Holm 1979): ranking many recipes, some
differences pass 2 se by chance.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Mapping, Sequence

import numpy as np
from scipy import stats as sstats

from .. import stats

NOISE_Z = 2.0


class AblationError(Exception):
    """Results that cannot be ranked; one line."""


@dataclass
class AblationRow:
    rank: int
    recipe: str
    n: int
    mean: float
    sd: float
    se: float
    diff: float  # mean(recipe) - mean(baseline); for paired runs, the mean of paired differences
    diff_se: float
    test: str  # "baseline", "paired t" or "Welch t"
    stat: float  # t statistic of diff
    df: float
    p: float  # two-sided
    p_holm: float
    beyond_noise: bool | None  # |diff| > 2 diff_se; None when diff_se is unknown
    better: bool | None  # beyond noise, in the good direction
    is_baseline: bool

    def as_dict(self) -> dict:
        return asdict(self)


def _values(name: str, v) -> tuple[np.ndarray, list | None]:
    keys = None
    if isinstance(v, Mapping):
        keys = sorted(v, key=str)
        x = np.array([float(v[k]) for k in keys], dtype=np.float64)
    else:
        x = np.asarray(list(v), dtype=np.float64)
    if x.ndim != 1 or x.size == 0:
        raise AblationError(f"recipe {name!r}: needs a non-empty list (or {{seed: value}} mapping) of numbers")
    if not np.all(np.isfinite(x)):
        raise AblationError(f"recipe {name!r}: values must be finite (drop failed runs explicitly), got {x.tolist()}")
    return x, keys


def _t_p(diff: float, se: float, df: float) -> tuple[float, float]:
    if not (math.isfinite(se) and math.isfinite(df)):
        return float("nan"), float("nan")
    if se == 0:
        return (0.0, 1.0) if diff == 0 else (math.copysign(math.inf, diff), 0.0)
    t = diff / se
    return t, float(2 * sstats.t.sf(abs(t), df))


def compare(x: np.ndarray, x_keys: list | None, b: np.ndarray, b_keys: list | None,
            unit: str) -> tuple[float, float, str, float]:
    """(diff, se, test, df) of x against the baseline b."""
    if x_keys is not None and b_keys is not None and set(x_keys) == set(b_keys):
        pos = {k: i for i, k in enumerate(x_keys)}
        x = x[[pos[k] for k in b_keys]]  # align on the baseline's keys
        paired = True
    else:
        paired = unit == "item" and x_keys is None and b_keys is None
        if paired and x.size != b.size:
            raise AblationError(f"per-item results must cover the same items as the baseline ({x.size} vs {b.size})")
    if paired:
        diff, se = stats.paired(b, x)  # mean of x - b, sd(d) / sqrt(n)
        return diff, se, "paired t", float(x.size - 1) if x.size > 1 else float("nan")
    diff = float(x.mean() - b.mean())
    se = stats.unpaired_stderr(stats.mean_stderr(x), stats.mean_stderr(b))  # sqrt(s_a^2/n_a + s_b^2/n_b)
    if not math.isfinite(se):
        return diff, se, "Welch t", float("nan")
    va, vb = x.var(ddof=1) / x.size, b.var(ddof=1) / b.size
    df = (va + vb) ** 2 / (va ** 2 / (x.size - 1) + vb ** 2 / (b.size - 1)) if va + vb > 0 else float("nan")
    return diff, se, "Welch t", float(df)


def holm(p: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (nan stays nan and does not count as a comparison)."""
    p = np.asarray(p, dtype=np.float64)
    out = np.full(p.size, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    m = ok.size
    running = 0.0
    for rank, i in enumerate(ok[np.argsort(p[ok], kind="stable")]):
        running = max(running, min(1.0, (m - rank) * p[i]))  # step-down, kept monotone
        out[i] = running
    return out.tolist()


def rank(results: Mapping[str, Sequence[float] | Mapping[object, float]], baseline: str, *,
         unit: str = "seed", higher_is_better: bool = True, noise_z: float = NOISE_Z) -> list[AblationRow]:
    """Rows sorted best first (by mean; ties by name), each against `baseline`.

    results: recipe -> per-seed values (a list: seeds unknown, compared by Welch; a
    {seed: value} mapping: paired when its seeds are the baseline's) or, with unit="item",
    per-item scores in the same item order for every recipe (paired)."""
    if unit not in ("seed", "item"):
        raise AblationError(f"unit must be 'seed' or 'item', got {unit!r}")
    if baseline not in results:
        raise AblationError(f"baseline {baseline!r} is not among the recipes ({', '.join(map(str, results))})")
    data = {str(name): _values(str(name), v) for name, v in results.items()}
    b, b_keys = data[str(baseline)]
    rows = []
    for name, (x, keys) in data.items():
        s = stats.summarize(x.tolist())
        if name == str(baseline):
            diff, se, test, df, t, p = 0.0, 0.0, "baseline", float("nan"), float("nan"), float("nan")
        else:
            diff, se, test, df = compare(x, keys, b, b_keys, unit)
            t, p = _t_p(diff, se, df)
        noisy = None if name == str(baseline) else stats.beyond_noise(diff, se, z=noise_z)
        better = None if noisy is None else bool(noisy and (diff > 0) == higher_is_better)
        rows.append(dict(recipe=name, n=s["n"], mean=s["mean"], sd=s["sd"], se=s["se"], diff=diff, diff_se=se,
                         test=test, stat=t, df=df, p=p, beyond_noise=noisy, better=better,
                         is_baseline=name == str(baseline)))
    for row, ph in zip(rows, holm([r["p"] for r in rows])):
        row["p_holm"] = ph
    sign = -1.0 if higher_is_better else 1.0
    rows.sort(key=lambda r: (sign * r["mean"], r["recipe"]))
    return [AblationRow(rank=i + 1, **r) for i, r in enumerate(rows)]
