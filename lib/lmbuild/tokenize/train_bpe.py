"""Train the byte-level BPE on a seeded sample of the pretrain mix, or adopt an existing
tokenizer directory, and write a Hugging Face tokenizer directory with the chat template.

Sample: every distinct pretrain document (repeat == 0) gets a key blake2b(seed, id); the
`sample_docs` smallest keys are kept (a bounded top-k over record batches, so memory stays
bounded), then cut to `sample_bytes` in key order. The sample depends on the seed and the set of
documents, never on shard order or worker count.

Training: HF `tokenizers` BpeTrainer over Split(regex, isolated) + ByteLevel(no regex), all 256
bytes in the initial alphabet (every text is encodable, no unk), special tokens at ids 0..3.
The trainer runs single-threaded (TOKENIZERS_PARALLELISM=false while it runs) so that ties are
broken the same way on every machine; the files are written by this module with sorted keys, so
two runs give byte-identical tokenizer files.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pyarrow.compute as pc

from ..shards import list_shards, read_batches
from .chat_template import CHAT_TEMPLATE, EOT, IM_END, IM_START, PAD, SPECIAL_TOKENS
from .sentinels import FIM_TOKENS, add_fim_tokens

# GPT-4 (cl100k_base) split pattern: case-insensitive contractions, letters with one leading
# non-letter, digits in groups of at most 3 (numbers tokenise consistently), punctuation runs,
# newlines kept apart from other whitespace.
CL100K_PATTERN = (r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"""
                  r"""|\s*[\r\n]+|\s+(?!\S)|\s+""")
# GPT-2's pattern (what ByteLevel(use_regex=True) applies).
GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
PATTERNS = {"cl100k": CL100K_PATTERN, "gpt2": GPT2_PATTERN}


class TokenizerError(Exception):
    """Bad tokenizer params or an unusable tokenizer directory; the message says what to do."""


def split_pattern(name_or_regex: str) -> str:
    return PATTERNS.get(name_or_regex, name_or_regex)


def _keys(ids: list[str], seed: int) -> np.ndarray:
    salt = str(seed).encode()
    return np.array([int.from_bytes(hashlib.blake2b(i.encode(), digest_size=8, key=salt).digest(), "little")
                     for i in ids], dtype=np.uint64)


def sample_texts(mix_dir: Path, sample_docs: int, sample_bytes: int, seed: int, batch_rows: int) -> list[str]:
    """The training sample: distinct pretrain documents chosen by seeded hash of their id."""
    keys = np.empty(0, np.uint64)
    texts: list[str] = []
    for path in list_shards(Path(mix_dir) / "pretrain", "*/*.parquet"):
        for batch in read_batches(path, batch_rows, columns=["id", "text", "repeat"]):
            first = batch.filter(pc.equal(batch.column("repeat"), 0))
            if first.num_rows == 0:
                continue
            keys = np.concatenate([keys, _keys(first.column("id").to_pylist(), seed)])
            texts.extend(first.column("text").to_pylist())
            if len(keys) > 2 * sample_docs:  # keep the k smallest keys seen so far
                keep = np.sort(np.argpartition(keys, sample_docs)[:sample_docs])
                keys, texts = keys[keep], [texts[i] for i in keep]
    order = np.argsort(keys, kind="stable")[:sample_docs]
    out, total = [], 0
    for i in order:
        n = len(texts[i].encode())
        if total + n > sample_bytes and out:
            break
        out.append(texts[i])
        total += n
    return out


def train(texts: list[str], vocab_size: int, min_frequency: int, pattern: str):
    """A trained `tokenizers.Tokenizer` (byte-level BPE, special tokens at ids 0..3)."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(split_pattern(pattern)), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency, show_progress=False,
                                  special_tokens=list(SPECIAL_TOKENS),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    before = os.environ.get("TOKENIZERS_PARALLELISM")
    os.environ["TOKENIZERS_PARALLELISM"] = "false"  # single-threaded training: deterministic ties
    try:
        tok.train_from_iterator(texts, trainer=trainer, length=len(texts))
    finally:
        if before is None:
            os.environ.pop("TOKENIZERS_PARALLELISM", None)
        else:
            os.environ["TOKENIZERS_PARALLELISM"] = before
    return tok


def _dump(path: Path, obj: dict) -> None:
    path.write_text(json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n")


def save_hf_dir(tok, out_dir: Path) -> None:
    """tokenizer.json, tokenizer_config.json and special_tokens_map.json for AutoTokenizer (the
    fill-in-the-middle sentinels listed among the special tokens when the tokenizer has them)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    tok.save(str(out_dir / "tokenizer.json"), pretty=True)
    special = SPECIAL_TOKENS + [t for t in FIM_TOKENS if tok.token_to_id(t) is not None]
    added = {str(tok.token_to_id(t)): {"content": t, "lstrip": False, "normalized": False, "rstrip": False,
                                       "single_word": False, "special": True} for t in special}
    _dump(out_dir / "tokenizer_config.json", {
        "tokenizer_class": "PreTrainedTokenizerFast", "added_tokens_decoder": added,
        "bos_token": EOT, "eos_token": EOT, "pad_token": PAD, "unk_token": None,
        "additional_special_tokens": [IM_START, IM_END], "extra_special_tokens": [IM_START, IM_END],
        "chat_template": CHAT_TEMPLATE, "model_max_length": 1000000000, "clean_up_tokenization_spaces": False,
        "add_bos_token": False, "add_eos_token": False})
    _dump(out_dir / "special_tokens_map.json", {
        "bos_token": EOT, "eos_token": EOT, "pad_token": PAD, "additional_special_tokens": [IM_START, IM_END]})


def adopt(src: Path, out_dir: Path, fim_tokens: bool = False) -> None:
    """Use an existing tokenizer directory: copy it, add the chat tokens and template if missing
    (and the fill-in-the-middle sentinels, with `fim_tokens`)."""
    src = Path(src)
    if not (src / "tokenizer.json").exists():
        raise TokenizerError(f"params.yaml: tokenize.path: {src} has no tokenizer.json (a Hugging Face fast "
                             f"tokenizer directory is needed), got {str(src)!r}")
    from tokenizers import AddedToken, Tokenizer
    tok = Tokenizer.from_file(str(src / "tokenizer.json"))
    missing = [t for t in SPECIAL_TOKENS if tok.token_to_id(t) is None]
    if missing:
        tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in missing])
    if fim_tokens:
        missing += add_fim_tokens(tok)
    if not missing and all((src / f).exists() for f in ("tokenizer_config.json", "special_tokens_map.json")):
        cfg = json.loads((src / "tokenizer_config.json").read_text())
        if cfg.get("chat_template") == CHAT_TEMPLATE and cfg.get("eos_token") == EOT:
            out_dir.mkdir(parents=True, exist_ok=True)
            for f in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
                shutil.copyfile(src / f, out_dir / f)
            return
    save_hf_dir(tok, out_dir)
