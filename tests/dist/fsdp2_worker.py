"""Run by tests/test_fsdp.py under torchrun: a few optimizer steps of lmbuild's tiny Llama with
PyTorch FSDP2 (`fully_shard` on every decoder layer and the whole model, gloo on CPU), the
global batch split over the processes; then a sharded checkpoint saved and loaded with
torch.distributed.checkpoint. Writes the losses and the full state dict's checksum as JSON."""

from __future__ import annotations

import json
import os
import sys

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.state_dict import get_model_state_dict, get_state_dict, set_state_dict
from torch.distributed.fsdp import fully_shard

from lmbuild.params import validate_section
from lmbuild.train.model import build_model

TINY = {"hidden_size": 32, "num_layers": 2, "num_heads": 4, "intermediate_size": 64, "max_length": 64,
        "tie_embeddings": False}


def main(out: str, ckpt: str, steps: int = 4, batch: int = 8, seq: int = 32) -> None:
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    spec = {**validate_section("pretrain", {})["model"], **TINY}
    model = build_model(spec, 128, 0, 1, seed=3, attn="sdpa")
    model.config.use_cache = False
    for layer in model.model.layers:
        fully_shard(layer)
    fully_shard(model)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    gen = torch.Generator().manual_seed(11)
    losses = []
    for _ in range(steps):
        # the same global batch on every rank: counting sequences from random starts (learnable)
        start = torch.randint(0, 100, (batch, 1), generator=gen)
        x = 2 + (start + torch.arange(seq)) % 100
        part = x[rank::world]
        loss = model(input_ids=part, labels=part).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
        t = loss.detach().clone()
        dist.all_reduce(t)
        losses.append(t.item() / world)
    msd, osd = get_state_dict(model, opt)
    dcp.save({"model": msd, "optim": osd}, checkpoint_id=ckpt)
    # reload into a freshly built, freshly sharded model: the same weights come back
    fresh = build_model(spec, 128, 0, 1, seed=4, attn="sdpa")
    for layer in fresh.model.layers:
        fully_shard(layer)
    fully_shard(fresh)
    fresh_opt = torch.optim.AdamW(fresh.parameters(), lr=1e-2)
    fmsd, fosd = get_state_dict(fresh, fresh_opt)
    state = {"model": fmsd, "optim": fosd}
    dcp.load(state, checkpoint_id=ckpt)
    set_state_dict(fresh, fresh_opt, model_state_dict=state["model"], optim_state_dict=state["optim"])
    full = get_model_state_dict(model, options=torch.distributed.checkpoint.state_dict.StateDictOptions(
        full_state_dict=True))
    full_fresh = get_model_state_dict(fresh, options=torch.distributed.checkpoint.state_dict.StateDictOptions(
        full_state_dict=True))
    same = all(torch.equal(full[k], full_fresh[k]) for k in full)
    if rank == 0:
        with open(out, "w") as f:
            json.dump({"world": world, "losses": losses, "reloaded_equal": same,
                       "sharded": type(next(model.parameters())).__name__}, f)
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
