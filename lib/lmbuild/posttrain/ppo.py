"""The maths of PPO for RLHF: per-token rewards with the KL penalty inside, generalised advantage
estimation, advantage whitening, and the clipped policy and value losses.

The setting is InstructGPT's (Ouyang et al. 2022, "Training language models to follow
instructions with human feedback", arXiv:2203.02155, sec. 3.5, eq. 2; the recipe of Stiennon et
al. 2020, arXiv:2009.01325 and Ziegler et al. 2019, arXiv:1909.08593): a completion y to a prompt
x is one episode, each generated token one action, and the reward is

    R(x, y) = r_phi(x, y) - beta * log(pi(y | x) / pi_ref(y | x)),

paid out per token: every token t gets -beta * (log pi(y_t | .) - log pi_ref(y_t | .)) (the k1
estimate of the KL, summed over the sequence it is the sequence's log-ratio), and the last token
also gets the score r_phi (a reward model's, a verifier's, or a weighted sum).

Advantages are GAE (Schulman, Moritz, Levine, Jordan, Abbeel 2016, "High-Dimensional Continuous
Control Using Generalized Advantage Estimation", arXiv:1506.02438, eq. 16):

    delta_t = r_t + gamma * V(s_{t+1}) - V(s_t),    A_t = sum_k (gamma * lambda)^k delta_{t+k},

with V = 0 after the last token, and returns R_t = A_t + V(s_t) as the value targets.
gamma = 1 and lambda = 0.95 are the values of Ouyang et al.'s and Stiennon et al.'s code
(lm-human-preferences); TRL's PPO trainer uses the same.

Losses (Schulman et al. 2017, "Proximal Policy Optimization Algorithms", arXiv:1707.06347):
    policy:  -min(ratio_t A_t, clip(ratio_t, 1 - eps, 1 + eps) A_t)           (eq. 7)
    value:   0.5 * max((V_t - R_t)^2, (V_old_t + clip(V_t - V_old_t, -c, c) - R_t)^2)
             (the clipped value loss of the PPO2 reference implementation, OpenAI baselines,
             which lm-human-preferences also uses)
both averaged over every completion token of the batch. Advantages are whitened (zero mean,
unit variance over the batch's completion tokens) before the policy loss, as those codebases do.

All per-token tensors are [B, T] aligned with input_ids (lmbuild.lm.logprobs' layout): position
t holds the log-prob of token t given the tokens before it, and the value of the state in which
token t is chosen; the completion mask marks the tokens of each completion (contiguous).
"""

from __future__ import annotations

import torch
from torch import Tensor


def kl_rewards(logp: Tensor, ref_logp: Tensor, scores: Tensor, mask: Tensor, kl_coef: float) -> Tensor:
    """Per-token rewards: -kl_coef * (logp - ref_logp) on every completion token, plus the
    sequence's score on its last completion token; 0 outside the mask. [B, T] float32."""
    m = mask.float()
    r = -kl_coef * (logp.detach().float() - ref_logp.detach().float()) * m
    positions = torch.arange(mask.shape[1], device=mask.device).expand_as(mask)
    last = torch.where(mask.bool(), positions, torch.full_like(positions, -1)).amax(dim=1)
    has = last >= 0
    rows = torch.arange(mask.shape[0], device=mask.device)[has]
    r[rows, last[has]] += scores.detach().float().to(r.device)[has]
    return r


def gae(rewards: Tensor, values: Tensor, mask: Tensor, gamma: float = 1.0, lam: float = 0.95) -> tuple[Tensor, Tensor]:
    """(advantages, returns), [B, T] each, 0 outside the mask. The value after a completion's
    last token is 0 (the episode ends there)."""
    m = mask.float()
    r, v = rewards.float() * m, values.detach().float() * m
    B, T = r.shape
    adv = torch.zeros_like(r)
    running = torch.zeros(B, dtype=r.dtype, device=r.device)
    next_value = torch.zeros(B, dtype=r.dtype, device=r.device)
    for t in range(T - 1, -1, -1):
        mt = m[:, t]
        # inside a completion the next state's value is V[t+1] (0 past its end, where mask is 0);
        # outside (padding, prompt) nothing accumulates: running resets through the mask
        delta = r[:, t] + gamma * next_value - v[:, t]
        running = (delta + gamma * lam * running) * mt
        adv[:, t] = running
        next_value = v[:, t] * mt
    return adv, (adv + v) * m


def whiten(x: Tensor, mask: Tensor, eps: float = 1e-8) -> Tensor:
    """(x - mean) / std over the masked entries (population std), 0 outside the mask."""
    m = mask.float()
    n = m.sum().clamp(min=1)
    mean = (x * m).sum() / n
    var = (((x - mean) * m) ** 2).sum() / n
    return (x - mean) * torch.rsqrt(var + eps) * m


def _masked_mean(x: Tensor, mask: Tensor) -> Tensor:
    return (x * mask).sum() / mask.sum().clamp(min=1)


def ppo_policy_loss(logp: Tensor, old_logp: Tensor, advantages: Tensor, mask: Tensor,
                    clip_eps: float = 0.2) -> tuple[Tensor, dict[str, float]]:
    """Clipped surrogate with per-token advantages [B, T] (already whitened); mean over the
    batch's completion tokens. Stats: clip_fraction, ratio_mean, approx_kl (k1 of old vs new)."""
    m = mask.float()
    a = advantages.detach().float()
    log_ratio = logp.float() - old_logp.detach().float()
    ratio = torch.exp(log_ratio)
    surrogate = -torch.minimum(ratio * a, ratio.clamp(1.0 - clip_eps, 1.0 + clip_eps) * a)
    loss = _masked_mean(surrogate, m)
    with torch.no_grad():
        clipped = ((ratio > 1.0 + clip_eps) & (a > 0)) | ((ratio < 1.0 - clip_eps) & (a < 0))
        stats = {"clip_fraction": float(_masked_mean(clipped.float(), m)),
                 "ratio_mean": float(_masked_mean(ratio, m)),
                 "approx_kl": float(_masked_mean(-log_ratio, m))}
    return loss, stats


def value_loss(values: Tensor, old_values: Tensor, returns: Tensor, mask: Tensor,
               clip: float = 0.2) -> tuple[Tensor, dict[str, float]]:
    """0.5 * max(unclipped, clipped) squared error to the returns, mean over completion tokens.
    Stats: value_clip_fraction (share of tokens where the clipped term is the larger)."""
    m = mask.float()
    v, old, ret = values.float(), old_values.detach().float(), returns.detach().float()
    v_clipped = old + (v - old).clamp(-clip, clip)
    unclipped_err, clipped_err = (v - ret) ** 2, (v_clipped - ret) ** 2
    loss = 0.5 * _masked_mean(torch.maximum(unclipped_err, clipped_err), m)
    with torch.no_grad():
        stats = {"value_clip_fraction": float(_masked_mean((clipped_err > unclipped_err).float(), m)),
                 "value_error": float(_masked_mean((v - ret) ** 2, m))}
    return loss, stats


def explained_variance(values: Tensor, returns: Tensor, mask: Tensor) -> float:
    """1 - Var(R - V) / Var(R) over the masked tokens: how much of the return the value predicts."""
    m = mask.bool()
    r, v = returns[m].float(), values[m].float()
    if r.numel() < 2 or float(r.var()) == 0.0:
        return float("nan")
    return float(1.0 - (r - v).var() / r.var())
