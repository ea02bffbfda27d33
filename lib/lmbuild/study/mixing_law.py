"""The data mixing law of Ye et al. 2024 ("Data Mixing Laws", arXiv:2403.16952): the loss
on target domain i of a model trained on mixture r is

    L_i(r) = c_i + k_i exp(sum_j t_ij r_j),

c_i the loss no mixture removes, k_i the scale, t_ij how strongly domain j moves target i
(negative: more of j lowers the loss on i). Fitted per target by nonlinear least squares
(scipy.optimize.least_squares, Levenberg-Marquardt) from several starting points; the combined
objective is sum_i s_i L_i with s_i the target weights (for a validation set made of several
domains, Ye et al. weigh each domain's law by its share of it; equal by default).

Identifiability: on the simplex sum_j r_j = 1, so shifting every t_ij by a and dividing k_i by
exp(a) leaves L_i unchanged. The fit fixes the gauge sum_j t_ij = 0 (t = P u, P an orthonormal
basis of the sum-zero vectors), so D + 1 numbers per target are free; a law given in another
gauge compares after t <- t - mean(t), k <- k exp(mean(t)). We still ask for more than D + 2 runs
per target, the law's nominal parameter count (c, k and D exponents), leaving at least one
residual degree of freedom more than the free count needs. Standard errors of the parameters come
from the Gauss-Newton covariance sigma^2 (J^T J)^-1, sigma^2 = RSS / (n - D - 1).

This module fits one target's law (`fit_target`); lmbuild.study.regmix.fit_mixing_law fits every
target, combines them and cross-validates the result like its other regressions (a `MixtureFit`).
"""

from __future__ import annotations

import numpy as np
from scipy import optimize as sopt


def sum_zero_basis(D: int) -> np.ndarray:
    """(D, D-1) orthonormal basis P of {t : sum t = 0}: the fit's gauge, t = P u."""
    u, _, _ = np.linalg.svd(np.eye(D) - 1.0 / D)
    return u[:, : D - 1]


def fit_target(W: np.ndarray, y: np.ndarray, P: np.ndarray, n_starts: int, seed: int) -> dict | None:
    """One target's law fitted to its losses `y` over the mixtures `W` (rows), in the gauge of
    `P` (`sum_zero_basis`), from `n_starts` starting points at least; None when none converged.
    Returns c, k, t and their standard errors, the RMSE and the fitted losses."""
    n, D = W.shape
    WP = W @ P

    def resid(th):
        return th[0] + th[1] * np.exp(WP @ th[2:]) - y

    def jac(th):
        e = np.exp(WP @ th[2:])
        return np.column_stack([np.ones(n), e, th[1] * e[:, None] * WP])

    # starts: for a few guesses of c below the smallest loss, log(y - c) = log k + W t is linear
    # in (log k, t); then a few random starts (deterministic in the seed)
    spread = float(np.ptp(y)) or abs(float(y.mean())) or 1.0
    starts = []
    for delta in (0.05, 0.25, 1.0, 4.0):
        c0 = float(y.min()) - delta * spread
        v = np.linalg.lstsq(W, np.log(y - c0), rcond=None)[0]  # v_j = log k + t_j (rows sum to one)
        starts.append(np.concatenate([[c0, np.exp(v.mean())], P.T @ (v - v.mean())]))
    rng = np.random.default_rng(seed)
    for _ in range(max(0, n_starts - len(starts))):
        starts.append(np.concatenate([[float(y.min()) - rng.uniform(0.1, 2) * spread, rng.uniform(0.2, 2) * spread],
                                      rng.normal(0.0, 1.0, D - 1)]))
    best = None
    for th0 in starts:
        try:
            r = sopt.least_squares(resid, th0, jac=jac, method="lm", x_scale="jac", max_nfev=200 * (D + 2))
        except (ValueError, FloatingPointError):
            continue
        if np.all(np.isfinite(r.x)) and (best is None or r.cost < best.cost):
            best = r
    if best is None:
        return None
    th = best.x
    p = D + 1
    rss = float(2 * best.cost)
    sigma2 = rss / (n - p) if n > p else float("nan")
    cov = sigma2 * np.linalg.pinv(best.jac.T @ best.jac)
    t = P @ th[2:]
    t_se = np.sqrt(np.clip(np.diag(P @ cov[2:, 2:] @ P.T), 0, None))
    return {"c": float(th[0]), "k": float(th[1]), "t": t, "c_se": float(np.sqrt(max(cov[0, 0], 0))),
            "k_se": float(np.sqrt(max(cov[1, 1], 0))), "t_se": t_se, "rmse": float(np.sqrt(rss / n)),
            "fitted": y + resid(th)}
