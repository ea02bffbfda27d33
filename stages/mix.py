"""mix: draw the pretrain, anneal and validation document sets from the rated pool.

Reads:  data/rated/<source>/*.parquet (documents with quality_<rater> scores)
Writes: data/mix/{pretrain,anneal,val}/<source>/*.parquet (documents plus `repeat`, one row per
        copy), metrics/mix.json (requested vs achieved share, tokens, repetitions per domain),
        plots/mix_shares.csv
Params: common (seed, workers, executor), mix (bytes_per_token, on_shortfall, val, pretrain,
        anneal: token_budget and per-domain weight, max_epochs, select)
Run:    dvc repro mix   (or python -m stages.mix)
"""

import sys
from pathlib import Path

from lmbuild.metrics import write_csv, write_metrics
from lmbuild.mix.plan import MixError
from lmbuild.mix.run import mix
from lmbuild.params import load_params_or_exit, stage_errors
from lmbuild.shards import ShardError

POOL = Path("data/rated")
OUT = Path("data/mix")
METRICS = Path("metrics/mix.json")
PLOT = Path("plots/mix_shares.csv")


def main() -> None:
    params = load_params_or_exit("mix")
    with stage_errors("mix", MixError, ShardError, label=False):
        metrics, rows = mix(params, POOL, OUT)
    write_metrics(METRICS, metrics)
    write_csv(PLOT, rows, ["split", "domain", "requested_share", "achieved_share", "tokens_est"])
    print(f"mix: pretrain {metrics['pretrain']['tokens_est']:,.0f} tokens (est.), anneal "
          f"{metrics['anneal']['tokens_est']:,.0f}, val {metrics['val']['documents']} documents -> {OUT}",
          file=sys.stderr)


if __name__ == "__main__":
    main()
