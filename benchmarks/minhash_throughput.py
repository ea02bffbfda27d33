"""Throughput and accuracy of lmbuild's vectorised MinHash vs datasketch's `MinHash.bulk`.

Reads the `text` column of the Parquet shards matching --data (default: the filter stage's
output, data/filtered/*/*.parquet, else the acquire stage's, data/raw/*/*.parquet). If none
match, it generates text (words drawn from a Zipf distribution over a synthetic vocabulary) and
says so.

Both sides start from the same normalised texts (lowercased, punctuation stripped: the dedup
stage's defaults) and compute signatures of word 5-grams with the same number of permutations
(--num-perm, default 240 = the stage's 20 bands x 12 rows), on one core (pyarrow's thread pool
set to one thread; neither side uses threads otherwise):

- lmbuild: `split_and_hash` (words hashed from the Arrow buffer) and `MinHasher.signatures`,
  per record batch of --batch-rows documents;
- datasketch: `str.split`, n-gram strings joined and UTF-8 encoded (the shingling any
  datasketch user has to write), then `MinHash.bulk` (SHA-1 per shingle, then permutations).
  Its time is reported with and without the shingling.

Accuracy: --pairs pairs are built from the documents by replacing, deleting and inserting a
random share of words (seeded); the exact Jaccard similarity of their 5-gram sets is compared
with both estimates (mean absolute error). The script exits with status 1 if either error is
above 0.03 or they differ by more than 0.005 (not the same accuracy).

    python benchmarks/minhash_throughput.py [--data 'data/filtered/*/*.parquet'] [--repeat 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np
import pyarrow as pa
from datasketch import MinHash

from corpus import load_parquet
from lmbuild.dedup.minhash import MinHasher, estimate_jaccard
from lmbuild.dedup.normalize import normalize
from lmbuild.dedup.words import split_and_hash

DEFAULT_PATTERNS = ("data/filtered/*/*.parquet", "data/raw/*/*.parquet")


def generated_corpus(limit_mb: float, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    vocab = np.array(["".join(rng.choice(list("abcdefghijklmnopqrstuvwxyz"), size=rng.integers(2, 10)))
                      for _ in range(50000)])
    texts, size = [], 0
    while size < limit_mb * 2**20:
        words = vocab[np.minimum(rng.zipf(1.2, size=int(rng.integers(50, 2000))) - 1, len(vocab) - 1)]
        texts.append(" ".join(words) + ".")
        size += len(texts[-1])
    return texts


def shingles(text: str, n: int) -> list[bytes]:
    """Word n-grams as datasketch wants them; fewer than n words: the whole text."""
    words = text.split()
    if len(words) < n:
        return [" ".join(words).encode()] if words else []
    return [" ".join(words[i:i + n]).encode() for i in range(len(words) - n + 1)]


def ours(normalised: list[pa.Array], minhasher: MinHasher) -> tuple[float, np.ndarray]:
    start = time.perf_counter()
    sigs = [minhasher.signatures(batch, split_and_hash(batch, minhasher.seed))[0] for batch in normalised]
    return time.perf_counter() - start, np.concatenate(sigs, axis=1)


def theirs(texts: list[str], n: int, num_perm: int) -> tuple[float, float, list[MinHash]]:
    start = time.perf_counter()
    grams = [shingles(t, n) for t in texts]
    mid = time.perf_counter()
    sigs = MinHash.bulk(grams, num_perm=num_perm, seed=1)
    return mid - start, time.perf_counter() - mid, sigs


def perturb(words: list[str], share: float, rng: np.random.Generator, vocab: list[str]) -> list[str]:
    out = list(words)
    for _ in range(int(round(share * len(words)))):
        op, pos = rng.integers(3), int(rng.integers(len(out)))
        if op == 0:
            out[pos] = vocab[int(rng.integers(len(vocab)))]
        elif op == 1 and len(out) > 1:
            del out[pos]
        else:
            out.insert(pos, vocab[int(rng.integers(len(vocab)))])
    return out


def accuracy_pairs(texts: list[str], count: int, n: int, seed: int) -> tuple[list[str], list[str], np.ndarray]:
    rng = np.random.default_rng(seed)
    docs = [t.split() for t in texts if len(t.split()) >= 4 * n]
    vocab = sorted({w for d in docs[:200] for w in d})
    left, right, exact = [], [], []
    for _ in range(count):
        words = docs[int(rng.integers(len(docs)))][:400]
        other = perturb(words, float(rng.uniform(0.0, 0.15)), rng, vocab)
        a = {tuple(words[i:i + n]) for i in range(len(words) - n + 1)}
        b = {tuple(other[i:i + n]) for i in range(len(other) - n + 1)} or {tuple(other)}
        left.append(" ".join(words))
        right.append(" ".join(other))
        exact.append(len(a & b) / len(a | b))
    return left, right, np.array(exact)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=None, help="glob of Parquet shards (default: filtered, else raw)")
    parser.add_argument("--limit-mb", type=float, default=32.0, help="read at most this much text")
    parser.add_argument("--batch-rows", type=int, default=2048, help="documents per record batch (lmbuild)")
    parser.add_argument("--ngram", type=int, default=5)
    parser.add_argument("--num-perm", type=int, default=240)
    parser.add_argument("--pairs", type=int, default=2000, help="pairs for the accuracy check")
    parser.add_argument("--repeat", type=int, default=5, help="timed runs per side, interleaved (best and median)")
    args = parser.parse_args()

    pa.set_cpu_count(1)
    pa.set_io_thread_count(1)
    texts, source = [], None
    for pattern in ([args.data] if args.data else DEFAULT_PATTERNS):
        texts = load_parquet(pattern, args.limit_mb, skip_empty=True)
        if texts:
            source = pattern
            break
    if texts:
        print(f"corpus: {source}")
    else:
        texts = generated_corpus(args.limit_mb)
        print("corpus: no Parquet shards found; generated Zipf-distributed words (run `make repro` for real text)")
    raw = pa.array(texts, pa.string())
    normalised = [normalize(raw.slice(i, args.batch_rows), collapse_whitespace=False)
                  for i in range(0, len(raw), args.batch_rows)]
    norm_texts = [t for batch in normalised for t in batch.to_pylist()]
    size_mb = sum(len(t.encode()) for t in texts) / 2**20
    print(f"documents: {len(texts)}, {size_mb:.2f} MiB of UTF-8 text (MiB/s below are of this original text); "
          f"{args.ngram}-grams, {args.num_perm} permutations")

    minhasher = MinHasher(args.ngram, args.num_perm, seed=1)
    minhasher.signatures(normalised[0].slice(0, 50))  # load the compiled kernel before timing
    t_norm = float("inf")
    runs_ours, runs_bulk, runs_theirs = [], [], []
    for _ in range(args.repeat):
        runs_ours.append(ours(normalised, minhasher)[0])
        start = time.perf_counter()
        for i in range(0, len(raw), args.batch_rows):
            normalize(raw.slice(i, args.batch_rows), collapse_whitespace=False)
        t_norm = min(t_norm, time.perf_counter() - start)
        s, b, _ = theirs(norm_texts, args.ngram, args.num_perm)
        runs_bulk.append(b)
        runs_theirs.append(s + b)
    t_ours, t_bulk, t_theirs = min(runs_ours), min(runs_bulk), min(runs_theirs)
    med = {k: statistics.median(v) for k, v in
           (("ours", runs_ours), ("bulk", runs_bulk), ("theirs", runs_theirs))}

    print(f"lmbuild MinHasher:              {size_mb / t_ours:8.2f} MiB/s per core ({t_ours:.2f} s)")
    print(f"datasketch shingling + bulk:    {size_mb / t_theirs:8.2f} MiB/s per core ({t_theirs:.2f} s)")
    print(f"datasketch MinHash.bulk alone:  {size_mb / t_bulk:8.2f} MiB/s per core ({t_bulk:.2f} s)")
    print(f"speed-up: {t_theirs / t_ours:.1f}x (vs shingling + bulk), {t_bulk / t_ours:.1f}x (vs bulk alone); "
          f"medians of {args.repeat} runs: {med['theirs'] / med['ours']:.1f}x, {med['bulk'] / med['ours']:.1f}x")
    print(f"normalisation (both sides, not timed above): {size_mb / t_norm:.2f} MiB/s per core; lmbuild "
          f"including it: {size_mb / (t_ours + t_norm):.2f} MiB/s per core")

    left, right, exact = accuracy_pairs(norm_texts, args.pairs, args.ngram, seed=2)
    both = pa.array(left + right, pa.string())
    sig = minhasher.signatures(both, split_and_hash(both, minhasher.seed))[0]
    est_ours = estimate_jaccard(sig[:, :len(left)], sig[:, len(left):])
    _, _, ds = theirs(left + right, args.ngram, args.num_perm)
    est_theirs = np.array([ds[i].jaccard(ds[len(left) + i]) for i in range(len(left))])
    mae_ours, mae_theirs = np.abs(est_ours - exact).mean(), np.abs(est_theirs - exact).mean()
    print(f"accuracy on {len(exact)} pairs (exact Jaccard {exact.min():.2f}-{exact.max():.2f}, "
          f"mean {exact.mean():.2f}): "
          f"mean absolute error lmbuild {mae_ours:.4f}, datasketch {mae_theirs:.4f}; "
          f"bias lmbuild {np.mean(est_ours - exact):+.4f}, datasketch {np.mean(est_theirs - exact):+.4f}")
    ok = mae_ours <= 0.03 and mae_theirs <= 0.03 and abs(mae_ours - mae_theirs) <= 0.005
    print("same accuracy: yes" if ok else "same accuracy: NO", file=sys.stdout if ok else sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
