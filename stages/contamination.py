"""contamination: n-gram overlap (13-grams, as GPT-3 and OLMo report) between every eval set and
the training data of every model stage.

Reads:  data/eval_sets/, evals/, data/mix/val (held-out documents), data/decontam/ (pretrain,
        anneal: the training mixes after decontamination), data/sft/train.jsonl, data/dpo/pairs.jsonl (train split), the rlvr prompt pool
        (from params)
Writes: data/eval/contamination.json ({stage: {eval set: items, checked, contaminated,
        overlap_rate}}); the report stage puts it under <stage>.contamination in metrics/eval.json
Params: common (seed), tasks, rlvr.prompts_per_family, eval.contamination
Run:    dvc repro contamination   (or python -m stages.contamination)
"""

import json
import sys
from pathlib import Path

from lmbuild.eval.data import EvalDataError
from lmbuild.eval.multiple_choice import TaskFileError
from lmbuild.eval.pipeline import contamination
from lmbuild.params import ParamsError, load_params_or_exit, stage_errors
from lmbuild.shards import ShardError, atomic_write_text

OUT = Path("data/eval/contamination.json")


def main() -> None:
    params = load_params_or_exit("eval", shared=("tasks", "rlvr"))
    with stage_errors("contamination", EvalDataError, TaskFileError, ShardError, ParamsError):
        result = contamination(params, Path("data/mix/val"))
    atomic_write_text(OUT, json.dumps(result, indent=1, sort_keys=True) + "\n")
    worst = max(((s, k, v["overlap_rate"]) for s, sets in result.items() for k, v in sets.items()),
                key=lambda x: x[2], default=None)
    note = f"; highest overlap {worst[2]:.3f} ({worst[1]} vs {worst[0]} training data)" if worst else ""
    print(f"contamination: {len(result)} stages checked{note} -> {OUT}", file=sys.stderr)


if __name__ == "__main__":
    main()
