"""rate: add quality scores from the raters in `rate.raters` to every document.

Reads:  data/dedup/<source>/*.parquet; per rater its inputs (fasttext: positive_files;
        bradley_terry: the judgments file; hf_classifier: the model directory)
Writes: data/rated/<source>/<same file name>.parquet (the input columns + one float32
        `quality_<name>` per rater, same rows in the same order), models/raters/<name>/
        (the trained model and rater.json: what it was trained on), metrics/rate.json (held-out
        accuracy / agreement and training sizes per rater; score mean and p10/p50/p90 per rater
        and source), plots/rate_scores.csv (score histograms per rater and source)
Params: common (seed, workers, executor), rate (raters, batch_rows, histogram_bins)
Run:    dvc repro rate   (or python -m stages.rate)
"""

import sys
from pathlib import Path

from lmbuild.metrics import write_csv, write_metrics
from lmbuild.params import load_params_or_exit, stage_errors
from lmbuild.rate.run import rate_corpus
from lmbuild.shards import ShardError

DEDUP = Path("data/dedup")
RATED = Path("data/rated")
MODELS = Path("models/raters")
METRICS = Path("metrics/rate.json")
PLOT = Path("plots/rate_scores.csv")


def main() -> None:
    params = load_params_or_exit("rate")
    # rate_corpus checks the raters (their files, their sources) before any work (ParamsError)
    with stage_errors("rate", FileNotFoundError, ShardError, label=False):
        metrics, plot_rows, timing = rate_corpus(params, DEDUP, RATED, MODELS)
    write_metrics(METRICS, metrics)
    write_csv(PLOT, plot_rows, ["rater", "source", "bin_low", "bin_high", "documents"])
    rate = timing["documents"] / timing["seconds"] if timing["seconds"] else 0.0
    print(f"rate: scored {timing['documents']} documents with {len(metrics['raters'])} rater(s) in "
          f"{timing['seconds']:.1f} s ({rate:.0f} docs/s) -> {RATED}", file=sys.stderr)


if __name__ == "__main__":
    main()
