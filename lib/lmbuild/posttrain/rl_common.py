"""What the two RL jobs share (rlvr's policy-gradient family in lmbuild.posttrain.rlvr, PPO in
lmbuild.posttrain.ppo_job): the start-up checks and tokenizer set-up, the trainer's batches as
sampling rounds, and the held-out measurement taken before training and at every evaluation,
kept item by item so that the gains over training are paired
(lmbuild.lm.generation.paired_gains)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from ..lm.chat import chat_ids
from ..lm.generation import (GREEDY_FIELDS, SAMPLED_FIELDS, by_level, paired_gains, pass_k_summary, task_accuracy,
                             task_prompts, task_sampled)
from ..lm.model import choose_attention
from ..lm.start_model import start_tokenizer
from ..lm.task_setup import check_answer_room, heldout
from ..params import ParamsError


@dataclass
class RLStart:
    tok: object  # the start model's tokenizer, with the chat template and turn tokens
    start_info: dict  # what start_tokenizer added to it (for the metrics)
    eos_ids: list[int]
    pad_id: int
    device: torch.device
    attn: str  # the attention implementation for this device


def rl_start(p: dict, init_model: Path) -> RLStart:
    """Check the rlvr section's checkpoint period and set up the start model's tokenizer."""
    mu = p["updates_per_batch"]
    if p["checkpoint"]["every_steps"] % mu:
        raise ParamsError([f"params.yaml: rlvr.checkpoint.every_steps ({p['checkpoint']['every_steps']}) must be a "
                           f"multiple of rlvr.updates_per_batch ({mu}), so a resumed run restarts at a sampling round"])
    tok, start_info = start_tokenizer(init_model, "rlvr.init_model")
    eos_ids, pad_id = chat_ids(tok)
    device = torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    return RLStart(tok, start_info, eos_ids, pad_id, device, choose_attention(p["attn_implementation"], device))


class HeldoutAccuracy:
    """Greedy and sampled accuracy on the held-out problems (from common.seed: the same for every
    training seed), the first measurement kept as the start and each later one as the end."""

    def __init__(self, p: dict, tp: dict, start: RLStart, eval_seed: int):
        self.p, self.tp, self.s, self.seed = p, tp, start, eval_seed
        self.tests = heldout(tp, eval_seed)
        check_answer_room(tp, start.tok, self.tests)
        self.prompts = task_prompts(start.tok, self.tests)
        self.start_items: dict[str, list] = {"greedy": [], "sampled": []}
        self.end_items: dict[str, list] = {"greedy": [], "sampled": []}  # the latest evaluation

    def measure(self, model, at_start: bool = False) -> dict:
        p, tp, s = self.p, self.tp, self.s
        items = self.start_items if at_start else self.end_items
        common = dict(max_new_tokens=tp["max_new_tokens"], batch_size=p["eval"]["batch_size"], eos_ids=s.eos_ids,
                      pad_id=s.pad_id, prompts=self.prompts)
        res = {**task_accuracy(model, s.tok, self.tests, items=items["greedy"], **common),
               **task_sampled(model, s.tok, self.tests, n=p["eval"]["samples"], temperature=p["temperature"],
                              top_p=p["top_p"], seed=self.seed, format_weight=tp["format_weight"],
                              items=items["sampled"], **common)}
        if at_start:  # the start model's headroom: pass@k - pass@1 on problems it will not train on
            res.update(self.breakdown(items))
        return res

    @staticmethod
    def breakdown(items: dict[str, list]) -> dict:
        """pass@k (with the headroom) and greedy and sampled accuracy per difficulty level."""
        return {"pass_k": pass_k_summary(items["sampled"]), "level": by_level(items["greedy"], "correct"),
                "sampled_level": by_level(items["sampled"], "sampled_accuracy")}

    def gains(self) -> dict:
        """Paired changes from the start to the latest measurement, with their standard errors,
        and the latest measurement's breakdown (`end.*`)."""
        return {**paired_gains(self.start_items["greedy"], self.end_items["greedy"], GREEDY_FIELDS),
                **paired_gains(self.start_items["sampled"], self.end_items["sampled"], SAMPLED_FIELDS),
                "end": self.breakdown(self.end_items)}


def round_batches(model: torch.nn.Module, updates_per_round: int,
                  sample_round: Callable[[int, int, int, int], list[dict]]) -> Callable:
    """The trainer's batches(step, rank, world, micro) for an RL job: every `updates_per_round`
    steps a new round is sampled (the model in eval mode while it samples) and its micro-batches
    serve those steps; only the current round is kept."""
    rounds: dict[tuple[int, int], list[dict]] = {}

    def batches(step: int, rank: int, world: int, micro: int) -> list[dict]:
        key = (step // updates_per_round, rank)
        if key not in rounds:
            rounds.clear()
            model.train(False)
            rounds[key] = sample_round(key[0], rank, world, micro)
            model.train(True)
        return rounds[key]
    return batches
