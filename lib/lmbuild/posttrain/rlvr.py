"""The rlvr job: group-relative policy optimisation (GRPO, Shao et al. 2024, arXiv:2402.03300)
with rewards from the task verifiers, run by the shared trainer.

Every `updates_per_batch` optimizer steps start with a generation round: each process takes its
slice of `batch_size` training prompts, samples `group_size` completions per prompt with the
current policy (KV cache), scores them (correctness + format), and normalises the rewards within
each group into advantages. The next `updates_per_batch` steps minimise the clipped surrogate on
that round's samples (ratios against the log-probs at sampling time), plus an optional k3 KL
penalty to the frozen starting model. Generation seeds derive from (seed, round, process), so a
run resumed from a checkpoint at a round boundary samples what the uninterrupted run sampled.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..lm.chat import chat_ids, encode_prompt
from ..lm.generation import (GREEDY_FIELDS, SAMPLED_FIELDS, paired_gains, sample, task_accuracy, task_prompts,
                             task_sampled)
from ..lm.logprobs import completion_logps
from ..lm.model import choose_attention
from ..lm.padding import right_pad
from ..lm.precision import precision_context
from ..lm.start_model import start_model, start_tokenizer, weights_id
from ..lm.task_setup import heldout, task_reward, training_examples
from ..params import ParamsError, training_seed
from ..train.data import EpochOrder, rank_samples
from ..train.trainer import Job
from ..train.trainer import run as run_job
from .grpo import group_advantages, policy_loss


def run(params: dict, *, init_model: Path, out_model: Path, ckpt_dir: Path, live_dir: Path) -> dict:
    p, tp, seed = params["rlvr"], params["tasks"], training_seed(params, "rlvr")
    eval_seed = params["common"]["seed"]  # held-out problems and their samples: the same for every training seed
    G, mu = p["group_size"], p["updates_per_batch"]
    if p["checkpoint"]["every_steps"] % mu:
        raise ParamsError([f"params.yaml: rlvr.checkpoint.every_steps ({p['checkpoint']['every_steps']}) must be a "
                           f"multiple of rlvr.updates_per_batch ({mu}), so a resumed run restarts at a sampling round"])
    tok, start_info = start_tokenizer(init_model, "rlvr.init_model")
    eos_ids, pad_id = chat_ids(tok)
    device = torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    attn = choose_attention(p["attn_implementation"], device)
    model = start_model(init_model, tok, start_info, attn)
    ref = start_model(init_model, tok, start_info, attn).to(device).eval() if p["kl_coef"] > 0 else None
    pool = training_examples(tp, p["prompts_per_family"], seed)
    pool_prompts = [encode_prompt(tok, [{"role": "user", "content": ex.prompt}]) for ex in pool]
    order = EpochOrder(len(pool), seed)
    tests = heldout(tp, eval_seed)
    test_prompts = task_prompts(tok, tests)

    start_items: dict[str, list] = {"greedy": [], "sampled": []}
    end_items: dict[str, list] = {"greedy": [], "sampled": []}  # the latest evaluation: the end of training

    def accuracy(m, items=end_items):
        common = dict(max_new_tokens=tp["max_new_tokens"], batch_size=p["eval"]["batch_size"], eos_ids=eos_ids,
                      pad_id=pad_id, prompts=test_prompts)
        return {**task_accuracy(m, tok, tests, items=items["greedy"], **common),
                **task_sampled(m, tok, tests, n=p["eval"]["samples"], temperature=p["temperature"], top_p=p["top_p"],
                               seed=eval_seed, format_weight=tp["format_weight"], items=items["sampled"], **common)}

    with precision_context(p["precision"], device):  # as the trained model is measured
        start = accuracy(model, start_items)
    rounds: dict[tuple[int, int], list[dict]] = {}

    @torch.no_grad()
    def sample_round(rnd: int, rank: int, world: int, micro: int) -> list[dict]:
        per_rank = p["batch_size"] // world
        ids = rank_samples(rnd, p["batch_size"], rank, world, per_rank)[0]
        exs = [pool[order.index(i)] for i in ids]
        prompts = [pool_prompts[order.index(i)] for i in ids]
        outs = sample(model, prompts, n=G, max_new_tokens=tp["max_new_tokens"], temperature=p["temperature"],
                      top_p=p["top_p"], seed=(seed * 1009 + rnd) * 131 + rank, batch_size=p["generation_batch_size"],
                      eos_ids=eos_ids, pad_id=pad_id)
        micro_batches = []
        for start_i in range(0, per_rank, micro):
            seq_p, seq_c, rewards, correct, lengths = [], [], [], [], []
            for ex, pr, comps in zip(exs[start_i:start_i + micro], prompts[start_i:start_i + micro],
                                     outs[start_i:start_i + micro]):
                for c in comps:
                    text = tok.decode(c, skip_special_tokens=True)
                    r = task_reward(tp, ex, text)
                    seq_p.append(pr)
                    seq_c.append(c if c else [eos_ids[0]])
                    rewards.append(r)
                    correct.append(float(r >= 1.0))
                    lengths.append(float(len(c)))
            batch = right_pad(list(zip(seq_p, seq_c)), pad_id)
            rw = torch.tensor(rewards)
            batch["advantages"] = group_advantages(rw, G, scale=p["scale_advantages"])
            dev = {k: v.to(device) for k, v in batch.items()}
            if mu > 1:
                batch["old_logp"] = completion_logps(model, dev["input_ids"], dev["attention_mask"],
                                                     dev["completion_mask"], p["temperature"]).cpu()
            if ref is not None:
                batch["ref_logp"] = completion_logps(ref, dev["input_ids"], dev["attention_mask"],
                                                     dev["completion_mask"], p["temperature"]).cpu()
            groups_correct = torch.tensor(correct).view(-1, G).amax(dim=1)
            batch["stat_reward"] = rw.mean()
            batch["stat_correct"] = torch.tensor(correct).mean()
            batch["stat_groups_any_correct"] = groups_correct.mean()
            batch["stat_response_length"] = torch.tensor(lengths).mean()
            micro_batches.append(batch)
        return micro_batches

    def batches(step, rank, world, micro):
        rnd = step // mu
        if (rnd, rank) not in rounds:
            rounds.clear()
            model.train(False)
            rounds[(rnd, rank)] = sample_round(rnd, rank, world, micro)
            model.train(True)
        return rounds[(rnd, rank)]

    def loss_fn(m, batch):
        stats = {k[len("stat_"):]: batch[k] for k in batch if k.startswith("stat_")}
        # log-probs of the sampling distribution: the same temperature as the samples
        logp = completion_logps(m, batch["input_ids"], batch["attention_mask"], batch["completion_mask"],
                                p["temperature"])
        old = batch.get("old_logp", logp.detach())
        loss, st = policy_loss(logp, old, batch["advantages"], batch["completion_mask"], clip_eps=p["clip_eps"],
                               ref_logp=batch.get("ref_logp"), kl_coef=p["kl_coef"], agg=p["loss_aggregation"])
        stats.update({k: torch.tensor(float(v)) for k, v in st.items() if k in ("kl", "clip_fraction", "ratio_mean")})
        return loss, stats

    total_steps = p["steps"] * mu
    job = Job(stage="rlvr", params=p, seed=seed, model=model, batches=batches, total_steps=total_steps,
              samples_per_epoch=len(pool) * mu, seq_len=max(len(x) for x in pool_prompts) + tp["max_new_tokens"],
              evaluate=lambda m, dev, ac, shard: accuracy(m),
              fingerprint_inputs={"init_model": weights_id(init_model)},
              tokenizer_dir=init_model, tokenizer=tok, out_model=out_model, ckpt_dir=ckpt_dir, live_dir=live_dir,
              eos_ids=eos_ids, pad_id=pad_id, loss_fn=loss_fn, code_dirs=[Path(__file__).parent],
              log_params={"group_size": G, "updates_per_batch": mu, "prompts_in_pool": len(pool)})
    m = run_job(job)
    ev = m.pop("eval")
    m.pop("train_loss_ema", None)
    return {"final_loss": m.pop("train_loss"), "train": m.pop("train"), **ev, "start": start,
            **paired_gains(start_items["greedy"], end_items["greedy"], GREEDY_FIELDS),
            **paired_gains(start_items["sampled"], end_items["sampled"], SAMPLED_FIELDS),
            "start_model": start_info, **m}
