"""The scaling study's fit: L(N, D) = E + A / N^alpha + B / D^beta over the grid of proxies
(lmbuild.study.scaling, Hoffmann et al. 2022 approach 3), checked on the grid point left out.

N is the proxy's non-embedding parameter count (Kaplan et al. 2020 count it so; at this size the
embedding table is most of the parameters and follows the vocabulary, not the model's capacity),
D the tokens it trained on, L its held-out loss (nats per token over the val blocks of every
domain). Writes metrics/study_scaling.json and studies/scaling/report.md.
"""

from __future__ import annotations

import sys

import numpy as np

from ..params import ParamsError
from .scaling import ScalingError, compute_optimal, fit, holdout_error, predict


def fit_grid(params: dict, proxies: dict[str, dict]) -> tuple[dict, str]:
    cfg = params["studies"]["scaling"]
    hold = cfg["holdout"]
    if hold is not None and hold not in proxies:
        raise ParamsError([f"params.yaml: studies.scaling.holdout: {hold!r} is not a finished grid point "
                           f"({', '.join(proxies) or 'none'})"])
    names = [n for n in proxies if n != hold]
    N = np.array([proxies[n]["parameters_non_embedding"] for n in names], float)
    D = np.array([proxies[n]["tokens_seen"] for n in names], float)
    L = np.array([proxies[n]["val_loss"] for n in names], float)
    try:
        f = fit(N, D, L, seed=0)
    except ScalingError as exc:
        raise ParamsError([f"params.yaml: studies.scaling.grid: {exc}"]) from None
    pred = predict(f, N, D)
    metrics: dict = {"runs": len(names), **f.params, "huber_objective": f.objective, "converged": int(f.converged),
                     "stderr": dict(f.stderr), "max_abs_residual_log": float(np.abs(f.residuals).max())}
    rows = ["| point | N (non-embedding) | D (tokens) | observed loss | predicted |", "|---|---|---|---|---|"]
    for n, a, b, obs, pr in zip(names, N, D, L, pred):
        rows.append(f"| {n} | {a:,.0f} | {b:,.0f} | {obs:.4f} | {float(pr):.4f} |")
    if hold is not None:
        h = proxies[hold]
        err = holdout_error(f, [h["parameters_non_embedding"]], [h["tokens_seen"]], [h["val_loss"]])
        metrics["holdout"] = {"observed": h["val_loss"], "predicted": float(err.predicted[0]),
                              "abs_error": float(err.abs_error[0]), "rel_error": float(err.rel_error[0])}
        rows.append(f"| **{hold}** (held out) | {h['parameters_non_embedding']:,} | {h['tokens_seen']:,} | "
                    f"{h['val_loss']:.4f} | {float(err.predicted[0]):.4f} |")
    # the compute-optimal split for the largest grid budget and the demo pretrain's
    budgets = {"largest_grid_point": float(6 * (N * D).max())}
    opt = {k: compute_optimal(f, c) for k, c in budgets.items()}
    metrics["compute_optimal"] = {k: {"C": float(o.C), "N": float(o.N), "D": float(o.D), "loss": float(o.loss),
                                      "tokens_per_param": float(o.tokens_per_param)} for k, o in opt.items()}
    se = {k: f.stderr.get(k, float("nan")) for k in ("E", "A", "B", "alpha", "beta")}
    law = (f"L(N, D) = {f.E:.3f} (+-{se['E']:.3f}) + {f.A:.3g} / N^{f.alpha:.3f} (+-{se['alpha']:.3f}) + "
           f"{f.B:.3g} / D^{f.beta:.3f} (+-{se['beta']:.3f})")
    o = opt["largest_grid_point"]
    # a fit at the edge of its range: the grid does not pin the law down (too little training for
    # the loss to approach its floor), so the compute-optimal split is an extrapolation
    edge = f.E < 1e-2 or min(f.alpha, f.beta) < 0.1
    metrics["identified"] = int(not edge)
    if edge:
        warning = (f"the fit is at the edge of its range (E {f.E:.3g}, alpha {f.alpha:.3f}, beta {f.beta:.3f}): "
                   "the grid does not identify the law; read the held-out error, not the compute-optimal split")
        print(f"study_fit scaling: {warning}", file=sys.stderr)
        law += f"\n\n**Note:** {warning}."
    report = (f"# Scaling study\n\n{len(names)} proxies fitted (Huber on log loss, several starts; bootstrap "
              f"standard errors):\n\n    {law}\n\n" + "\n".join(rows) +
              f"\n\nCompute-optimal at C = {o.C:.3g} FLOPs (C = 6ND): N = {o.N:,.0f}, D = {o.D:,.0f} "
              f"({o.tokens_per_param:.1f} tokens per parameter), predicted loss {o.loss:.4f}.\n")
    return metrics, report
