"""The post-training methods study: preference optimisation and RL methods trained from the same
SFT model over several seeds, side by side on the same held-out problems.

A method is a base stage (dpo or rlvr) with `studies.methods.<stage>.<name>` laid over that
stage's params section (validated as that section, so a typo is a one-line error naming
studies.methods.<stage>.<name>). Every run starts from models/sft: the dpo methods train on
dpo_pairs' pairs (sampled from and referenced to models/sft), the RL methods sample from
models/sft themselves. Each run is one cached DVC unit (studies/dvc.yaml,
`method_<stage>@<name>-<seed>`), so a change to one method's params reruns only that method's runs.

Each run reports what its stage reports (held-out greedy task accuracy with its paired change from
models/sft, by item) plus the evaluation every method shares (`evaluate_shared`: the held-out
reward under the judge section's reward model, and the win rate against models/sft judged by the
judge section's judge, models/reward_model by default; the judging is lmbuild.eval.judge, the
prompts and answers lmbuild.eval.judge_run).
The fit ranks the methods by each figure over seeds with each difference to the baseline (paired
by seed) and its standard error (lmbuild.study.ablation.rank).
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from ..eval.judge import lc_win_rate, win_rate
from ..eval.judge_run import answers, heldout_prompts, make_judge
from ..lm.reward import load_reward_model, score
from ..params import ParamsError, deep_merge, validate_section
from ..posttrain import dpo, ppo_job, rlvr
from ..stats import mean_stderr
from .ablation import rank

RUNS = Path("studies/methods/runs")
SFT = Path("models/sft")
# the figures the fit ranks: (metric key in a run's metrics, higher is better)
FIGURES = {"task_accuracy": True, "task_accuracy_gain": True, "heldout_reward": True, "win_rate": True,
           "lc_win_rate": True, "time_s": False}


BASE_STAGES = ("dpo", "rlvr")   # studies.methods.<stage>: the methods built on each


def method_params(methods: dict, name: str) -> tuple[str, dict]:
    """(base stage, the method's params over that stage's section) of method `name`."""
    found = [(stage, methods[stage][name]) for stage in BASE_STAGES if name in methods[stage]]
    if len(found) != 1:
        have = ", ".join(f"{s}.{n}" for s in BASE_STAGES for n in methods[s])
        why = "no method" if not found else "two methods named"
        raise ParamsError([f"params.yaml: studies.methods: {why} {name!r} (have {have}); names must be unique"])
    return found[0]


def method_section(params: dict, name: str, seed: int) -> tuple[str, dict]:
    """(base stage, its params section for this run): the stage's section with the method's
    params over it and the run's training seed."""
    stage, over = method_params(params["studies"]["methods"], name)
    steps = params["studies"]["methods"]["rl_steps"]
    if stage == "rlvr" and steps is not None:
        over = {"steps": steps, **over}
    try:
        section = validate_section(stage, deep_merge(params[stage], {**over, "seed": seed}))
    except ParamsError as exc:
        raise ParamsError([line.replace(f"params.yaml: {stage}.", f"params.yaml: studies.methods.{stage}.{name}.", 1)
                           for line in exc.problems]) from None
    return stage, section


def run_dir(name: str, seed: int) -> Path:
    return RUNS / f"{name}-{seed}"


def run_method(params: dict, name: str, seed: int, *, evaluate_shared) -> dict:
    """Train one method from models/sft with one seed into studies/methods/runs/<name>-<seed>/
    (model/, live/, metrics.json); evaluate_shared(model_dir) adds the shared figures."""
    stage, section = method_section(params, name, seed)
    job_params = {**params, stage: section}
    out = run_dir(name, seed)
    scratch = out.with_name(out.name + ".ckpt")  # checkpoints: resumable, not kept
    dirs = dict(out_model=out / "model", ckpt_dir=scratch, live_dir=out / "live")
    t0 = time.perf_counter()
    if stage == "dpo":
        pairs_dir = Path("data/dpo")
        if "pairs" in method_params(params["studies"]["methods"], name)[1]:
            # its own pair set (e.g. another scorer): sampled from models/sft with dpo_pairs' seed, so
            # the candidates are dpo_pairs' own and only what the method changes differs
            pairs_dir = scratch / "pairs"
            pm = dpo.build_pairs(job_params, ref_model=SFT, out_dir=pairs_dir)
        m = dpo.run(job_params, init_model=SFT, pairs_dir=pairs_dir, rounds_dir=scratch / "rounds", **dirs)
        if pairs_dir != Path("data/dpo"):
            m.update({f"pair_set_{k}": v for k, v in pm.items() if isinstance(v, (int, float))})
    elif section["algorithm"] == "ppo":
        scorer, rm = ppo_job.make_scorer(job_params)
        m = ppo_job.run(job_params, init_model=SFT, scorer=scorer, reward_model=rm, **dirs)
    else:
        m = rlvr.run(job_params, init_model=SFT, **dirs)
    m = {"method": name, "stage": stage, "seed": seed, "train_time_s": m.get("wall_time_s", float("nan")),
         "time_s": time.perf_counter() - t0, "start_task_accuracy": m["start"]["task_accuracy"],
         **{k: v for k, v in m.items() if not isinstance(v, dict)},
         "settings": {k: v for k, v in section.items() if not isinstance(v, dict)}}
    m.update(evaluate_shared(out / "model"))
    (out / "metrics.json").write_text(json.dumps(m, indent=1, sort_keys=True) + "\n")
    shutil.rmtree(scratch, ignore_errors=True)
    return m


