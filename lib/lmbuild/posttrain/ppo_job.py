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

from ..lm.chat import encode_prompt
from ..lm.generation import sample
from ..lm.logprobs import completion_logps
from ..lm.padding import right_pad
from ..lm.precision import precision_context
from ..lm.start_model import start_model, weights_id
from ..lm.task_setup import draw_stats, training_examples
from ..params import ParamsError, training_seed
from ..train.data import EpochOrder, rank_samples
from ..train.trainer import Job
from ..train.trainer import run as run_job
from .rewards import RewardMix
from .rl_common import HeldoutAccuracy, rl_start, round_batches
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


def load_value_model(path: Path, policy_vocab: int, attn: str, grow: bool = False) -> nn.Module:
    """A one-output token-classification model over the transformer stored at `path` (the
    reward model's directory: its score head becomes the value head; or the starting model: a
    new head). Its vocabulary must be the policy's: both read the same token ids; `grow` (the
    starting model's own directory, whose tokenizer got the chat tokens) resizes it to match."""
    try:
        value = AutoModelForTokenClassification.from_pretrained(path, num_labels=1, attn_implementation=attn,
                                                                dtype=torch.float32)
    except (ValueError, OSError) as exc:
        raise ParamsError([f"params.yaml: rlvr.ppo.value_init: {path} cannot hold a value head ({exc})"]) from None
    vocab = value.get_input_embeddings().weight.shape[0]
    if grow and vocab < policy_vocab:
        value.resize_token_embeddings(policy_vocab, mean_resizing=True)
        vocab = policy_vocab
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


# rlvr.ppo's defaults (null in params): gamma, lambda and the value clip of lm-human-preferences
# (Ziegler et al. 2019, Ouyang et al. 2022) and TRL; vf_coef 0.1 is TRL's default; kl_coef 0.02 is
# InstructGPT's beta (Ouyang et al. 2022, appendix C.4)
PPO_DEFAULTS = {"gamma": 1.0, "lam": 0.95, "vf_coef": 0.1, "value_clip": 0.2, "whiten_advantages": True,
                "kl_coef": 0.02, "clip_eps": 0.2}
# the policy-gradient family's knobs PPO does not have
NOT_PPO = ("clip_eps_high", "scale_advantages", "loss_aggregation", "overlong_cache", "max_refills",
           "reinforce_baseline")


def ppo_settings(p: dict, uses_reward_model: bool) -> dict:
    """rlvr.ppo over PPO_DEFAULTS, with rlvr.kl_coef and rlvr.clip_eps where set; the value model
    starts from the reward model when the reward uses one (Ouyang et al. 2022, sec. 3.5), else
    from the policy. A policy-gradient knob PPO lacks is a one-line ParamsError."""
    problems = [f"params.yaml: rlvr.{k}: the ppo algorithm has no such setting (it belongs to the policy-gradient "
                f"family), got {p[k]}" for k in NOT_PPO if p.get(k) is not None]
    s = {**PPO_DEFAULTS, **{k: v for k, v in p["ppo"].items() if v is not None}}
    for k in ("kl_coef", "clip_eps"):
        if p.get(k) is not None:
            s[k] = p[k]
    if s.get("value_init") is None:
        s["value_init"] = "reward_model" if uses_reward_model else "policy"
    if s["value_init"] == "reward_model" and not uses_reward_model:
        problems.append("params.yaml: rlvr.ppo.value_init: reward_model needs rlvr.reward.reward_model > 0 and "
                        "rlvr.reward.reward_model_path, got no reward model in the reward")
    if problems:
        raise ParamsError(problems)
    return s


def make_loss(p: dict, pp: dict) -> Callable:
    """The trainer's loss: clipped policy loss + vf_coef x clipped value loss on a rollout batch."""

    def loss_fn(m: PolicyAndValue, batch: dict[str, Tensor]):
        args = (batch["input_ids"], batch["attention_mask"], batch["completion_mask"])
        logp = completion_logps(m.policy, *args, p["temperature"])
        values = token_values(m.value, *args)
        pl, pst = ppo_policy_loss(logp, batch["old_logp"], batch["advantages"], batch["completion_mask"],
                                  pp["clip_eps"])
        vl, vst = value_loss(values, batch["old_values"], batch["returns"], batch["completion_mask"],
                             pp["value_clip"])
        stats = {k[len("stat_"):]: batch[k] for k in batch if k.startswith("stat_")}
        stats.update({k: torch.tensor(v) for k, v in {**pst, **vst}.items()})
        stats["policy_loss"], stats["value_loss"] = pl.detach(), vl.detach()
        stats["explained_variance"] = torch.tensor(
            explained_variance(values.detach(), batch["returns"], batch["completion_mask"]))
        return pl + pp["vf_coef"] * vl, stats

    return loss_fn


def make_scorer(params: dict) -> tuple[Callable[[list, list[str]], list[float]], Path | None]:
    """(scorer, reward model directory or None) from rlvr.reward: the weighted sum of the task
    verifiers' reward and the reward model's score standardised over the call's completions
    (lmbuild.posttrain.rewards.RewardMix: the same reward the policy-gradient algorithms get)."""
    p, tp = params["rlvr"], params["tasks"]
    mix = RewardMix(p["reward"], tp, 4 * tp["max_new_tokens"] + 512, p["generation_batch_size"])

    def scorer(examples, texts):
        mixed, _ = mix.round(examples, [[t] for t in texts])
        return [m[0] for m in mixed]
    rm = Path(p["reward"]["reward_model_path"]) if p["reward"]["reward_model"] > 0 else None
    return scorer, rm


