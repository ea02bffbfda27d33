"""Preference pairs for dpo, with the reference model's log-probs computed once and stored beside
them (a changed loss or beta reuses them; only the pairs or the reference model invalidate them).

Pairs come from files of (prompt, chosen, rejected) in the common formats, or are generated on
policy: K sampled completions per training task prompt from the SFT model, scored by a scorer
(the task verifier, or a local reward-model directory), chosen = best, rejected = worst, ties
skipped (the on-policy recipe of SimPO, Meng et al. 2024, and Llama 3, Dubey et al. 2024). With
`pairs_per_prompt` > 1 a prompt gives up to that many pairs, each a distinct worse answer against
a best one (Iterative RPO, Pang et al. 2024, pairs every correct with every wrong answer): the
same samples then teach more of the ways an answer goes wrong.
A hash of each pair's prompt puts `val_fraction` of them in a held-out split.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import torch

from ..lm.chat import encode_completion, encode_prompt
from ..lm.chat_data import ChatDataError, Pair, read_pairs
from ..lm.generation import sample
from ..lm.logprobs import completion_logps, sequence_logps
from ..lm.padding import right_pad
from ..lm.reward import load_reward_model
from ..lm.reward import score as rm_score
from ..lm.task_setup import draw_stats, task_reward, training_examples
from ..params import ParamsError


def _val(prompt: list[dict], fraction: float) -> bool:
    h = hashlib.blake2b(json.dumps(prompt, sort_keys=True).encode(), digest_size=8).digest()
    return int.from_bytes(h, "big") / 2 ** 64 < fraction


def pick_pairs(texts: list[str], scores: list[float], n: int) -> list[tuple[int, int]]:
    """Up to `n` (chosen, rejected) index pairs from one prompt's samples: the first is the best
    against the worst (ties broken by sample order); further pairs take the next distinct worse
    answers, worst first, each against the best answers in turn. No pair when every sample
    scores the same. Distinct means distinct text, so a repeated wrong answer is not counted twice."""
    top = max(scores)
    if min(scores) == top:
        return []
    def distinct(indices) -> list[int]:  # first index of each text, in the given order
        first = {}
        for i in indices:
            first.setdefault(texts[i], i)
        return list(first.values())

    best = distinct(i for i in range(len(texts)) if scores[i] == top)
    worse = distinct(sorted((i for i in range(len(texts)) if scores[i] < top), key=lambda i: (scores[i], i)))
    return [(best[j % len(best)], w) for j, w in enumerate(worse[:n])]


def on_policy(model, tok, tp: dict, pp: dict, seed: int, eos_ids: list[int], pad_id: int) -> tuple[list[dict], dict]:
    """Sample, score, pick best/worst. Returns (pair records, stats)."""
    # the scorer first: a wrong reward model stops the stage before any sampling
    scorer = (_reward_model_scorer(pp["scorer"]["path"], pp["max_len"], pp["batch_size"])
              if pp["scorer"]["type"] == "reward_model" else None)
    examples = training_examples(tp, pp["prompts_per_family"], seed, "dpo")
    prompts = [encode_prompt(tok, [{"role": "user", "content": ex.prompt}]) for ex in examples]
    outs = sample(model, prompts, n=pp["samples"], max_new_tokens=tp["max_new_tokens"], temperature=pp["temperature"],
                  top_p=pp["top_p"], seed=seed, batch_size=pp["batch_size"], eos_ids=eos_ids, pad_id=pad_id,
                  progress="dpo_pairs: sampling")
    records, ties, any_correct = [], 0, 0
    for ex, comps in zip(examples, outs):
        texts = [tok.decode(c, skip_special_tokens=True) for c in comps]
        prompt = [{"role": "user", "content": ex.prompt}]
        scores = scorer(tok, prompt, texts) if scorer else [task_reward(tp, ex, t) for t in texts]
        any_correct += any(task_reward(tp, ex, t) >= 1.0 for t in texts)
        picked = pick_pairs(texts, scores, pp["pairs_per_prompt"])
        ties += not picked
        records += [{"prompt": prompt, "chosen": texts[b], "rejected": texts[w], "chosen_score": float(scores[b]),
                     "rejected_score": float(scores[w]), "family": ex.family, "source": "on_policy"}
                    for b, w in picked]
    return records, {"prompts": len(examples), "tied_prompts": ties, "prompts_with_a_correct_sample": any_correct,
                     "problems": draw_stats(tp, examples)}


def _reward_model_scorer(path: str | None, max_len: int, batch_size: int):
    """Scores from a local reward model, through `lmbuild.lm.reward.score`: the encoding the
    reward_model stage trains on (a model of another head is a one-line params error)."""
    rm, rm_tok = load_reward_model(path, "dpo.pairs.scorer.path")

    def scorer(_tok, prompt, texts):
        return rm_score(rm, rm_tok, [prompt] * len(texts), texts, max_len=max_len, batch_size=batch_size)
    return scorer


def from_files(files: list[dict], root: Path) -> tuple[list[dict], list[dict]]:
    records, rejects = [], []
    for f in files:
        try:
            pairs, bad = read_pairs(root / f["path"], f["format"])
        except ChatDataError as exc:
            raise ParamsError([f"dpo.pairs.files: {exc}"]) from None
        rejects.extend({"location": r.location, "reason": r.reason} for r in bad)
        records.extend({"prompt": p.prompt, "chosen": p.chosen, "rejected": p.rejected, "source": f["path"]}
                       for p in pairs)
    return records, rejects


def encode_pair(tok, rec: dict, max_len: int) -> dict | None:
    """Token ids of prompt, chosen and rejected completions; the prompt is cut from the left so
    that prompt + the longer completion fits max_len; None when a completion alone does not fit."""
    prompt = encode_prompt(tok, rec["prompt"])
    chosen, rejected = encode_completion(tok, rec["chosen"]), encode_completion(tok, rec["rejected"])
    room = max_len - max(len(chosen), len(rejected))
    if room < 1:
        return None
    return {"prompt_ids": prompt[-room:], "chosen_ids": chosen, "rejected_ids": rejected}


def pair_tensors(rows: list[dict], pad_id: int, kl: bool = False) -> dict[str, torch.Tensor]:
    """One right-padded batch holding the chosen rows, then the rejected rows, then (with kl)
    every prompt with its `kl_ids` completion (KTO's mismatched samples)."""
    seqs = [(r["prompt_ids"], r["chosen_ids"]) for r in rows] + [(r["prompt_ids"], r["rejected_ids"]) for r in rows]
    if kl:
        seqs += [(r["prompt_ids"], r["kl_ids"]) for r in rows]
    return right_pad(seqs, pad_id)


def link_mismatched(rows: list[dict]) -> None:
    """kl_ids of row i = the chosen completion of row i+1 (wrapping): KTO's reference point is
    estimated on such mismatched (prompt, completion) samples (Ethayarajh et al. 2024)."""
    for i, r in enumerate(rows):
        r["kl_ids"] = rows[(i + 1) % len(rows)]["chosen_ids"]


@torch.no_grad()
def reference_logps(model, rows: list[dict], pad_id: int, batch_size: int) -> None:
    """Add ref_chosen, ref_rejected and ref_kl (summed completion log-probs under the reference
    model, fp32) to every row (rows need kl_ids: link_mismatched)."""
    model.eval()
    from tqdm import tqdm
    for start in tqdm(range(0, len(rows), batch_size), desc="dpo_pairs: reference log-probs", unit="batch",
                      file=sys.stderr, disable=len(rows) <= batch_size):
        chunk = rows[start:start + batch_size]
        t = pair_tensors(chunk, pad_id, kl=True)
        sums, _ = sequence_logps(completion_logps(model, t["input_ids"], t["attention_mask"], t["completion_mask"]),
                                 t["completion_mask"])
        b = len(chunk)
        for i, r in enumerate(chunk):
            r["ref_chosen"], r["ref_rejected"], r["ref_kl"] = float(sums[i]), float(sums[b + i]), float(sums[2 * b + i])


def assign_splits(records: list[dict], fraction: float) -> None:
    for r in records:
        r["split"] = "val" if _val(r["prompt"], fraction) else "train"


__all__ = ["Pair", "on_policy", "from_files", "encode_pair", "pair_tensors", "link_mismatched", "reference_logps",
           "assign_splits"]
