"""Ablation ranking (lmbuild.study.ablation): differences to a baseline and their standard errors
on hand-computed inputs, paired by seed or item and Welch otherwise, p-values against
scipy.stats, the Holm adjustment, the order of the table and the errors."""

from __future__ import annotations

import math

import pytest
from scipy import stats as sstats

from lmbuild.study.ablation import AblationError, holm, rank

BASE = [0.40, 0.42, 0.44]  # mean 0.42, sd 0.02
RECIPE = [0.46, 0.47, 0.51]  # mean 0.48, deviations -0.02, -0.01, 0.03: variance 0.0014 / 2 = 0.0007


def row(rows, name):
    return next(r for r in rows if r.recipe == name)


def test_welch_when_seeds_are_unknown():
    rows = rank({"base": BASE, "dclm": RECIPE}, "base")
    r = row(rows, "dclm")
    assert r.test == "Welch t"
    assert (r.n, r.mean, r.sd) == (3, pytest.approx(0.48), pytest.approx(math.sqrt(0.0007)))
    assert r.se == pytest.approx(math.sqrt(0.0007 / 3))
    assert r.diff == pytest.approx(0.06)
    assert r.diff_se == pytest.approx(math.sqrt(0.0004 / 3 + 0.0007 / 3))  # 0.019149
    # Welch-Satterthwaite: (0.0011 / 3)^2 / ((0.0004 / 3)^2 / 2 + (0.0007 / 3)^2 / 2) = 1.21 / 0.325
    assert r.df == pytest.approx(1.21 / 0.325)
    ref = sstats.ttest_ind(RECIPE, BASE, equal_var=False)
    assert r.stat == pytest.approx(ref.statistic) and r.p == pytest.approx(ref.pvalue) and r.df == pytest.approx(ref.df)
    assert r.beyond_noise is True and r.better is True  # 0.06 > 2 x 0.0191
    assert r.p == pytest.approx(0.0387, abs=1e-4)
    # 2 se is a screen, looser than p < 0.05 with few seeds: diff 0.04 > 2 x 0.0191 but t = 2.09 on 3.7 df
    s = row(rank({"base": BASE, "small": [x - 0.02 for x in RECIPE]}, "base"), "small")
    assert s.beyond_noise is True and s.p == pytest.approx(sstats.ttest_ind([x - 0.02 for x in RECIPE], BASE, equal_var=False).pvalue)
    assert s.p > 0.05


def test_paired_by_seed_when_the_seeds_match():
    base = dict(zip([1, 2, 3], BASE))
    same = dict(zip([3, 1, 2], [RECIPE[2], RECIPE[0], RECIPE[1]]))  # same seeds, another order
    other = dict(zip([4, 5, 6], RECIPE))
    rows = rank({"base": base, "same_seeds": same, "other_seeds": other}, "base")
    r = row(rows, "same_seeds")
    # d = 0.06, 0.05, 0.07: mean 0.06, sd 0.01
    assert r.test == "paired t" and r.diff == pytest.approx(0.06) and r.diff_se == pytest.approx(0.01 / math.sqrt(3))
    assert r.df == 2
    ref = sstats.ttest_rel([RECIPE[0], RECIPE[1], RECIPE[2]], BASE)
    assert r.stat == pytest.approx(ref.statistic) and r.p == pytest.approx(ref.pvalue)
    assert r.p < 0.01 and r.beyond_noise  # pairing removes what the seeds share
    o = row(rows, "other_seeds")
    assert o.test == "Welch t" and o.diff_se == pytest.approx(math.sqrt(0.0011 / 3))


def test_per_item_results_are_paired_by_position():
    base = [1, 0, 1, 1, 0, 0, 1, 0, 1, 1]
    new = [1, 1, 1, 1, 0, 1, 1, 0, 1, 1]
    rows = rank({"base": base, "new": new}, "base", unit="item")
    r = row(rows, "new")
    d = [b - a for a, b in zip(base, new)]  # two items gained: mean 0.2, sd sqrt((2 x 0.64 + 8 x 0.04) / 9)
    assert r.test == "paired t" and r.diff == pytest.approx(0.2)
    assert r.diff_se == pytest.approx(math.sqrt((2 * 0.64 + 8 * 0.04) / 9) / math.sqrt(10))
    assert r.p == pytest.approx(sstats.ttest_rel(new, base).pvalue)
    assert sum(d) == 2
    with pytest.raises(AblationError, match="same items"):
        rank({"base": base, "new": new[:-1]}, "base", unit="item")


def test_table_is_sorted_best_first_with_the_baseline_in_place():
    results = {"base": [0.50, 0.52], "worse": [0.40, 0.41], "better": [0.60, 0.62], "same": [0.51, 0.52]}
    rows = rank(results, "base")
    assert [r.recipe for r in rows] == ["better", "same", "base", "worse"]
    assert [r.rank for r in rows] == [1, 2, 3, 4]
    b = row(rows, "base")
    assert b.is_baseline and b.test == "baseline" and b.diff == 0 and b.beyond_noise is None
    assert row(rows, "worse").better is False and row(rows, "worse").beyond_noise is True
    # a loss: lower is better
    assert [r.recipe for r in rank(results, "base", higher_is_better=False)] == ["worse", "base", "same", "better"]
    assert rows[0].as_dict()["recipe"] == "better"


def test_holm_adjustment():
    # sorted p 0.01, 0.02, 0.04 -> 3 x 0.01, max(0.03, 2 x 0.02), max(0.04, 1 x 0.04)
    assert holm([0.04, 0.01, 0.02, float("nan")])[:3] == pytest.approx([0.04, 0.03, 0.04])
    assert math.isnan(holm([0.04, 0.01, 0.02, float("nan")])[3])
    rows = rank({"base": BASE, "a": RECIPE, "b": [0.41, 0.43, 0.46]}, "base")
    ps = {r.recipe: r.p for r in rows if not r.is_baseline}
    lo, hi = sorted(ps.values())
    assert sorted(r.p_holm for r in rows if not r.is_baseline) == pytest.approx([2 * lo, max(2 * lo, hi)])


def test_errors_and_single_seeds():
    with pytest.raises(AblationError, match="baseline 'base' is not among the recipes"):
        rank({"a": [1.0]}, "base")
    with pytest.raises(AblationError, match="must be finite"):
        rank({"base": [1.0, float("nan")]}, "base")
    r = row(rank({"base": [0.5], "a": [0.6]}, "base"), "a")  # one seed each: no error estimate
    assert r.diff == pytest.approx(0.1) and math.isnan(r.diff_se) and math.isnan(r.p) and r.beyond_noise is None
