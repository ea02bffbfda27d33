"""Tiny tokenizer and token shards in the tokenize stage's output format, for the training tests
and the throughput benchmark (nothing downloaded).

`data/tokens/<split>/`: tokens-NNNNN.bin (little-endian uint16/uint32, each document followed by
the eot id), index.parquet (shard, start, length, id, source, domain, repeat), meta.json.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from lmbuild.tokenize.chat_template import CHAT_TEMPLATE, SPECIAL_TOKENS as SPECIALS

WORDS = ("the a cat dog sat on mat ran to house river tree bird sang in morning evening quietly "
         "old young small large red green blue city village road walked saw found").split()


def synthetic_docs(n: int, seed: int = 0) -> list[tuple[str, str]]:
    """(domain, text) pairs: templated prose and small Python functions, with learnable structure."""
    rng = random.Random(seed)
    docs = []
    for i in range(n):
        if i % 3 == 2:
            name = rng.choice(["add", "scale", "count", "merge", "total"])
            a, b = rng.sample(["x", "y", "items", "value", "n"], 2)
            body = "\n".join(f"    {a} = {a} + {b} * {k}" for k in range(rng.randint(1, 4)))
            docs.append(("code", f"def {name}({a}, {b}):\n{body}\n    return {a}\n"))
        else:
            sents = []
            for _ in range(rng.randint(2, 6)):
                adj, noun, verb, place = (rng.choice(WORDS[14:24]), rng.choice(WORDS[2:4]),
                                          rng.choice(["sat", "ran", "walked"]), rng.choice(["house", "river", "city"]))
                sents.append(f"The {adj} {noun} {verb} to the {place} in the {rng.choice(['morning', 'evening'])}.")
            docs.append(("prose", " ".join(sents)))
    return docs


def make_tokenizer(texts: list[str], out_dir: Path, vocab_size: int = 512):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIALS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", bos_token="<|endoftext|>",
                                   pad_token="<|pad|>", additional_special_tokens=SPECIALS[2:])
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(out_dir)
    return fast


FOREIGN_SENTENCES = ["the cat sat on the mat", "a dog ran in the park", "Sort: 3 1 2 Answer: 1 2 3",
                     "Count a in: a b a", "hello there, how are you?"] * 4


def tiny_chat_llama(tok_dir: Path, model_dir: Path, n_docs: int = 300, width: int = 32, seed: int = 0,
                    texts: tuple[str, ...] = (), model: dict | None = None):
    """A tiny random Llama (2 layers, `width` wide (MLP 2 x width), 128 positions, weights from
    `seed`) exported with a chat tokenizer trained on synthetic documents, a sort/count line and
    `texts`; returns the tokenizer. `model`: pretrain.model keys over these (another type, an MoE)."""
    from lmbuild.params import validate_section
    from lmbuild.train.export import export_model
    from lmbuild.train.model import build_model
    tok = make_tokenizer([t for _, t in synthetic_docs(n_docs)] + ["Sort: 3 1 2 Answer: 1 2 3 Count a in: a b a"]
                         + list(texts), tok_dir, 512)
    m = {**validate_section("pretrain", {})["model"], "hidden_size": width, "num_layers": 2, "num_heads": 4,
         "intermediate_size": 2 * width, "max_length": 128, **(model or {})}
    eot, pad = tok.convert_tokens_to_ids("<|endoftext|>"), tok.convert_tokens_to_ids("<|pad|>")
    export_model(build_model(m, len(tok), eot, pad, seed), tok_dir, model_dir, [eot], pad)
    return tok


def foreign_tokenizer(eos="</s>", pad="<pad>", bos="<s>", texts=(), vocab_size: int = 300):
    """A byte-level BPE with its own bos/eos/pad and no chat template (as many Hub models ship)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = [t for t in dict.fromkeys([bos, eos, pad]) if t]
    tok.train_from_iterator(FOREIGN_SENTENCES + list(texts), trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False))
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=eos, pad_token=pad, bos_token=bos)


def qwen2(vocab: int, tie: bool = False):
    import torch
    from transformers import AutoModelForCausalLM, Qwen2Config
    cfg = Qwen2Config(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                      tie_word_embeddings=tie)
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(cfg)


def save_foreign(path, tie=False, texts=(), vocab_size: int = 300):
    """A tiny Qwen2 (another family than lmbuild's Llama) and that tokenizer, saved as a HF directory."""
    tok = foreign_tokenizer(texts=texts, vocab_size=vocab_size)
    model = qwen2(len(tok), tie)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return tok, model


def write_split(tok, docs: list[tuple[str, str]], out_dir: Path, shard_tokens: int = 1 << 20) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    eot, pad = tok.convert_tokens_to_ids("<|endoftext|>"), tok.convert_tokens_to_ids("<|pad|>")
    dtype = np.uint16 if len(tok) <= 65536 else np.uint32
    shards, cur, rows, per_domain = [], [], [], {}
    cur_len = 0

    def flush():
        nonlocal cur, cur_len
        name = f"tokens-{len(shards):05d}.bin"
        arr = np.concatenate(cur) if cur else np.zeros(0, dtype)
        arr.astype(np.dtype(dtype).newbyteorder("<")).tofile(out_dir / name)
        shards.append(name)
        cur, cur_len = [], 0

    for i, (domain, text) in enumerate(docs):
        ids = np.array(tok(text, add_special_tokens=False)["input_ids"] + [eot], dtype=dtype)
        if cur_len and cur_len + len(ids) > shard_tokens:
            flush()
        rows.append({"shard": len(shards), "start": cur_len, "length": len(ids), "id": f"doc{i}",
                     "source": domain, "domain": domain, "repeat": 0})
        cur.append(ids)
        cur_len += len(ids)
        per_domain[domain] = per_domain.get(domain, 0) + len(ids)
    flush()
    schema = pa.schema([("shard", pa.int32()), ("start", pa.int64()), ("length", pa.int32()), ("id", pa.string()),
                        ("source", pa.string()), ("domain", pa.string()), ("repeat", pa.int32())])
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), out_dir / "index.parquet")
    meta = {"dtype": np.dtype(dtype).name, "vocab_size": len(tok), "eot_id": eot, "pad_id": pad,
            "tokens": int(sum(r["length"] for r in rows)), "documents": len(rows), "shards": shards,
            "tokens_per_domain": dict(sorted(per_domain.items()))}
    (out_dir / "meta.json").write_text(json.dumps(meta, indent=1, sort_keys=True))


def make_project_inputs(root: Path, n_docs: int = 600, vocab_size: int = 512, seed: int = 0,
                        shard_tokens: int = 1 << 20) -> dict:
    """models/tokenizer and data/tokens/{pretrain,anneal,val} under root; returns the val meta."""
    docs = synthetic_docs(n_docs, seed)
    tok = make_tokenizer([t for _, t in docs], root / "models" / "tokenizer", vocab_size)
    n_val = max(10, n_docs // 20)
    write_split(tok, docs[n_val:], root / "data/tokens/pretrain", shard_tokens)
    write_split(tok, synthetic_docs(n_docs // 4, seed + 1), root / "data/tokens/anneal", shard_tokens)
    write_split(tok, docs[:n_val], root / "data/tokens/val", shard_tokens)
    return json.loads((root / "data/tokens/pretrain/meta.json").read_text())
