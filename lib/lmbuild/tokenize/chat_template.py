"""Special tokens and the one chat template (ChatML) that sft, dpo, rlvr and eval all use.

    <|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n
    <|im_start|>assistant\nHello!<|im_end|>\n

- `<|endoftext|>` separates documents in the token shards; it is also the tokenizer's bos and
  eos token (one boundary token, as GPT-2 / nanoGPT do: no extra bos is prepended).
- `<|im_end|>` ends every turn; generation in chat stages must stop on it (put both
  `<|im_end|>` and `<|endoftext|>` in generation_config.eos_token_id).
- `<|pad|>` pads batches; it never appears in the token shards.
- Assistant content plus its `<|im_end|>` sit inside `{% generation %}` so that
  `apply_chat_template(..., return_assistant_tokens_mask=True)` marks exactly the tokens SFT
  trains on.
"""

from __future__ import annotations

EOT = "<|endoftext|>"
PAD = "<|pad|>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
# Order fixes their ids: 0..3 in a tokenizer trained here.
SPECIAL_TOKENS = [EOT, PAD, IM_START, IM_END]

CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'assistant' -%}"
    "{{- '<|im_start|>assistant\\n' -}}"
    "{%- generation -%}{{- message['content'] + '<|im_end|>' -}}{%- endgeneration -%}"
    "{{- '\\n' -}}"
    "{%- else -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' -}}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"
)


def render(messages: list[dict], add_generation_prompt: bool = False) -> str:
    """The template in plain Python (same output as apply_chat_template), for code without jinja."""
    out = "".join(f"{IM_START}{m['role']}\n{m['content']}{IM_END}\n" for m in messages)
    return out + (f"{IM_START}assistant\n" if add_generation_prompt else "")
