"""acquire: read every source in `acquire.sources` into document shards.

Reads:  the sources params name (files, globs, WARC, Hugging Face datasets, demo data that
        installed packages ship)
Writes: data/raw/<source>/part-*.parquet (documents), data/raw/manifest.json (provenance:
        origin, licence, counts, bytes), data/raw_quarantine/<source>/part-*.parquet (bad
        records with their reason), metrics/acquire.json
Params: common (seed, workers, executor), acquire (sources, max_chars, shard_mb)
Run:    dvc repro acquire   (or python -m stages.acquire)
"""

import sys
from pathlib import Path

from lmbuild.acquire.readers import SourceError
from lmbuild.acquire.run import acquire
from lmbuild.metrics import write_metrics
from lmbuild.params import load_params_or_exit, stage_errors

RAW = Path("data/raw")
QUARANTINE = Path("data/raw_quarantine")
METRICS = Path("metrics/acquire.json")


def main() -> None:
    params = load_params_or_exit("acquire")
    with stage_errors("acquire", SourceError, label=False):
        metrics = acquire(params, RAW, QUARANTINE)
    write_metrics(METRICS, metrics)
    print(f"acquire: {metrics['documents']} documents, {metrics['bytes'] / 2**20:.1f} MiB, "
          f"{metrics['quarantined']} quarantined -> {RAW}", file=sys.stderr)


if __name__ == "__main__":
    main()
