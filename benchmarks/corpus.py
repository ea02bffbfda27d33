"""Text for the data-stage benchmarks: the `text` column of a pipeline stage's Parquet shards."""

from __future__ import annotations

import glob

import pyarrow.parquet as pq


def load_parquet(pattern: str, limit_mib: float, skip_empty: bool = False) -> list[str]:
    """Texts of the shards matching `pattern`, in path order, up to `limit_mib` of UTF-8; null
    texts are skipped, and empty ones too with skip_empty."""
    texts, size = [], 0
    for path in sorted(glob.glob(pattern)):
        for batch in pq.ParquetFile(path).iter_batches(columns=["text"]):
            for text in batch.column(0).to_pylist():
                if text is None or (skip_empty and not text):
                    continue
                texts.append(text)
                size += len(text.encode())
                if size >= limit_mib * 2**20:
                    return texts
    return texts
