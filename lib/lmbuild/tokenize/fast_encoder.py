"""Encode with tiktoken, using the BPE that `tokenizers` trained (what nanochat does).

tiktoken merges the adjacent pair whose concatenation has the lowest rank; `tokenizers` merges
the pair listed first in `merges`. With rank = token id, the two agree when every merge's result
has a larger id than the merges before it (true for a BpeTrainer output and for GPT-2-style
vocabularies), the split regex is the same and there is no normaliser. `build_encoding` checks
those conditions and returns None when the tokenizer does not qualify; `check_identity` compares
ids on real documents. The stage uses tiktoken only when both pass, else `tokenizers`.

Special tokens are never parsed out of document text: `encode_texts` uses
`encode_ordinary_batch` (tiktoken) and `encode_special_tokens = True` (tokenizers), so a document
that contains the string "<|endoftext|>" is encoded as ordinary text.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .train_bpe import GPT2_PATTERN


def _byte_decoder() -> dict[str, int]:
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs)}


def _split_regex(pre: dict | None) -> str | None:
    """The split regex of a byte-level pre-tokenizer, or None if it is not one tiktoken can mimic."""
    if pre is None:
        return None
    if pre.get("type") == "ByteLevel":
        return GPT2_PATTERN if pre.get("use_regex", True) and not pre.get("add_prefix_space") else None
    if pre.get("type") != "Sequence":
        return None
    steps = pre.get("pretokenizers", [])
    if len(steps) == 2 and steps[0].get("type") == "Split" and steps[1].get("type") == "ByteLevel":
        split, bl = steps
        if (split.get("behavior") == "Isolated" and not split.get("invert") and "Regex" in split.get("pattern", {})
                and not bl.get("use_regex", True) and not bl.get("add_prefix_space")):
            return split["pattern"]["Regex"]
    return None


def build_encoding(tokenizer_json: Path | str, name: str = "lmbuild"):
    """A tiktoken Encoding equivalent to the tokenizer, or None when it cannot be one."""
    import tiktoken

    spec = json.loads(Path(tokenizer_json).read_text())
    model = spec.get("model", {})
    pat = _split_regex(spec.get("pre_tokenizer"))
    if (model.get("type") != "BPE" or spec.get("normalizer") is not None or pat is None
            or model.get("byte_fallback") or model.get("dropout") or model.get("continuing_subword_prefix")
            or model.get("end_of_word_suffix")):
        return None
    dec = _byte_decoder()
    special = {t["content"]: t["id"] for t in spec.get("added_tokens", [])}
    ranks: dict[bytes, int] = {}
    for token, idx in model["vocab"].items():
        if token in special:
            continue
        try:
            ranks[bytes(dec[c] for c in token)] = idx
        except KeyError:
            return None  # not a byte-level vocabulary
    if len(ranks) < 256 or any(bytes([b]) not in ranks for b in range(256)):
        return None
    last = -1
    for merge in model.get("merges", []):
        a, b = merge.split(" ") if isinstance(merge, str) else merge
        rank = model["vocab"].get(a + b)
        if rank is None or rank <= last:
            return None  # merge order differs from id order: tiktoken would merge differently
        last = rank
    return tiktoken.Encoding(name, pat_str=pat, mergeable_ranks=ranks, special_tokens=special)


def hf_ordinary(tokenizer_json: Path | str):
    """The `tokenizers` reference, with special-token strings in text encoded as ordinary text."""
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(str(tokenizer_json))
    tok.encode_special_tokens = True
    return tok


def encode_texts(encoder, texts: list[str], threads: int = 1) -> list[list[int]]:
    """Token ids of each text, no special tokens parsed, none added."""
    if hasattr(encoder, "encode_ordinary_batch"):
        return encoder.encode_ordinary_batch(texts, num_threads=threads)
    return [e.ids for e in encoder.encode_batch(texts, add_special_tokens=False)]


def check_identity(encoding, hf_tok, texts: list[str]) -> int:
    """Number of texts whose ids differ between the two paths (0 means identical)."""
    fast = encode_texts(encoding, texts)
    ref = encode_texts(hf_tok, texts)
    return sum(a != b for a, b in zip(fast, ref))


def flatten_with_eot(ids: list[list[int]], eot: int, dtype) -> tuple[np.ndarray, np.ndarray]:
    """(flat tokens with eot after each document, lengths incl. the eot), vectorised."""
    lengths = np.fromiter((len(x) for x in ids), np.int64, count=len(ids))
    total = int(lengths.sum())
    flat = np.empty(total + len(ids), dtype)
    ends = np.cumsum(lengths + 1) - 1
    mask = np.ones(len(flat), bool)
    mask[ends] = False
    if total:
        from itertools import chain
        flat[mask] = np.fromiter(chain.from_iterable(ids), dtype, count=total)
    flat[ends] = eot
    return flat, (lengths + 1).astype(np.int32)
