"""Long-context eval: what a model does with positions far into a document, beside what it still
does at short range (lmbuild/train/long_context.py trains for it; anneal runs this at its end
when `long_eval.lengths` is set).

- Loss by position: held-out documents of at least the longest length, each scored from its
  start over that many tokens; the per-token loss averaged in equal position buckets (mean over
  documents, standard error over documents). A model that cannot use or even survive long range
  shows a loss rising in the late buckets; one that uses it shows a loss falling with position.
- Passkey retrieval (Mohtashami & Jaggi 2023, arXiv:2305.16300): a five-digit key stated once at
  a given depth of repetitive filler text, asked for at the end; greedy decoding must reproduce
  it. Reported per length and depth, with the standard error over samples. Random keys come from
  a generator seeded per (seed, length, depth), so two models see the same prompts.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch

from ..lm.sampling import sample
from ..stats import mean_stderr, with_stderr

FILLER = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again. "
NEEDLE = " The pass key is {key}. Remember it. {key} is the pass key. "
QUESTION = " What is the pass key? The pass key is"


@torch.no_grad()
def position_loss(model, split_dir: Path | str, length: int, buckets: int, documents: int, device, autocast) -> dict:
    """{bucket name: mean loss, _stderr} over the first `length` tokens of held-out documents at
    least that long, plus `documents`; {} when there are none."""
    from ..train.data import TokenStream  # local: no training stack for importers of the eval
    split_dir = Path(split_dir)
    stream = TokenStream(split_dir)
    index = pq.read_table(split_dir / "index.parquet", columns=["shard", "start", "length"]).to_pylist()
    rows = [r for r in index if r["length"] > length][:documents]
    if not rows:
        return {}
    model.eval()
    per_doc = []
    for r in rows:
        x = torch.from_numpy(np.asarray(stream.arrays[r["shard"]][r["start"]:r["start"] + length + 1],
                                        dtype=np.int64))[None].to(device)
        with autocast():
            logits = model(input_ids=x[:, :-1]).logits.float()
        per_doc.append(torch.nn.functional.cross_entropy(logits[0], x[0, 1:], reduction="none").cpu().numpy())
    losses = np.stack(per_doc)                     # [documents, length]: loss of token t+1 given t+1 tokens
    edges = np.linspace(0, length, buckets + 1).astype(int)
    out: dict = {"documents": len(rows)}
    for lo, hi in zip(edges, edges[1:]):
        out.update(with_stderr(f"loss_{lo}_{hi}", losses[:, lo:hi].mean(axis=1).tolist()))
    return out


def passkey_prompts(tok, length: int, depth: float, samples: int, seed: int) -> tuple[list[list[int]], list[str]]:
    """Prompts of about `length` tokens with the key at `depth` of the filler, and their keys."""
    eot = tok.convert_tokens_to_ids(tok.eos_token)
    enc = lambda t: tok.encode(t, add_special_tokens=False)  # noqa: E731
    filler, question = enc(FILLER), enc(QUESTION)
    rng = np.random.default_rng([seed, length, int(depth * 1000)])
    prompts, keys = [], []
    for _ in range(samples):
        key = str(int(rng.integers(10000, 100000)))
        needle = enc(NEEDLE.format(key=key))
        room = max(0, length - 1 - len(needle) - len(question))
        hay = (filler * (room // len(filler) + 1))[:room]
        at = int(round(depth * room))
        prompts.append([eot] + hay[:at] + needle + hay[at:] + question)
        keys.append(key)
    return prompts, keys


def passkey(model, tok, lengths: list[int], depths: list[float], samples: int, seed: int, autocast,
            batch_size: int = 8) -> dict:
    """{passkey_<length>_d<depth in %>: accuracy, _stderr} and `passkey` over all of them."""
    eot = tok.convert_tokens_to_ids(tok.eos_token)
    out, every = {}, []
    for length in lengths:
        for depth in depths:
            prompts, keys = passkey_prompts(tok, length, depth, samples, seed)
            with autocast():
                gens = sample(model, prompts, max_new_tokens=6, greedy=True, seed=seed, batch_size=batch_size,
                              eos_ids=[eot], pad_id=tok.pad_token_id)
            hits = [float(tok.decode(g[0], skip_special_tokens=True).strip().startswith(k)) for g, k in zip(gens, keys)]
            out.update(with_stderr(f"passkey_{length}_d{round(depth * 100)}", hits))
            every += hits
    if every:
        out["passkey"], out["passkey_stderr"] = float(np.mean(every)), mean_stderr(every)
    return out