def run(params: dict, *, init_model: Path, out_model: Path, ckpt_dir: Path, live_dir: Path,
        scorer: Callable[[list, list[str]], list[float]], reward_model: Path | None = None) -> dict:
    """PPO from init_model. scorer(examples, completion texts) -> the score of each completion
    (the reward model's and/or the verifiers'); reward_model: the reward model's directory when
    the reward uses one (the value model starts from it unless rlvr.ppo.value_init says policy)."""
    p, tp, seed = params["rlvr"], params["tasks"], training_seed(params, "rlvr")
    pp = ppo_settings(p, reward_model is not None)
    value_init = Path(reward_model) if pp["value_init"] == "reward_model" else init_model
    eval_seed = params["common"]["seed"]
    G, mu = p["group_size"], p["updates_per_batch"]
    st = rl_start(p, init_model)
    tok, start_info, eos_ids, pad_id, device, attn = st.tok, st.start_info, st.eos_ids, st.pad_id, st.device, st.attn
    policy = start_model(init_model, tok, start_info, attn)
    # the value head's fresh rows come from torch's global generator: seed it, so an in-process
    # run (a study, a test) draws the same head whatever ran before it
    torch.manual_seed(seed)
    model = PolicyAndValue(policy, load_value_model(value_init, policy.get_input_embeddings().weight.shape[0], attn,
                                                    grow=value_init == init_model))
    ref = start_model(init_model, tok, start_info, attn).to(device).eval()
    pool = training_examples(tp, p["prompts_per_family"], seed, "rlvr")
    pool_prompts = [encode_prompt(tok, [{"role": "user", "content": ex.prompt}]) for ex in pool]
    order = EpochOrder(len(pool), seed)
    heldout_acc = HeldoutAccuracy(p, tp, st, eval_seed)

    with precision_context(p["precision"], device):
        start = heldout_acc.measure(policy, at_start=True)

    @torch.no_grad()
    def sample_round(rnd: int, rank: int, world: int, micro: int) -> list[dict]:
        per_rank = p["batch_size"] // world
        ids = rank_samples(rnd, p["batch_size"], rank, world, per_rank)[0]
        exs = [pool[order.index(i)] for i in ids]
        prompts = [pool_prompts[order.index(i)] for i in ids]
        outs = sample(policy, prompts, n=G, max_new_tokens=tp["max_new_tokens"], temperature=p["temperature"],
                      top_p=p["top_p"], seed=(seed * 1009 + rnd) * 131 + rank, batch_size=p["generation_batch_size"],
                      eos_ids=eos_ids, pad_id=pad_id)
        micro_batches = []
        for s in range(0, per_rank, micro):
            seqs, texts, ex_rep = [], [], []
            for ex, pr, comps in zip(exs[s:s + micro], prompts[s:s + micro], outs[s:s + micro]):
                for c in comps:
                    seqs.append((pr, c if c else [eos_ids[0]]))
                    texts.append(tok.decode(c, skip_special_tokens=True))
                    ex_rep.append(ex)
            scores = scorer(ex_rep, texts)
            batch = rollout_batch(model, ref, seqs, scores, pad_id=pad_id, temperature=p["temperature"],
                                  kl_coef=pp["kl_coef"], gamma=pp["gamma"], lam=pp["lam"], device=device)
            m = batch["completion_mask"].float()
            batch["stat_reward"] = torch.tensor(scores).mean()
            batch["stat_kl_penalty"] = (-(batch["rewards"] * m).sum() + torch.tensor(scores).sum()) / len(scores)
            batch["stat_response_length"] = m.sum(dim=1).mean()
            micro_batches.append(batch)
        if pp["whiten_advantages"]:
            whiten_round(micro_batches)
        for b in micro_batches:
            b.pop("rewards")
        return micro_batches

    batches = round_batches(model, mu, sample_round)

    job = Job(stage="rlvr", params=p, seed=seed, model=model, batches=batches, total_steps=p["steps"] * mu,
              samples_per_epoch=len(pool) * mu, seq_len=max(len(x) for x in pool_prompts) + tp["max_new_tokens"],
              evaluate=lambda m, dev, ac, shard: heldout_acc.measure(m.policy),
              fingerprint_inputs={"init_model": weights_id(init_model), "value_init": weights_id(value_init)},
              tokenizer_dir=init_model, tokenizer=tok, out_model=out_model, ckpt_dir=ckpt_dir, live_dir=live_dir,
              eos_ids=eos_ids, pad_id=pad_id, loss_fn=make_loss(p, pp), code_dirs=[Path(__file__).parent],
              export=lambda m: m.policy,
              log_params={"algorithm": "ppo", "group_size": G, "updates_per_batch": mu, "prompts_in_pool": len(pool),
                          **{f"ppo_{k}": v for k, v in pp.items()}})
    m = run_job(job)
    ev = m.pop("eval")
    m.pop("train_loss_ema", None)
    return {"final_loss": m.pop("train_loss"), "train": m.pop("train"), **ev, "start": start,
            "algorithm_settings": {"algorithm.ppo": 1, **{k: float(v) for k, v in pp.items() if k != "value_init"},
                                   "value_init_reward_model": int(pp["value_init"] == "reward_model")},
            **heldout_acc.gains(), "start_model": start_info, "pool": draw_stats(tp, pool), **m}
