"""Throughput of the filter rules: vectorised (lmbuild.filter.rules) vs per-document reference.

Reads the `text` column of the Parquet shards matching --data (default: the acquire stage's
output, data/raw/*/*.parquet). If none match, it builds a corpus from the English Wikipedia dump
that gensim ships for its tests, with the markup stripped crudely by gensim's filter_wiki, one
document per article section, and says so.

Both implementations run with the rules' DEFAULTS, on one core (pyarrow's thread pool is set to
one thread), over the same documents in record batches of --batch-rows. The script checks that
both give identical reasons and texts (exit status 1 if not) and prints MiB/s per core for each
and the speed-up, of the best and of the median of --repeat interleaved runs.

The peer: where datatrove is installed (`pip install -e '.[bench]'`), its four heuristic filters
(C4QualityFilter, GopherRepetitionFilter, GopherQualityFilter, FineWebQualityFilter, with their
default thresholds, the published ones) run per document as a datatrove pipeline does, a
document going to the next filter only if the one before kept it, over --peer-mb of the same
documents (a seeded random sample); the vectorised rules are timed on that same text for the ratio, and the
share of documents both keep or both drop is printed (the rule sets are not identical: see
docs/testing-and-benchmarks.md, "Benchmarks", for where their definitions differ).

    python benchmarks/filter_throughput.py [--data 'data/raw/*/*.parquet'] [--repeat 3] [--peer-mb 4]
"""

from __future__ import annotations

import argparse
import bz2
import os
import random
import re
import statistics
import sys
import time

import pyarrow as pa

from corpus import load_parquet
from lmbuild.filter.reference import apply_rules_reference
from lmbuild.filter.rules import DEFAULTS, apply_rules

WIKI_DUMP = ("gensim/test/test_data/"
             "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2")


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


def run_datatrove(texts: list[str]) -> tuple[float, list[bool]] | None:
    """Seconds for datatrove's four filters over the texts, and which documents they keep."""
    try:
        from datatrove.data import Document
        from datatrove.pipeline.filters import (C4QualityFilter, FineWebQualityFilter,
                                                GopherQualityFilter, GopherRepetitionFilter)
    except ImportError:
        return None
    filters = [C4QualityFilter(), GopherRepetitionFilter(), GopherQualityFilter(), FineWebQualityFilter()]
    filters[0].filter(Document(text="Warm up the word tokenizer. It loads on first use.", id="0"))
    kept = []
    start = time.perf_counter()
    for i, text in enumerate(texts):
        doc = Document(text=text, id=str(i))
        for f in filters:
            verdict = f.filter(doc)
            if verdict is not True and not (isinstance(verdict, tuple) and verdict[0]):
                kept.append(False)
                break
        else:
            kept.append(True)
    return time.perf_counter() - start, kept


def compare_with_datatrove(texts: list[str], peer_mb: float, batch_rows: int, repeat: int) -> None:
    sub, size = [], 0
    order = list(range(len(texts)))
    random.Random(0).shuffle(order)  # a sample of every source, not the first files'
    for i in order:
        if size >= peer_mb * 2**20:
            break
        sub.append(texts[i])
        size += len(texts[i].encode())
    peer = run_datatrove(sub)
    if peer is None:
        print("datatrove: not installed (pip install -e '.[bench]'); peer comparison skipped")
        return
    peer_time, peer_kept = peer
    arrays = batches(sub, batch_rows)
    vec_time, vec_reasons = float("inf"), []
    for _ in range(repeat):
        t, _, vec_reasons = run_vectorised(arrays)
        vec_time = min(vec_time, t)
    mib = size / 2**20
    agree = sum((r is None) == k for r, k in zip(vec_reasons, peer_kept)) / len(sub)
    print(f"datatrove's four filters on a sample of {mib:.2f} MiB ({len(sub)} documents): "
          f"{mib / peer_time:.3f} MiB/s per core; vectorised on the same: {mib / vec_time:.2f} MiB/s; "
          f"speed-up {peer_time / vec_time:.0f}x; keep/drop agree on {100 * agree:.1f}% of documents "
          f"(datatrove keeps {sum(peer_kept)}, lmbuild {sum(r is None for r in vec_reasons)})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="data/raw/*/*.parquet", help="glob of Parquet shards")
    parser.add_argument("--limit-mb", type=float, default=64.0, help="read at most this much text")
    parser.add_argument("--batch-rows", type=int, default=4096, help="documents per record batch")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per path, interleaved")
    parser.add_argument("--peer-mb", type=float, default=4.0,
                        help="MiB of the documents for datatrove (0: skip it; it runs at well under 1 MiB/s)")
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
    print(f"documents: {len(texts)}, {size_mb:.2f} MiB of UTF-8 text")

    arrays = batches(texts, args.batch_rows)
    apply_rules(arrays[0].slice(0, 50), DEFAULTS)  # load the compiled kernels before timing
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
    print(f"vectorised: {size_mb / vec_time:8.2f} MiB/s per core ({vec_time:.3f} s; "
          f"median {size_mb / vec_med:.2f} MiB/s)")
    print(f"reference:  {size_mb / ref_time:8.2f} MiB/s per core ({ref_time:.3f} s; "
          f"median {size_mb / ref_med:.2f} MiB/s)")
    print(f"speed-up:   {ref_time / vec_time:8.2f}x (medians: {ref_med / vec_med:.2f}x)")
    if differ:
        print(f"DECISIONS DIFFER on {len(differ)} documents, e.g. #{differ[0]}: "
              f"vectorised {vec_reasons[differ[0]]!r}, reference {ref_reasons[differ[0]]!r}",
              file=sys.stderr)
        return 1
    print("decisions identical on every document")
    if args.peer_mb > 0:
        compare_with_datatrove(texts, args.peer_mb, args.batch_rows, args.repeat)
    return 0


if __name__ == "__main__":
    sys.exit(main())
