"""Right-padded batches of (prompt, completion) token ids with a mask over the completion tokens:
what dpo, rlvr and eval score log-probs on."""

from __future__ import annotations

import torch


def right_pad(seqs: list[tuple[list[int], list[int]]], pad_id: int) -> dict[str, torch.Tensor]:
    """(prompt, completion) id lists -> right-padded input_ids, attention_mask, completion_mask."""
    width = max(len(p) + len(c) for p, c in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    attn = torch.zeros((len(seqs), width), dtype=torch.long)
    comp = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, (p, c) in enumerate(seqs):
        ids[i, :len(p) + len(c)] = torch.tensor(p + c)
        attn[i, :len(p) + len(c)] = 1
        comp[i, len(p):len(p) + len(c)] = 1
    return {"input_ids": ids, "attention_mask": attn, "completion_mask": comp}
