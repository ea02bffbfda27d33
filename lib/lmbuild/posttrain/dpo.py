"""The dpo_pairs and dpo jobs.

dpo_pairs: build the preference pair set (files, or on-policy samples from the SFT model ranked
by a scorer), tokenise it, and add the reference model's log-probs (the SFT model, fp32), all in
one JSONL file. dpo: train the SFT model on those pairs with the loss `dpo.loss` selects, reading
the cached reference log-probs instead of running a reference model.
"""

from __future__ import annotations

import json
import math
import shutil
import sys
from pathlib import Path

import torch

from ..lm.chat import chat_ids
from ..lm.generation import GREEDY_FIELDS, paired_gains, task_accuracy, task_prompts
from ..lm.logprobs import completion_logps, sequence_logps
from ..lm.model import choose_attention
from ..lm.precision import precision_context
from ..lm.reward import accuracy_by_family
from ..lm.start_model import start_model, start_tokenizer, weights_id
from ..lm.task_setup import heldout
from ..params import ParamsError, training_seed
from ..shards import atomic_dir
from ..stats import mean_stderr
from ..train.data import EpochOrder, rank_samples
from ..train.lora import maybe_lora
from ..train.trainer import Job
from ..train.trainer import run as run_job
from .pairs import (assign_splits, encode_pair, from_files, link_mismatched, on_policy, pair_tensors,
                    reference_logps)
from .preference_losses import DEFAULTS, NEEDS_KL_SAMPLES, LossOut, PairLogps, preference_loss, reward_metrics

PAIR_FILE = "pairs.jsonl"


def build_pairs(params: dict, *, ref_model: Path, out_dir: Path, root: Path = Path("."), seed: int | None = None) -> dict:
    """seed: the sampling seed (default dpo.pairs.seed, else common.seed; later rounds of
    iterative DPO pass their own)."""
    pp, tp = params["dpo"]["pairs"], params["tasks"]
    seed = training_seed(params, "dpo.pairs") if seed is None else seed
    # dpo.init_model, prepared as dpo prepares it (same template, tokens, embeddings): the reference
    tok, info = start_tokenizer(ref_model, "dpo.init_model")
    eos_ids, pad_id = chat_ids(tok)
    model = start_model(ref_model, tok, info, "sdpa")
    stats: dict = {}
    if pp["source"] == "on_policy":
        records, stats = on_policy(model, tok, tp, pp, seed, eos_ids, pad_id)
        rejects = []
    else:
        if not pp["files"]:
            raise ParamsError(["params.yaml: dpo.pairs.files: source files needs at least one file"])
        records, rejects = from_files(pp["files"], root)
    assign_splits(records, pp["val_fraction"])
    rows, too_long = [], 0
    for rec in records:
        enc = encode_pair(tok, rec, pp["max_len"])
        if enc is None:
            too_long += 1
            continue
        rows.append({**rec, **enc})
    if not any(r["split"] == "train" for r in rows):
        raise ParamsError([f"dpo.pairs: no training pairs ({len(records)} built, {too_long} too long, "
                           f"{stats.get('tied_prompts', 0)} prompts tied); raise dpo.pairs.prompts_per_family or "
                           f"samples, or check the files"])
    for split in ("train", "val"):
        part = [r for r in rows if r["split"] == split]
        if part:
            link_mismatched(part)
            reference_logps(model, part, pad_id, pp["batch_size"])
    with atomic_dir(out_dir) as tmp:
        with open(tmp / PAIR_FILE, "w") as f:
            for r in rows:
                f.write(json.dumps(r, sort_keys=True, ensure_ascii=False) + "\n")
        with open(tmp / "rejected.jsonl", "w") as f:
            for r in rejects:
                f.write(json.dumps(r, sort_keys=True) + "\n")
    train = [r for r in rows if r["split"] == "train"]
    return {"pairs_train": len(train), "pairs_val": len(rows) - len(train), "rejected_rows": len(rejects),
            "dropped_too_long": too_long, **stats,
            "chosen_score_mean": _mean([r.get("chosen_score", math.nan) for r in rows]),
            "rejected_score_mean": _mean([r.get("rejected_score", math.nan) for r in rows]),
            "chosen_tokens_mean": _mean([len(r["chosen_ids"]) for r in rows]),
            "rejected_tokens_mean": _mean([len(r["rejected_ids"]) for r in rows]),
            "ref_logp_chosen_mean": _mean([r["ref_chosen"] for r in rows]),
            "ref_logp_rejected_mean": _mean([r["ref_rejected"] for r in rows]),
            "start_model": info}


def _mean(xs) -> float:
    return sum(xs) / len(xs) if xs else float("nan")