def _answers_and_prompts(params: dict, model_dir: Path, root: Path) -> tuple[list[dict], list[str]]:
    jp = params["judge"]
    prompts = heldout_prompts(params, root)
    return prompts, answers(model_dir, prompts, jp["max_new_tokens"] or params["tasks"]["max_new_tokens"],
                            jp["batch_size"])


def heldout_reward(params: dict, prompts: list[dict], texts: list[str], root: Path) -> dict[str, float]:
    """The reward model's (judge.path's, when it is one) mean score of greedy answers to the
    held-out prompts, with its standard error over prompts."""
    if params["judge"]["type"] != "sequence_classification":
        return {}
    model, tok = load_reward_model(root / params["judge"]["path"], "judge.path")
    r = score(model, tok, [p["messages"] for p in prompts], texts, batch_size=params["judge"]["batch_size"])
    return {"heldout_reward": sum(r) / len(r), "heldout_reward_stderr": mean_stderr(r)}


def evaluate_shared(params: dict, model_dir: Path, root: Path = Path(".")) -> dict[str, float]:
    """What every method is measured by beyond its stage's metrics: the held-out reward of its
    greedy answers, and their win rate (raw and length-controlled) against models/sft's answers
    to the same held-out prompts, judged by the judge section's judge (lmbuild.eval.judge)."""
    prompts, mine = _answers_and_prompts(params, model_dir, root)
    _, base = _answers_and_prompts(params, root / SFT, root)
    prefs = make_judge(params["judge"], root).preferences([p["messages"] for p in prompts], mine, base)
    lens, base_lens = [len(a) for a in mine], [len(b) for b in base]
    return {**heldout_reward(params, prompts, mine, root), **win_rate(prefs), **lc_win_rate(prefs, lens, base_lens),
            "mean_length": sum(lens) / len(lens), "sft_mean_length": sum(base_lens) / len(base_lens)}


def baseline_figures(params: dict, sft_dir: Path, root: Path = Path(".")) -> dict[str, float]:
    """models/sft under the shared evaluation: its held-out reward; a win rate of 0.5 against
    itself and a task-accuracy change of 0 by definition (its task accuracy comes from the runs'
    own start measurement, at their precision)."""
    prompts, texts = _answers_and_prompts(params, root / sft_dir, root)
    return {**heldout_reward(params, prompts, texts, root), "win_rate": 0.5, "lc_win_rate": 0.5,
            "task_accuracy_gain": 0.0, "mean_length": sum(map(len, texts)) / len(texts)}


def fit(params: dict, runs: dict[str, dict], baseline_figures: dict[str, float]) -> tuple[dict, str]:
    """Rank the methods on every figure over their seeds against the SFT model (the baseline,
    one deterministic evaluation: the same value for every seed)."""
    cfg = params["studies"]["methods"]
    by_method: dict[str, dict[int, dict]] = {}
    for rec in runs.values():
        by_method.setdefault(rec["method"], {})[int(rec["seed"])] = rec
    if not by_method:
        raise ValueError("studies.methods: no finished runs under studies/methods/runs")
    starts = [float(r["start_task_accuracy"]) for r in runs.values() if "start_task_accuracy" in r]
    baseline_figures = dict(baseline_figures)
    if starts:  # every run measured models/sft on the same items before training: one value
        baseline_figures["task_accuracy"] = sum(starts) / len(starts)
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
        # sft where it has the figure; else studies.methods.baseline_method, or the first method by name
        base = "sft" if "sft" in values else cfg["baseline_method"] if cfg["baseline_method"] in values \
            else sorted(values)[0]
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
