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

from ..stats import ratio_stderr
from .loglik import continuation_logps


def windows(ids: list[int], bos_id: int, seq_len: int) -> list[tuple[list[int], list[int]]]:
    """(context, continuation) windows covering every id of one document exactly once."""
    seq = [bos_id] + ids
    return [(seq[i:i + 1], seq[i + 1:i + 1 + seq_len]) for i in range(0, len(ids), seq_len)]


def document_bits(model, tok, docs: list[dict], *, seq_len: int, batch_size: int, bos_id: int, pad_id: int,
                  desc: str | None = None) -> list[dict]:
    """Per document {id, domain, bits, bytes, tokens}: the per-item results of bits per byte, in
    document order (documents that encode to no tokens are left out)."""
    pairs, owner, rows = [], [], []
    for doc in docs:
        ids = tok(doc["text"], add_special_tokens=False)["input_ids"]
        if not ids:
            continue
        ws = windows(ids, bos_id, seq_len)
        pairs.extend(ws)
        owner.extend([len(rows)] * len(ws))
        rows.append({"id": doc["id"], "domain": doc["domain"], "bits": 0.0,
                     "bytes": len(doc["text"].encode("utf-8")), "tokens": len(ids)})
    if not pairs:
        return []
    scored = continuation_logps(model, pairs, pad_id=pad_id, batch_size=batch_size, max_len=seq_len + 1, desc=desc)
    for i, (logp, _) in zip(owner, scored):
        rows[i]["bits"] -= logp / math.log(2)
    return rows


def summarize_bits(rows: list[dict]) -> dict[str, dict[str, float]]:
    """{domain: {bpb, bpb_stderr, tokens, bytes, bytes_per_token, documents}} plus "all", from
    per-document bits; the standard error is a bootstrap over the documents (lmbuild.stats)."""
    groups: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        groups[r["domain"]].append(r)
    out = {}
    for domain, rs in [*sorted(groups.items()), ("all", rows)] if rows else []:
        bits, nbytes, ntok = [r["bits"] for r in rs], [r["bytes"] for r in rs], sum(r["tokens"] for r in rs)
        out[domain] = {"bpb": sum(bits) / sum(nbytes), "bpb_stderr": ratio_stderr(bits, nbytes), "tokens": ntok,
                       "bytes": sum(nbytes), "bytes_per_token": sum(nbytes) / ntok, "documents": len(rs)}
    return out


def bits_per_byte(model, tok, docs: list[tuple[str, str]], *, seq_len: int, batch_size: int, bos_id: int,
                  pad_id: int, desc: str | None = None) -> dict[str, dict[str, float]]:
    """docs: (domain, text). Returns {domain: {bpb, bpb_stderr, tokens, bytes, bytes_per_token,
    documents}} plus "all"."""
    rows = document_bits(model, tok, [{"id": str(i), "domain": d, "text": t} for i, (d, t) in enumerate(docs)],
                         seq_len=seq_len, batch_size=batch_size, bos_id=bos_id, pad_id=pad_id, desc=desc)
    return summarize_bits(rows)
