"""Throughput of the filter's language ID (fastText lid.176) in documents per second per core.

Texts are the acquire stage's output (data/raw by default), each cut to --max-chars characters
as the filter stage does; only documents at least that long are used, so every prediction sees
the full --max-chars. The whole path is timed: truncation and newline flattening with pyarrow,
then fastText's batch predict, on one core.

    python benchmarks/langid_throughput.py [--data 'data/raw/*/*.parquet'] [--max-chars 1000]
"""

from __future__ import annotations

import argparse
import glob
import time

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from lmbuild.filter import langid


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="data/raw/*/*.parquet")
    parser.add_argument("--model", default="assets/lid.176.ftz")
    parser.add_argument("--max-chars", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    pa.set_cpu_count(1)

    tables = [pq.read_table(p, columns=["text"]) for p in sorted(glob.glob(args.data))]
    if not tables:
        raise SystemExit(f"no Parquet matches {args.data!r}: run `dvc repro acquire` first")
    texts = pa.concat_tables(tables).column("text").combine_chunks()
    texts = texts.filter(pc.greater_equal(pc.utf8_length(texts), args.max_chars))
    langid.load_model(args.model)
    best = float("inf")
    for _ in range(args.repeat):
        start = time.perf_counter()
        langs, _ = langid.predict(texts, args.model, args.max_chars)
        best = min(best, time.perf_counter() - start)
    top = pc.value_counts(langs).to_pylist()
    top = sorted(top, key=lambda d: -d["counts"])[:5]
    print(f"documents: {len(texts)} of >= {args.max_chars} characters, truncated to {args.max_chars}")
    print(f"language ID: {len(texts) / best:,.0f} documents/s per core ({best:.3f} s)")
    print("top languages: " + ", ".join(f"{d['values']} {d['counts']}" for d in top))


if __name__ == "__main__":
    main()
