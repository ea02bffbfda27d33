"""Run the tokenize stage: build the tokenizer (train or adopt), check the fast encoder against
`tokenizers`, encode every split shard by shard through the executor, then pack the per-shard
parts into token shards in input order (split, source, shard, row), and summarise.
"""

from __future__ import annotations

import functools
import shutil
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..executor import map_tasks
from ..params import ParamsError
from ..shards import atomic_dir, list_shards, read_batches
from .chat_template import EOT, PAD
from .fast_encoder import build_encoding, check_identity, encode_texts, flatten_with_eot, hf_ordinary
from .sentinels import add_fim_tokens
from .token_shards import PART_SCHEMA, TokenShardWriter, token_dtype
from .train_bpe import adopt, sample_texts, save_hf_dir, split_pattern, train

SPLITS = ("pretrain", "anneal", "val")
# Strings the fast path must encode exactly as `tokenizers` does, on top of real documents.
ADVERSARIAL = [
    "", " ", "   \n\n\t  \r\n x  ", "a\u00a0b\u2003c\u3000d", "<|endoftext|>", "text<|im_start|>user\n<|im_end|><|pad|>",
    "12345678901 3.14159 -0.5e10 ١٢٣٤ ⅷ", "naïve café Ünïcödé ß ẞ ǅ", "日本語のテキスト、中文，한국어 🎉👍🏽‍ ",
    "I'LL we'Re they'VE it's", "def f(x):\n    return x  # comment\n\n\n", "\x00\x01\x7f\ufffd\U0010ffff",
    "a" * 3000, " " * 300 + "end", "ab" * 500,
]


class TokenizeError(Exception):
    pass


def check_params(cfg: dict) -> None:
    """The tokenize section beyond its schema: a split pattern that compiles (ParamsError)."""
    if cfg["path"] is None:
        from tokenizers import Regex
        try:
            Regex(split_pattern(cfg["pattern"]))
        except Exception as exc:  # noqa: BLE001 - the regex engine's own message
            raise ParamsError([f"params.yaml: tokenize.pattern: must be cl100k, gpt2 or a valid regex "
                               f"({exc}), got {cfg['pattern']!r}"]) from None


def build_tokenizer(cfg: dict, seed: int, mix_dir: Path, out_dir: Path) -> dict:
    """Write models/tokenizer; return facts about the sample for the metrics."""
    with atomic_dir(out_dir) as tmp:
        if cfg["path"]:
            adopt(Path(cfg["path"]), tmp, cfg["fim_tokens"])
            return {"trained": 0}
        texts = sample_texts(mix_dir, cfg["sample_docs"], cfg["sample_bytes"], seed, cfg["batch_rows"])
        if not texts:
            raise TokenizeError(f"{mix_dir}/pretrain: no documents to train the tokenizer on; run "
                                f"`dvc repro mix` first or set tokenize.path")
        tok = train(texts, cfg["vocab_size"], cfg["min_frequency"], cfg["pattern"])
        if cfg["fim_tokens"]:
            add_fim_tokens(tok)  # after the merges: every other id stays what it was
        save_hf_dir(tok, tmp)
    return {"trained": 1, "sample_documents": len(texts), "sample_bytes": sum(len(t.encode()) for t in texts)}


@functools.lru_cache(maxsize=2)
def _encoder(tokenizer_json: str, fast: bool):
    return build_encoding(tokenizer_json) if fast else hf_ordinary(tokenizer_json)


def encode_task(task: dict) -> dict:
    """Encode one input shard into `<part>.bin` + `<part>.parquet`; return counts."""
    enc = _encoder(task["tokenizer"], task["fast"])
    dtype = np.dtype(task["dtype"])
    stats = {"documents": 0, "null_text": 0, "domains": {}}
    used = np.zeros(task["vocab_size"], np.int64) if task["count_used"] else None
    parts = []
    with open(task["part"] + ".bin", "wb") as out:
        for batch in read_batches(task["shard"], task["batch_rows"], columns=["id", "text", "source", "domain", "repeat"]):
            text = batch.column("text")
            stats["null_text"] += text.null_count
            text = pc.fill_null(text, "")
            flat, lengths = flatten_with_eot(encode_texts(enc, text.to_pylist()), task["eot"], dtype)
            out.write(flat.tobytes())
            if used is not None:
                used += np.bincount(flat, minlength=len(used))[:len(used)]
            nbytes = pc.binary_length(text).to_numpy(zero_copy_only=False).astype(np.int64)
            domain = batch.column("domain").to_numpy(zero_copy_only=False)
            for d in np.unique(domain):
                m = domain == d
                s = stats["domains"].setdefault(str(d), {"documents": 0, "tokens": 0, "content_tokens": 0, "bytes": 0})
                s["documents"] += int(m.sum())
                s["tokens"] += int(lengths[m].sum())
                s["content_tokens"] += int(lengths[m].sum()) - int(m.sum())
                s["bytes"] += int(nbytes[m].sum())
            stats["documents"] += batch.num_rows
            parts.append(pa.table({"length": lengths, "id": batch.column("id"), "source": batch.column("source"),
                                   "domain": batch.column("domain"), "repeat": batch.column("repeat")}).cast(PART_SCHEMA))
    table = pa.concat_tables(parts) if parts else PART_SCHEMA.empty_table()
    pq.write_table(table, task["part"] + ".parquet", compression="zstd")
    stats["used"] = used
    return stats


