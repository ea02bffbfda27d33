"""Mixture regression (lmbuild.study.regmix, lmbuild.study.mixing_law) on synthetic studies
whose true loss function of the weights is known: the Dirichlet proxies, the regressions'
ranking of held-out mixtures, the recovery of the mixing law's parameters, the search for the
best mixture under caps, and the one-line errors."""

from __future__ import annotations

import numpy as np
import pytest

from lmbuild.study import mixtures as M
from lmbuild.study import regmix as R
from lmbuild.study.regmix import fit_mixing_law

PRIOR = {"web": 0.5, "code": 0.2, "books": 0.2, "math": 0.1}
DOMAINS = list(PRIOR)
# a mixing law in the sum-zero gauge (sum t = 0): web helps most, math hurts
C, K, T = 2.0, 1.5, np.array([-2.0, -0.5, 0.5, 2.0])


def law(W, c=C, k=K, t=T):
    return c + k * np.exp(W @ t)


def smooth_loss(W):
    """A nonlinear, non-additive loss of the weights for the regressions to rank."""
    return 2.0 + np.exp(-1.5 * W[:, 0] - 0.5 * W[:, 1] + 0.5 * W[:, 2] + W[:, 3]) + 0.2 * W[:, 0] * W[:, 1]


# ---------------------------------------------------------------- sampling and caps

def test_dirichlet_mixtures_sum_to_one_are_deterministic_and_centre_on_the_prior():
    W = M.sample_mixtures(PRIOR, 4000, seed=3, concentration=5.0)
    assert W.shape == (4000, 4)
    np.testing.assert_allclose(W.sum(axis=1), 1.0, atol=1e-12)
    assert (W >= 0).all()
    np.testing.assert_allclose(W[0], list(PRIOR.values()), atol=1e-15)  # the prior is always a candidate
    np.testing.assert_array_equal(W, M.sample_mixtures(PRIOR, 4000, seed=3, concentration=5.0))
    assert not np.array_equal(W, M.sample_mixtures(PRIOR, 4000, seed=4, concentration=5.0))
    # E[w] = prior; sd of the mean of w_j is sqrt(p (1 - p) / (c + 1) / n) <= 0.0033 here: 0.015 is > 4.5 sd
    np.testing.assert_allclose(W[1:].mean(axis=0), list(PRIOR.values()), atol=0.015)
    # Var(w_j) = p_j (1 - p_j) / (concentration + 1)
    p = np.array(list(PRIOR.values()))
    np.testing.assert_allclose(W[1:].var(axis=0), p * (1 - p) / 6.0, rtol=0.1)
    # a log-uniform concentration range is deterministic too
    V = M.sample_mixtures(PRIOR, 50, seed=0, concentration=(0.1, 5.0))
    np.testing.assert_allclose(V.sum(axis=1), 1.0, atol=1e-12)
    np.testing.assert_array_equal(V, M.sample_mixtures(PRIOR, 50, seed=0, concentration=(0.1, 5.0)))


def test_caps_come_from_pools_epochs_and_budget_and_samples_respect_them():
    pool = {"web": 8e6, "code": 2e6, "books": 1.5e6, "math": 0.5e6}
    caps = M.weight_caps(pool, {"web": 1, "code": 2, "books": 2, "math": 4}, budget=1e7, domains=DOMAINS)
    assert caps == pytest.approx({"web": 0.8, "code": 0.4, "books": 0.3, "math": 0.2})
    assert M.weight_caps(pool, 1, budget=1e6)["web"] == 1.0  # a cap never exceeds one
    W = M.sample_mixtures(PRIOR, 500, seed=0, concentration=1.0, max_weight=caps)
    assert len(W) == 500
    assert (W <= np.array(list(caps.values())) + 1e-12).all()
    np.testing.assert_allclose(W.sum(axis=1), 1.0, atol=1e-12)
    np.testing.assert_array_equal(W, M.sample_mixtures(PRIOR, 500, seed=0, concentration=1.0, max_weight=caps))


