"""Mixture-of-experts language models (`pretrain.model.type: olmoe | qwen2_moe | mixtral`), built
from a transformers config and trained by the same trainer as the dense ones.

Each MoE layer's router sends every token to `experts_per_token` of `num_experts` feed-forward
experts (top-k of a softmax over experts); transformers' implementations are dropless (no expert
capacity), so no token is dropped or overflows. Two router losses keep the experts in use:

- load balancing (Switch Transformer, Fedus et al. 2022, eq. 4; as OLMoE and Mixtral train):
  E * sum_e f_e * P_e per layer, f_e the share of routed slots given to expert e and P_e the mean
  router probability of e, which is 1 when the load is uniform; transformers computes it
  (`router_aux_loss_coef`, 0.01 in OLMoE, Muennighoff et al. 2024) and adds it to the loss;
- router z-loss (ST-MoE, Zoph et al. 2022, eq. 5): the mean over tokens of logsumexp(router
  logits)^2, which keeps router logits small and the softmax stable; added here with
  `router_z_loss_coef` (0.001 in ST-MoE and OLMoE).

The training loss therefore carries the two router terms (its dvclive extras name each); the
validation loss does not (a plain forward reports the language-modelling loss only), so it
compares with a dense model's. `active_params` counts what one token passes through: FLOPs and
MFU are computed on it.
"""

from __future__ import annotations

import torch

MOE_TYPES = ("olmoe", "qwen2_moe", "mixtral")


def moe_config(m: dict, common: dict):
    """The transformers config of an MoE model; `common` holds the keys every family shares."""
    from transformers import MixtralConfig, OlmoeConfig, Qwen2MoeConfig
    e = m["moe"]
    if e["experts_per_token"] > e["num_experts"]:
        raise ValueError(f"pretrain.model.moe.experts_per_token ({e['experts_per_token']}) must be at most "
                         f"pretrain.model.moe.num_experts ({e['num_experts']})")
    if e["shared_expert_size"] and m["type"] != "qwen2_moe":
        raise ValueError(f"pretrain.model.moe.shared_expert_size: {m['type']} has no shared expert; "
                         "use type qwen2_moe or set it to null")
    width = e["expert_size"] or m["intermediate_size"]
    router = dict(num_experts_per_tok=e["experts_per_token"], router_aux_loss_coef=e["router_aux_loss_coef"],
                  output_router_logits=False)  # router logits on request only: the training forward asks
    if m["type"] == "olmoe":
        return OlmoeConfig(**{**common, "intermediate_size": width}, num_experts=e["num_experts"], **router)
    if m["type"] == "mixtral":
        return MixtralConfig(**{**common, "intermediate_size": width}, num_local_experts=e["num_experts"], **router)
    return Qwen2MoeConfig(**common, moe_intermediate_size=width, num_experts=e["num_experts"],
                          shared_expert_intermediate_size=e["shared_expert_size"] or 0,
                          decoder_sparse_step=1, mlp_only_layers=[], norm_topk_prob=True, **router)


def is_moe(model: torch.nn.Module) -> bool:
    return getattr(model.config, "model_type", "") in ("olmoe", "qwen2_moe", "mixtral")


def _experts(model: torch.nn.Module) -> int:
    cfg = model.config
    return getattr(cfg, "num_experts", None) or getattr(cfg, "num_local_experts")


def active_params(model: torch.nn.Module) -> int:
    """Parameters one token passes through: every parameter once (tied weights once), less the
    routed experts it is not sent to (k of E per MoE layer; a shared expert always runs)."""
    total = sum(p.numel() for p in model.parameters())
    if not is_moe(model):
        return total
    n_exp, k = _experts(model), model.config.num_experts_per_tok
    routed = 0
    for name, p in model.named_parameters():
        # the routed experts' weights: stacked (E, ...) tensors under an `experts` module
        if ".experts." in f".{name}" and "shared" not in name and p.ndim == 3 and p.shape[0] == n_exp:
            routed += p.numel()
    return total - routed * (n_exp - k) // n_exp


def router_losses(out, model: torch.nn.Module, z_coef: float) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """(loss to train on, extras for dvclive) from a forward run with output_router_logits: the
    model's loss (language modelling + load balancing) plus z_coef x the router z-loss; the extras
    are the two router terms and the heaviest expert's share of routed slots relative to a uniform
    load (1.0 = balanced; E = every slot to one expert), the largest over layers."""
    logits = [r.float() for r in out.router_logits if r is not None]
    z = torch.stack([torch.logsumexp(r, dim=-1).pow(2).mean() for r in logits]).mean()
    n_exp, k = _experts(model), model.config.num_experts_per_tok
    with torch.no_grad():
        loads = []
        for r in logits:
            chosen = r.topk(k, dim=-1).indices.flatten()
            share = torch.bincount(chosen, minlength=n_exp).float() / chosen.numel()
            loads.append(share.max() * n_exp)
        load_max = torch.stack(loads).max()
    aux = out.aux_loss if getattr(out, "aux_loss", None) is not None else torch.zeros((), device=z.device)
    return out.loss + z_coef * z, {"router_aux_loss": aux.detach(), "router_z_loss": z.detach(),
                                   "expert_load_max": load_max}
