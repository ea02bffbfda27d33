"""Sampling completions from a causal LM with a KV cache (transformers `generate`), greedy or at
a temperature, for any prompts given as token ids (the task evals of lmbuild/lm/generation.py,
dpo's on-policy pairs, rlvr's groups, the judge, the infilling eval).

Prompts are left-padded into batches; every batch draws from its own generator state derived
from (seed, batch number) inside `torch.random.fork_rng`, so the samples do not depend on what
ran before and do not disturb the training RNG (a resumed run draws what an uninterrupted one
would).
"""

from __future__ import annotations

import sys

import torch


def _left_pad(prompts: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for i, p in enumerate(prompts):
        ids[i, width - len(p):] = torch.tensor(p, dtype=torch.long)
        mask[i, width - len(p):] = 1
    return ids, mask


def _cut(seq: list[int], eos_ids: set[int], pad_id: int) -> list[int]:
    """Up to and including the first eos; trailing padding dropped."""
    for i, t in enumerate(seq):
        if t in eos_ids:
            return seq[:i + 1]
    while seq and seq[-1] == pad_id:
        seq = seq[:-1]
    return seq


@torch.no_grad()
def sample(model, prompts: list[list[int]], *, n: int = 1, max_new_tokens: int = 32, greedy: bool = False,
           temperature: float = 1.0, top_p: float = 1.0, seed: int = 0, batch_size: int = 64,
           eos_ids: list[int], pad_id: int, progress: str | None = None) -> list[list[list[int]]]:
    """For every prompt (token ids), `n` completions as token ids (ending with an eos id unless
    max_new_tokens ran out). batch_size counts sequences (prompts x n)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    per_batch = max(1, batch_size // n)
    out: list[list[list[int]]] = []
    eos = set(eos_ids)
    from tqdm import tqdm
    bar = tqdm(total=len(prompts), desc=progress or "sampling", unit="prompt", file=sys.stderr,
               disable=progress is None, dynamic_ncols=True)
    for b, start in enumerate(range(0, len(prompts), per_batch)):
        chunk = prompts[start:start + per_batch]
        ids, mask = _left_pad(chunk, pad_id)
        devices = [device] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed * 1_000_003 + b)
            gen = model.generate(
                input_ids=ids.to(device), attention_mask=mask.to(device), max_new_tokens=max_new_tokens,
                do_sample=not greedy, temperature=temperature if not greedy else None,
                top_p=top_p if not greedy else None, top_k=0 if not greedy else None, num_return_sequences=n,
                eos_token_id=list(eos_ids), pad_token_id=pad_id, use_cache=True)
        new = gen[:, ids.shape[1]:].tolist()
        for i in range(len(chunk)):
            out.append([_cut(new[i * n + k], eos, pad_id) for k in range(n)])
        bar.update(len(chunk))
    bar.close()
    model.train(was_training)
    return out