def test_clip_to_caps_redistributes_the_excess_in_proportion():
    w = M.clip_to_caps(np.array([0.7, 0.2, 0.1]), np.array([0.5, 1.0, 1.0]))
    np.testing.assert_allclose(w, [0.5, 0.2 * 0.5 / 0.3, 0.1 * 0.5 / 0.3])
    # a second round: the first redistribution pushes another domain over its cap
    w = M.clip_to_caps(np.array([0.6, 0.3, 0.1]), np.array([0.4, 0.4, 1.0]))
    np.testing.assert_allclose(w, [0.4, 0.4, 0.2])


# ---------------------------------------------------------------- regressions

@pytest.fixture(scope="module")
def study():
    """128 proxies around the prior (as a study would run them) and 300 held-out mixtures."""
    rng = np.random.default_rng(7)
    W = M.sample_mixtures(PRIOR, 128, seed=1, concentration=1.0)
    held = M.sample_mixtures(PRIOR, 300, seed=2, concentration=1.0)[1:]
    return W, smooth_loss(W) + rng.normal(0, 0.01, len(W)), held


@pytest.mark.parametrize("fit", [R.fit_linear, R.fit_gbt], ids=["linear", "gbt"])
def test_regressions_rank_held_out_mixtures(study, fit):
    W, y, held = study
    model = fit(W, y, DOMAINS)
    rho = R.spearman(smooth_loss(held), model.predict(held))
    print(f"{model.kind}: held-out Spearman {rho:.4f}, cv Spearman {model.cv_spearman:.4f}, "
          f"cv MAE {model.cv_mae:.4f}, R^2 {model.r2:.4f}")
    assert rho > 0.9, rho
    assert model.cv_spearman > 0.85 and model.cv_folds == 5 and model.n_runs == 128
    assert 0.5 < model.r2 <= 1.0 and model.cv_mae > 0
    # rows as mappings give the same predictions
    rows = [dict(zip(DOMAINS, r)) for r in held[:3]]
    np.testing.assert_allclose(model.predict(rows), model.predict(held[:3]))


def test_linear_recovers_an_additive_loss_exactly():
    W = M.sample_mixtures(PRIOR, 20, seed=0, concentration=2.0)
    v = np.array([2.5, 3.0, 3.2, 4.0])  # loss of each pure domain
    model = R.fit_linear(W, W @ v, DOMAINS)
    assert list(model.params["pure_domain_loss"].values()) == pytest.approx(v.tolist(), abs=1e-9)
    assert model.r2 == pytest.approx(1.0) and model.cv_mae < 1e-9


def test_gbt_is_deterministic():
    W = M.sample_mixtures(PRIOR, 40, seed=0, concentration=1.0)
    a, b = (R.fit_gbt(W, smooth_loss(W), DOMAINS, seed=5, n_estimators=50) for _ in range(2))
    np.testing.assert_array_equal(a.predict(W), b.predict(W))
    assert a.cv_spearman == b.cv_spearman


def test_mixing_law_recovers_known_parameters():
    """40 proxies, noise sd 0.003 (a few thousandths of a nat, the spread of a small proxy's loss
    over seeds). Tolerance: within 4 of the fit's own standard errors (a two-sided 4-sigma miss
    has probability 6e-5 per parameter) and, so that a fit with inflated errors cannot pass,
    within 0.02 (c, k) and 0.05 (t) in absolute terms."""
    rng = np.random.default_rng(11)
    W = M.sample_mixtures(PRIOR, 40, seed=5, concentration=1.0)
    y = law(W) + rng.normal(0, 0.003, len(W))
    fit = fit_mixing_law(W, y, DOMAINS)
    p = fit.params["targets"]["loss"]
    t_hat, t_se = np.array(list(p["t"].values())), np.array(list(p["t_se"].values()))
    print(f"c {p['c']:.4f}±{p['c_se']:.4f} (true {C}), k {p['k']:.4f}±{p['k_se']:.4f} (true {K}), "
          f"t {np.round(t_hat, 4).tolist()} ± {np.round(t_se, 4).tolist()} (true {T.tolist()})")
    assert abs(p["c"] - C) < min(4 * p["c_se"], 0.02) or abs(p["c"] - C) < 1e-3
    assert abs(p["k"] - K) < min(4 * p["k_se"], 0.02) or abs(p["k"] - K) < 1e-3
    assert np.all(np.abs(t_hat - T) < np.maximum(np.minimum(4 * t_se, 0.05), 1e-3))
    assert p["rmse"] == pytest.approx(0.003, rel=0.35)  # the residuals are the noise
    assert fit.r2 > 0.999 and fit.cv_spearman > 0.99
    # the same law written in another gauge (t + 1, k / e) is the same function: same fit
    shifted = law(W, k=K / np.e, t=T + 1.0) + rng.normal(0, 0.003, len(W))
    q = fit_mixing_law(W, shifted, DOMAINS).params["targets"]["loss"]
    assert q["k"] == pytest.approx(K, abs=0.02) and list(q["t"].values()) == pytest.approx(T.tolist(), abs=0.05)


