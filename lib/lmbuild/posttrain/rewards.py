"""rlvr's reward: a weighted sum of the task verifier's reward and, optionally, a reward model's
score (`rlvr.reward`: verifier, reward_model, reward_model_path).

The reward model's scores are standardised over the round's samples (those this process drew:
batch_size / processes prompts x group_size completions) before weighting: a Bradley-Terry
reward is defined only up to an additive constant and its scale is whatever training left
(Bradley & Terry 1952), so the raw number means nothing next to the verifier's 0..1(+format)
reward; standardised, `reward_model: 0.5` is half a standard deviation of reward-model
preference per unit, whatever model is plugged in. Group-relative advantages remove any
per-prompt offset afterwards anyway (Shao et al. 2024). A round whose scores are all equal gets
a zero term.
"""

from __future__ import annotations

import torch

from ..lm.reward import load_reward_model, score
from ..lm.task_setup import task_reward
from ..params import ParamsError


class RewardMix:
    def __init__(self, rp: dict, tp: dict, max_len: int, batch_size: int):
        self.w_v, self.w_rm, self.tp = rp["verifier"], rp["reward_model"], tp
        self.max_len, self.batch_size = max_len, batch_size
        self.rm = None
        if self.w_rm:
            if not rp["reward_model_path"]:
                raise ParamsError([f"params.yaml: rlvr.reward.reward_model_path: a reward_model weight of "
                                   f"{self.w_rm} needs a reward model directory, got None"])
            self.rm, self.rm_tok = load_reward_model(rp["reward_model_path"], "rlvr.reward.reward_model_path")

    def round(self, examples, texts: list[list[str]]) -> tuple[list[list[float]], list[list[float]]]:
        """(mixed rewards, verifier rewards) for every example's completions."""
        ver = [[task_reward(self.tp, ex, t) for t in ts] for ex, ts in zip(examples, texts)]
        if self.rm is None:
            return [[self.w_v * v for v in vs] for vs in ver], ver
        prompts = [[{"role": "user", "content": ex.prompt}] for ex, ts in zip(examples, texts) for _ in ts]
        s = torch.tensor(score(self.rm, self.rm_tok, prompts, [t for ts in texts for t in ts], max_len=self.max_len,
                               batch_size=self.batch_size), dtype=torch.float64)
        sd = s.std() if s.numel() > 1 else torch.zeros(())
        z = ((s - s.mean()) / sd if sd > 0 else torch.zeros_like(s)).tolist()
        out, k = [], 0
        for vs in ver:
            out.append([self.w_v * v + self.w_rm * z[k + i] for i, v in enumerate(vs)])
            k += len(vs)
        return out, ver
