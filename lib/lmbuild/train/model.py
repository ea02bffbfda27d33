"""Build a causal LM from params with `from_config` (Llama, OLMo2 with QK-norm, or a
mixture-of-experts family: lmbuild.train.moe)."""

from __future__ import annotations

import torch
from transformers import AutoModelForCausalLM, LlamaConfig, Olmo2Config

from .moe import MOE_TYPES, active_params, is_moe, moe_config


class ModelError(Exception):
    """Params that cannot make a model; the message names the key."""


def model_config(m: dict, vocab_size: int, eot_id: int, pad_id: int, attn: str = "sdpa"):
    if m["hidden_size"] % m["num_heads"]:
        raise ModelError(f"pretrain.model.hidden_size ({m['hidden_size']}) must be a multiple of "
                         f"pretrain.model.num_heads ({m['num_heads']})")
    kv = m.get("num_kv_heads") or m["num_heads"]
    if m["num_heads"] % kv:
        raise ModelError(f"pretrain.model.num_heads ({m['num_heads']}) must be a multiple of "
                         f"pretrain.model.num_kv_heads ({kv})")
    common = dict(
        vocab_size=vocab_size, hidden_size=m["hidden_size"], num_hidden_layers=m["num_layers"],
        num_attention_heads=m["num_heads"], num_key_value_heads=kv,
        intermediate_size=m["intermediate_size"], rope_theta=float(m["rope_theta"]),
        max_position_embeddings=m["max_length"], tie_word_embeddings=m["tie_embeddings"],
        rms_norm_eps=1e-5, initializer_range=m["init_std"], bos_token_id=eot_id,
        eos_token_id=eot_id, pad_token_id=pad_id, use_cache=True,
    )
    if m["type"] in MOE_TYPES:
        try:
            cfg = moe_config(m, common)
        except ValueError as exc:
            raise ModelError(str(exc)) from None
        cfg.router_z_loss_coef = float(m["moe"]["router_z_loss_coef"])  # read by the training loss
    else:
        cfg = {"llama": LlamaConfig, "olmo2": Olmo2Config}[m["type"]](**common)
    cfg._attn_implementation = attn
    return cfg


def build_model(m: dict, vocab_size: int, eot_id: int, pad_id: int, seed: int,
                attn: str = "sdpa") -> torch.nn.Module:
    """A freshly initialised model; the same seed gives the same weights."""
    cfg = model_config(m, vocab_size, eot_id, pad_id, attn)
    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(cfg, attn_implementation=attn, dtype=torch.float32)


def count_params(model: torch.nn.Module) -> dict:
    """Total (tied weights once), embedding and non-embedding parameter counts; for a
    mixture-of-experts model also the active ones (what one token passes through)."""
    total = sum(p.numel() for p in model.parameters())
    emb = model.get_input_embeddings().weight.numel()
    counts = {"total": total, "embedding": emb, "non_embedding": total - emb}
    if is_moe(model):
        counts["active"] = active_params(model)
        counts["active_non_embedding"] = counts["active"] - emb
    return counts
