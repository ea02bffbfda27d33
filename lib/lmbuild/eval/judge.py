"""Pairwise judging of two models' answers to the same prompts: the judges, the win rate and
AlpacaEval 2's length-controlled win rate (Dubois et al. 2024, arXiv:2404.04475).

A preference is the judge's probability that the model's answer beats the baseline's, in [0, 1];
identical answers are a tie, 0.5, without asking the judge. Judges:

- a sequence-classification reward model (lmbuild's reward_model stage, or any local one with
  one label): preference = sigma(r(model) - r(baseline)), the Bradley-Terry probability;
- an instruct causal LM asked which of two answers is better (AlpacaEval's pairwise set-up):
  p = P("A") / (P("A") + P("B")) from its next-token distribution after the judge prompt. Judges
  favour one position (Zheng et al. 2023, arXiv:2306.05685), so each pair is judged in both
  orders and the two probabilities that the model's answer wins are averaged (`swap_average`):
  a pure position bias then cancels exactly.

Win rate = the mean preference over prompts (ties count 0.5), with the standard error of that
mean; `discrete_win_rate` counts 1 / 0.5 / 0 for preference above / at / below 0.5.

Length-controlled win rate (Dubois et al. 2024, sec. 3): a logistic regression of the
preference on a model term and the squashed, standardised length difference,

    logit q = theta + phi x tanh((len_m - len_b) / sd(len_m - len_b)),

fitted to the soft preferences by maximum likelihood; the LC win rate is the prediction with the
length term set to zero, sigma(theta). The paper's third term, instruction difficulty
(psi_m - psi_b) x gamma_x, is fitted jointly over a leaderboard of many models; with one model
against one baseline it is not identifiable apart from theta and is left out. Lengths are in
characters. A tiny ridge on phi (LC_RIDGE) keeps the fit finite when length separates the
preferences perfectly. Its standard error: a bootstrap over prompts (lmbuild.stats), the fit
redone on every replicate.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch

from ..stats import BOOTSTRAP_REPS, BOOTSTRAP_SEED, mean_stderr
from ..lm.reward import load_reward_model, score

LC_RIDGE = 1e-3
NEWTON_STEPS = 50

JUDGE_PROMPT = (
    "Which of the two answers below answers the question better? Reply with one letter, A or B.\n\n"
    "Question:\n{question}\n\nAnswer A:\n{a}\n\nAnswer B:\n{b}\n\nThe better answer is")


def win_rate(prefs: Sequence[float]) -> dict[str, float]:
    """win_rate (mean preference), its standard error over prompts, and the discrete win rate."""
    x = np.asarray(prefs, dtype=np.float64)
    discrete = np.where(x > 0.5, 1.0, np.where(x < 0.5, 0.0, 0.5))
    return {"win_rate": float(x.mean()) if x.size else float("nan"), "win_rate_stderr": mean_stderr(x),
            "discrete_win_rate": float(discrete.mean()) if x.size else float("nan"),
            "discrete_win_rate_stderr": mean_stderr(discrete)}


def swap_average(p_model_first: Sequence[float], p_model_second: Sequence[float]) -> list[float]:
    """The model's preference from both presentation orders: P(model wins | shown as A) and
    P(model wins | shown as B), averaged."""
    return [(a + b) / 2 for a, b in zip(p_model_first, p_model_second)]


def _fit(y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """(theta, phi) per row: Newton's method on the soft-label logistic likelihood, batched over
    rows (bootstrap replicates). y, x: [R, n]."""
    R = y.shape[0]
    X = np.stack([np.ones_like(x), x], axis=-1)                   # [R, n, 2]
    beta = np.zeros((R, 2))
    ridge = np.array([[0.0, 0.0], [0.0, LC_RIDGE]])
    for _ in range(NEWTON_STEPS):
        p = 1 / (1 + np.exp(-np.einsum("rnk,rk->rn", X, beta)))
        g = np.einsum("rnk,rn->rk", X, p - y) + beta @ ridge
        H = np.einsum("rnk,rn,rnl->rkl", X, p * (1 - p), X) + ridge + 1e-12 * np.eye(2)
        step = np.linalg.solve(H, g[..., None])[..., 0]
        step *= np.minimum(1.0, 5.0 / np.maximum(np.abs(step).max(axis=1, keepdims=True), 1e-12))  # damped
        beta -= step
        if np.abs(step).max() < 1e-10:
            break
    return beta


def _squashed(dlen: np.ndarray) -> np.ndarray:
    sd = dlen.std(axis=-1, ddof=1, keepdims=True) if dlen.shape[-1] > 1 else np.zeros(dlen.shape[:-1] + (1,))
    return np.tanh(np.divide(dlen, sd, out=np.zeros_like(dlen), where=sd > 0))


def lc_win_rate(prefs: Sequence[float], len_model: Sequence[float], len_base: Sequence[float], *,
                reps: int = BOOTSTRAP_REPS, seed: int = BOOTSTRAP_SEED) -> dict[str, float]:
    """lc_win_rate = sigma(theta), its bootstrap standard error over prompts, and the fitted
    length coefficient phi (lc_length_coef)."""
    y = np.asarray(prefs, dtype=np.float64)
    if y.size < 2:
        return {"lc_win_rate": float("nan"), "lc_win_rate_stderr": float("nan"), "lc_length_coef": float("nan")}
    dlen = np.asarray(len_model, dtype=np.float64) - np.asarray(len_base, dtype=np.float64)
    theta, phi = _fit(y[None], _squashed(dlen)[None])[0]
    idx = np.random.default_rng(seed).integers(0, y.size, size=(reps, y.size))
    boot = _fit(y[idx], _squashed(dlen[idx]))[:, 0]
    lc = 1 / (1 + np.exp(-boot))
    return {"lc_win_rate": float(1 / (1 + math.exp(-theta))), "lc_win_rate_stderr": float(lc.std(ddof=1)),
            "lc_length_coef": float(phi)}


class RewardModelJudge:
    """preference = sigma(r(prompt, model answer) - r(prompt, baseline answer))."""

    def __init__(self, path, what: str = "judge.path", max_len: int | None = None, batch_size: int = 32):
        self.model, self.tok = load_reward_model(path, what)
        self.max_len, self.batch_size = max_len, batch_size

    def preferences(self, prompts: list[list[dict]], model_answers: list[str], base_answers: list[str]) -> list[float]:
        n = len(prompts)
        r = score(self.model, self.tok, prompts + prompts, model_answers + base_answers, max_len=self.max_len,
                  batch_size=self.batch_size)
        return [0.5 if a == b else 1 / (1 + math.exp(-(r[i] - r[n + i])))
                for i, (a, b) in enumerate(zip(model_answers, base_answers))]


class CausalLMJudge:
    """An instruct causal LM asked JUDGE_PROMPT, both orders; P("A") vs P("B") of its next token."""

    def __init__(self, path, batch_size: int = 8):
        from transformers import AutoModelForCausalLM, AutoTokenizer
        self.tok = AutoTokenizer.from_pretrained(path)
        self.model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
        self.batch_size = batch_size
        self.ids = [self._letter_id(c) for c in ("A", "B")]

    def _letter_id(self, letter: str) -> int:
        """The token the judge would write for the letter after the prompt: " A" where the
        vocabulary has it as one token (the prompt ends without a space), else "A"."""
        for text in (" " + letter, letter):
            ids = self.tok(text, add_special_tokens=False)["input_ids"]
            if len(ids) == 1:
                return ids[0]
        raise ValueError(f"judge: the judge's tokenizer has no single token for {letter!r}")

    def _render(self, question: str, a: str, b: str) -> list[int]:
        text = JUDGE_PROMPT.format(question=question, a=a, b=b)
        if self.tok.chat_template:
            return list(self.tok.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True,
                                                     tokenize=True, return_dict=False))
        return list(self.tok(text)["input_ids"])

    @torch.no_grad()
    def p_first(self, questions: list[str], firsts: list[str], seconds: list[str]) -> list[float]:
        """P(answer A is better) = P("A") / (P("A") + P("B")) for each (question, A, B)."""
        seqs = [self._render(q, a, b) for q, a, b in zip(questions, firsts, seconds)]
        pad = self.tok.pad_token_id if self.tok.pad_token_id is not None else 0
        out = []
        for i in range(0, len(seqs), self.batch_size):
            chunk = seqs[i:i + self.batch_size]
            width = max(len(s) for s in chunk)
            ids = torch.full((len(chunk), width), pad, dtype=torch.long)
            mask = torch.zeros_like(ids)
            for j, s in enumerate(chunk):  # left padding: the next token's logits sit at the last column
                ids[j, width - len(s):] = torch.tensor(s)
                mask[j, width - len(s):] = 1
            pos = (mask.cumsum(-1) - 1).clamp(min=0)
            logits = self.model(input_ids=ids, attention_mask=mask, position_ids=pos).logits[:, -1].float()
            two = torch.log_softmax(logits, -1)[:, self.ids]
            out += torch.softmax(two, -1)[:, 0].tolist()
        return out

    def preferences(self, prompts: list[list[dict]], model_answers: list[str], base_answers: list[str]) -> list[float]:
        qs = [p[-1]["content"] for p in prompts]
        as_a = self.p_first(qs, model_answers, base_answers)                 # model shown as A
        as_b = [1 - p for p in self.p_first(qs, base_answers, model_answers)]  # model shown as B
        return [0.5 if a == b else p for p, a, b in zip(swap_average(as_a, as_b), model_answers, base_answers)]
