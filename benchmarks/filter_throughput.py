"""Throughput of the filter rules: vectorised (lmbuild.filter.rules) vs per-document reference.

Reads the `text` column of the Parquet shards matching --data (default: the acquire stage's
output, data/raw/*/*.parquet). If none match, it builds a corpus from the English Wikipedia dump
that gensim ships for its tests, with the markup stripped crudely by gensim's filter_wiki, one
document per article section, and says so.

Both implementations run with the rules' DEFAULTS, on one core (pyarrow's thread pool is set to
one thread), over the same documents in record batches of --batch-rows. The script checks that
both give identical reasons and texts (exit status 1 if not) and prints MB/s per core for each
and the speed-up, of the best and of the median of --repeat interleaved runs.

    python benchmarks/filter_throughput.py [--data 'data/raw/*/*.parquet'] [--repeat 3]
"""

from __future__ import annotations

import argparse
import bz2
import glob
import os
import re
import statistics
import sys
import time

import pyarrow as pa
import pyarrow.parquet as pq

from lmbuild.filter.reference import apply_rules_reference
from lmbuild.filter.rules import DEFAULTS, apply_rules

WIKI_DUMP = ("gensim/test/test_data/"
             "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2")


def load_parquet(pattern: str, limit_mb: float) -> list[str]:
    texts, size = [], 0
    for path in sorted(glob.glob(pattern)):
        for batch in pq.ParquetFile(path).iter_batches(columns=["text"]):
            for text in batch.column(0).to_pylist():
                if text is None:
                    continue
                texts.append(text)
                size += len(text.encode())
                if size >= limit_mb * 2**20:
                    return texts
    return texts


def load_wiki_sections() -> list[str]:
    """Articles of gensim's test dump, markup stripped, split at section headings."""
    import gensim
    from gensim.corpora.wikicorpus import extract_pages, filter_wiki

    path = os.path.join(os.path.dirname(os.path.dirname(gensim.__file__)), WIKI_DUMP)
    texts = []
    with bz2.BZ2File(path) as fh:
        for _title, text, _pageid in extract_pages(fh):
            body = re.sub(r"\n{3,}", "\n\n", filter_wiki(text)).strip()
            texts += [s.strip() for s in re.split(r"\n=+[^=\n]+=+\n", body) if s.strip()]
    return texts


def batches(texts: list[str], rows: int) -> list[pa.Array]:
    return [pa.array(texts[i:i + rows], pa.string()) for i in range(0, len(texts), rows)]


def run_vectorised(arrays: list[pa.Array]) -> tuple[float, list, list]:
    start = time.perf_counter()
    results = [apply_rules(a, DEFAULTS) for a in arrays]
    elapsed = time.perf_counter() - start
    texts = [t for r in results for t in r.text.to_pylist()]
    reasons = [x for r in results for x in r.reason.to_pylist()]
    return elapsed, texts, reasons


def run_reference(texts: list[str]) -> tuple[float, list, list]:
    start = time.perf_counter()
    results = [apply_rules_reference(t, DEFAULTS) for t in texts]
    elapsed = time.perf_counter() - start
    return elapsed, [r[0] for r in results], [r[1] for r in results]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="data/raw/*/*.parquet", help="glob of Parquet shards")
    parser.add_argument("--limit-mb", type=float, default=64.0, help="read at most this much text")
    parser.add_argument("--batch-rows", type=int, default=4096, help="documents per record batch")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per path, interleaved")
    args = parser.parse_args()

    pa.set_cpu_count(1)
    pa.set_io_thread_count(1)
    texts = load_parquet(args.data, args.limit_mb)
    if texts:
        print(f"corpus: {args.data}")
    else:
        texts = load_wiki_sections()
        print(f"corpus: no Parquet matches {args.data!r}; using gensim's Wikipedia test dump "
              f"(markup stripped crudely, one document per section)")
    size_mb = sum(len(t.encode()) for t in texts) / 2**20
    print(f"documents: {len(texts)}, {size_mb:.2f} MB of UTF-8 text")

    arrays = batches(texts, args.batch_rows)
    vec_times, ref_times = [], []
    for _ in range(args.repeat):
        t, vec_texts, vec_reasons = run_vectorised(arrays)
        vec_times.append(t)
        t, ref_texts, ref_reasons = run_reference(texts)
        ref_times.append(t)
    vec_time, ref_time = min(vec_times), min(ref_times)
    vec_med, ref_med = statistics.median(vec_times), statistics.median(ref_times)

    differ = [i for i in range(len(texts))
              if vec_reasons[i] != ref_reasons[i] or vec_texts[i] != ref_texts[i]]
    kept = sum(r is None for r in vec_reasons)
    print(f"kept: {kept} of {len(texts)} documents")
    print(f"{args.repeat} interleaved runs each; best (median):")
    print(f"vectorised: {size_mb / vec_time:8.2f} MB/s per core ({vec_time:.3f} s; "
          f"median {size_mb / vec_med:.2f} MB/s)")
    print(f"reference:  {size_mb / ref_time:8.2f} MB/s per core ({ref_time:.3f} s; "
          f"median {size_mb / ref_med:.2f} MB/s)")
    print(f"speed-up:   {ref_time / vec_time:8.2f}x (medians: {ref_med / vec_med:.2f}x)")
    if differ:
        print(f"DECISIONS DIFFER on {len(differ)} documents, e.g. #{differ[0]}: "
              f"vectorised {vec_reasons[differ[0]]!r}, reference {ref_reasons[differ[0]]!r}",
              file=sys.stderr)
        return 1
    print("decisions identical on every document")
    return 0


if __name__ == "__main__":
    sys.exit(main())
