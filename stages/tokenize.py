"""tokenize: train the byte-level BPE tokenizer (or adopt one) and encode the mixes into token shards.

Reads:  data/decontam/{pretrain,anneal}/<source>/*.parquet (the decontaminated training mixes),
        data/mix/val/<source>/*.parquet (held-out documents; all with `repeat`)
Writes: models/tokenizer/ (tokenizer.json, tokenizer_config.json with the ChatML chat template,
        special_tokens_map.json), data/tokens/<split>/ (tokens-NNNNN.bin, index.parquet,
        meta.json), metrics/tokenize.json (tokens per split and domain, bytes per token,
        vocabulary use)
Params: common (seed, workers, executor), tokenize (vocab_size, path, sample_docs, sample_bytes,
        pattern, min_frequency, shard_mb, batch_rows, verify_docs, fim_tokens)
Run:    dvc repro tokenize   (or python -m stages.tokenize)
"""

import sys
import time
from pathlib import Path

from lmbuild.metrics import write_metrics
from lmbuild.params import load_params_or_exit, stage_errors
from lmbuild.shards import ShardError
from lmbuild.tokenize.run import TokenizeError, tokenize
from lmbuild.tokenize.train_bpe import TokenizerError

MIX = Path("data/mix")
TRAIN = Path("data/decontam")
TOKENIZER = Path("models/tokenizer")
OUT = Path("data/tokens")
METRICS = Path("metrics/tokenize.json")


def main() -> None:
    params = load_params_or_exit("tokenize")
    start = time.perf_counter()
    # tokenize checks its pattern before any work (ParamsError)
    with stage_errors("tokenize", TokenizeError, TokenizerError, ShardError, label=False):
        metrics = tokenize(params, MIX, TOKENIZER, OUT, TRAIN)
    write_metrics(METRICS, metrics)
    print(f"tokenize: vocab {metrics['vocab_size']}, pretrain {metrics['pretrain']['tokens']:,} tokens, anneal "
          f"{metrics['anneal']['tokens']:,}, val {metrics['val']['tokens']:,} -> {OUT} "
          f"({'tiktoken' if metrics['encoder_tiktoken'] else 'tokenizers'}, {time.perf_counter() - start:.1f} s)",
          file=sys.stderr)


if __name__ == "__main__":
    main()
