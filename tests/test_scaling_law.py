"""The Chinchilla scaling-law fit (lmbuild.study.scaling) and the proxy grid (lmbuild.study.grid).

Synthetic runs come from the law itself with Chinchilla's published constants (Hoffmann et al.
2022, eq. 10) on a 6 x 6 grid of N in [1e7, 1e9] and D in [1e9, 1e11], times a seeded
multiplicative noise exp(eps), eps ~ N(0, 0.001^2): 0.1% of the loss, a few times smaller than
the seed-to-seed spread of real final losses, so the law's shape, not the noise, decides the fit.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from lmbuild.study import grid, scaling
from lmbuild.study.scaling import ScalingError, ScalingFit

TRUE = {"E": 1.69, "A": 406.4, "B": 410.7, "alpha": 0.34, "beta": 0.28}  # Hoffmann et al. 2022
NOISE = 1e-3


def law(N, D, p=TRUE):
    return p["E"] + p["A"] / np.asarray(N, float) ** p["alpha"] + p["B"] / np.asarray(D, float) ** p["beta"]


def runs(noise=NOISE, seed=0):
    N, D = (x.ravel() for x in np.meshgrid(np.geomspace(1e7, 1e9, 6), np.geomspace(1e9, 1e11, 6)))
    eps = np.random.default_rng(seed).normal(0.0, noise, N.size)
    return N, D, law(N, D) * np.exp(eps)


def given(**p) -> ScalingFit:
    return ScalingFit(**p, objective=0.0, n_runs=0, converged=True, residuals=np.zeros(0))


@pytest.fixture(scope="module")
def noisy_fit():
    return scaling.fit(*runs(), bootstrap=100, seed=0)


def test_exact_data_recovers_the_law_to_optimiser_precision():
    f = scaling.fit(*runs(noise=0.0), bootstrap=0)
    assert f.converged and f.n_runs == 36 and f.starts == 32
    for k, v in TRUE.items():
        assert getattr(f, k) == pytest.approx(v, rel=1e-6), k
    assert np.abs(f.residuals).max() < 1e-8
    assert math.isnan(f.stderr["alpha"]) and f.n_bootstrap == 0


# Tolerances for the noisy fit. A N^-alpha is pinned over the fitted range, so an error in alpha
# moves log A by about that error x log N (~18): the prefactors are the loose parameters and the
# exponents the tight ones. The bootstrap errors at this noise are ~0.4% of E, ~3% of A and B and
# ~0.6% of alpha and beta; the bounds below are 3-5 such errors, and every estimate must also sit
# within 4 of its own bootstrap errors of the truth.
REL_TOL = {"E": 0.02, "A": 0.15, "B": 0.15, "alpha": 0.03, "beta": 0.03}


def test_noisy_data_recovers_parameters_within_bootstrap_errors(noisy_fit):
    f = noisy_fit
    assert f.converged and f.n_bootstrap == 100
    for k, v in TRUE.items():
        got, se = getattr(f, k), f.stderr[k]
        assert abs(got - v) <= REL_TOL[k] * v, (k, got, v)
        assert 0 < se and abs(got - v) <= 4 * se, (k, got, v, se)
        lo, hi = f.ci95[k]
        assert lo < got < hi
    # residuals are log L_obs - log L_pred: about the injected noise
    assert f.residuals.shape == (36,) and np.std(f.residuals) < 2 * NOISE


def test_prediction_on_a_larger_held_out_configuration(noisy_fit):
    # 10x the largest fitted model, 2x and 10x the largest fitted budget: extrapolation
    N, D = np.array([1e10, 1e10, 3e9]), np.array([2e11, 1e12, 1e12])
    err = scaling.holdout_error(noisy_fit, N, D, law(N, D))
    assert err.max_rel_error < 5e-3, err.rel_error
    assert err.predicted == pytest.approx(scaling.predict(noisy_fit, N, D))


def test_holdout_error_by_hand():
    f = given(E=1.0, A=1.0, B=1.0, alpha=1.0, beta=1.0)
    err = scaling.holdout_error(f, [1.0, 2.0], [1.0, 2.0], [2.0, 2.0])  # predictions 3 and 2
    assert err.predicted.tolist() == [3.0, 2.0]
    assert err.abs_error.tolist() == [1.0, 0.0] and err.rel_error.tolist() == [0.5, 0.0]
    assert (err.max_abs_error, err.max_rel_error, err.mean_rel_error) == (1.0, 0.5, 0.25)


def test_bootstrap_is_deterministic_given_the_seed():
    N, D, L = runs(noise=3e-3, seed=1)
    a = scaling.fit(N, D, L, bootstrap=20, seed=7)
    b = scaling.fit(N, D, L, bootstrap=20, seed=7)
    c = scaling.fit(N, D, L, bootstrap=20, seed=8)
    assert a.stderr == b.stderr and a.ci95 == b.ci95
    assert a.stderr != c.stderr
    assert a.params == c.params  # the point estimate does not depend on the bootstrap seed


def test_compute_optimal_by_hand():
    # alpha = beta = 1/2 and A = 4B: G = (alpha A / (beta B))^(1/(alpha+beta)) = 4, so
    # N_opt = 4 sqrt(C/6) and D_opt = sqrt(C/6) / 4. At C = 6e18: N = 4e9, D = 2.5e8 and
    # L = E + 4B / sqrt(4e9) + B / sqrt(2.5e8) = E + 2B / 15811.388...
    f = given(E=2.0, A=400.0, B=100.0, alpha=0.5, beta=0.5)
    o = scaling.compute_optimal(f, 6e18)
    assert o.N == pytest.approx(4e9) and o.D == pytest.approx(2.5e8)
    assert o.tokens_per_param == pytest.approx(1 / 16)
    assert o.loss == pytest.approx(2.0 + 200.0 / math.sqrt(2.5e8))
    # A = B: G = 1 and N_opt = D_opt = sqrt(C/6), for any C (arrays broadcast)
    o = scaling.compute_optimal(given(E=2.0, A=100.0, B=100.0, alpha=0.5, beta=0.5), np.array([6e10, 6e20]))
    assert o.N == pytest.approx([1e5, 1e10]) and o.D == pytest.approx([1e5, 1e10])


def test_compute_optimal_is_the_minimum_on_the_iso_flop_line():
    f = given(**TRUE)
    C = 1e21
    o = scaling.compute_optimal(f, C)
    assert 6 * o.N * o.D == pytest.approx(C)
    for s in (0.9, 0.99, 1.01, 1.1):
        assert scaling.predict(f, o.N * s, C / (6 * o.N * s)) > o.loss


def test_chinchilla_published_fit_tokens_per_parameter():
    # Gopher's budget, 5.76e23 FLOPs. G = (0.34 * 406.4 / (0.28 * 410.7))^(1/0.62) = 1.3447;
    # N = G (9.6e22)^(0.28/0.62) = 3.22e10, D = 9.6e22 / N = 2.98e12: 92.6 tokens per parameter.
    # Not the ~20 of Chinchilla itself (70B on 1.4T tokens, approaches 1 and 2): the published
    # approach-3 constants imply far more tokens per parameter, one of Besiroglu et al.'s (2024)
    # findings. Their refit (E=1.8172, A=482.01, B=2085.43, alpha=0.3478, beta=0.3658) gives ~18.
    o = scaling.compute_optimal(given(**TRUE), 5.76e23)
    g = (0.34 * 406.4 / (0.28 * 410.7)) ** (1 / 0.62)
    assert g == pytest.approx(1.3447, abs=1e-4)
    assert o.N == pytest.approx(g * 9.6e22 ** (0.28 / 0.62)) and o.N == pytest.approx(3.22e10, rel=1e-2)
    assert o.D == pytest.approx(2.98e12, rel=1e-2)
    assert o.tokens_per_param == pytest.approx(92.6, rel=1e-2)
    refit = given(E=1.8172, A=482.01, B=2085.43, alpha=0.3478, beta=0.3658)
    r = scaling.compute_optimal(refit, 5.76e23)
    assert 15 < r.tokens_per_param < 25 and r.N == pytest.approx(7.2e10, rel=0.02)
    assert 1.4e12 / 70e9 == pytest.approx(20)


@pytest.mark.parametrize("N, D, L, message", [
    ([1e6, 2e6, 3e6, 4e6], [1e8, 2e8, 3e8, 4e8], [3, 3, 3, 3], "4 runs, need at least 5"),
    ([1e6, 0, 3e6, 4e6, 5e6], [1e8] * 5, [3] * 5, "N must be positive and finite, got 0.0 at run 1"),
    ([1e6, 2e6, 3e6, 4e6, 5e6], [1e8, 2e8, -1, 4e8, 5e8], [3] * 5, "D must be positive"),
    ([1e6, 2e6, 3e6, 4e6, 5e6], [1e8, 2e8, 3e8, 4e8, 5e8], [3, 3, float("nan"), 3, 3], "L must be positive and finite"),
    ([1e6] * 5, [1e8, 2e8, 3e8, 4e8, 5e8], [3] * 5, "all 5 runs have N = 1e+06: the law is not identifiable (A and alpha"),
    ([1e6, 2e6, 3e6, 4e6, 5e6], [1e8] * 5, [3] * 5, "all 5 runs have D = 1e+08: the law is not identifiable (B and beta"),
    ([1e6, 2e6, 1e6, 2e6, 1e6], [1e8, 2e8, 3e8, 4e8, 5e8], [3] * 5, "only 2 distinct values of N"),
    ([1e6, 2e6, 3e6, 4e6, 5e6], [1e8] * 4, [3] * 5, "one entry per run, got lengths 5, 4, 5"),
])
def test_one_line_errors_before_fitting(N, D, L, message):
    with pytest.raises(ScalingError) as exc:
        scaling.fit(N, D, L)
    assert message in str(exc.value) and "\n" not in str(exc.value)


def test_grid_is_configurable():
    assert len(scaling._starts(scaling.PAPER_GRID)) == 4500  # 5 x 5 x 5 x 6 x 6, appendix D.2
    one = {"alpha": [0.5], "beta": [0.5], "e": [0.0], "a": [5.0], "b": [5.0]}
    f = scaling.fit(*runs(noise=0.0), grid=one, bootstrap=0)
    assert f.starts == 1 and f.alpha == pytest.approx(0.34, rel=1e-5)
    with pytest.raises(ScalingError, match="grid lacks"):
        scaling.fit(*runs(), grid={"alpha": [1.0]}, bootstrap=0)
    with pytest.raises(ScalingError, match="needs A, B, alpha, beta > 0"):
        scaling.compute_optimal(given(E=1.0, A=1.0, B=1.0, alpha=-0.1, beta=0.3), 1e20)


# Counts checked against transformers' LlamaForCausalLM / Olmo2ForCausalLM built from the same
# configs (sum of p.numel() over parameters, tied weights once) when this was written.
SMALL = dict(hidden_size=64, num_layers=3, num_heads=4, intermediate_size=176, vocab_size=300)


@pytest.mark.parametrize("kind, tie, kv, total", [
    ("llama", True, 4, 170176), ("llama", True, 2, 157888), ("llama", False, 4, 189376),
    ("olmo2", True, 4, 170560), ("olmo2", False, 2, 177376),
])
def test_param_counts_match_transformers(kind, tie, kv, total):
    c = grid.param_counts({**SMALL, "type": kind, "tie_embeddings": tie, "num_kv_heads": kv})
    assert c["total"] == total
    assert c["embedding"] == 300 * 64 and c["head"] == (0 if tie else 300 * 64)
    assert c["total"] == c["non_embedding"] + c["embedding"] + c["head"]


def test_param_counts_of_the_demo_model():
    # params.yaml pretrain.model with the demo's 4,096-token vocabulary, tied: per layer
    # 4 x 128^2 (attention) + 3 x 128 x 384 (SwiGLU) + 2 x 128 (norms) = 213,248
    demo = dict(hidden_size=128, num_layers=2, num_heads=4, intermediate_size=384,
                vocab_size=4096, tie_embeddings=True)
    c = grid.param_counts(demo)
    assert c["non_embedding"] == 2 * 213_248 + 128
    assert c["total"] == c["non_embedding"] + 4096 * 128


def test_proxy_grid_and_unreachable_budget():
    small, big = {**SMALL, "tie_embeddings": True, "name": "s"}, {**SMALL, "hidden_size": 128, "tie_embeddings": True}
    proxies = grid.proxy_grid([small, big], [1_000, 4_000], pool_tokens=2_000, max_epochs=2)
    assert [p.name for p in proxies] == ["s@1000", "s@4000", "d128_l3@1000", "d128_l3@4000"]
    assert proxies[0].N == 170176 and proxies[1].C == 6.0 * 170176 * 4000 and proxies[1].epochs == 2.0
    with pytest.raises(grid.GridError) as exc:
        grid.proxy_grid([small, big], [1_000, 4_001], pool_tokens=2_000, max_epochs=2)
    assert str(exc.value) == ("scaling grid: proxy s@4001: a budget of 4001 tokens exceeds "
                              "pool_tokens x max_epochs = 2000 x 2 = 4000")
    with pytest.raises(grid.GridError, match="config s: missing vocab_size"):
        grid.proxy_grid([{k: v for k, v in small.items() if k != "vocab_size"}], [10], 100, 1)
    with pytest.raises(grid.GridError, match="names must be unique"):
        grid.proxy_grid([small, small], [10], 100, 1)
