"""Encode throughput of the tokenize stage: tiktoken (fast path) vs `tokenizers` encode_batch.

Uses the tokenizer in --tokenizer (default models/tokenizer; if absent, one is trained here on
the documents with vocab --vocab-size) and the `text` column of the shards matching --data
(default data/mix/*/*/*.parquet, else data/raw/*/*.parquet, else generated text), repeated up to
--min-mb. Both run on the same documents with --threads threads (tokenizers: RAYON_NUM_THREADS;
tiktoken: encode_ordinary_batch(num_threads)), special-token strings encoded as ordinary text in
both. Prints docs/s and MB/s for each and the speed-up, and exits 1 if any ids differ.

    python benchmarks/tokenize_throughput.py [--threads 2] [--repeat 3] [--min-mb 20]
"""

from __future__ import annotations

import argparse
import glob
import os
import sys
import tempfile
import time
from pathlib import Path


def load_texts(pattern: str | None) -> tuple[list[str], str]:
    import pyarrow.parquet as pq
    for pat in ([pattern] if pattern else ["data/mix/*/*/*.parquet", "data/raw/*/*.parquet"]):
        files = sorted(glob.glob(pat))
        if files:
            return [t for f in files for t in pq.read_table(f, columns=["text"]).column(0).to_pylist() if t], pat
    import random
    rng = random.Random(0)
    words = ["the", "model", "token", "café", "日本語", "def", "return", "(x)", "1234", "\n", "  ", "we're"]
    return [" ".join(rng.choice(words) for _ in range(rng.randint(20, 400))) for _ in range(2000)], "generated"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=None)
    ap.add_argument("--tokenizer", default="models/tokenizer")
    ap.add_argument("--vocab-size", type=int, default=4096)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--min-mb", type=float, default=20.0)
    args = ap.parse_args()
    os.environ["RAYON_NUM_THREADS"] = str(args.threads)  # before tokenizers starts its pool

    from lmbuild.tokenize.fast_encoder import build_encoding, encode_texts, hf_ordinary
    from lmbuild.tokenize.train_bpe import save_hf_dir, train

    texts, where = load_texts(args.data)
    tok_dir = Path(args.tokenizer)
    if not (tok_dir / "tokenizer.json").exists():
        tok_dir = Path(tempfile.mkdtemp()) / "tokenizer"
        save_hf_dir(train(texts, args.vocab_size, 2, "cl100k"), tok_dir)
        print(f"trained a {args.vocab_size}-token BPE on the documents -> {tok_dir}")
    unique_mb = sum(len(t.encode()) for t in texts) / 1e6
    texts = texts * max(1, int(args.min_mb / max(unique_mb, 1e-9) + 0.999))
    mb = sum(len(t.encode()) for t in texts) / 1e6
    print(f"{len(texts)} documents, {mb:.1f} MB from {where} ({unique_mb:.1f} MB distinct), "
          f"tokenizer {tok_dir}, {args.threads} threads")

    hf = hf_ordinary(tok_dir / "tokenizer.json")
    enc = build_encoding(tok_dir / "tokenizer.json")
    if enc is None:
        sys.exit("this tokenizer has no tiktoken equivalent (see lmbuild.tokenize.fast_encoder)")
    results, ids = {}, {}
    for name, e in (("tokenizers encode_batch", hf), ("tiktoken encode_ordinary_batch", enc)):
        encode_texts(e, texts[:100], args.threads)  # warm up
        best = float("inf")
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            out = encode_texts(e, texts, args.threads)
            best = min(best, time.perf_counter() - t0)
        results[name], ids[name] = best, out
        ntok = sum(map(len, out))
        print(f"{name:32s} {len(texts) / best:10.0f} docs/s {mb / best:8.2f} MB/s {ntok / best / 1e6:6.2f} M tokens/s")
    slow, fast = results.values()
    same = ids["tokenizers encode_batch"] == ids["tiktoken encode_ordinary_batch"]
    print(f"speed-up {slow / fast:.2f}x; ids identical: {same}")
    sys.exit(0 if same else 1)


if __name__ == "__main__":
    main()