def loss_settings(p: dict) -> dict:
    """The loss's hyperparameters: its paper defaults, dpo.beta where the loss has one, then
    dpo.loss_params; unknown names are a params error."""
    kind, hp = p["loss"], dict(DEFAULTS[p["loss"]])
    if p["beta"] is not None:
        key = "beta" if "beta" in hp else "tau" if "tau" in hp else None
        if key is None:
            raise ParamsError([f"params.yaml: dpo.beta: the {kind} loss has no beta (its settings: "
                               f"{', '.join(hp) or 'none'}); set them in dpo.loss_params"])
        hp[key] = p["beta"]
    for k, v in p["loss_params"].items():
        if k not in hp:
            raise ParamsError([f"params.yaml: dpo.loss_params.{k}: not a setting of the {kind} loss "
                               f"(known: {', '.join(hp) or 'none'})"])
        hp[k] = v
    return hp


def _pair_logps(model, batch: dict, n: int, kl: bool) -> PairLogps:
    per = completion_logps(model, batch["input_ids"], batch["attention_mask"], batch["completion_mask"])
    sums, lens = sequence_logps(per, batch["completion_mask"])
    return PairLogps(chosen=sums[:n], rejected=sums[n:2 * n], chosen_len=lens[:n], rejected_len=lens[n:2 * n],
                     ref_chosen=batch["ref_chosen"], ref_rejected=batch["ref_rejected"],
                     kl_policy=sums[2 * n:] if kl else None, kl_ref=batch["ref_kl"] if kl else None)


def _to_batch(rows: list[dict], pad_id: int, kl: bool) -> dict[str, torch.Tensor]:
    t = pair_tensors(rows, pad_id, kl=kl)
    for k in ("ref_chosen", "ref_rejected", "ref_kl"):
        t[k] = torch.tensor([r[k] for r in rows], dtype=torch.float32)
    return t


def run(params: dict, *, init_model: Path, pairs_dir: Path, out_model: Path, ckpt_dir: Path, live_dir: Path,
        rounds_dir: Path) -> dict:
    """dpo.rounds rounds of DPO. Round 1 trains on dpo_pairs' pairs (sampled from and referenced
    to the starting model). Round k > 1 samples new on-policy pairs from round k-1's model, scores
    them with the same scorer, caches that model's log-probs as the reference, and trains it
    further: iterative DPO, each round from the latest model (Llama 3's post-training rounds,
    Dubey et al. 2024, arXiv:2407.21783, sec. 4.1; the reference M_t for M_{t+1} as in
    Self-Rewarding LMs, Yuan et al. 2024, arXiv:2401.10020, sec. 2.3). Round k's pairs are kept in
    rounds_dir/round_k/; its model and checkpoints in ckpt_dir/round_k/; dvclive per round in
    live_dir/round_k/ (one round: everything where it always was)."""
    R = params["dpo"]["rounds"]
    if R > 1 and params["dpo"]["pairs"]["source"] != "on_policy":
        raise ParamsError([f"params.yaml: dpo.rounds: {R} rounds need dpo.pairs.source: on_policy (later rounds "
                           f"sample from the latest model), got {params['dpo']['pairs']['source']}"])
    staging = rounds_dir.with_name(rounds_dir.name + ".partial")
    staging.mkdir(parents=True, exist_ok=True)
    latest, per_round, first_start, first_items = init_model, {}, None, None
    pair_seed = training_seed(params, "dpo.pairs")
    for k in range(1, R + 1):
        pdir = pairs_dir
        if k > 1:
            print(f"dpo: round {k}/{R}: sampling pairs from {latest}", file=sys.stderr)
            pdir = staging / f"round_{k}"
            pair_stats = build_pairs(params, ref_model=latest, out_dir=pdir, seed=pair_seed * 1009 + k)
        last = k == R
        m, start_items, end_items = _train_round(
            params, init_model=latest, pairs_dir=pdir, out_model=out_model if last else ckpt_dir / f"round_{k}" / "model",
            ckpt_dir=ckpt_dir if R == 1 else ckpt_dir / f"round_{k}", live_dir=live_dir if R == 1 else live_dir / f"round_{k}")
        if k == 1:
            first_start, first_items = m["start"], start_items
        per_round[str(k)] = {"task_accuracy": m["task_accuracy"], "pairs_train": m["pairs_train"],
                             "reward_accuracy": m["val"].get("reward_accuracy", math.nan),
                             **({"pairs_tied_prompts": pair_stats.get("tied_prompts", 0)} if k > 1 else {})}
        latest = ckpt_dir / f"round_{k}" / "model"
    with atomic_dir(rounds_dir) as tmp:
        for k in range(2, R + 1):
            (tmp / f"round_{k}").mkdir()
            for name in (PAIR_FILE, "rejected.jsonl"):
                (staging / f"round_{k}" / name).rename(tmp / f"round_{k}" / name)
        (tmp / "rounds.json").write_text(json.dumps({"rounds": R, "per_round": per_round}, indent=1, sort_keys=True) + "\n")
    shutil.rmtree(staging, ignore_errors=True)
    if R > 1:  # the whole run: from the starting model to the last round's
        m.update({"start": first_start, **paired_gains(first_items, end_items, GREEDY_FIELDS), "rounds": per_round})
    return m


