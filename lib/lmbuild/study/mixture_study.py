"""The mixture study's fit: regress the proxies' held-out bits per byte on their mixture weights
(RegMix's linear or tree model, or the data mixing law) and choose the mixture the regression
predicts best under the pools' caps for the main pretrain's token budget.

Writes studies/mixture/weights.json (what pretrain.mixture.weights_file reads),
metrics/study_mixture.json and studies/mixture/report.md (predicted vs observed per proxy).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from ..params import ParamsError
from .checks import N_PARAMS
from .proxies import check_count, pool_tokens, prior
from .mixtures import RegmixError, weight_caps
from .regmix import fit_gbt, fit_linear, fit_mixing_law, optimise

FITTERS = {"linear": fit_linear, "gbt": fit_gbt, "mixing_law": fit_mixing_law}


def target_of(record: dict, target: str) -> float:
    if target == "mean":
        return float(record["bpb_mean"])
    if target not in record["bpb"]:
        raise ParamsError([f"params.yaml: studies.mixture.target: {target!r} is not a val domain "
                           f"({', '.join(sorted(record['bpb']))}) or 'mean'"])
    return float(record["bpb"][target])


def fit_study(params: dict, proxies: dict[str, dict], tokens_dir: Path) -> tuple[dict, dict, str]:
    """(weights.json content, metrics tree, report markdown) from the finished proxies."""
    cfg = params["studies"]["mixture"]
    p = prior(params)
    domains = list(p)
    kind = cfg["regression"]
    check_count(len(proxies), N_PARAMS[kind](len(domains)), f"mixture.proxies ({kind})")
    names = list(proxies)
    W = np.array([[proxies[n]["mixture"]["average_weights"].get(d, 0.0) for d in domains] for n in names])
    W = W / W.sum(axis=1, keepdims=True)
    y = np.array([target_of(proxies[n], cfg["target"]) for n in names])
    fits, diagnostics = {}, {}
    for k, fitter in FITTERS.items():  # every regression's cross-validated quality, for comparison
        if len(names) <= N_PARAMS[k](len(domains)):
            continue
        try:
            fits[k] = fitter(W, y, domains, seed=cfg["seed"])
            diagnostics[k] = fits[k].diagnostics()
        except RegmixError as exc:
            if k == kind:
                raise ParamsError([f"params.yaml: studies.mixture.regression: {exc}"]) from None
    model = fits[kind]
    caps = weight_caps(pool_tokens(tokens_dir, params["pretrain"]["seq_len"]), cfg["max_epochs"],
                       params["pretrain"]["max_tokens"], domains)
    opt = optimise(model, p, caps, n_candidates=cfg["candidates"], seed=cfg["seed"], top_k=cfg["top_k"],
                   concentration=cfg["concentration"])
    pred = model.predict(W)
    skill = diagnostics[kind]["cv_spearman"]
    if not skill > 0.3:  # RegMix reports rank correlations near 0.9 on held-out mixtures
        print(f"study_fit mixture: the {kind} regression ranks held-out proxies no better than chance "
              f"(cross-validated Spearman {skill:.2f}); the chosen mixture is an extrapolation the proxies do "
              f"not support: more proxies, a larger proxy, or several seeds per mixture", file=sys.stderr)
    result = {"study": "mixture", "regression": kind, "target": cfg["target"], "weights": opt.weights,
              "predicted_bpb": opt.predicted, "prior_predicted_bpb": opt.prior_predicted}
    metrics = {"proxies": len(names), "regression": diagnostics, "weights": opt.weights,
               "predicted_bpb": opt.predicted, "prior_predicted_bpb": opt.prior_predicted,
               "prior_observed_bpb": float(y[names.index("0")]) if "0" in names else float("nan"),
               "best_proxy_observed_bpb": float(y.min()), "caps": caps, "cv_skill_ok": int(skill > 0.3),
               "proxy_wall_time_s": float(sum(proxies[n]["wall_time_s"] for n in names)),
               "points": {n: {"observed": float(obs), "predicted": float(pr)} for n, obs, pr in zip(names, y, pred)}}
    rows = ["| proxy | " + " | ".join(domains) + " | observed bpb | predicted |", "|---" * (len(domains) + 3) + "|"]
    for n, w, obs, pr in zip(names, W, y, pred):
        rows.append(f"| {n} | " + " | ".join(f"{v:.3f}" for v in w) + f" | {obs:.4f} | {pr:.4f} |")
    rows.append("| **chosen** | " + " | ".join(f"**{opt.weights[d]:.3f}**" for d in domains) +
                f" | (train it) | {opt.predicted:.4f} |")
    diag = "\n".join(f"- {k}: R² {v['r2']:.3f}, cross-validated Spearman {v['cv_spearman']:.3f}, "
                     f"MAE {v['cv_mae']:.4f} ({v['cv_folds']} folds)" for k, v in diagnostics.items())
    report = (f"# Mixture study\n\nTarget: held-out bits per byte ({cfg['target']}), {len(names)} proxies on "
              f"mixtures drawn around the prior (proxy 0), regression: **{kind}**.\n\n" + "\n".join(rows) +
              f"\n\nRegressions (in-sample R², out-of-fold rank correlation and error):\n\n{diag}\n\n"
              f"Predicted at the prior: {opt.prior_predicted:.4f}; at the chosen mixture: {opt.predicted:.4f}. "
              f"A prediction, not a measurement: the compare stages train both.\n")
    return result, metrics, report


def write(result: dict, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
