"""study_method: one run of the post-training methods study, its baseline, or its fit.

Reads:  models/sft (every method starts there), data/dpo (the dpo methods' pairs),
        models/reward_model (the shared evaluation's judge and held-out reward)
Writes: method: studies/methods/runs/<name>-<seed>/ (model/, live/, metrics.json)
        baseline: studies/methods/baseline.json (models/sft under the shared evaluation)
        fit: studies/methods/report.md, metrics/study_methods.json
Params: common, tasks, sft (its chat files' held-out prompts), judge, dpo or rlvr (the method's base stage), studies.methods
Run:    python -m stages.study_method <name> <seed> | baseline | fit   (normally `dvc repro studies/dvc.yaml`)
"""

import json
import sys
from pathlib import Path

from lmbuild.metrics import write_metrics
from lmbuild.params import load_params_or_exit, stage_errors
from lmbuild.shards import atomic_write_text
from lmbuild.study.methods_study import RUNS, SFT, baseline_figures, evaluate_shared, fit, run_method
from lmbuild.study.proxies import read_proxies
from lmbuild.train.checkpoint import CheckpointError
from lmbuild.train.trainer import TrainError

BASELINE = Path("studies/methods/baseline.json")


def main() -> None:
    args = sys.argv[1:]
    params = load_params_or_exit("studies", shared=("tasks", "sft", "dpo", "rlvr", "judge"))
    name = f"study_method {' '.join(args)}"
    with stage_errors("studies", TrainError, CheckpointError, ValueError, OSError, label=name):
        if args == ["baseline"]:
            figures = baseline_figures(params, SFT)
            atomic_write_text(BASELINE, json.dumps(figures, indent=1, sort_keys=True) + "\n")
            summary = ", ".join(f"{k} {v:.4f}" for k, v in sorted(figures.items()))
        elif args == ["fit"]:
            metrics, report = fit(params, read_proxies(RUNS), json.loads(BASELINE.read_text()))
            atomic_write_text(RUNS.parent / "report.md", report)
            write_metrics(Path("metrics/study_methods.json"), metrics)
            summary = "; ".join(f"{m} {v['mean']:.3f} +- {v['stderr']:.3f}"
                                for m, v in metrics.get("task_accuracy", {}).items())
        else:
            method, seed = args[0], int(args[1])
            m = run_method(params, method, seed, evaluate_shared=lambda d: evaluate_shared(params, d))
            summary = (f"held-out task accuracy {m['task_accuracy']:.3f}, win rate vs sft "
                       f"{m.get('win_rate', float('nan')):.3f}, {m['time_s']:.0f} s")
    print(f"{name}: {summary}", file=sys.stderr)


if __name__ == "__main__":
    main()
