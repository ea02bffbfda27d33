"""The rlvr job: policy-gradient RL with rewards from the task verifiers, run by the shared
trainer. `rlvr.algorithm` picks the member of the family (GRPO, Shao et al. 2024, arXiv:2402.03300,
by default; Dr. GRPO, DAPO, GSPO, RLOO, REINFORCE++: lmbuild.posttrain.policy_gradient).

Every `updates_per_batch` optimizer steps start with a generation round: each process takes its
slice of `batch_size` training prompts, samples `group_size` completions per prompt with the
current policy (KV cache), scores them (correctness + format), and normalises the rewards within
each group into advantages (or, for REINFORCE++, over the round's tokens). With DAPO's dynamic
sampling, groups whose rewards are all equal are dropped and more prompts are drawn (from a
second seeded order, at positions fixed by the round) until the round has its `batch_size`
groups or `max_refills` extra draws are spent; a round still short is topped up with dropped
groups (advantage 0). The next `updates_per_batch` steps minimise the clipped surrogate on
that round's samples (ratios against the log-probs at sampling time), plus an optional k3 KL
penalty to the frozen starting model. Generation seeds derive from (seed, round, refill,
process), so a
run resumed from a checkpoint at a round boundary samples what the uninterrupted run sampled.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..lm.chat import encode_prompt
from ..lm.generation import sample
from ..lm.logprobs import completion_logps
from ..lm.padding import right_pad
from ..lm.precision import precision_context
from ..lm.start_model import start_model, weights_id
from ..lm.task_setup import draw_stats, training_examples
from ..params import training_seed
from ..train.data import EpochOrder, rank_samples
from ..train.trainer import Job
from ..train.trainer import run as run_job
from .policy_gradient import (algorithm_settings, dynamic_sampling, overlong_penalty, pg_loss, round_advantages,
                              settings_metrics)
from .rewards import RewardMix
from .rl_common import HeldoutAccuracy, rl_start, round_batches


def run(params: dict, *, init_model: Path, out_model: Path, ckpt_dir: Path, live_dir: Path) -> dict:
    p, tp, seed = params["rlvr"], params["tasks"], training_seed(params, "rlvr")
    eval_seed = params["common"]["seed"]  # held-out problems and their samples: the same for every training seed
    G, mu = p["group_size"], p["updates_per_batch"]
    algo = algorithm_settings(p, tp["max_new_tokens"])  # before any work: a bad combination stops here
    st = rl_start(p, init_model)
    tok, start_info, eos_ids, pad_id, device, attn = st.tok, st.start_info, st.eos_ids, st.pad_id, st.device, st.attn
    model = start_model(init_model, tok, start_info, attn)
    ref = start_model(init_model, tok, start_info, attn).to(device).eval() if algo["kl_coef"] > 0 else None
    pool = training_examples(tp, p["prompts_per_family"], seed, "rlvr")
    pool_prompts = [encode_prompt(tok, [{"role": "user", "content": ex.prompt}]) for ex in pool]
    order = EpochOrder(len(pool), seed)
    refill_order = EpochOrder(len(pool), seed + 1)  # dynamic sampling's extra prompts: a stream of their own
    heldout_acc = HeldoutAccuracy(p, tp, st, eval_seed)

    with precision_context(p["precision"], device):  # as the trained model is measured
        start = heldout_acc.measure(model, at_start=True)
    reward_mix = RewardMix(p["reward"], tp, max(len(x) for x in pool_prompts) + tp["max_new_tokens"],
                           p["generation_batch_size"])

    def draw(src: EpochOrder, ids: list[int], sample_seed: int) -> list[dict]:
        """Sample and score G completions for each prompt of `ids` (positions in `src`)."""
        exs = [pool[src.index(i)] for i in ids]
        prompts = [pool_prompts[src.index(i)] for i in ids]
        outs = sample(model, prompts, n=G, max_new_tokens=tp["max_new_tokens"], temperature=p["temperature"],
                      top_p=p["top_p"], seed=sample_seed, batch_size=p["generation_batch_size"],
                      eos_ids=eos_ids, pad_id=pad_id)
        # the reward (verifier and/or reward model, rlvr.reward) and the verifier's alone (for the stats)
        mixed, verified = reward_mix.round(exs, [[tok.decode(c, skip_special_tokens=True) for c in comps]
                                                 for comps in outs])
        groups = []
        for pr, comps, rewards, ver in zip(prompts, outs, mixed, verified):
            lengths = [float(len(c)) for c in comps]
            shaped = torch.tensor(rewards)
            if algo["overlong_cache"]:  # DAPO: the advantage sees the length penalty, the stats the verifier
                shaped = shaped + overlong_penalty(torch.tensor(lengths), tp["max_new_tokens"], algo["overlong_cache"])
            groups.append({"prompt": pr, "comps": [c if c else [eos_ids[0]] for c in comps], "rewards": rewards,
                           "verified": ver, "shaped": shaped, "lengths": lengths})
        return groups

    @torch.no_grad()
    def sample_round(rnd: int, rank: int, world: int, micro: int) -> list[dict]:
        per_rank = p["batch_size"] // world
        ids = rank_samples(rnd, p["batch_size"], rank, world, per_rank)[0]
        groups = draw(order, ids, (seed * 1009 + rnd) * 131 + rank)
        ds_stats = {}
        if algo["dynamic_sampling"]:
            # extra draws: prompts at positions fixed by (round, draw) in their own order, their own seeds
            def refill(k: int) -> list[dict]:
                more = rank_samples(rnd * algo["max_refills"] + k, p["batch_size"], rank, world, per_rank)[0]
                return draw(refill_order, more, ((seed * 1009 + rnd) * 131 + rank) * 101 + k + 1)
            groups, ds_stats = dynamic_sampling(groups, lambda g: g["shaped"], refill, per_rank, algo["max_refills"])
        micro_batches = []
        for start_i in range(0, per_rank, micro):
            chunk = groups[start_i:start_i + micro]
            seq_p = [g["prompt"] for g in chunk for _ in g["comps"]]
            seq_c = [c for g in chunk for c in g["comps"]]
            rewards = [r for g in chunk for r in g["rewards"]]
            lengths = [x for g in chunk for x in g["lengths"]]
            correct = [float(v >= 1.0) for g in chunk for v in g["verified"]]
            batch = right_pad(list(zip(seq_p, seq_c)), pad_id)
            rw = torch.tensor(rewards)
            shaped = torch.cat([g["shaped"] for g in chunk])
            batch["shaped_reward"] = shaped
            dev = {k: v.to(device) for k, v in batch.items()}
            needs_old = mu > 1 or (algo["kl"] == "reward" and ref is not None)
            old_logp = completion_logps(model, dev["input_ids"], dev["attention_mask"], dev["completion_mask"],
                                        p["temperature"]).cpu() if needs_old else None
            if mu > 1:
                batch["old_logp"] = old_logp
            if ref is not None:
                batch["ref_logp"] = completion_logps(ref, dev["input_ids"], dev["attention_mask"],
                                                     dev["completion_mask"], p["temperature"]).cpu()
            if algo["kl"] == "reward" and ref is not None:
                batch["k1"] = (old_logp - batch["ref_logp"]) * batch["completion_mask"]  # log pi_old / pi_ref
            groups_correct = torch.tensor(correct).view(-1, G).amax(dim=1)
            batch["stat_reward"] = rw.mean()
            batch["stat_correct"] = torch.tensor(correct).mean()
            batch["stat_groups_any_correct"] = groups_correct.mean()
            batch["stat_response_length"] = torch.tensor(lengths).mean()
            if algo["overlong_cache"]:
                batch["stat_overlong_penalty"] = (shaped - rw).mean()
            for k, v in ds_stats.items():
                batch[f"stat_{k}"] = torch.tensor(v)
            micro_batches.append(batch)
        add_advantages(micro_batches)
        for b in micro_batches:
            del b["shaped_reward"]
            b.pop("k1", None)
        return micro_batches

    def add_advantages(micro_batches: list[dict]) -> None:
        """Advantages per micro-batch for the group estimators (a micro-batch holds whole groups);
        REINFORCE++ normalises over every completion token of the round, so its micro-batches are
        padded to one width, normalised together and cut back. With several processes each normalises
        its own share of the round (Hu 2025 normalise over the global batch; one process: the same)."""
        if algo["advantage"] != "batch_norm":
            for b in micro_batches:
                b["advantages"] = round_advantages(algo, b["shaped_reward"], G)
            return
        width = max(b["completion_mask"].shape[1] for b in micro_batches)

        def wide(x):
            return torch.nn.functional.pad(x.float(), (0, width - x.shape[1]))
        mask = torch.cat([wide(b["completion_mask"]) for b in micro_batches])
        kl = torch.cat([wide(b["k1"]) for b in micro_batches]) if "k1" in micro_batches[0] else None
        adv = round_advantages(algo, torch.cat([b["shaped_reward"] for b in micro_batches]), G, mask=mask, kl=kl)
        row = 0
        for b in micro_batches:
            n, t_b = b["completion_mask"].shape
            b["advantages"] = adv[row:row + n, :t_b].contiguous()
            row += n

    batches = round_batches(model, mu, sample_round)

    def loss_fn(m, batch):
        stats = {k[len("stat_"):]: batch[k] for k in batch if k.startswith("stat_")}
        # log-probs of the sampling distribution: the same temperature as the samples
        logp = completion_logps(m, batch["input_ids"], batch["attention_mask"], batch["completion_mask"],
                                p["temperature"])
        old = batch.get("old_logp", logp.detach())
        loss, st = pg_loss(logp, old, batch["advantages"], batch["completion_mask"], clip_low=algo["clip_low"],
                           clip_high=algo["clip_high"], ratio_level=algo["ratio_level"], agg=algo["agg"],
                           sum_norm=algo["sum_norm"], ref_logp=batch.get("ref_logp"),
                           kl_coef=algo["kl_coef"] if algo["kl"] == "loss" else 0.0)
        stats.update({k: torch.tensor(float(v)) for k, v in st.items() if k in ("kl", "clip_fraction", "ratio_mean")})
        return loss, stats

    total_steps = p["steps"] * mu
    job = Job(stage="rlvr", params=p, seed=seed, model=model, batches=batches, total_steps=total_steps,
              samples_per_epoch=len(pool) * mu, seq_len=max(len(x) for x in pool_prompts) + tp["max_new_tokens"],
              evaluate=lambda m, dev, ac, shard: heldout_acc.measure(m),
              fingerprint_inputs={"init_model": weights_id(init_model)},
              tokenizer_dir=init_model, tokenizer=tok, out_model=out_model, ckpt_dir=ckpt_dir, live_dir=live_dir,
              eos_ids=eos_ids, pad_id=pad_id, loss_fn=loss_fn, code_dirs=[Path(__file__).parent],
              log_params={"group_size": G, "updates_per_batch": mu, "prompts_in_pool": len(pool),
                          **{f"algo_{k}": v for k, v in algo.items()}})
    m = run_job(job)
    ev = m.pop("eval")
    m.pop("train_loss_ema", None)
    return {"final_loss": m.pop("train_loss"), "train": m.pop("train"), **ev, "start": start, **heldout_acc.gains(),
            "algorithm_settings": settings_metrics(algo), "start_model": start_info, "pool": draw_stats(tp, pool), **m}
