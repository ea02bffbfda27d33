"""The rephrasing styles and how a prompt is put to the model.

WRAP (Maini et al. 2024, sec. 3) rephrases web text in four styles: easy (plain words a child
follows), medium (high-quality English such as Wikipedia), hard (terse, abstruse) and
question-answer (a conversation of questions and answers); it found the Wikipedia-like and QA
styles the most useful mixed 1:1 with real data. The instructions below are lmbuild's own
wording of those four styles; `rephrase.prompts` adds or replaces styles with the user's own
text, in which `{text}` marks where the document chunk goes.

A prompt reaches the model in one of two formats: `chat` (the instruction as a user turn through
the tokenizer's chat template, for an instruct model) or `plain` (the instruction, the text and
a cue line, for a base model that only continues text).
"""

from __future__ import annotations

STYLES = {
    "easy": "Rewrite the text below in very simple words and short sentences, so that a young child "
            "could follow it. Keep every fact.\n\n{text}",
    "wiki": "Rewrite the text below as a passage of a high-quality encyclopedia article, in clear, "
            "formal English. Keep every fact and add none.\n\n{text}",
    "hard": "Rewrite the text below in terse, dense, scholarly language. Keep every fact.\n\n{text}",
    "qa": "Turn the text below into a series of questions a reader might ask, each followed by its "
          "answer taken from the text. Write each as 'Question: ...' then 'Answer: ...'.\n\n{text}",
}

PLAIN_CUE = "\n\nRewritten:\n"   # where a base model is to start writing


class StyleError(ValueError):
    """A style with no prompt, or a prompt without the {text} slot."""


def prompts_for(styles: list[str], custom: dict[str, str]) -> dict[str, str]:
    """The instruction template of each asked style: the user's (rephrase.prompts) over the
    built-in ones."""
    table = {**STYLES, **custom}
    problems = [f"params.yaml: rephrase.styles: {s!r} has no prompt; use one of {', '.join(sorted(table))} or "
                f"add it under rephrase.prompts" for s in styles if s not in table]
    problems += [f"params.yaml: rephrase.prompts.{s}: the prompt must contain {{text}} (where the document "
                 f"goes)" for s, t in custom.items() if "{text}" not in t]
    if problems:
        raise StyleError("\n".join(problems))
    return {s: table[s] for s in styles}


def render(tok, template: str, text: str, fmt: str) -> list[int]:
    """Token ids of one prompt: the template filled with `text`, in the chat or plain format."""
    instruction = template.replace("{text}", text)
    if fmt == "chat":
        return list(tok.apply_chat_template([{"role": "user", "content": instruction}], add_generation_prompt=True,
                                            tokenize=True, return_dict=False))
    return list(tok(instruction + PLAIN_CUE, add_special_tokens=False)["input_ids"])
