"""Log-probabilities of completions under a causal LM, shared by preference optimisation (dpo)
and group-relative RL (rlvr).

- `token_logps`: log p(target) from logits, computed as logit[target] - logsumexp(logits) in
  float32, a chunk of rows at a time, with a hand-written backward (softmax recomputed per
  chunk), so neither pass keeps a float32 [B, T, V] copy of the logits around; bf16 logits stay
  bf16 and only one chunk is ever upcast.
- `completion_logps`: runs the model on prompt + completion and returns per-token log-probs
  aligned with input_ids (position t holds log p(input_ids[t] | input_ids[<t])), zero outside
  the completion. position_ids come from the attention mask, so left- and right-padded batches
  give the same values for the real tokens.
- `sequence_logps`: per-sequence sums and token counts, the inputs of the preference losses.

Temperature: when the completions were sampled at temperature tau, the sampling policy is
softmax(logits / tau); pass the same `temperature` so that ratios in GRPO compare like with like.
"""

from __future__ import annotations

import inspect

import torch
from torch import Tensor

# Elements of logits upcast to float32 at once (16 MiB per chunk).
CHUNK_ELEMENTS = 1 << 22


class _TokenLogps(torch.autograd.Function):
    """log p(target) per row of a [N, V] logits matrix; invalid (negative) targets give 0."""

    @staticmethod
    def forward(ctx, logits: Tensor, targets: Tensor, chunk_rows: int) -> Tensor:
        n = logits.shape[0]
        valid = targets >= 0
        safe = torch.where(valid, targets, torch.zeros_like(targets))
        out = torch.empty(n, dtype=torch.float32, device=logits.device)
        lse = torch.empty(n, dtype=torch.float32, device=logits.device)
        for i in range(0, n, chunk_rows):
            block = logits[i:i + chunk_rows].float()
            lse[i:i + chunk_rows] = torch.logsumexp(block, dim=-1)
            out[i:i + chunk_rows] = block.gather(-1, safe[i:i + chunk_rows, None]).squeeze(-1)
            del block
        out = torch.where(valid, out - lse, torch.zeros_like(out))
        ctx.save_for_backward(logits, safe, valid, lse)
        ctx.chunk_rows = chunk_rows
        return out

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        logits, safe, valid, lse = ctx.saved_tensors
        g = torch.where(valid, grad_out.float(), torch.zeros_like(grad_out, dtype=torch.float32))
        grad = torch.empty_like(logits)
        step = ctx.chunk_rows
        for i in range(0, logits.shape[0], step):
            gi = g[i:i + step, None]
            # d/dlogits [logit_y - lse] = onehot(y) - softmax
            block = -torch.exp(logits[i:i + step].float() - lse[i:i + step, None]) * gi
            block.scatter_add_(-1, safe[i:i + step, None], gi)
            grad[i:i + step] = block.to(grad.dtype)
            del block
        return grad, None, None


def token_logps(logits: Tensor, targets: Tensor, chunk_rows: int | None = None) -> Tensor:
    """log p(targets) under softmax(logits): logits [B, T, V] (any float dtype), targets [B, T]
    -> float32 [B, T]. Positions with a negative target (e.g. -100) get 0 and no gradient.
    `chunk_rows` rows of B*T are upcast to float32 at a time (default: ~16 MiB worth)."""
    if logits.dim() != 3 or targets.shape != logits.shape[:2]:
        raise ValueError(f"logits [B, T, V] and targets [B, T] expected, got {tuple(logits.shape)} "
                         f"and {tuple(targets.shape)}")
    b, t, v = logits.shape
    if chunk_rows is None:
        chunk_rows = max(1, CHUNK_ELEMENTS // max(v, 1))
    flat = logits.reshape(b * t, v)
    out = _TokenLogps.apply(flat, targets.reshape(b * t).long(), int(chunk_rows))
    return out.view(b, t)


def _accepts(model, name: str) -> bool:
    try:
        return name in inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return False


def completion_logps(model, input_ids: Tensor, attention_mask: Tensor, completion_mask: Tensor,
                     temperature: float = 1.0) -> Tensor:
    """Per-token log p of the completion tokens, [B, T] float32 aligned with input_ids.

    input_ids [B, T] = prompt + completion (right- or left-padded); attention_mask [B, T] 1 on
    real tokens; completion_mask [B, T] 1 on the tokens to score. Position t of the result holds
    log p(input_ids[t] | input_ids[<t]) / temperature-scaled, and 0 where completion_mask is 0.
    Gradients flow to the model unless called under torch.no_grad().
    """
    if input_ids.dim() != 2 or attention_mask.shape != input_ids.shape or completion_mask.shape != input_ids.shape:
        raise ValueError("input_ids, attention_mask and completion_mask must share a [B, T] shape")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    cmask = completion_mask.bool()
    if bool(cmask[:, 0].any()):
        raise ValueError("completion_mask marks position 0, which has no preceding token to predict it")
    if bool((cmask & ~attention_mask.bool()).any()):
        raise ValueError("completion_mask marks padding (attention_mask 0)")
    b, t = input_ids.shape
    out = torch.zeros(b, t, dtype=torch.float32, device=input_ids.device)
    cols = cmask.any(dim=0).nonzero()
    if cols.numel() == 0:
        return out
    first = int(cols[0])  # earliest scored position in the batch; logits from first-1 are needed

    position_ids = (attention_mask.long().cumsum(dim=-1) - 1).clamp(min=0)
    kwargs = {"input_ids": input_ids, "attention_mask": attention_mask, "position_ids": position_ids}
    if _accepts(model, "use_cache"):
        kwargs["use_cache"] = False
    keep = t - (first - 1)
    if _accepts(model, "logits_to_keep"):
        kwargs["logits_to_keep"] = keep  # skip the LM head on prompt positions nobody scores
    logits = model(**kwargs).logits
    logits = logits[:, -keep:] if logits.shape[1] >= keep else logits
    if logits.shape[1] != keep:
        raise ValueError(f"model returned {logits.shape[1]} logit positions, expected {keep}")
    if temperature != 1.0:
        logits = logits / temperature
    # positions first-1 .. t-2 predict tokens first .. t-1; the last position predicts nothing
    # (target -100). Scoring all `keep` positions avoids a sliced, non-contiguous copy of logits.
    targets = torch.cat([input_ids[:, first:], input_ids.new_full((b, 1), -100)], dim=1)
    per = token_logps(logits, targets)[:, :-1]
    scored = torch.where(cmask[:, first:], per, torch.zeros_like(per))
    return torch.cat([out[:, :first], scored], dim=1)


def sequence_logps(per_token: Tensor, completion_mask: Tensor) -> tuple[Tensor, Tensor]:
    """(sum over completion tokens [B], number of completion tokens [B]), both float32."""
    m = completion_mask.to(torch.float32)
    return (per_token.float() * m).sum(dim=-1), m.sum(dim=-1)
