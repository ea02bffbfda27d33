"""What a study's params must satisfy, checked by every proxy before it trains: a study whose fit
could never run (fewer proxies than the regression has parameters, a scaling grid the law cannot
identify, a grid point whose budget its pools cannot feed) stops at its first proxy, not after
all of them have trained."""

from __future__ import annotations

from pathlib import Path

from ..params import ParamsError
from .proxies import pool_tokens, prior, proxy_section
from .mixtures import RegmixError, weight_caps

# parameters each regression of the mixture study fits with D domains
N_PARAMS = {"linear": lambda d: d + 1, "gbt": lambda d: d + 1, "mixing_law": lambda d: d + 2}
SCALING_PARAMS = 5  # E, A, B, alpha, beta
MIN_DISTINCT = 3    # distinct sizes and budgets that identify both power laws (lmbuild.study.scaling)


def check_study(params: dict, tokens_dir: Path, study: str) -> None:
    problems = {"mixture": _mixture, "scaling": _scaling}.get(study, lambda *_: [])(params, tokens_dir)
    if problems:
        raise ParamsError(problems)


def _mixture(params: dict, tokens_dir: Path) -> list[str]:
    cfg, p = params["studies"]["mixture"], prior(params)
    out = []
    need = N_PARAMS[cfg["regression"]](len(p))
    if len(set(cfg["proxies"])) <= need:
        out.append(f"params.yaml: studies.mixture.proxies: {len(set(cfg['proxies']))} proxies cannot fit the "
                   f"{cfg['regression']} regression's {need} parameters over {len(p)} domains; list at least {need + 1}")
    if cfg["target"] != "mean" and cfg["target"] not in pool_tokens(tokens_dir):
        out.append(f"params.yaml: studies.mixture.target: {cfg['target']!r} is not a domain of the pool "
                   f"({', '.join(sorted(pool_tokens(tokens_dir)))}) or 'mean'")
    return out


def _scaling(params: dict, tokens_dir: Path) -> list[str]:
    cfg = params["studies"]["scaling"]
    grid, out = cfg["grid"], []
    names = [g["name"] for g in grid]
    if len(set(names)) != len(names):
        out.append(f"params.yaml: studies.scaling.grid: names must be unique, got {names}")
    if cfg["holdout"] is not None and cfg["holdout"] not in names:
        out.append(f"params.yaml: studies.scaling.holdout: {cfg['holdout']!r} is not a grid point ({', '.join(names)})")
    fitted = [g for g in grid if g["name"] != cfg["holdout"]]
    if len(fitted) <= SCALING_PARAMS:
        out.append(f"params.yaml: studies.scaling.grid: {len(fitted)} fitted points cannot fit the law's "
                   f"{SCALING_PARAMS} parameters; list at least {SCALING_PARAMS + 1} besides the holdout")
    for key, what in (("hidden_size", "model sizes"), ("max_tokens", "token budgets")):
        if len({g[key] for g in fitted}) < MIN_DISTINCT:
            out.append(f"params.yaml: studies.scaling.grid: {len({g[key] for g in fitted})} distinct {what}; the law "
                       f"needs at least {MIN_DISTINCT} to tell its terms apart")
    p = prior(params)
    seq_len = proxy_section(params)["seq_len"]
    for g in grid:  # each point trains the default mix: its pools must feed the budget
        try:
            caps = weight_caps(pool_tokens(tokens_dir, seq_len), params["studies"]["mixture"]["max_epochs"],
                               g["max_tokens"], list(p))
        except RegmixError as exc:
            out.append(f"params.yaml: studies.scaling.grid: point {g['name']!r}: {exc}")
            continue
        over = [d for d in p if p[d] > caps[d] + 1e-9]
        if over:
            out.append(f"params.yaml: studies.scaling.grid: point {g['name']!r} ({g['max_tokens']:,} tokens) would read "
                       f"{', '.join(over)} more than studies.mixture.max_epochs times; lower its budget")
    return out