def tokenize(params: dict, mix_dir: Path, tok_dir: Path, out_dir: Path, train_dir: Path | None = None) -> dict:
    """Encode val from `mix_dir` and pretrain/anneal from `train_dir` (the decontaminated mixes;
    default `mix_dir`), training the tokenizer on a sample of train_dir/pretrain."""
    common, cfg = params["common"], params["tokenize"]
    check_params(cfg)
    train_dir = Path(mix_dir if train_dir is None else train_dir)
    # the pool split (mix.pool: every document once, for training-time mixtures) when it exists
    splits = SPLITS + (("pool",) if (train_dir / "pool").is_dir() else ())
    roots = {s: train_dir if s != "val" else Path(mix_dir) for s in splits}
    inputs = {s: list_shards(roots[s] / s, "*/*.parquet") for s in splits}
    if not inputs["pretrain"]:
        raise TokenizeError(f"{train_dir}/pretrain: no shards; run the upstream stages first (dvc repro decontaminate)")
    facts = build_tokenizer(cfg, common["seed"], train_dir, Path(tok_dir))

    tokenizer_json = str(Path(tok_dir).resolve() / "tokenizer.json")
    hf = hf_ordinary(tokenizer_json)
    vocab_size, eot, pad = hf.get_vocab_size(), hf.token_to_id(EOT), hf.token_to_id(PAD)
    encoding = build_encoding(tokenizer_json)
    probe = sample_texts(train_dir, cfg["verify_docs"], 2**62, common["seed"], cfg["batch_rows"]) + ADVERSARIAL
    mismatches = check_identity(encoding, hf, probe) if encoding is not None else -1
    fast = mismatches == 0
    if not fast:
        print(f"tokenize: tiktoken path {'not applicable' if encoding is None else f'differs on {mismatches} texts'}"
              f"; encoding with `tokenizers` (slower)", file=sys.stderr)

    dtype = token_dtype(vocab_size)
    metrics: dict = {"vocab_size": vocab_size, "tokenizer_trained": facts["trained"], "encoder_tiktoken": int(fast),
                     "identity_checked_texts": len(probe), "identity_mismatches": max(mismatches, 0)}
    if facts["trained"]:
        metrics.update(sample_documents=facts["sample_documents"], sample_bytes=facts["sample_bytes"])
    with atomic_dir(out_dir) as tmp:
        parts_dir = tmp / ".parts"
        parts_dir.mkdir()
        tasks = [{"split": s, "shard": str(p), "part": str(parts_dir / f"{s}-{i:05d}"), "tokenizer": tokenizer_json,
                  "fast": fast, "dtype": dtype.str, "eot": eot, "vocab_size": vocab_size,
                  "count_used": s == "pretrain", "batch_rows": cfg["batch_rows"]}
                 for s in splits for i, p in enumerate(inputs[s])]
        results = map_tasks(encode_task, tasks, common, desc="tokenize",
                            postfix=lambda r: {"docs": r["documents"]})
        domains_all: dict[str, dict] = {}
        for split in splits:
            (tmp / split).mkdir()
            writer = TokenShardWriter(tmp / split, dtype, int(cfg["shard_mb"] * 2**20))
            split_stats = {"documents": 0, "tokens": 0, "content_tokens": 0, "bytes": 0, "null_text": 0}
            per_domain: dict[str, dict] = {}
            for task, res in zip(tasks, results):
                if task["split"] != split:
                    continue
                rows = pq.read_table(task["part"] + ".parquet")
                tokens = np.memmap(task["part"] + ".bin", dtype=dtype, mode="r") if rows.num_rows else np.empty(0, dtype)
                writer.write(tokens, rows)
                del tokens
                split_stats["null_text"] += res["null_text"]
                for d, s in res["domains"].items():
                    acc = per_domain.setdefault(d, dict.fromkeys(s, 0))
                    tot = domains_all.setdefault(d, dict.fromkeys(s, 0))
                    for k, v in s.items():
                        acc[k] += v
                        tot[k] += v
                        if k in split_stats:
                            split_stats[k] += v
                if res["used"] is not None:
                    metrics.setdefault("_used", np.zeros(vocab_size, np.int64))
                    metrics["_used"] += res["used"]
            writer.close({"vocab_size": vocab_size, "eot_id": eot, "pad_id": pad, "split": split})
            metrics[split] = {
                "documents": split_stats["documents"], "tokens": split_stats["tokens"],
                "bytes_per_token": _bpt(split_stats), "null_text_documents": split_stats["null_text"],
                "domains": {d: {"documents": s["documents"], "tokens": s["tokens"], "bytes_per_token": _bpt(s)}
                            for d, s in sorted(per_domain.items())}}
        shutil.rmtree(parts_dir)
    used = metrics.pop("_used", np.zeros(vocab_size, np.int64))
    used[eot] = 0  # the boundary token is always there; count what the text needs
    metrics["pretrain_vocab_used_share"] = float((used > 0).sum()) / vocab_size
    metrics["domains"] = {d: {"bytes_per_token": _bpt(s)} for d, s in sorted(domains_all.items())}
    # totals over pretrain, anneal and val (the pool split holds their documents again)
    metrics["documents"] = sum(metrics[s]["documents"] for s in SPLITS)
    metrics["tokens"] = sum(metrics[s]["tokens"] for s in SPLITS)
    return metrics


def _bpt(s: dict) -> float:
    """UTF-8 bytes per token, the eot tokens not counted."""
    return s["bytes"] / s["content_tokens"] if s["content_tokens"] else 0.0
