"""Loading a trained model for inference or further training, and the attention implementation a
device supports: what every model stage and eval share."""

from __future__ import annotations

import importlib.util

import torch
from transformers import AutoModelForCausalLM


def choose_attention(requested: str, device: torch.device) -> str:
    """`auto` -> flash_attention_2 when flash_attn imports and the GPU is Ampere or newer, else sdpa."""
    if requested != "auto":
        return requested
    if (device.type == "cuda" and importlib.util.find_spec("flash_attn") is not None
            and torch.cuda.get_device_capability(device)[0] >= 8):
        return "flash_attention_2"
    return "sdpa"


def load_model(path, attn: str = "sdpa", config=None) -> torch.nn.Module:
    """The model at `path` in fp32; `config` replaces its saved config (long-context extension
    loads the weights under new RoPE settings)."""
    extra = {"config": config} if config is not None else {}
    return AutoModelForCausalLM.from_pretrained(path, attn_implementation=attn, dtype=torch.float32, **extra)
