"""eval_sets: the demo's eval sets, built from data no model trains on.

Reads:  data/mix/val/ (held-out documents), the tasks' test split (from params)
Writes: data/eval_sets/mc/<task>.jsonl (cloze_<domain> continuation choice, task_choice near-miss
        answers), data/eval_sets/preferences.jsonl (correct vs near-miss worked answers),
        data/eval_sets/manifest.json
Params: common (seed), tasks (families, difficulty, test_examples), eval.sets
Run:    dvc repro eval_sets   (or python -m stages.eval_sets)
"""

import sys
from pathlib import Path

from lmbuild.eval.data import EvalDataError
from lmbuild.eval.pipeline import build_sets
from lmbuild.params import ParamsError, load_params_or_exit, stage_errors
from lmbuild.shards import ShardError


def main() -> None:
    params = load_params_or_exit("eval", shared=("tasks",))
    with stage_errors("eval_sets", EvalDataError, ShardError, ParamsError):
        counts = build_sets(params, Path("data/mix/val"))
    tasks = ", ".join(f"{k} {v}" for k, v in counts["mc"].items())
    print(f"eval_sets: multiple choice ({tasks}), {counts['preferences']} preference pairs -> data/eval_sets",
          file=sys.stderr)


if __name__ == "__main__":
    main()
