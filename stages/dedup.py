"""dedup: remove exact and near-duplicate documents across all sources (MinHash LSH), then cut
repeated paragraphs (exact, corpus-wide) out of the documents kept.

Reads:  data/filtered/<source>/*.parquet
Writes: data/dedup/<source>/<shard>.parquet (kept documents, same rows order, plus
        `dup_cluster_size`), data/dedup_removed/<source>/<shard>.parquet (removed ones, plus
        `duplicate_of` = the keeper's id and `dup_kind` = exact | near, or paragraphs with
        duplicate_of "" for a document that paragraph dedup emptied), metrics/dedup.json
        (duplicate rates overall and per source, clusters, LSH counts, `paragraphs.*`),
        plots/dedup_cluster_sizes.csv (size,clusters), reports/dedup_clusters.md (a sample of
        clusters with the start of each member's text)
Params: common (seed, workers, executor), dedup (normalize, exact, minhash: ngram, num_perm,
        bands, rows or threshold, seed; source_priority, batch_rows, report, paragraphs: enabled,
        unit, method, min_chars, skip_domains, min_doc_chars, partition_rows)
Run:    dvc repro dedup   (or python -m stages.dedup)
"""

import sys
from pathlib import Path

from lmbuild.dedup.config import resolve
from lmbuild.dedup.run import dedup_corpus
from lmbuild.metrics import write_csv, write_metrics
from lmbuild.params import check_or_exit, load_params_or_exit, stage_errors
from lmbuild.shards import ShardError, atomic_write_text

FILTERED = Path("data/filtered")
KEPT = Path("data/dedup")
REMOVED = Path("data/dedup_removed")
METRICS = Path("metrics/dedup.json")
PLOT = Path("plots/dedup_cluster_sizes.csv")
REPORT = Path("reports/dedup_clusters.md")


def main() -> None:
    params = load_params_or_exit("dedup")
    cfg = check_or_exit("dedup", resolve, params)
    with stage_errors("dedup", FileNotFoundError, ShardError, label=False):
        metrics, histogram, report = dedup_corpus(cfg, params["common"], FILTERED, KEPT, REMOVED)
    write_metrics(METRICS, metrics)
    write_csv(PLOT, histogram, ["size", "clusters"])
    atomic_write_text(REPORT, report)
    print(f"dedup: kept {metrics['documents_kept']} of {metrics['documents_in']} documents "
          f"(exact duplicates {metrics['exact_duplicate_rate']:.1%}, near {metrics['near_duplicate_rate']:.1%}) "
          f"-> {KEPT}", file=sys.stderr)


if __name__ == "__main__":
    main()
