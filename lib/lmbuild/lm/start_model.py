"""The model a post-training stage starts from: any Hugging Face causal-LM directory named by
`<stage>.init_model` (the previous stage's by default), made ready for lmbuild's chat stages.

lmbuild's chat code needs lmbuild's ChatML template (lmbuild.tokenize.chat_template) with its
`{% generation %}` blocks, which mark the assistant tokens sft trains on, and `<|im_start|>` /
`<|im_end|>` as single tokens. A directory whose tokenizer has no chat template, or one without
`{% generation %}` blocks or not in ChatML, gets lmbuild's template, and the two turn tokens are
added as special tokens where the vocabulary lacks them; the model's embedding rows for added
ids are set to the mean of the existing rows (Hewitt 2021, "Initializing new word embeddings for
pretrained language models": the mean keeps the new tokens' logits near the average instead of
dominating the softmax). The exact mean, not a sample around it: dpo_pairs and dpo prepare the
same directory separately and must get the same reference model.

What cannot be made to work is a one-line ParamsError naming the param: a directory that is not a
causal LM, and a tokenizer whose own tokens clash with the template's (a template token that is
in the vocabulary but tokenises to several pieces, or an eos / bos / pad token that is a template
token with another role).
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from ..params import ParamsError
from ..tokenize.chat_template import CHAT_TEMPLATE, IM_END, IM_START
from .chat import has_generation_blocks
from .model import load_model

TURN_TOKENS = (IM_START, IM_END)


def _fail(param: str, rule: str, value) -> ParamsError:
    return ParamsError([f"params.yaml: {param}: {rule}, got {value}"])


def check_causal_lm(path: Path, param: str) -> None:
    """The directory holds a model that AutoModelForCausalLM loads (config only, no weights read)."""
    from transformers import AutoConfig
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES
    if not (Path(path) / "config.json").is_file():
        raise _fail(param, "must be a local Hugging Face model directory with a config.json (nothing is "
                           "downloaded at run time)", str(path))
    try:
        config = AutoConfig.from_pretrained(path)
    except (ValueError, OSError, KeyError) as exc:
        raise _fail(param, f"config.json does not load ({str(exc).splitlines()[0]})", str(path)) from None
    causal = MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.get(config.model_type)
    archs = list(getattr(config, "architectures", None) or [])
    if causal is None:
        raise _fail(param, f"must be a causal LM; model_type {config.model_type!r} has no "
                           f"AutoModelForCausalLM class", str(path))
    if archs and causal not in archs and not any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in archs):
        raise _fail(param, f"must be a causal LM (AutoModelForCausalLM), its architectures are "
                           f"{', '.join(archs)}", str(path))


def _is_lmbuild_chat(template: str | None) -> bool:
    return bool(template) and has_generation_blocks(template) and all(t in template for t in TURN_TOKENS)


def _pieces(tok, text: str) -> list[int]:
    return list(tok(text, add_special_tokens=False)["input_ids"])


def prepare_tokenizer(tok, param: str) -> tuple[object, dict]:
    """The tokenizer with lmbuild's template and turn tokens; (tok, info) where info says what was
    added (`template_added`, `tokens_added`, `vocab_before`, `vocab_after`). Clashes raise."""
    vocab = tok.get_vocab()
    roles = {"eos": tok.eos_token, "bos": tok.bos_token, "pad": tok.pad_token}
    for role, t in roles.items():
        # eos = <|im_end|> is fine (it ends a turn, as Qwen's chat models do); nothing else may be
        if t == IM_START or (t == IM_END and role != "eos"):
            raise _fail(param, f"the tokenizer's {role} token is the chat template's {t} (another role)", t)
    for t in TURN_TOKENS:
        if t in vocab and _pieces(tok, t) != [vocab[t]]:
            raise _fail(param, f"the tokenizer has {t} in its vocabulary but splits it into "
                               f"{len(_pieces(tok, t))} pieces, so it cannot mark chat turns", t)
    before = len(tok)
    template_added = not _is_lmbuild_chat(tok.chat_template)
    if template_added:
        tok.chat_template = CHAT_TEMPLATE
    from tokenizers import AddedToken
    missing = [t for t in TURN_TOKENS if t not in vocab]
    if missing:
        tok.add_tokens([AddedToken(t, special=True, normalized=False) for t in missing], special_tokens=True)
    for t in TURN_TOKENS:
        if len(_pieces(tok, t)) != 1:
            raise _fail(param, f"the tokenizer splits {t} into {len(_pieces(tok, t))} pieces even as an added "
                               f"token", t)
    info = {"template_added": int(template_added), "tokens_added": len(tok) - before,
            "vocab_before": before, "vocab_after": len(tok)}
    return tok, info


def start_tokenizer(path: Path, param: str) -> tuple[object, dict]:
    """Check the directory is a causal LM and load its tokenizer, prepared for chat."""
    from transformers import AutoTokenizer
    check_causal_lm(path, param)
    tok, info = prepare_tokenizer(AutoTokenizer.from_pretrained(path), param)
    if info["template_added"] or info["tokens_added"]:
        print(f"{param.split('.')[0]}: {path}: " + (
            "lmbuild's ChatML chat template set (the tokenizer had none with {% generation %} blocks)"
            if info["template_added"] else "chat template kept") +
            (f"; added {info['tokens_added']} token(s) ({info['vocab_before']} -> {info['vocab_after']}), "
             f"their embeddings set to the mean embedding" if info["tokens_added"] else ""), file=sys.stderr)
    return tok, info


@torch.no_grad()
def _mean_rows(weight: torch.Tensor, old: int, new_ids: range) -> None:
    mean = weight[:old].float().mean(dim=0).to(weight.dtype)
    for i in new_ids:
        weight[i] = mean


def start_model(path: Path, tok, info: dict, attn: str = "sdpa") -> torch.nn.Module:
    """The model of `path` (fp32) with its embeddings grown to the prepared tokenizer: the added
    ids' input rows and (untied) output rows set to the mean of the rows the tokenizer had. (A
    tokenizer may already be longer than the model's embedding: transformers 5 loads a tokenizer
    saved beside a qwen2 config as Qwen2Tokenizer, which adds `<|endoftext|>` as unk.)"""
    model = load_model(path, attn)
    rows, new = model.get_input_embeddings().weight.shape[0], info["vocab_after"]
    if not info["tokens_added"] and new <= rows:
        return model
    # ids from the first one the model has no trained row for (its own rows, or the tokenizer's
    # size before the additions when the model pads its vocabulary above it) to the new size
    old = min(rows, info["vocab_before"])
    if new > rows:
        model.resize_token_embeddings(new, mean_resizing=False)
    new_ids = range(old, new)
    _mean_rows(model.get_input_embeddings().weight, old, new_ids)
    out = model.get_output_embeddings()
    if out is not None and out.weight is not model.get_input_embeddings().weight:
        _mean_rows(out.weight, old, new_ids)
        if getattr(out, "bias", None) is not None:
            out.bias[old:new] = out.bias[:old].mean()
    return model


def weights_id(path: Path) -> Path:
    """What a checkpoint fingerprint hashes of a start model: model.safetensors where there is one
    (lmbuild's exports), else the whole directory (sharded or .bin weights)."""
    single = Path(path) / "model.safetensors"
    return single if single.is_file() else Path(path)


__all__ = ["weights_id", "check_causal_lm", "prepare_tokenizer", "start_tokenizer", "start_model", "TURN_TOKENS"]
