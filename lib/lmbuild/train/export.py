"""Write the trained model as a Hugging Face directory: config.json, model.safetensors,
generation_config.json (causal LMs; a reward model's sequence-classification head does not
generate) and the tokenizer files, appearing atomically."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoTokenizer, GenerationConfig

from ..shards import atomic_dir


def export_model(model: torch.nn.Module, tokenizer_dir: Path | str, out: Path | str,
                 eos_ids: list[int], pad_id: int, tokenizer=None) -> None:
    """eos_ids: generation stops on any of them (chat stages: <|im_end|> and <|endoftext|>).
    tokenizer: a tokenizer object to save instead of loading tokenizer_dir's."""
    with atomic_dir(out) as tmp:
        model.config.use_cache = True
        if model.can_generate():
            eos = eos_ids[0] if len(eos_ids) == 1 else list(eos_ids)
            # No length here: a generation_config length overrides what a harness asks per task
            # (lm-eval's max_gen_toks); lmbuild passes its own max_new_tokens on every call.
            model.generation_config = GenerationConfig(bos_token_id=eos_ids[-1], eos_token_id=eos,
                                                       pad_token_id=pad_id, do_sample=False)
        else:  # a sequence classifier pools the last token that is not the pad id
            model.config.pad_token_id = pad_id
        model.save_pretrained(tmp, safe_serialization=True)
        # the tokenizer's own files only: tokenizer_dir may be a model directory (the previous stage's)
        (tokenizer if tokenizer is not None else AutoTokenizer.from_pretrained(tokenizer_dir)).save_pretrained(tmp)
