"""The rlvr stage's `ppo` algorithm: PPO for RLHF as InstructGPT describes it (Ouyang et al. 2022,
arXiv:2203.02155), run by the shared trainer.

Four models: the policy (trained, from the starting model), a value model (trained: a
token-classification head with one output over the same transformer, initialised from the reward
model as Ouyang et al. do, or from the policy), the frozen reference (the starting model) and the
frozen scorer (a reward model and/or the task verifiers). The policy and the value model are one
module for the trainer (`PolicyAndValue`), optimised together with one loss,
policy_loss + vf_coef * value_loss; only the policy is exported.

Each sampling round: `batch_size` training prompts x `group_size` completions from the current
policy; the scorer scores each completion; per-token rewards are -kl_coef * log(pi / pi_ref) with
the score added on the last token; GAE gives advantages and returns from the value model's
predictions at sampling time (lmbuild.posttrain.ppo holds the maths). The next
`updates_per_batch` optimizer steps (PPO's epochs over the rollouts) minimise the clipped losses.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch
from torch import Tensor, nn
from transformers import AutoModelForTokenClassification

from ..lm.padding import right_pad
from ..lm.logprobs import completion_logps
from ..params import ParamsError
from .ppo import explained_variance, gae, kl_rewards, ppo_policy_loss, value_loss, whiten


class PolicyAndValue(nn.Module):
    """The policy (a causal LM) and the value model trained as one module; `config` and the
    input embeddings are the policy's (the trainer's FLOPs estimate and export see the policy)."""

    def __init__(self, policy: nn.Module, value: nn.Module):
        super().__init__()
        self.policy = policy
        self.value = value

    @property
    def config(self):
        return self.policy.config

    @property
    def generation_config(self):
        return self.policy.generation_config

    def get_input_embeddings(self):
        return self.policy.get_input_embeddings()

    def forward(self, *args, **kwargs):
        return self.policy(*args, **kwargs)

    def generate(self, *args, **kwargs):
        return self.policy.generate(*args, **kwargs)


def load_value_model(path: Path, policy_vocab: int, attn: str) -> nn.Module:
    """A one-output token-classification model over the transformer stored at `path` (the
    reward model's directory: its score head becomes the value head; or the starting model: a
    new head). Its vocabulary must be the policy's: both read the same token ids."""
    try:
        value = AutoModelForTokenClassification.from_pretrained(path, num_labels=1, attn_implementation=attn,
                                                                dtype=torch.float32)
    except (ValueError, OSError) as exc:
        raise ParamsError([f"params.yaml: rlvr.ppo.value_init: {path} cannot hold a value head ({exc})"]) from None
    vocab = value.get_input_embeddings().weight.shape[0]
    if vocab != policy_vocab:
        raise ParamsError([f"params.yaml: rlvr.ppo.value_init: {path} has a vocabulary of {vocab} tokens, the "
                           f"policy {policy_vocab}; the value model must share the policy's tokenizer"])
    if value.config.pad_token_id is None:
        value.config.pad_token_id = 0
    return value


def token_values(value: nn.Module, input_ids: Tensor, attention_mask: Tensor, completion_mask: Tensor) -> Tensor:
    """V(s_t) aligned like completion_logps: position t holds the value of the state in which
    token t is chosen, i.e. the head's output after reading tokens < t; 0 outside the mask."""
    position_ids = (attention_mask.long().cumsum(dim=-1) - 1).clamp(min=0)
    out = value(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids).logits[..., 0].float()
    shifted = torch.cat([out.new_zeros(out.shape[0], 1), out[:, :-1]], dim=1)
    return shifted * completion_mask.float()


def rollout_batch(model: PolicyAndValue, ref: nn.Module, seqs: list[tuple[list[int], list[int]]], scores: list[float],
                  *, pad_id: int, temperature: float, kl_coef: float, gamma: float, lam: float,
                  device: torch.device) -> dict[str, Tensor]:
    """One micro-batch of rollouts with everything the losses need, computed once at sampling
    time: old log-probs and values, reference log-probs, per-token rewards, advantages, returns."""
    batch = right_pad(seqs, pad_id)
    dev = {k: v.to(device) for k, v in batch.items()}
    args = (dev["input_ids"], dev["attention_mask"], dev["completion_mask"])
    with torch.no_grad():
        old_logp = completion_logps(model.policy, *args, temperature)
        ref_logp = completion_logps(ref, *args, temperature)
        old_values = token_values(model.value, *args)
    rewards = kl_rewards(old_logp, ref_logp, torch.tensor(scores, device=device), dev["completion_mask"], kl_coef)
    adv, ret = gae(rewards, old_values, dev["completion_mask"], gamma, lam)
    batch.update({"old_logp": old_logp.cpu(), "old_values": old_values.cpu(), "advantages": adv.cpu(),
                  "returns": ret.cpu(), "rewards": rewards.cpu()})
    return batch


def whiten_round(micro_batches: list[dict[str, Tensor]]) -> None:
    """Whiten the advantages over all completion tokens of the round (every micro-batch at once)."""
    widths = [b["advantages"].shape[1] for b in micro_batches]
    width = max(widths)

    def padded(key):
        return torch.cat([nn.functional.pad(b[key], (0, width - b[key].shape[1])) for b in micro_batches])
    white = whiten(padded("advantages"), padded("completion_mask"))
    start = 0
    for b, w in zip(micro_batches, widths):
        n = b["advantages"].shape[0]
        b["advantages"] = white[start:start + n, :w]
        start += n


def make_loss(p: dict) -> Callable:
    """The trainer's loss: clipped policy loss + vf_coef x clipped value loss on a rollout batch."""
    pp = p["ppo"]

    def loss_fn(m: PolicyAndValue, batch: dict[str, Tensor]):
        args = (batch["input_ids"], batch["attention_mask"], batch["completion_mask"])
        logp = completion_logps(m.policy, *args, p["temperature"])
        values = token_values(m.value, *args)
        pl, pst = ppo_policy_loss(logp, batch["old_logp"], batch["advantages"], batch["completion_mask"],
                                  p["clip_eps"])
        vl, vst = value_loss(values, batch["old_values"], batch["returns"], batch["completion_mask"],
                             pp["value_clip"])
        stats = {k[len("stat_"):]: batch[k] for k in batch if k.startswith("stat_")}
        stats.update({k: torch.tensor(v) for k, v in {**pst, **vst}.items()})
        stats["policy_loss"], stats["value_loss"] = pl.detach(), vl.detach()
        stats["explained_variance"] = torch.tensor(
            explained_variance(values.detach(), batch["returns"], batch["completion_mask"]))
        return pl + pp["vf_coef"] * vl, stats

    return loss_fn
