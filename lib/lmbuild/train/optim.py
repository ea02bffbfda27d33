"""The training stages' optimizers (`<stage>.optim.name`).

adamw: AdamW with two parameter groups: weight decay on matrices, none on embeddings, norms and
biases (as in GPT-3 / OLMo: decaying a norm gain or an embedding row only shrinks it).

muon: Muon (Jordan et al. 2024, "Muon: An optimizer for hidden layers in neural networks") on the
hidden weight matrices (attention and MLP projections) and AdamW on everything else (embeddings,
the output head, norms, biases), the split nanochat and the Muon authors use: Muon's update is the
momentum orthogonalised by a Newton-Schulz iteration, which suits a matrix mapping hidden states
to hidden states; an embedding row or a gain vector is not such a map. The Muon half is
torch.optim.Muon (nesterov momentum 0.95, 5 Newton-Schulz steps with the quintic coefficients
(3.4445, -4.775, 2.0315), the update scaled by sqrt(max(1, rows / cols)) as in the original).
Muon's own learning rate (`optim.muon.lr`, ~0.02 in the literature against AdamW's ~1e-3) follows
the stage's schedule in proportion: each group carries `lr_scale`, its share of `optim.lr`.
"""

from __future__ import annotations

import torch


class OptimError(ValueError):
    """An optimizer request that cannot work: one line naming the key."""


def _embedding_ids(model: torch.nn.Module) -> set[int]:
    ids = {id(model.get_input_embeddings().weight)}
    out = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if out is not None:
        ids.add(id(out.weight))  # tied or not, the head maps hidden states to the vocabulary
    return ids


def param_groups(model: torch.nn.Module, weight_decay: float,
                 named: list[tuple[str, torch.nn.Parameter]] | None = None) -> list[dict]:
    """AdamW's two groups over `named` (default: every trainable parameter of the model, tied
    ones once): decay on matrices, none on the input embedding, norms and biases."""
    emb_ids = {id(model.get_input_embeddings().weight)}
    if named is None:
        named, seen = [], set()
        for name, p in model.named_parameters():
            if p.requires_grad and id(p) not in seen:
                seen.add(id(p))
                named.append((name, p))
    decay, no_decay = [], []
    for name, p in named:
        if id(p) in emb_ids or p.ndim < 2 or "norm" in name.lower() or name.endswith(".bias"):
            no_decay.append(p)
        else:
            decay.append(p)
    return [{"params": decay, "weight_decay": weight_decay, "name": "decay"},
            {"params": no_decay, "weight_decay": 0.0, "name": "no_decay"}]


def muon_split(model: torch.nn.Module) -> tuple[list[torch.nn.Parameter], list[tuple[str, torch.nn.Parameter]]]:
    """(hidden weight matrices for Muon, (name, parameter) of everything else for AdamW)."""
    emb = _embedding_ids(model)
    hidden, rest, seen = [], [], set()
    for name, p in model.named_parameters():
        if not p.requires_grad or id(p) in seen:
            continue
        seen.add(id(p))
        if p.ndim == 2 and id(p) not in emb and "norm" not in name.lower():
            hidden.append(p)
        elif p.ndim > 2:
            raise OptimError(f"optim.name: muon: parameter {name} has shape {tuple(p.shape)}; Muon orthogonalises "
                             "2-D matrices (a stacked-experts tensor needs one matrix per expert); use optim.name: adamw")
        else:
            rest.append((name, p))
    if not hidden:
        raise OptimError("optim.name: muon: the model has no hidden weight matrices to give Muon; use optim.name: adamw")
    return hidden, rest


class MuonAdamW(torch.optim.Optimizer):
    """torch.optim.Muon for the hidden matrices and torch.optim.AdamW for the rest, stepped together.

    It holds no groups or state of its own: `param_groups` lists the two optimizers' group dicts
    (the same objects, so setting a group's lr drives the optimizer that owns it) and the state
    dict is the pair of theirs, so checkpoints save and resume it as any optimizer."""

    def __init__(self, muon: torch.optim.Optimizer, adamw: torch.optim.Optimizer) -> None:
        self.muon, self.adamw = muon, adamw
        self.defaults = {}
        self._optimizer_step_pre_hooks = {}
        self._optimizer_step_post_hooks = {}

    @property
    def param_groups(self) -> list[dict]:
        return self.muon.param_groups + self.adamw.param_groups

    @property
    def state(self):
        return {**self.muon.state, **self.adamw.state}

    @torch.no_grad()
    def step(self, closure=None):
        loss = closure() if closure is not None else None
        self.muon.step()
        self.adamw.step()
        return loss

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.muon.zero_grad(set_to_none=set_to_none)
        self.adamw.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict:
        return {"muon": self.muon.state_dict(), "adamw": self.adamw.state_dict()}

    def load_state_dict(self, state_dict: dict) -> None:
        if set(state_dict) != {"muon", "adamw"}:
            raise OptimError("optim.name: muon: the checkpoint's optimizer state is not Muon + AdamW's; "
                             "resume with the optimizer it was saved with")
        self.muon.load_state_dict(state_dict["muon"])
        self.adamw.load_state_dict(state_dict["adamw"])


def make_optimizer(model: torch.nn.Module, o: dict) -> torch.optim.Optimizer:
    """The optimizer `o` (a stage's `optim` section) names. A group may carry `lr_scale`, its
    learning rate as a multiple of `o["lr"]` (the trainer sets lr = schedule(step) x lr_scale; 1
    when absent)."""
    adamw_kw = dict(lr=o["lr"], betas=(o["beta1"], o["beta2"]), eps=o["eps"])
    if o.get("name", "adamw") == "adamw":
        return torch.optim.AdamW(param_groups(model, o["weight_decay"]), **adamw_kw)
    m = o["muon"]
    hidden, rest = muon_split(model)
    if o["lr"] <= 0:
        raise OptimError("optim.lr: must be > 0 with optim.name: muon (Muon's lr is a multiple of it)")
    wd = o["weight_decay"] if m.get("weight_decay") is None else m["weight_decay"]
    muon = torch.optim.Muon([{"params": hidden, "lr_scale": m["lr"] / o["lr"], "name": "muon"}], lr=m["lr"],
                            weight_decay=wd, momentum=m["momentum"], nesterov=m["nesterov"], ns_steps=m["ns_steps"])
    # AdamW's half split as the adamw optimizer splits it: no decay on embeddings, norms and biases
    groups = [{**g, "lr_scale": 1.0} for g in param_groups(model, o["weight_decay"], rest) if g["params"]]
    return MuonAdamW(muon, torch.optim.AdamW(groups, **adamw_kw))
