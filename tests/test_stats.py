"""Standard errors and comparisons (lmbuild.stats): hand-computed values, and the properties a
reader of a comparison relies on (paired errors are smaller when items agree, the bootstrap is
deterministic and scales like 1/sqrt(n))."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lmbuild import stats


def test_mean_stderr_is_the_sample_sd_over_sqrt_n():
    x = [1.0, 0.0, 1.0, 1.0]
    # mean 0.75, sample variance (3 x 0.0625 + 0.5625) / 3 = 0.25
    assert stats.mean_stderr(x) == pytest.approx(math.sqrt(0.25 / 4))
    assert stats.with_stderr("acc", x) == {"acc": 0.75, "acc_stderr": pytest.approx(0.25)}
    assert math.isnan(stats.mean_stderr([1.0]))
    # for 0/1 scores it is the binomial error up to sqrt(n / (n - 1))
    y = [1.0] * 30 + [0.0] * 70
    assert stats.mean_stderr(y) == pytest.approx(math.sqrt(0.3 * 0.7 / 100) * math.sqrt(100 / 99))


def test_paired_difference_and_its_error():
    before = [0, 1, 1, 0, 1, 0, 0, 1]
    after = [1, 1, 1, 0, 1, 1, 0, 1]
    gain, se = stats.paired(before, after)
    d = np.array(after) - np.array(before)
    assert gain == pytest.approx(0.25) and se == pytest.approx(d.std(ddof=1) / math.sqrt(8))
    # two models that agree on most items: the paired error is far below the unpaired one
    unpaired = stats.unpaired_stderr(stats.mean_stderr(before), stats.mean_stderr(after))
    assert se < unpaired
    with pytest.raises(ValueError, match="same items"):
        stats.paired([1, 0], [1])


def test_ratio_bootstrap_is_deterministic_and_shrinks_like_one_over_sqrt_n():
    rng = np.random.default_rng(0)
    bits = rng.uniform(1, 3, 400) * 100
    nbytes = np.full(400, 100.0)
    a = stats.ratio_stderr(bits[:100], nbytes[:100])
    assert a == stats.ratio_stderr(bits[:100], nbytes[:100])   # fixed-seed bootstrap: same bytes
    b = stats.ratio_stderr(bits, nbytes)
    assert b == pytest.approx(a / 2, rel=0.2)
    # equal bytes per document: the ratio is a mean, whose error the bootstrap approximates
    assert a == pytest.approx(stats.mean_stderr(bits[:100] / 100), rel=0.1)
    assert stats.ratio_stderr([5.0] * 10, [2.0] * 10) == pytest.approx(0.0, abs=1e-12)


def test_paired_ratio_removes_document_difficulty():
    rng = np.random.default_rng(1)
    difficulty = rng.uniform(1, 5, 200)            # documents differ a lot ...
    nbytes = rng.integers(50, 500, 200).astype(float)
    a = difficulty * nbytes
    b = (difficulty - 0.05 + rng.normal(0, 0.01, 200)) * nbytes   # ... model B is uniformly a bit better
    diff, se = stats.paired_ratio(a, b, nbytes)
    assert diff == pytest.approx(b.sum() / nbytes.sum() - a.sum() / nbytes.sum())
    unpaired = stats.unpaired_stderr(stats.ratio_stderr(a, nbytes), stats.ratio_stderr(b, nbytes))
    assert se < unpaired / 10 and stats.beyond_noise(diff, se)
    assert not stats.beyond_noise(diff, unpaired)


def test_beyond_noise_and_summaries():
    assert stats.beyond_noise(0.1, 0.05) is True and stats.beyond_noise(0.09, 0.05) is False
    assert stats.beyond_noise(0.1, float("nan")) is None
    s = stats.summarize([0.5, 0.7, 0.6, float("nan")])
    assert s["n"] == 3 and s["mean"] == pytest.approx(0.6) and s["sd"] == pytest.approx(0.1)
    assert s["se"] == pytest.approx(0.1 / math.sqrt(3)) and (s["min"], s["max"]) == (0.5, 0.7)
