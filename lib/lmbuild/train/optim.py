"""AdamW with two parameter groups: weight decay on matrices, none on embeddings, norms and
biases (as in GPT-3 / OLMo: decaying a norm gain or an embedding row only shrinks it)."""

from __future__ import annotations

import torch


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    emb_ids = {id(model.get_input_embeddings().weight)}
    decay, no_decay, seen = [], [], set()
    for name, p in model.named_parameters():
        if not p.requires_grad or id(p) in seen:
            continue
        seen.add(id(p))
        if id(p) in emb_ids or p.ndim < 2 or "norm" in name.lower() or name.endswith(".bias"):
            no_decay.append(p)
        else:
            decay.append(p)
    return [{"params": decay, "weight_decay": weight_decay, "name": "decay"},
            {"params": no_decay, "weight_decay": 0.0, "name": "no_decay"}]


def make_optimizer(model: torch.nn.Module, o: dict) -> torch.optim.AdamW:
    return torch.optim.AdamW(param_groups(model, o["weight_decay"]), lr=o["lr"],
                             betas=(o["beta1"], o["beta2"]), eps=o["eps"])
