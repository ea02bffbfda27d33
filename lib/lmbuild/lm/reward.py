"""Scoring (prompt, completion) pairs with a reward model: one scalar per completion from a
sequence-classification model with one label, read at the last non-pad token.

The same encoding everywhere: reward_model training and its held-out eval (token ids from the
dpo_pairs file), dpo_pairs' `reward_model` scorer, rlvr's reward-model term and the judge. For a
tokenizer with lmbuild's chat template the sequence is `encode_prompt + encode_completion` (the
tokens dpo scores and sft trains on, ending with <|im_end|>), the prompt cut from the left to fit
`max_len`, exactly as `posttrain.pairs.encode_pair` cuts it. A foreign reward model (any local
sequence-classification directory) gets its own chat template applied to prompt + answer, or
prompt and answer joined by a newline when it has none.

Batches are right-padded with the model's `config.pad_token_id`: transformers' *ForSequenceClassification
pools the rightmost token that is not the pad id, so that id must be set and must not occur in
real sequences (lmbuild's <|pad|>).
"""

from __future__ import annotations

from pathlib import Path

import torch

from lmbuild.tokenize.chat_template import IM_END

from ..params import ParamsError
from ..stats import with_stderr
from .chat import encode_completion, encode_prompt
from .padding import right_pad


def load_reward_model(path: Path | str, what: str):
    """(model in eval mode, tokenizer) of a local sequence-classification model with one label;
    `what` names the params key in the one-line error (`params.yaml: dpo.pairs.scorer.path`)."""
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer
    if not path:
        raise ParamsError([f"params.yaml: {what}: a reward model needs a local model directory, got {path}"])
    if not (Path(path) / "config.json").is_file():
        raise ParamsError([f"params.yaml: {what}: no model directory (config.json) at {path}"])
    cfg = AutoConfig.from_pretrained(path)
    archs = cfg.architectures or []
    if not any(a.endswith("ForSequenceClassification") for a in archs) or cfg.num_labels != 1:
        raise ParamsError([f"params.yaml: {what}: must be a sequence-classification model with one label "
                           f"(a reward model), got {', '.join(archs) or 'no architecture'} with "
                           f"{cfg.num_labels} label(s) at {path}"])
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(path, dtype=torch.float32).eval()
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    return model, tok


def encode_scored(tok, prompt: list[dict], completion: str, max_len: int) -> tuple[list[int], list[int]]:
    """(prompt ids, completion ids) as the reward model reads them; the prompt cut from the left
    so that both fit max_len (the completion's tail is cut only when it alone is longer)."""
    if IM_END in tok.get_vocab():  # lmbuild's chat template: the ids dpo_pairs stores
        p, c = encode_prompt(tok, prompt), encode_completion(tok, completion)
    elif tok.chat_template:
        full = list(tok.apply_chat_template(prompt + [{"role": "assistant", "content": completion}], tokenize=True,
                                            return_dict=False))
        p, c = [], full
    else:
        p, c = [], list(tok(prompt[-1]["content"] + "\n" + completion)["input_ids"])
    c = c[-max_len:]
    room = max_len - len(c)
    return (p[-room:] if room else []), c


@torch.no_grad()
def score_ids(model, seqs: list[tuple[list[int], list[int]]], batch_size: int = 32) -> torch.Tensor:
    """Rewards (float32, on the CPU) of (prompt ids, completion ids) pairs, in order."""
    pad = model.config.pad_token_id
    if pad is None:
        raise ValueError("reward model: config.pad_token_id is unset, so the scored token is unknown")
    device = next(model.parameters()).device
    was = model.training
    model.eval()
    out = []
    for i in range(0, len(seqs), batch_size):
        b = right_pad(seqs[i:i + batch_size], pad)
        out.append(model(input_ids=b["input_ids"].to(device),
                         attention_mask=b["attention_mask"].to(device)).logits[:, 0].float().cpu())
    model.train(was)
    return torch.cat(out) if out else torch.zeros(0)


def score(model, tok, prompts: list[list[dict]], completions: list[str], *, max_len: int | None = None,
          batch_size: int = 32) -> list[float]:
    """The reward of every (prompt messages, completion text); max_len defaults to the model's
    context (config.max_position_embeddings)."""
    if len(prompts) != len(completions):
        raise ValueError(f"score: {len(prompts)} prompts but {len(completions)} completions")
    max_len = max_len or model.config.max_position_embeddings
    seqs = [encode_scored(tok, p, c, max_len) for p, c in zip(prompts, completions)]
    return score_ids(model, seqs, batch_size).tolist()


def accuracy_by_family(name: str, right: list[float], rows: list[dict]) -> dict[str, float]:
    """{name_<family>: mean, name_<family>_stderr: ...} of per-pair scores `right` (1 when the
    chosen answer is ranked above the rejected one) over the pairs of each task family, in sorted
    order; pairs without a `family` (read from pair files) count only in the overall figure."""
    fams = [r.get("family") for r in rows]
    out: dict[str, float] = {}
    for f in sorted({f for f in fams if f is not None}):
        out.update(with_stderr(f"{name}_{f}", [v for v, g in zip(right, fams) if g == f]))
    return out