def _train_round(params: dict, *, init_model: Path, pairs_dir: Path, out_model: Path, ckpt_dir: Path,
                 live_dir: Path) -> tuple[dict, list[dict], list[dict]]:
    """One DPO run; returns (metrics, per-item results at its start, at its end)."""
    p, tp, seed = params["dpo"], params["tasks"], training_seed(params, "dpo")
    kind, hp = p["loss"], loss_settings(p)
    kl = kind in NEEDS_KL_SAMPLES
    rows = [json.loads(line) for line in (pairs_dir / PAIR_FILE).read_text().splitlines()]
    train = [r for r in rows if r["split"] == "train"]
    val = [r for r in rows if r["split"] == "val"]
    tok, start_info = start_tokenizer(init_model, "dpo.init_model")
    eos_ids, pad_id = chat_ids(tok)
    device = torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    model = start_model(init_model, tok, start_info, choose_attention(p["attn_implementation"], device))
    tests = heldout(tp, params["common"]["seed"])
    prompts = task_prompts(tok, tests)

    start_items: list[dict] = []
    end_items: list[dict] = []  # the latest evaluation's per-item results: the end of training

    def accuracy(m, items=end_items):
        return task_accuracy(m, tok, tests, max_new_tokens=tp["max_new_tokens"], batch_size=4 * p["eval"]["batch_size"],
                             eos_ids=eos_ids, pad_id=pad_id, prompts=prompts, items=items)

    with precision_context(p["precision"], device):  # as the trained model is measured
        start = accuracy(model, start_items)
    # LoRA: adapters train, the export is merged; the reference log-probs are cached, so no
    # second model is needed
    model, export = maybe_lora(model, p, "dpo", seed)
    order = EpochOrder(len(train), seed)

    def batches(step, rank, world, micro):
        return [_to_batch([train[order.index(i)] for i in ids], pad_id, kl)
                for ids in rank_samples(step, p["batch_size"], rank, world, micro)]

    def loss_fn(m, batch):
        n = batch["ref_chosen"].shape[0]
        out = preference_loss(kind, _pair_logps(m, batch, n, kl), rpo_alpha=p["rpo_alpha"], **hp)
        return out.loss, {k: torch.tensor(v) for k, v in reward_metrics(out).items()}

    @torch.no_grad()
    def evaluate(m, dev, autocast, shard):
        was = m.training
        m.eval()
        outs, pol_c, pol_r = [], [], []
        for i in range(0, len(val), p["eval"]["batch_size"]):
            chunk = val[i:i + p["eval"]["batch_size"]]
            batch = {k: v.to(dev) for k, v in _to_batch(chunk, pad_id, kl).items()}
            with autocast():
                lp = _pair_logps(m, batch, len(chunk), kl)
            outs.append(preference_loss(kind, lp, rpo_alpha=p["rpo_alpha"], **hp))
            pol_c.append(lp.chosen)
            pol_r.append(lp.rejected)
        m.train(was)
        res = {}
        if outs:
            merged = LossOut(loss=torch.stack([o.loss for o in outs]).mean(),
                             chosen_reward=torch.cat([o.chosen_reward for o in outs]),
                             rejected_reward=torch.cat([o.rejected_reward for o in outs]))
            c, r = merged.chosen_reward.float(), merged.rejected_reward.float()
            right = (c > r).float().tolist()   # over the held-out pairs: each pair is one item
            res = {"loss": float(merged.loss), **reward_metrics(merged),
                   "reward_accuracy_stderr": mean_stderr(right),
                   "reward_margin_stderr": mean_stderr((c - r).tolist()),
                   **accuracy_by_family("reward_accuracy", right, val),
                   "logp_chosen": float(torch.cat(pol_c).mean()), "logp_rejected": float(torch.cat(pol_r).mean())}
        return {**res, **accuracy(m)}

    total_steps = max(1, math.ceil(p["epochs"] * len(train) / p["batch_size"]))
    width = max(len(r["prompt_ids"]) + max(len(r["chosen_ids"]), len(r["rejected_ids"])) for r in train)
    job = Job(stage="dpo", params=p, seed=seed, model=model, batches=batches, total_steps=total_steps,
              samples_per_epoch=len(train), seq_len=width, evaluate=evaluate,
              fingerprint_inputs={"init_model": weights_id(init_model), "pairs": pairs_dir / PAIR_FILE},
              tokenizer_dir=init_model, tokenizer=tok, export=export, out_model=out_model, ckpt_dir=ckpt_dir, live_dir=live_dir,
              eos_ids=eos_ids, pad_id=pad_id, loss_fn=loss_fn, code_dirs=[Path(__file__).parent],
              log_params={"loss": kind, **{f"loss_{k}": v for k, v in hp.items()}, "rpo_alpha": p["rpo_alpha"],
                          "pairs": len(train)})
    m = run_job(job)
    ev = m.pop("eval")
    return {"train_loss": m.pop("train_loss"), "train_loss_ema": m.pop("train_loss_ema"),
            "train": m.pop("train"), "val": {k: v for k, v in ev.items() if not k.startswith("task_")},
            **{k: v for k, v in ev.items() if k.startswith("task_")}, "start": start,
            **paired_gains(start_items, end_items, GREEDY_FIELDS),
            "pairs_train": len(train), "pairs_val": len(val), "start_model": start_info, **m}, start_items, end_items
