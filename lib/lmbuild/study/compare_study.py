"""The compare study: the default, uniform, RegMix-chosen and DoReMi-chosen mixtures trained at
proxy size over several seeds, ranked by held-out bits per byte with each difference to the
baseline, its standard error (paired by seed) and p-value (lmbuild.study.ablation.rank).

Writes metrics/study_compare.json and studies/compare/report.md.
"""

from __future__ import annotations

import math

from .ablation import rank


def compare(params: dict, proxies: dict[str, dict], size: str = "proxy size") -> tuple[dict, str]:
    cfg = params["studies"]["compare"]
    by_mix: dict[str, dict[int, dict]] = {}
    for rec in proxies.values():
        by_mix.setdefault(rec["mixture_name"], {})[int(rec["seed"])] = rec
    if cfg["baseline"] not in by_mix:
        raise ValueError(f"studies.compare.baseline {cfg['baseline']!r} has no finished runs (have {sorted(by_mix)})")
    metrics: dict = {}
    sections = []
    domains = sorted({d for runs in by_mix.values() for r in runs.values() for d in r["bpb"]})
    for target in ["mean", *domains]:
        values = {m: {s: (r["bpb_mean"] if target == "mean" else r["bpb"][target]) for s, r in runs.items()}
                  for m, runs in by_mix.items()}
        rows = rank(values, cfg["baseline"], higher_is_better=False)
        metrics[target] = {row.recipe: {"mean": row.mean, "sd": row.sd, "stderr": row.se, "runs": row.n,
                                        "diff": row.diff, "diff_stderr": row.diff_se, "p": _num(row.p),
                                        "beyond_noise": int(bool(row.beyond_noise))} for row in rows}
        lines = [f"### Held-out bpb: {target}", "", "| mixture | runs | mean | sd | stderr | diff vs "
                 f"{cfg['baseline']} | stderr | p | beyond noise |", "|---|---|---|---|---|---|---|---|---|"]
        for row in rows:
            lines.append(f"| {row.recipe} | {row.n} | {row.mean:.4f} | {row.sd:.4f} | {row.se:.4f} | "
                         f"{row.diff:+.4f} | {row.diff_se:.4f} | {_num(row.p):.3g} | "
                         f"{'yes' if row.beyond_noise else 'no'} |")
        sections.append("\n".join(lines))
    weights = {m: next(iter(runs.values()))["mixture"]["average_weights"] for m, runs in by_mix.items()}
    wl = ["| mixture | " + " | ".join(domains) + " |", "|---" * (len(domains) + 1) + "|"]
    for m, w in sorted(weights.items()):
        wl.append(f"| {m} | " + " | ".join(f"{w.get(d, 0.0):.3f}" for d in domains) + " |")
    report = (f"# Mixture comparison ({size})\n\nEach mixture trained at {size} with seeds "
              f"{', '.join(map(str, sorted({s for r in by_mix.values() for s in r})))}; differences are paired by "
              "seed; beyond noise = |diff| > 2 stderr (read p too: with 3 seeds the test has 2 degrees of "
              "freedom).\n\nWeights trained:\n\n" + "\n".join(wl) + "\n\n" + "\n\n".join(sections) + "\n")
    return metrics, report


def _num(x) -> float:
    return float(x) if x is not None and not (isinstance(x, float) and math.isnan(x)) else float("nan")