def test_mixing_law_fits_each_target_and_combines_them():
    W = M.sample_mixtures(PRIOR, 30, seed=2, concentration=1.0)
    t2 = np.array([0.5, -2.0, 1.0, 0.5])
    Y = np.column_stack([law(W), law(W, c=1.0, k=0.5, t=t2)])
    fit = fit_mixing_law(W, Y, DOMAINS, targets=["val_web", "val_code"], target_weights=[3, 1])
    code = fit.params["targets"]["val_code"]
    assert code["c"] == pytest.approx(1.0, abs=1e-4) and list(code["t"].values()) == pytest.approx(t2.tolist(), abs=1e-3)
    np.testing.assert_allclose(fit.predict(W), Y @ [0.75, 0.25], atol=1e-5)
    # the same seed gives the same fit
    again = R.fit_mixing_law(W, Y, DOMAINS, targets=["val_web", "val_code"], target_weights=[3, 1])
    np.testing.assert_array_equal(again.predict(W), fit.predict(W))


# ---------------------------------------------------------------- optimise

def quadratic(target, scale=(1.0, 2.0, 1.0, 3.0)):
    """A convex loss on the simplex with its minimum at `target`, as a model."""
    a = np.asarray(scale)
    return R.MixtureFit(kind="quadratic", domains=tuple(DOMAINS), n_runs=0, r2=1.0, cv_spearman=1.0, cv_mae=0.0,
                        cv_folds=0, params={}, smooth=True,
                        _predict=lambda X: 3.0 + ((X - np.asarray(target)) ** 2) @ a)


def test_optimise_finds_the_minimiser_of_a_convex_loss():
    best = np.array([0.4, 0.3, 0.2, 0.1])
    model = quadratic(best)
    found = R.optimise(model, PRIOR, None, n_candidates=100_000, seed=0)
    w = np.array(list(found.weights.values()))
    print("search:", np.round(w, 4).tolist(), "true:", best.tolist())
    # the mean of the top 100 of 100k draws: the 100 lie within ~0.05 of the minimum, their mean closer
    assert np.abs(w - best).max() < 0.03 and w.sum() == pytest.approx(1.0)
    assert found.predicted < found.prior_predicted and found.n_candidates == 100_000 and found.top_k == 100
    exact = R.optimise(model, PRIOR, None, n_candidates=2000, seed=0, method="slsqp")
    np.testing.assert_allclose(list(exact.weights.values()), best, atol=1e-4)


def test_optimise_respects_caps():
    # isotropic loss: the capped optimum is the Euclidean projection of the minimiser onto the
    # capped simplex: web at its cap 0.4, its excess 0.2 shared equally by the other three
    model = quadratic([0.6, 0.2, 0.1, 0.1], scale=(1, 1, 1, 1))
    caps = {"web": 0.4, "code": 1.0, "books": 1.0, "math": 1.0}
    projected = np.array([0.4, 0.2 + 0.2 / 3, 0.1 + 0.2 / 3, 0.1 + 0.2 / 3])
    exact = R.optimise(model, PRIOR, caps, n_candidates=2000, seed=0, method="slsqp")
    np.testing.assert_allclose(list(exact.weights.values()), projected, atol=1e-4)
    found = R.optimise(model, PRIOR, caps, n_candidates=50_000, seed=1)
    w = np.array(list(found.weights.values()))
    print("capped search:", np.round(w, 4).tolist(), "true:", np.round(projected, 4).tolist())
    assert w[0] <= 0.4 + 1e-12 and w.sum() == pytest.approx(1.0)
    assert np.abs(w - projected).max() < 0.05
    assert found.n_feasible < found.n_candidates
    # too few feasible candidates: the top-k mean is clipped into the caps
    tight = R.optimise(model, PRIOR, {"web": 0.05, "code": 1, "books": 1, "math": 1}, n_candidates=200, top_k=100, seed=0)
    assert tight.weights["web"] <= 0.05 + 1e-12 and sum(tight.weights.values()) == pytest.approx(1.0)


