"""The tokenize stage's library: train (or copy) the byte-level BPE tokenizer with its chat
template, then encode the pretrain, anneal and validation mixes into flat token shards.

- chat_template.py  the special tokens and the ChatML template every later stage uses
- train_bpe.py      seeded sample of the pretrain mix -> HF `tokenizers` byte-level BPE -> HF dir
- fast_encoder.py   the same BPE as a tiktoken Encoding (several times faster, identical ids)
- token_shards.py   tokens-NNNNN.bin + index.parquet + meta.json writer
- run.py            the stage: sample, train, encode in parallel, write shards and metrics
"""
