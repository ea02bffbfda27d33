"""Proxy mixtures for a mixture study: weight matrices and their checks, the caps a proxy's
token budget puts on each domain, and Dirichlet draws around a prior (RegMix, Liu et al. 2024,
arXiv:2407.01492).

- Proxy mixtures come from a Dirichlet around the prior (the token distribution of the pool),
  with alpha = concentration * prior (`sample_mixtures`). The mean of Dir(alpha) is the prior and
  Var(w_j) = p_j (1 - p_j) / (concentration + 1): a small concentration gives sparse mixtures far
  from the prior, a large one mixtures close to it. RegMix varies the scale between runs to see
  both; pass `concentration=(lo, hi)` for a log-uniform scale per mixture.
- A proxy cannot see more of a domain than its pool holds times the epochs allowed:
  w_j <= pool_j * max_epochs_j / budget (`weight_caps`). Draws that break a cap are redrawn;
  `clip_to_caps` moves a mixture inside its caps.

Weight matrices have one row per mixture and one column per domain, in the order of the
`domains` they come with; a row may also be given as a {domain: weight} mapping. The regressions
on these mixtures and the search for the best one are in lmbuild.study.regmix.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np

TOL = 1e-6  # rows of weights must sum to one within this


class RegmixError(Exception):
    """A mixture-regression request that cannot be met; one line, raised before any work."""


def as_matrix(weights, domains: Sequence[str]) -> np.ndarray:
    """(n, D) float64 matrix from an array, one {domain: weight} mapping, or a list of them."""
    domains = list(domains)
    if isinstance(weights, Mapping):
        weights = [weights]
    if len(weights) and isinstance(weights[0], Mapping):
        rows = []
        for i, row in enumerate(weights):
            unknown = sorted(set(row) - set(domains))
            if unknown:
                raise RegmixError(f"mixture {i} names domain(s) {', '.join(unknown)} outside the study's "
                                  f"domains ({', '.join(domains)})")
            rows.append([float(row.get(d, 0.0)) for d in domains])
        W = np.asarray(rows, dtype=np.float64).reshape(-1, len(domains))
    else:
        W = np.asarray(weights, dtype=np.float64)
        if W.ndim == 1:
            W = W[None, :]
        if W.ndim != 2 or W.shape[1] != len(domains):
            raise RegmixError(f"weights have shape {W.shape}, expected (mixtures, {len(domains)}) "
                              f"for domains {', '.join(domains)}")
    return W


def check_weights(W: np.ndarray, what: str = "weights") -> None:
    """Every row finite, non-negative and summing to one within TOL."""
    if not np.all(np.isfinite(W)):
        raise RegmixError(f"{what}: rows {np.flatnonzero(~np.isfinite(W).all(axis=1)).tolist()[:5]} are not finite")
    neg = np.flatnonzero((W < -TOL).any(axis=1))
    if neg.size:
        raise RegmixError(f"{what}: rows {neg.tolist()[:5]} have negative weights")
    sums = W.sum(axis=1)
    bad = np.flatnonzero(np.abs(sums - 1.0) > TOL)
    if bad.size:
        raise RegmixError(f"{what}: rows must sum to one (tolerance {TOL:g}); rows {bad.tolist()[:5]} "
                          f"sum to {', '.join(f'{s:.6g}' for s in sums[bad[:5]])}")


def weight_caps(pool_tokens: Mapping[str, float], max_epochs: float | Mapping[str, float], budget: float,
                domains: Sequence[str] | None = None) -> dict[str, float]:
    """Largest weight a proxy with `budget` tokens can give each domain without repeating its pool
    more than max_epochs times: cap_j = min(1, pool_j * max_epochs_j / budget).

    `domains` (the study's, e.g. the prior's keys) must all be in the pool; the caps are returned
    for them, in their order (for the whole pool when omitted). Raises when the caps sum below one
    (no mixture of the budget fits the pools), naming the domains."""
    if not (budget > 0 and math.isfinite(budget)):
        raise RegmixError(f"weight_caps: the proxy token budget must be a positive number, got {budget!r}")
    domains = list(pool_tokens) if domains is None else list(domains)
    missing = [d for d in domains if d not in pool_tokens]
    if missing:
        raise RegmixError(f"domain(s) {', '.join(missing)} not in the pool (it has {', '.join(pool_tokens) or 'nothing'})")
    if isinstance(max_epochs, Mapping):
        no_epochs = [d for d in domains if d not in max_epochs]
        if no_epochs:
            raise RegmixError(f"max_epochs has no entry for domain(s) {', '.join(no_epochs)}")
        epochs = {d: float(max_epochs[d]) for d in domains}
    else:
        epochs = {d: float(max_epochs) for d in domains}
    for d in domains:
        if not (pool_tokens[d] >= 0 and epochs[d] > 0):
            raise RegmixError(f"domain {d}: pool tokens must be >= 0 and max_epochs > 0, "
                              f"got {pool_tokens[d]!r} and {epochs[d]!r}")
    caps = {d: min(1.0, float(pool_tokens[d]) * epochs[d] / budget) for d in domains}
    _check_caps_sum(caps, detail={d: f"pool {pool_tokens[d]:.4g} tokens x {epochs[d]:g} epochs / budget {budget:.4g}"
                                  for d in domains})
    return caps


def _check_caps_sum(caps: Mapping[str, float], detail: Mapping[str, str] | None = None) -> None:
    total = sum(caps.values())
    if total < 1.0 - TOL:
        parts = [f"{d} {c:.4g}" + (f" ({detail[d]})" if detail else "") for d, c in caps.items()]
        raise RegmixError(f"the weight caps sum to {total:.4g} < 1, so no mixture meets them: {'; '.join(parts)}; "
                          "raise max_epochs, add pool tokens or lower the proxy token budget")


def cap_vector(caps: Mapping[str, float] | None, domains: Sequence[str], what: str) -> np.ndarray:
    """Caps in domain order (ones when None), checked: every domain capped, none unknown, sum >= 1."""
    if caps is None:
        return np.ones(len(domains))
    missing = [d for d in domains if d not in caps]
    extra = [d for d in caps if d not in domains]
    if missing or extra:
        raise RegmixError(f"{what}: " + "; ".join(
            ([f"no cap for domain(s) {', '.join(missing)}"] if missing else [])
            + ([f"caps for domain(s) {', '.join(extra)} not in the study ({', '.join(domains)})"] if extra else [])))
    for d in domains:
        if not 0.0 <= caps[d] <= 1.0 + TOL:
            raise RegmixError(f"{what}: the cap of {d} must be in [0, 1], got {caps[d]!r}")
    _check_caps_sum({d: caps[d] for d in domains})
    return np.array([float(caps[d]) for d in domains])


def clip_to_caps(w: np.ndarray, caps: np.ndarray) -> np.ndarray:
    """Clip a mixture to its caps and give the excess to the uncapped domains in proportion to
    their weights, repeated until no cap is broken (at most D rounds: each round fixes a domain)."""
    w = np.clip(np.asarray(w, dtype=np.float64), 0.0, None)
    w = w / w.sum()
    fixed = np.zeros(w.size, dtype=bool)
    for _ in range(w.size + 1):
        over = (w > caps + 1e-12) & ~fixed
        if not over.any():
            break
        fixed |= over
        w[fixed] = caps[fixed]
        free = ~fixed
        rest = 1.0 - caps[fixed].sum()
        mass = w[free].sum()
        # no weight left among the free domains: share the rest by their room under the caps
        w[free] = w[free] * rest / mass if mass > 0 else caps[free] * rest / caps[free].sum()
    return w


# ---------------------------------------------------------------- sampling

def prior_vector(prior: Mapping[str, float]) -> tuple[list[str], np.ndarray]:
    domains = list(prior)
    if len(domains) < 2:
        raise RegmixError(f"a mixture needs at least two domains, the prior has {len(domains)}")
    p = np.array([float(prior[d]) for d in domains])
    if not np.all(p > 0) or not np.all(np.isfinite(p)):
        raise RegmixError("prior: every domain needs a positive weight (Dirichlet alpha = concentration x prior "
                          f"must be > 0), got {', '.join(f'{d} {v:g}' for d, v in zip(domains, p) if not v > 0)}")
    check_weights(p[None, :], "prior")
    return domains, p / p.sum()


def _scales(rng: np.random.Generator, m: int, concentration) -> np.ndarray:
    if isinstance(concentration, (tuple, list)):
        lo, hi = (float(c) for c in concentration)
        if not 0 < lo <= hi:
            raise RegmixError(f"concentration range must satisfy 0 < lo <= hi, got {concentration!r}")
        return np.exp(rng.uniform(math.log(lo), math.log(hi), size=m))  # log-uniform per mixture
    c = float(concentration)
    if not c > 0:
        raise RegmixError(f"concentration must be > 0, got {concentration!r}")
    return np.full(m, c)


def dirichlet(rng: np.random.Generator, p: np.ndarray, m: int, concentration) -> np.ndarray:
    """m draws of Dir(alpha = scale * p), as normalised Gamma(alpha_j, 1) variates."""
    g = rng.gamma(_scales(rng, m, concentration)[:, None] * p[None, :])
    s = g.sum(axis=1)
    ok = s > 0  # tiny alphas can underflow every component of a row to zero
    return g[ok] / s[ok, None]


def sample_mixtures(prior: Mapping[str, float], n: int, seed: int, concentration: float | tuple[float, float] = 1.0,
                    max_weight: Mapping[str, float] | None = None) -> np.ndarray:
    """n proxy mixtures, an (n, D) matrix with columns in the prior's key order; row 0 is the prior.

    The other rows are draws from Dir(alpha = concentration * prior) (RegMix, Liu et al. 2024:
    mixtures around the token distribution), deterministic in `seed`. Draws with any
    w_j > max_weight[j] are rejected and redrawn, so the rows are Dirichlet draws conditioned on
    the caps. The prior itself is always a candidate: it is the mixture one would train without a
    study, so the study measures its baseline with the same proxies and noise as every other
    mixture, and the regression is anchored where its candidates are densest."""
    domains, p = prior_vector(prior)
    if int(n) != n or n < 1:
        raise RegmixError(f"n must be a positive integer, got {n!r}")
    _scales(np.random.default_rng(0), 1, concentration)  # validate before any work
    if max_weight is not None:
        caps = cap_vector(max_weight, domains, "max_weight")
        broken = [f"{d} {p[j]:.4g} > {caps[j]:.4g}" for j, d in enumerate(domains) if p[j] > caps[j] + TOL]
        if broken:
            raise RegmixError(f"the prior breaks its own caps ({'; '.join(broken)}): the pools cannot feed the "
                              "proxy budget at the natural mixture; lower the budget or raise max_epochs")
    else:
        caps = np.ones(len(domains))
    rng = np.random.default_rng(seed)
    rows, have, drawn = [p[None, :]], 1, 0
    limit = 1000 * n + 100_000  # draws before giving up on caps that reject nearly everything
    while have < n:
        if drawn > limit:
            raise RegmixError(f"the caps rejected all but {have - 1} of {drawn} Dirichlet draws; raise the "
                              "concentration (mixtures nearer the prior) or loosen the caps")
        m = max(64, 2 * (n - have))
        W = dirichlet(rng, p, m, concentration)
        drawn += m
        W = W[(W <= caps[None, :] + 1e-12).all(axis=1)][: n - have]
        rows.append(W)
        have += len(W)
    return np.concatenate(rows)
