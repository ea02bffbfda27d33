"""judge: judged win rates of the chat stages against a baseline stage on held-out prompts, raw
and length-controlled (AlpacaEval 2, Dubois et al. 2024), with standard errors.

Reads:  models/<stage>/ for every stage in judge.stages and judge.baseline, the judge model
        (judge.path; models/reward_model by default), sft's chat files (their held-out prompts)
Writes: metrics/judge.json (flat: <stage>.win_rate, win_rate_stderr, lc_win_rate,
        lc_win_rate_stderr, mean_length, ...), data/judge/judgements.jsonl (per prompt: both
        answers and the preference)
Params: common (seed: the held-out problems), tasks, sft.sources (chat files), judge
Run:    dvc repro judge   (or python -m stages.judge)
"""

import sys
from pathlib import Path

from lmbuild.metrics import write_metrics
from lmbuild.params import load_params_or_exit, stage_errors
from lmbuild.eval.judge_run import run

METRICS = Path("metrics/judge.json")


def main() -> None:
    params = load_params_or_exit("judge", shared=("tasks", "sft"))
    with stage_errors("judge", ValueError, OSError):
        metrics = run(params, out_items=Path("data/judge/judgements.jsonl"))
    write_metrics(METRICS, metrics)
    rates = ", ".join(f"{s} {m['win_rate']:.3f} (LC {m['lc_win_rate']:.3f})" for s, m in metrics.items()
                      if "win_rate" in m)
    print(f"judge: win rates against {params['judge']['baseline']}: {rates or 'none'} -> {METRICS}", file=sys.stderr)


if __name__ == "__main__":
    main()
