"""Mixture regression (RegMix, Liu et al. 2024, arXiv:2407.01492): train many small proxies on
random data mixtures, regress the target loss on the mixture weights, and pick the mixture the
regression predicts best.

- The proxies' mixtures (Dirichlet draws around the prior, within the caps a proxy's token
  budget allows) are drawn by lmbuild.study.mixtures.
- Regressors of the loss on the weights: `fit_linear` (RegMix's linear baseline), `fit_gbt`
  (gradient-boosted trees; RegMix uses LightGBM) and `fit_mixing_law` (Ye et al. 2024's
  L_i(r) = c_i + k_i exp(sum_j t_ij r_j); the law's fit per target is in lmbuild.study.mixing_law).
  Each returns a `MixtureFit` with `.predict(W)`, the in-sample R^2 and the cross-validated
  Spearman rank correlation and MAE (RegMix judges a regression by how well it ranks unseen
  mixtures).
- `optimise`: RegMix's search (many candidate mixtures from the same Dirichlet, the mean of the
  top-k predicted, k = 100 in the paper) or, for smooth models, direct SLSQP on the capped simplex.

Weight matrices are as in lmbuild.study.mixtures: one row per mixture, one column per domain.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import numpy as np
from scipy import optimize as sopt
from scipy import stats as sstats

from . import mixing_law
from .mixtures import RegmixError, as_matrix, cap_vector, check_weights, clip_to_caps, dirichlet, prior_vector

# ---------------------------------------------------------------- fits and their diagnostics

@dataclass
class MixtureFit:
    """A regression of the target loss on mixture weights, with its diagnostics.

    r2: in-sample coefficient of determination; cv_spearman / cv_mae: rank correlation and mean
    absolute error of out-of-fold predictions (`cv_folds` folds, n = leave-one-out; nan when the
    folds would leave too few runs to fit); params: the fitted parameters, readable."""
    kind: str
    domains: tuple[str, ...]
    n_runs: int
    r2: float
    cv_spearman: float
    cv_mae: float
    cv_folds: int
    params: dict
    smooth: bool  # differentiable in the weights: direct minimisation makes sense
    _predict: Callable[[np.ndarray], np.ndarray] = field(repr=False)

    def predict(self, weights) -> np.ndarray:
        """Predicted loss per mixture (array rows in `domains` order, or {domain: weight} rows)."""
        return np.asarray(self._predict(as_matrix(weights, self.domains)), dtype=np.float64)

    def diagnostics(self) -> dict[str, float]:
        return {"n_runs": self.n_runs, "r2": self.r2, "cv_spearman": self.cv_spearman,
                "cv_mae": self.cv_mae, "cv_folds": self.cv_folds}


def r_squared(y: np.ndarray, pred: np.ndarray) -> float:
    ss = float(((y - y.mean()) ** 2).sum())
    return 1.0 - float(((y - pred) ** 2).sum()) / ss if ss > 0 else float("nan")


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(sstats.spearmanr(a, b).statistic)


def prepare(weights, y, domains: Sequence[str], min_runs: int, what: str) -> tuple[np.ndarray, np.ndarray]:
    """Checked (W, Y) with Y as (n, targets); `min_runs` is the least number of runs that fits."""
    domains = list(domains)
    if len(set(domains)) != len(domains):
        raise RegmixError(f"{what}: domains repeat: {', '.join(domains)}")
    W = as_matrix(weights, domains)
    Y = np.asarray(y, dtype=np.float64)
    Y = Y[:, None] if Y.ndim == 1 else Y
    if Y.ndim != 2 or Y.shape[0] != W.shape[0]:
        raise RegmixError(f"{what}: {W.shape[0]} mixtures but losses of shape {np.shape(y)}")
    if W.shape[0] < min_runs:
        raise RegmixError(f"{what} on {len(domains)} domains needs at least {min_runs} runs, got {W.shape[0]}")
    check_weights(W, f"{what}: weights")
    if not np.all(np.isfinite(Y)):
        raise RegmixError(f"{what}: losses of runs {np.flatnonzero(~np.isfinite(Y).all(axis=1)).tolist()[:5]} are not finite")
    return W, Y


def fit_with_cv(kind: str, fitter, W: np.ndarray, Y: np.ndarray, domains: Sequence[str], min_runs: int,
                cv: int, seed: int, smooth: bool, combine: np.ndarray | None = None) -> MixtureFit:
    """Fit on all runs, then k-fold (leave-one-out when k folds would leave fewer than `min_runs`
    training runs) out-of-fold predictions for the diagnostics. `fitter(W, Y) -> (predict, params)`
    predicts the combined loss Y @ combine (combine = [1] for one target)."""
    n = W.shape[0]
    s = np.ones(Y.shape[1]) if combine is None else combine
    y = Y @ s
    predict, params = fitter(W, Y)
    r2 = r_squared(y, predict(W))
    k = max(2, min(int(cv), n))
    if n - math.ceil(n / k) < min_runs:
        k = n  # leave-one-out
    oof = np.full(n, np.nan)
    if n - 1 >= min_runs:
        folds = np.array_split(np.random.default_rng(seed).permutation(n), k)
        for test in folds:
            train = np.setdiff1d(np.arange(n), test)
            oof[test] = fitter(W[train], Y[train])[0](W[test])
        cv_s, cv_mae = spearman(y, oof), float(np.mean(np.abs(y - oof)))
    else:
        k, cv_s, cv_mae = 0, float("nan"), float("nan")
    return MixtureFit(kind=kind, domains=tuple(domains), n_runs=n, r2=r2, cv_spearman=cv_s, cv_mae=cv_mae,
                      cv_folds=k, params=params, smooth=smooth, _predict=predict)


def fit_linear(weights, loss, domains: Sequence[str], *, alpha: float = 0.0, cv: int = 5, seed: int = 0) -> MixtureFit:
    """RegMix's linear regression: loss ~ sum_j v_j w_j, v_j the predicted loss of pure domain j.

    No separate intercept: the weights sum to one, so an intercept b and slopes beta give
    v_j = b + beta_j. Fitted as ridge on centred weights and loss (penalty alpha |beta|^2, which
    pulls the v_j towards each other; alpha = 0 is least squares). It has D free values, so it
    needs more than D runs."""
    domains = list(domains)
    D = len(domains)
    W, Y = prepare(weights, loss, domains, D + 1, "linear regression")
    if Y.shape[1] != 1:
        raise RegmixError(f"linear regression: one loss per run, got {Y.shape[1]} per run")
    if alpha < 0:
        raise RegmixError(f"linear regression: alpha must be >= 0, got {alpha!r}")

    def fitter(W, Y):
        y = Y[:, 0]
        mw, my = W.mean(axis=0), y.mean()
        A = np.vstack([W - mw, math.sqrt(alpha) * np.eye(D)])  # ridge as augmented least squares
        beta = np.linalg.lstsq(A, np.concatenate([y - my, np.zeros(D)]), rcond=None)[0]
        v = (my - mw @ beta) + beta  # loss at each pure domain; prediction = W @ v since rows sum to one
        return (lambda X: X @ v), {"pure_domain_loss": dict(zip(domains, v.tolist())), "alpha": alpha}

    return fit_with_cv("linear", fitter, W, Y, domains, D + 1, cv, seed, smooth=True)


def fit_gbt(weights, loss, domains: Sequence[str], *, seed: int = 0, cv: int = 5, n_estimators: int = 300,
            learning_rate: float = 0.05, max_depth: int = 3) -> MixtureFit:
    """Gradient-boosted regression trees on the weights (RegMix fits LightGBM; this is
    scikit-learn's exact GradientBoostingRegressor, Friedman 2001).

    Settings: squared error; 300 trees at learning rate 0.05 (shrinkage: many small steps
    generalise better than few large ones); depth 3 (each tree models interactions of up to three
    domains); leaves of at least max(1, n // 20) runs so a leaf does not fit one noisy proxy;
    subsample 1.0, so the fit has no randomness and random_state only fixes tie-breaks. The
    histogram variant (HistGradientBoostingRegressor) bins features and wants leaves of 20 rows:
    it suits thousands of rows, a study has tens to hundreds of runs. Trees are piecewise
    constant: `optimise` searches them by sampling, never by gradients. Needs more than D runs."""
    from sklearn.ensemble import GradientBoostingRegressor

    domains = list(domains)
    W, Y = prepare(weights, loss, domains, len(domains) + 1, "gradient-boosted trees")
    if Y.shape[1] != 1:
        raise RegmixError(f"gradient-boosted trees: one loss per run, got {Y.shape[1]} per run")
    settings = dict(loss="squared_error", n_estimators=n_estimators, learning_rate=learning_rate,
                    max_depth=max_depth, subsample=1.0, random_state=seed)

    def fitter(W, Y):
        m = GradientBoostingRegressor(min_samples_leaf=max(1, W.shape[0] // 20), **settings).fit(W, Y[:, 0])
        return m.predict, {**settings, "feature_importance": dict(zip(domains, m.feature_importances_.tolist()))}

    return fit_with_cv("gbt", fitter, W, Y, domains, len(domains) + 1, cv, seed, smooth=False)


def fit_mixing_law(weights, loss, domains: Sequence[str], *, targets: Sequence[str] | None = None,
                   target_weights: Sequence[float] | None = None, n_starts: int = 8, seed: int = 0,
                   cv: int = 5) -> MixtureFit:
    """Ye et al. 2024's data mixing law L_i(r) = c_i + k_i exp(sum_j t_ij r_j), fitted to `loss`
    (n runs, or n runs x T targets) target by target (lmbuild.study.mixing_law.fit_target).

    `predict` gives the combined loss sum_i s_i L_i; params["targets"][name] holds c, k, t (in the
    sum-zero gauge), their standard errors, the per-target R^2 and RMSE. Needs more than D + 2 runs."""
    domains = list(domains)
    D = len(domains)
    if D < 2:
        raise RegmixError(f"mixing law: a mixture needs at least two domains, got {D}")
    W, Y = prepare(weights, loss, domains, D + 3, "the mixing law (c, k and one exponent per domain, per target)")
    T = Y.shape[1]
    names = list(targets) if targets is not None else (["loss"] if T == 1 else [f"target{i}" for i in range(T)])
    if len(names) != T:
        raise RegmixError(f"mixing law: {len(names)} target names for {T} loss columns")
    s = np.full(T, 1.0 / T) if target_weights is None else np.asarray(target_weights, dtype=np.float64)
    if s.shape != (T,) or np.any(s < 0) or not s.sum() > 0:
        raise RegmixError(f"mixing law: target_weights must be {T} non-negative numbers, not all zero")
    s = s / s.sum()
    P = mixing_law.sum_zero_basis(D)

    def fit_target(W, y, target_seed):
        f = mixing_law.fit_target(W, y, P, n_starts, target_seed)
        if f is None:
            raise RegmixError("mixing law: no starting point converged (losses may not follow c + k exp(t.r))")
        return {**f, "r2": r_squared(y, f["fitted"])}

    def fitter(W, Y):
        fits = [fit_target(W, Y[:, i], seed + i) for i in range(T)]
        c = np.array([f["c"] for f in fits])
        k = np.array([f["k"] for f in fits])
        tt = np.stack([f["t"] for f in fits])  # (T, D)

        def predict(X):
            return (c[None, :] + k[None, :] * np.exp(X @ tt.T)) @ s

        params = {"target_weights": dict(zip(names, s.tolist())), "targets": {
            name: {"c": f["c"], "k": f["k"], "t": dict(zip(domains, f["t"].tolist())), "c_se": f["c_se"],
                   "k_se": f["k_se"], "t_se": dict(zip(domains, f["t_se"].tolist())), "r2": f["r2"], "rmse": f["rmse"]}
            for name, f in zip(names, fits)}}
        return predict, params

    return fit_with_cv("mixing_law", fitter, W, Y, domains, D + 3, cv, seed, smooth=True, combine=s)


# ---------------------------------------------------------------- choosing the mixture

@dataclass
class Optimum:
    weights: dict[str, float]
    predicted: float  # the model's loss at `weights`
    prior_predicted: float  # the model's loss at the Dirichlet centre, for comparison
    method: str
    n_candidates: int
    n_feasible: int  # candidates within the caps (search)
    top_k: int
    clipped: bool  # clip_to_caps moved the averaged mixture


def optimise(model: MixtureFit, domains: Mapping[str, float] | Sequence[str], caps: Mapping[str, float] | None = None,
             n_candidates: int = 100_000, seed: int = 0, *, top_k: int = 100,
             concentration: float | tuple[float, float] = 1.0, method: str = "search") -> Optimum:
    """The mixture with the lowest predicted loss.

    method="search" (RegMix, Liu et al. 2024): draw n_candidates mixtures from
    Dir(concentration * prior) (`domains` is the prior mapping, or names for a uniform prior),
    predict them, and average the top_k lowest (RegMix averages the top 100 of its simulations:
    the mean is steadier than the single best, which is partly the model's error). Candidates
    that break a cap are left out of the ranking when at least top_k remain (the mean of mixtures
    within the caps is within them: the capped simplex is convex); the mean is then clipped to the
    caps and renormalised (`clip_to_caps`), a no-op unless too few candidates were feasible.
    method="slsqp": minimise the model directly on {w >= 0, sum w = 1, w_j <= cap_j} with
    scipy's SLSQP from the search result, the prior and the centre of the caps; for smooth models
    (linear, mixing law), not trees."""
    if method not in ("search", "slsqp"):
        raise RegmixError(f"optimise: method must be 'search' or 'slsqp', got {method!r}")
    if method == "slsqp" and not model.smooth:
        raise RegmixError(f"optimise: {model.kind} predictions are piecewise constant, SLSQP needs a smooth model; use method='search'")
    prior = dict(domains) if isinstance(domains, Mapping) else {d: 1.0 for d in domains}
    names = list(model.domains)
    missing, extra = [d for d in names if d not in prior], [d for d in prior if d not in names]
    if missing or extra:
        raise RegmixError("optimise: the domains differ from the model's: " + "; ".join(
            ([f"missing {', '.join(missing)}"] if missing else []) + ([f"not in the model {', '.join(extra)}"] if extra else [])))
    total = sum(prior.values())
    _, p = prior_vector({d: prior[d] / total for d in names})
    cap = cap_vector(caps, names, "optimise")
    if int(top_k) < 1 or int(n_candidates) < int(top_k):
        raise RegmixError(f"optimise: need 1 <= top_k <= n_candidates, got top_k={top_k}, n_candidates={n_candidates}")
    rng = np.random.default_rng(seed)

    cands, pred = [], []
    while sum(len(c) for c in cands) < n_candidates:  # chunks bound the memory of large searches
        W = dirichlet(rng, p, min(50_000, n_candidates - sum(len(c) for c in cands)), concentration)
        cands.append(W)
        pred.append(model.predict(W))
    W, pred = np.concatenate(cands), np.concatenate(pred)
    feasible = (W <= cap[None, :] + 1e-12).all(axis=1)
    pool = np.flatnonzero(feasible) if feasible.sum() >= top_k else np.arange(len(W))
    best = pool[np.argsort(pred[pool], kind="stable")[:top_k]]
    mean = W[best].mean(axis=0)
    w = clip_to_caps(mean, cap)
    clipped = bool(np.abs(w - mean / mean.sum()).max() > 1e-12)

    if method == "slsqp":
        f = lambda x: float(model.predict(x[None, :])[0])  # noqa: E731
        starts = [w, clip_to_caps(p, cap), clip_to_caps(cap / cap.sum(), cap)]
        cons = [{"type": "eq", "fun": lambda x: x.sum() - 1.0, "jac": lambda x: np.ones_like(x)}]
        results = [sopt.minimize(f, x0, method="SLSQP", bounds=[(0.0, c) for c in cap], constraints=cons,
                                 options={"ftol": 1e-12, "maxiter": 1000}) for x0 in starts]
        x = min(results, key=lambda r: r.fun).x
        w = clip_to_caps(np.clip(x, 0.0, cap), cap)  # SLSQP meets bounds to its tolerance only

    return Optimum(weights=dict(zip(names, w.tolist())), predicted=float(model.predict(w[None, :])[0]),
                   prior_predicted=float(model.predict(p[None, :])[0]), method=method, n_candidates=len(W),
                   n_feasible=int(feasible.sum()), top_k=int(top_k), clipped=clipped)
