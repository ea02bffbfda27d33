"""filter: keep documents that pass language ID and the C4, Gopher and FineWeb quality rules,
and mask PII in them.

Reads:  data/raw/<source>/*.parquet, the lid.176 model (assets/lid.176.ftz, from `make setup`)
Writes: data/filtered/<source>/*.parquet (kept, with `language` and `language_score`),
        data/filter_rejected/<source>/*.parquet (dropped, with the first failing rule as
        `reason`), metrics/filter.json (documents and characters removed per rule and source,
        PII counts), plots/filter_removals.csv
Params: common (workers, executor), filter (rules, domains, sources, batch_rows)
Run:    dvc repro filter   (or python -m stages.filter)
"""

import sys
from pathlib import Path

from lmbuild.filter.run import filter_corpus
from lmbuild.metrics import write_csv, write_metrics
from lmbuild.params import load_params_or_exit, stage_errors
from lmbuild.shards import ShardError

RAW = Path("data/raw")
KEPT = Path("data/filtered")
REJECTED = Path("data/filter_rejected")
METRICS = Path("metrics/filter.json")
PLOT = Path("plots/filter_removals.csv")


def main() -> None:
    params = load_params_or_exit("filter")
    # filter_corpus checks the bad-words file and the presidio extra before any work (ParamsError)
    with stage_errors("filter", FileNotFoundError, ShardError, label=False):
        metrics, plot_rows = filter_corpus(params, RAW, KEPT, REJECTED)
    write_metrics(METRICS, metrics)
    write_csv(PLOT, plot_rows, ["source", "rule", "documents", "chars"])
    print(f"filter: kept {metrics['documents_kept']} of {metrics['documents_in']} documents "
          f"({metrics['kept_fraction']:.1%}) -> {KEPT}", file=sys.stderr)


if __name__ == "__main__":
    main()
