"""LoRA (Hu et al. 2021, arXiv:2106.09685) for the post-training stages, through peft: the base
weights are frozen and each targeted linear layer W gains a trainable low-rank update
W + (alpha / r) B A, with A (r x in) random and B (out x r) zero at the start, so training starts
from exactly the base model. Only A and B are trained; at export the update is merged into W
(`merge_and_unload`), so models/<stage> is a plain Hugging Face directory without peft keys.

`<stage>.lora`: {enabled, r, alpha, dropout, target_modules}; target_modules is a list of module
names (the last part of the name, Llama-style `q_proj` ... `down_proj` by default) or
"all-linear" (every linear layer but the output head, peft's own shortcut).
"""

from __future__ import annotations

import torch

from ..params import ParamsError


def linear_names(model: torch.nn.Module) -> set[str]:
    """The last name part of every linear layer (the names target_modules matches)."""
    return {name.rsplit(".", 1)[-1] for name, m in model.named_modules() if isinstance(m, torch.nn.Linear)}


def apply_lora(model: torch.nn.Module, cfg: dict, section: str, seed: int = 0) -> torch.nn.Module:
    """The model wrapped with LoRA adapters (cfg = `<section>.lora`, enabled), base weights frozen;
    A's random init drawn from `seed` (the global RNG is left as it was)."""
    from peft import LoraConfig, get_peft_model
    targets = cfg["target_modules"]
    if isinstance(targets, str):
        if targets != "all-linear":
            raise ParamsError([f"params.yaml: {section}.lora.target_modules: must be a list of module names or "
                               f"\"all-linear\", got {targets}"])
    else:
        have = linear_names(model)
        unknown = sorted(set(targets) - have)
        if unknown:
            raise ParamsError([f"params.yaml: {section}.lora.target_modules: must name linear layers of the model "
                               f"({', '.join(sorted(have))}), got {', '.join(unknown)}"])
    config = LoraConfig(r=cfg["r"], lora_alpha=cfg["alpha"], lora_dropout=cfg["dropout"],
                        target_modules=targets if isinstance(targets, str) else list(targets), bias="none",
                        task_type="CAUSAL_LM")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return get_peft_model(model, config)


def merged(model: torch.nn.Module) -> torch.nn.Module:
    """The base model with the adapters folded into its weights (in place: call once, at export)."""
    return model.merge_and_unload()


def trainable_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def maybe_lora(model: torch.nn.Module, p: dict, section: str, seed: int):
    """(model to train, export function or None) for the section's lora settings."""
    cfg = p.get("lora") or {}
    if not cfg.get("enabled"):
        return model, None
    return apply_lora(model, cfg, section, seed), merged
