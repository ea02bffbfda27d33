"""study_ablation: the data ablation study's runs (lmbuild/study/data_ablation.py), one cached DVC
unit per recipe's data and per (recipe, seed) proxy; its fit is `python -m stages.study_fit ablation`.

Reads:  data/raw, data/filtered, data/dedup, data/rated, data/mix (the main pipeline's: a recipe
        starts after the last stage it leaves alone), data/tokens, models/tokenizer,
        metrics/tokenize.json, the eval suite's inputs (data/eval_sets, evals/, the tasks)
Writes: data <recipe>:         studies/ablation/data/<recipe>/ (tokens/, tokenizer/, recipe.json)
        proxy <recipe> <seed>: studies/ablation/proxies/<recipe>-<seed>/ (metrics.json, model/,
                               live/, eval/metrics.json: the eval suite)
Params: common, filter, dedup, rate, mix, decontaminate, tokenize, pretrain, eval, tasks, studies
Run:    dvc repro studies/dvc.yaml:ablation_fit   (or python -m stages.study_ablation data|proxy ...)
"""

import sys

from lmbuild.eval.data import EvalDataError
from lmbuild.eval.multiple_choice import TaskFileError
from lmbuild.mix.plan import MixError
from lmbuild.params import load_params_or_exit, stage_errors
from lmbuild.shards import ShardError
from lmbuild.study.data_ablation import build_recipe, check_ablation, run_recipe_proxy
from lmbuild.study.proxies import StudyError
from lmbuild.tokenize.run import TokenizeError
from lmbuild.train.checkpoint import CheckpointError
from lmbuild.train.data import DataError
from lmbuild.train.model import ModelError
from lmbuild.train.trainer import TrainError

SECTIONS = ("filter", "dedup", "rate", "mix", "decontaminate", "tokenize", "pretrain", "eval", "tasks")
USAGE = "usage: python -m stages.study_ablation data RECIPE | proxy RECIPE SEED"

def main() -> None:
    args = sys.argv[1:]
    if not (args[:1] == ["data"] and len(args) == 2 or args[:1] == ["proxy"] and len(args) == 3 and args[2].isdigit()):
        print(USAGE, file=sys.stderr)
        raise SystemExit(2)
    params = load_params_or_exit("studies", shared=SECTIONS)
    name = f"study_ablation {' '.join(args)}"
    with stage_errors("studies", StudyError, MixError, TokenizeError, EvalDataError, TaskFileError, ShardError,
                      TrainError, DataError, ModelError, CheckpointError, OSError, label=name):
        check_ablation(params)
        if args[0] == "data":
            rec = build_recipe(params, args[1])
            summary = f"tokens in {rec['tokens']}"
        else:
            m = run_recipe_proxy(params, args[1], int(args[2]))
            summary = (f"held-out bpb {m['suite']['bpb']['all']:.4f}, cloze acc_norm "
                       f"{m['suite'].get('mc_acc_norm_mean', float('nan')):.3f}, {m['wall_time_s']:.0f} s")
    print(f"{name}: {summary}", file=sys.stderr)

if __name__ == "__main__":
    main()
