"""Bits per byte on held-out documents, per domain: the tokenizer-independent language-modelling
score (Gao et al. 2020, The Pile), so models with different vocabularies compare directly.

bpb = (sum over every token of -ln p(token | preceding tokens)) / ln 2 / (UTF-8 bytes of the text).

Each document is encoded on its own behind an <|endoftext|> (as documents are separated in
training) and cut into windows of `seq_len` predicted tokens; a window's context is the last
token of the window before it, so every token is scored exactly once and no window is longer
than the context the model was trained on.
"""

from __future__ import annotations

import math
from collections import defaultdict

from .loglik import continuation_logps


def windows(ids: list[int], bos_id: int, seq_len: int) -> list[tuple[list[int], list[int]]]:
    """(context, continuation) windows covering every id of one document exactly once."""
    seq = [bos_id] + ids
    return [(seq[i:i + 1], seq[i + 1:i + 1 + seq_len]) for i in range(0, len(ids), seq_len)]


def bits_per_byte(model, tok, docs: list[tuple[str, str]], *, seq_len: int, batch_size: int, bos_id: int,
                  pad_id: int, desc: str | None = None) -> dict[str, dict[str, float]]:
    """docs: (domain, text). Returns {domain: {bpb, tokens, bytes, bytes_per_token}} plus "all"."""
    pairs, owner = [], []
    nbytes: dict[str, int] = defaultdict(int)
    ntok: dict[str, int] = defaultdict(int)
    for domain, text in docs:
        ids = tok(text, add_special_tokens=False)["input_ids"]
        if not ids:
            continue
        ws = windows(ids, bos_id, seq_len)
        pairs.extend(ws)
        owner.extend([domain] * len(ws))
        nbytes[domain] += len(text.encode("utf-8"))
        ntok[domain] += len(ids)
    if not pairs:
        return {}
    scored = continuation_logps(model, pairs, pad_id=pad_id, batch_size=batch_size, max_len=seq_len + 1, desc=desc)
    nll: dict[str, float] = defaultdict(float)
    for domain, (logp, _) in zip(owner, scored):
        nll[domain] -= logp
    out = {}
    for domain in sorted(nbytes):
        out[domain] = {"bpb": nll[domain] / math.log(2) / nbytes[domain], "tokens": ntok[domain],
                       "bytes": nbytes[domain], "bytes_per_token": nbytes[domain] / ntok[domain]}
    total_b, total_t = sum(nbytes.values()), sum(ntok.values())
    out["all"] = {"bpb": sum(nll.values()) / math.log(2) / total_b, "tokens": total_t, "bytes": total_b,
                  "bytes_per_token": total_b / total_t}
    return out