def test_search_and_slsqp_agree_on_a_fitted_law():
    W = M.sample_mixtures(PRIOR, 30, seed=4, concentration=1.0)
    fit = fit_mixing_law(W, law(W), DOMAINS)
    caps = {"web": 0.6, "code": 1.0, "books": 1.0, "math": 1.0}
    search = R.optimise(fit, PRIOR, caps, n_candidates=20_000, seed=0)
    direct = R.optimise(fit, PRIOR, caps, n_candidates=2000, seed=0, method="slsqp")
    assert direct.predicted <= search.predicted + 1e-9
    assert direct.weights["web"] == pytest.approx(0.6, abs=1e-6)  # web lowers the loss: it sits at its cap


# ---------------------------------------------------------------- errors, one line, before any work

def one_line(excinfo):
    msg = str(excinfo.value)
    assert "\n" not in msg
    return msg


def test_errors():
    W = M.sample_mixtures(PRIOR, 12, seed=0)
    with pytest.raises(R.RegmixError, match="needs at least 5 runs, got 4") as e:
        R.fit_linear(W[:4], smooth_loss(W[:4]), DOMAINS)
    one_line(e)
    with pytest.raises(R.RegmixError, match="needs at least 7 runs, got 6"):
        fit_mixing_law(W[:6], law(W[:6]), DOMAINS)
    bad = W.copy()
    bad[3, 0] += 0.01
    with pytest.raises(R.RegmixError, match=r"rows must sum to one \(tolerance 1e-06\); rows \[3\]") as e:
        R.fit_gbt(bad, smooth_loss(W), DOMAINS)
    one_line(e)
    with pytest.raises(R.RegmixError, match="domain.s. math not in the pool"):
        M.weight_caps({"web": 1e6, "code": 1e6, "books": 1e6}, 1, 1e6, domains=DOMAINS)
    with pytest.raises(R.RegmixError, match=r"caps sum to 0.35 < 1.*web 0.1 .*code 0.1 .*books 0.1 .*math 0.05") as e:
        M.weight_caps({"web": 1e5, "code": 1e5, "books": 1e5, "math": 5e4}, 1, 1e6)
    one_line(e)
    with pytest.raises(R.RegmixError, match="caps sum to 0.8 < 1"):
        R.optimise(quadratic([0.25] * 4), PRIOR, {"web": 0.2, "code": 0.2, "books": 0.2, "math": 0.2}, 1000)
    with pytest.raises(R.RegmixError, match="no cap for domain.s. math"):
        M.sample_mixtures(PRIOR, 10, 0, max_weight={"web": 1, "code": 1, "books": 1})
    with pytest.raises(R.RegmixError, match="the prior breaks its own caps .web 0.5 > 0.3"):
        M.sample_mixtures(PRIOR, 10, 0, max_weight={"web": 0.3, "code": 1, "books": 1, "math": 1})
    with pytest.raises(R.RegmixError, match="prior: rows must sum to one"):
        M.sample_mixtures({"web": 0.5, "code": 0.2}, 10, 0)
    gbt = R.fit_gbt(W, smooth_loss(W), DOMAINS, n_estimators=10)
    with pytest.raises(R.RegmixError, match="piecewise constant"):
        R.optimise(gbt, PRIOR, None, 1000, method="slsqp")
    with pytest.raises(R.RegmixError, match="missing math"):
        R.optimise(gbt, {"web": 1, "code": 1, "books": 1}, None, 1000)
