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
from lmbuild.params import ParamsError, exit_on_params_error, load_params_or_exit
from lmbuild.shards import ShardError

MIX = Path("data/mix")
OUT = Path("data/decontam")
METRICS = Path("metrics/decontaminate.json")


def main() -> None:
    params = load_params_or_exit("decontaminate", shared=("tasks", "eval"))
    try:
        metrics = decontaminate(params, MIX, OUT)
    except ParamsError as exc:  # decontaminate.sets naming an eval set that does not exist
        exit_on_params_error("decontaminate", exc)
    except (EvalDataError, TaskFileError, ShardError) as exc:
        print(f"decontaminate: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    write_metrics(METRICS, metrics)
    print(f"decontaminate: {params['decontaminate']['mode']} against {metrics['eval_items_checked']} eval items "
          f"-> {OUT}", file=sys.stderr)


if __name__ == "__main__":
    main()
