"""decontaminate: cut the eval sets' n-grams out of the pretrain and anneal mixes.

Reads:  data/mix/{pretrain,anneal,val}, data/eval_sets/, evals/ (your own eval sets)
Writes: data/decontam/{pretrain,anneal}/<source>/*.parquet (what tokenize encodes for training),
        data/decontam/removed/<split>/<source>/*.parquet (dropped documents, with the eval sets
        they matched), metrics/decontaminate.json (documents matched, masked, dropped, characters
        removed, per eval set; the overlap with every eval set before and after)
Params: common (seed, workers, executor), tasks, eval.bpb, eval.contamination (ngram, min_tokens),
        decontaminate (mode: mask | drop | off, drop_above, sets, splits)
Run:    dvc repro decontaminate   (or python -m stages.decontaminate)
"""

import sys
from pathlib import Path

from lmbuild.eval.data import EvalDataError
from lmbuild.eval.decontam_run import decontaminate
from lmbuild.eval.multiple_choice import TaskFileError
from lmbuild.metrics import write_metrics
from lmbuild.params import load_params_or_exit, stage_errors
from lmbuild.shards import ShardError

MIX = Path("data/mix")
OUT = Path("data/decontam")
METRICS = Path("metrics/decontaminate.json")


def main() -> None:
    params = load_params_or_exit("decontaminate", shared=("tasks", "eval"))
    # decontaminate checks that decontaminate.sets names eval sets that exist (ParamsError)
    with stage_errors("decontaminate", EvalDataError, TaskFileError, ShardError):
        metrics = decontaminate(params, MIX, OUT)
    write_metrics(METRICS, metrics)
    print(f"decontaminate: {params['decontaminate']['mode']} against {metrics['eval_items_checked']} eval items "
          f"-> {OUT}", file=sys.stderr)


if __name__ == "__main__":
    main()
