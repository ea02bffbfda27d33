"""Log-likelihood scoring shared by the multiple-choice tasks and preference accuracy: the summed
log-probability of a continuation given its context, in batches sorted by length.

Context and continuation are encoded separately and concatenated (as lm-evaluation-harness
does), so every choice of an item is scored after exactly the same context tokens. Pairs longer
than `max_len` lose context tokens from the left; the continuation is always scored whole.
"""

from __future__ import annotations

import os
import sys

import torch

from ..lm.logprobs import completion_logps, sequence_logps
from ..lm.padding import right_pad


def lm_eval_pair(tok, context: str, continuation: str, *, prefix_id: int, add_bos: bool = False
                 ) -> tuple[list[int], list[int]]:
    """(context ids, continuation ids) encoded as lm-evaluation-harness 0.4 encodes a
    loglikelihood request: trailing whitespace of the context moves to the continuation, the
    whole string is encoded once and split after the context's own encoding (so a merge across
    the boundary is split as lm-eval splits it), no BOS unless asked (lm-eval's default
    `add_bos_token=False`), and an empty context becomes the prefix token (<|endoftext|>)."""
    spaces = len(context) - len(context.rstrip())
    if spaces:
        context, continuation = context[:-spaces], context[-spaces:] + continuation
    if not context:
        return [prefix_id], tok(continuation, add_special_tokens=False)["input_ids"]
    bos = [prefix_id] if add_bos else []
    whole = bos + tok(context + continuation, add_special_tokens=False)["input_ids"]
    ctx = bos + tok(context, add_special_tokens=False)["input_ids"]
    return ctx, whole[len(ctx):]


@torch.no_grad()
def continuation_logps(model, pairs: list[tuple[list[int], list[int]]], *, pad_id: int, batch_size: int,
                       max_len: int, desc: str | None = None) -> list[tuple[float, int]]:
    """(sum of log p(continuation tokens), number of tokens) for every (context ids, continuation
    ids); the context must hold at least one token (a BOS / <|endoftext|> for raw text)."""
    from tqdm import tqdm
    model.eval()
    device = next(model.parameters()).device
    cut = []
    for ctx, cont in pairs:
        if not ctx or not cont:
            raise ValueError("a scored pair needs a non-empty context and continuation")
        cont = cont[-(max_len - 1):]
        room = max_len - len(cont)
        cut.append((ctx[-room:], cont))
    order = sorted(range(len(cut)), key=lambda i: -(len(cut[i][0]) + len(cut[i][1])))
    out: list[tuple[float, int]] = [(0.0, 0)] * len(cut)
    bar = tqdm(total=len(cut), desc=desc or "scoring", unit="seq", file=sys.stderr, dynamic_ncols=True,
               disable=desc is None or os.environ.get("LMBUILD_NO_PROGRESS") == "1")
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        batch = {k: v.to(device) for k, v in right_pad([cut[i] for i in idx], pad_id).items()}
        per = completion_logps(model, batch["input_ids"], batch["attention_mask"], batch["completion_mask"])
        sums, counts = sequence_logps(per, batch["completion_mask"])
        for j, i in enumerate(idx):
            out[i] = (float(sums[j]), int(counts[j]))
        bar.update(len(idx))
    bar.close()
    return out
