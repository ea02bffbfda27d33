"""Write the trained model as a Hugging Face directory: config.json, model.safetensors,
generation_config.json and the tokenizer files, appearing atomically."""

from __future__ import annotations

import shutil
from pathlib import Path

import torch
from transformers import GenerationConfig

from ..shards import atomic_dir


def export_model(model: torch.nn.Module, tokenizer_dir: Path | str, out: Path | str,
                 eot_id: int, pad_id: int) -> None:
    with atomic_dir(out) as tmp:
        model.config.use_cache = True
        model.generation_config = GenerationConfig(bos_token_id=eot_id, eos_token_id=eot_id,
                                                   pad_token_id=pad_id, do_sample=False, max_new_tokens=64)
        model.save_pretrained(tmp, safe_serialization=True)
        for f in sorted(Path(tokenizer_dir).iterdir()):
            if f.is_file():
                shutil.copy2(f, tmp / f.name)
