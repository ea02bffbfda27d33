"""The post-training methods study: preference optimisation and RL methods trained from the same
SFT model over several seeds, side by side on the same held-out problems.

A method is a base stage (dpo or rlvr) with `studies.methods.runs.<name>.params` laid over that
stage's params section (validated as that section, so a typo is a one-line error naming
studies.methods.runs.<name>). Every run starts from models/sft: the dpo methods train on
dpo_pairs' pairs (sampled from and referenced to models/sft), the RL methods sample from
models/sft themselves. Each run is one cached DVC unit (studies/dvc.yaml, `method_<name>@<seed>`),
so a change to one method's params reruns only that method's runs.

Each run reports what its stage reports (held-out greedy task accuracy with its paired change from
models/sft, by item) plus the evaluation every method shares (lmbuild.eval.judged: the held-out
reward under the reward model and the win rate against models/sft, judged by the reward model).
The fit ranks the methods by each figure over seeds with each difference to the baseline (paired
by seed) and its standard error (lmbuild.study.ablation.rank).
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from ..params import ParamsError, deep_merge, validate_section
from .ablation import rank

RUNS = Path("studies/methods/runs")
SFT = Path("models/sft")
# the figures the fit ranks: (metric key in a run's metrics, higher is better)
FIGURES = {"task_accuracy": True, "task_accuracy_gain": True, "heldout_reward": True, "win_rate": True,
           "lc_win_rate": True, "time_s": False}


def method_section(params: dict, name: str, seed: int) -> tuple[str, dict]:
    """(base stage, its params section for this run): the stage's section with the method's
    params over it and the run's training seed."""
    runs = params["studies"]["methods"]["runs"]
    if name not in runs:
        raise ParamsError([f"params.yaml: studies.methods.runs: no method {name!r} (have {', '.join(runs)})"])
    stage, over = runs[name]["stage"], runs[name]["params"]
    steps = params["studies"]["methods"]["rl_steps"]
    if stage == "rlvr" and steps is not None:
        over = {"steps": steps, **over}
    try:
        section = validate_section(stage, deep_merge(params[stage], {**over, "seed": seed}))
    except ParamsError as exc:
        raise ParamsError([line.replace(f"params.yaml: {stage}.", f"params.yaml: studies.methods.runs.{name}.params.", 1)
                           for line in exc.problems]) from None
    return stage, section


def run_dir(name: str, seed: int) -> Path:
    return RUNS / f"{name}-{seed}"


def run_method(params: dict, name: str, seed: int, *, evaluate_shared) -> dict:
    """Train one method from models/sft with one seed into studies/methods/runs/<name>-<seed>/
    (model/, live/, metrics.json); evaluate_shared(model_dir) adds the shared figures."""
    from ..posttrain import dpo, ppo_job, rlvr
    stage, section = method_section(params, name, seed)
    job_params = {**params, stage: section}
    out = run_dir(name, seed)
    scratch = out.with_name(out.name + ".ckpt")  # checkpoints: resumable, not kept
    dirs = dict(out_model=out / "model", ckpt_dir=scratch, live_dir=out / "live")
    t0 = time.perf_counter()
    if stage == "dpo":
        m = dpo.run(job_params, init_model=SFT, pairs_dir=Path("data/dpo"), rounds_dir=scratch / "rounds", **dirs)
    elif section["algorithm"] == "ppo":
        m = ppo_job.run(job_params, init_model=SFT, scorer=ppo_job.verifier_scorer(params["tasks"]), **dirs)
    else:
        m = rlvr.run(job_params, init_model=SFT, **dirs)
    m = {"method": name, "stage": stage, "seed": seed, "train_time_s": m.get("wall_time_s", float("nan")),
         "time_s": time.perf_counter() - t0, **{k: v for k, v in m.items() if not isinstance(v, dict)},
         "settings": {k: v for k, v in section.items() if not isinstance(v, dict)}}
    m.update(evaluate_shared(out / "model"))
    (out / "metrics.json").write_text(json.dumps(m, indent=1, sort_keys=True) + "\n")
    shutil.rmtree(scratch, ignore_errors=True)
    return m


def fit(params: dict, runs: dict[str, dict], baseline_figures: dict[str, float]) -> tuple[dict, str]:
    """Rank the methods on every figure over their seeds against the SFT model (the baseline,
    one deterministic evaluation: the same value for every seed)."""
    cfg = params["studies"]["methods"]
    by_method: dict[str, dict[int, dict]] = {}
    for rec in runs.values():
        by_method.setdefault(rec["method"], {})[int(rec["seed"])] = rec
    if not by_method:
        raise ValueError("studies.methods: no finished runs under studies/methods/runs")
    metrics: dict = {}
    sections = []
    for fig, higher in FIGURES.items():
        values = {m: {s: float(r[fig]) for s, r in rs.items() if fig in r} for m, rs in by_method.items()}
        values = {m: v for m, v in values.items() if len(v) >= 2}
        if not values:
            continue
        seeds = sorted({s for v in values.values() for s in v})
        if fig in baseline_figures:
            values["sft"] = {s: float(baseline_figures[fig]) for s in seeds}
        base = "sft" if "sft" in values else cfg["baseline_method"]
        if base not in values:
            continue
        rows = rank(values, base, higher_is_better=higher)
        metrics[fig] = {row.recipe: {"mean": row.mean, "sd": row.sd, "stderr": row.se, "runs": row.n,
                                     "diff": row.diff, "diff_stderr": row.diff_se,
                                     "p": row.p if row.p == row.p else float("nan"),
                                     "beyond_noise": int(bool(row.beyond_noise))} for row in rows}
        lines = [f"### {fig}", "", f"| method | runs | mean | sd | stderr | diff vs {base} | stderr | p |",
                 "|---|---|---|---|---|---|---|---|"]
        for row in rows:
            lines.append(f"| {row.recipe} | {row.n} | {row.mean:.4f} | {row.sd:.4f} | {row.se:.4f} | "
                         f"{row.diff:+.4f} | {row.diff_se:.4f} | {row.p:.3g} |")
        sections.append("\n".join(lines))
    report = ("# Post-training methods from the same SFT model\n\nEvery method starts from models/sft; seeds "
              f"{', '.join(map(str, sorted({s for r in by_method.values() for s in r})))}. Differences to sft are "
              "over seeds (sft itself is evaluated once: its value stands for every seed). time_s: wall time of "
              "one run (training and evaluation) on this machine.\n\n" + "\n\n".join(sections) + "\n")
    return metrics, report
