"""Chat data to token ids with the tokenizer's chat template: conversations with assistant-only
labels for sft, prompts and completions for dpo, rlvr and eval.

`encode_conversation` renders a conversation with `tok.apply_chat_template(...,
return_dict=True, return_assistant_tokens_mask=True)`. In transformers 5.23 `return_dict`
defaults to True (a BatchEncoding comes back), the mask needs `return_dict=True` and
`tokenize=True`, and it marks the tokens whose characters lie inside the template's
`{% generation %}` blocks: for lmbuild's ChatML template that is each assistant content plus its
`<|im_end|>` -- not `<|im_start|>assistant\\n` and not the "\\n" after `<|im_end|>`. A template
without `{% generation %}` only logs a warning there and returns an all-zero mask (which would
silently train on nothing), so this module raises instead. Labels are the ids on masked tokens and
-100 elsewhere (unshifted: HF causal LMs shift inside their loss).

`encode_prompt(tok, prompt) + encode_completion(tok, text)` equals the template applied to
prompt + [assistant text] minus its final token, the "\\n" that follows `<|im_end|>`. That "\\n" is
outside `{% generation %}`, so dpo scores exactly the tokens sft trains on. (It holds for the
project's byte-level BPE because its pre-tokenizer splits at the "\\n" ending
"<|im_start|>assistant\\n"; tests check it.)
"""

from __future__ import annotations

import re

from lmbuild.tokenize.chat_template import IM_END

IGNORE_INDEX = -100
_GENERATION_RE = re.compile(r"\{%-?\s*generation\s*-?%\}")


def has_generation_blocks(template: str) -> bool:
    return bool(_GENERATION_RE.search(template))


def _require_generation_blocks(tok) -> None:
    template = tok.get_chat_template()
    if not has_generation_blocks(template):
        raise ValueError("the tokenizer's chat template has no {% generation %} block, so assistant tokens "
                         "cannot be told apart; use lmbuild's template (lmbuild.tokenize.chat_template) or "
                         "wrap assistant content and its end token in {% generation %}...{% endgeneration %}")


def encode_conversation(tok, messages: list[dict], max_len: int) -> tuple[list[int], list[int]] | None:
    """(input_ids, labels) of one conversation, cut to its first `max_len` tokens.

    labels equal input_ids on assistant tokens (content + <|im_end|>) and are -100 on everything
    else (system and user turns, `<|im_start|>assistant\\n`, the "\\n" between turns). None when
    no assistant token is left after the cut.
    """
    _require_generation_blocks(tok)
    out = tok.apply_chat_template(messages, tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
    ids = list(out["input_ids"])[:max_len]
    mask = list(out["assistant_masks"])[:max_len]
    labels = [i if m else IGNORE_INDEX for i, m in zip(ids, mask)]
    if all(label == IGNORE_INDEX for label in labels):
        return None
    return ids, labels


def encode_prompt(tok, prompt_messages: list[dict]) -> list[int]:
    """The prompt rendered with add_generation_prompt=True (ends with `<|im_start|>assistant\\n`)."""
    return list(tok.apply_chat_template(prompt_messages, add_generation_prompt=True, tokenize=True, return_dict=False))


def encode_completion(tok, completion: str) -> list[int]:
    """completion + <|im_end|>: the tokens the template writes after the generation prompt (without
    the "\\n" that follows <|im_end|>, which is not trained on)."""
    return list(tok(completion + IM_END, add_special_tokens=False)["input_ids"])


def chat_ids(tok) -> tuple[list[int], int]:
    """(eos ids, pad id) of a tokenizer with lmbuild's template: generation stops on <|im_end|>
    and on the tokenizer's own eos (<|endoftext|> in lmbuild's tokenizers; a started-from model's
    `</s>` or the like). Pad: the tokenizer's pad, else its eos, else <|im_end|>."""
    im_end = tok.convert_tokens_to_ids(IM_END)
    own = tok.eos_token_id
    eos = [im_end] + ([own] if own is not None and own != im_end else [])
    pad = tok.pad_token_id if tok.pad_token_id is not None else eos[-1]
    return eos, pad
