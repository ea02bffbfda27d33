"""study_proxy: one proxy run of a study (a small pretrain on the pool split), a cached DVC unit.

Reads:  data/tokens (pool, val), models/tokenizer, metrics/tokenize.json; the chosen mixtures of
        earlier studies where asked (studies/<study>/weights.json); doremi: the reference proxy
Writes: studies/<study>/proxies/<name>/ (metrics.json: held-out loss and bits per byte per
        domain, the mixture read; model/; live/: curves, weights over training)
Params: common, pretrain, mix (the prior), studies
Run:    python -m stages.study_proxy mixture <id>          (a RegMix candidate; 0 = the prior)
        python -m stages.study_proxy doremi reference | proxy
        python -m stages.study_proxy compare <default|uniform|regmix|doremi> <seed>   (proxy size)
        python -m stages.study_proxy compare_full <default|uniform|regmix|doremi> <seed>  (demo size)
        python -m stages.study_proxy scaling <name> <hidden_size> <num_layers> <max_tokens>
        (normally through `dvc repro studies/dvc.yaml`)
"""

import json
import sys
from pathlib import Path

from lmbuild.params import load_params_or_exit, stage_errors
from lmbuild.study.checks import check_study
from lmbuild.study.proxies import StudyError, proxy_job, run_proxy, write_doremi
from lmbuild.train.checkpoint import CheckpointError
from lmbuild.train.data import DataError
from lmbuild.train.model import ModelError
from lmbuild.train.trainer import TrainError

TOKENS, TOKENIZER = Path("data/tokens"), Path("models/tokenizer")


def main() -> None:
    study, args = sys.argv[1], sys.argv[2:]
    params = load_params_or_exit("studies", shared=("pretrain", "mix"))
    name = f"study_proxy {study} {' '.join(args)}"
    with stage_errors("studies", StudyError, TrainError, DataError, ModelError, CheckpointError, OSError, label=name):
        check_study(params, TOKENS, study)  # a study whose fit could never run stops at its first proxy
        job_params, mixture, out, seed, extra = proxy_job(params, TOKENS, study, args)
        tok_metrics = json.loads(Path("metrics/tokenize.json").read_text())
        m = run_proxy(job_params, mixture, out, TOKENS, TOKENIZER, tok_metrics, seed, extra)
    if study == "doremi" and args == ["proxy"]:  # the study's result: the weights averaged over training
        write_doremi(m, Path("studies/doremi/weights.json"))
    print(f"{name}: held-out bpb {m['bpb_mean']:.4f} (mean over domains), {m['tokens_seen']:,} tokens, "
          f"{m['wall_time_s']:.0f} s -> {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
