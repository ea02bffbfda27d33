"""eval: one model stage evaluated like every other (dvc.yaml runs it as eval@<stage> for
pretrain, anneal, sft, dpo and rlvr, so a changed model re-evaluates only itself).

Reads:  models/<stage>/, data/mix/val/ (bits per byte), data/eval_sets/ and evals/ (your own
        multiple-choice and preference files, harness task files in harness_tasks/), the tasks'
        test split (from params), harness.data_dir (the harness tasks' datasets, offline)
Writes: data/eval/<stage>/metrics.json (bpb per domain, task accuracy, multiple-choice acc and
        acc_norm, preference accuracy, the lm-evaluation-harness tasks of `harness`),
        data/eval/<stage>/generations.jsonl, data/eval/<stage>/items/; the report stage gathers
        every stage's numbers into metrics/eval.json
Params: common (seed), tasks, eval, harness
Run:    dvc repro eval@sft   (or python -m stages.eval sft)
"""

import sys
from pathlib import Path

from lmbuild.eval.core import CoreError
from lmbuild.eval.data import EvalDataError
from lmbuild.eval.harness import HarnessError, evaluate_with_harness
from lmbuild.eval.model_eval import evaluate_stage
from lmbuild.eval.multiple_choice import TaskFileError
from lmbuild.model_stages import MODEL_STAGES
from lmbuild.params import ParamsError, load_params_or_exit, stage_errors
from lmbuild.shards import ShardError

STAGES = MODEL_STAGES


def main() -> None:
    if len(sys.argv) != 2 or sys.argv[1] not in STAGES:
        print(f"usage: python -m stages.eval STAGE  (one of {', '.join(STAGES)})", file=sys.stderr)
        raise SystemExit(2)
    stage = sys.argv[1]
    params = load_params_or_exit("eval", shared=("tasks", "harness"))
    with stage_errors("eval", EvalDataError, TaskFileError, ShardError, ParamsError, FileNotFoundError, HarnessError,
                      CoreError, label=f"eval {stage}"):
        m = evaluate_with_harness(params, stage, Path("models") / stage, Path("data/eval") / stage,
                                  Path("data/mix/val"), evaluate_stage)
    mc = f", multiple choice {m['mc_acc_norm_mean']:.3f}" if "mc_acc_norm_mean" in m else ""
    print(f"eval {stage}: bpb {m['bpb']['all']:.3f}, task accuracy {m['task_accuracy']:.3f}{mc} "
          f"-> data/eval/{stage}", file=sys.stderr)


if __name__ == "__main__":
    main()
