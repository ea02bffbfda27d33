"""Group-relative policy optimisation (GRPO) for RL with verifiable rewards (the rlvr stage).

For every prompt the policy samples a group of G completions; a verifier scores each. The
advantage of a completion is its reward relative to its own group, so no value model is needed:

    A_i = (r_i - mean(r_group)) / (std(r_group) + eps)
        Shao, Wang, Zhu, Xu, Song, Bi, Zhang, Zhang, Li, Wu, Guo (2024), "DeepSeekMath: Pushing the
        Limits of Mathematical Reasoning in Open Language Models", arXiv:2402.03300, GRPO with
        outcome supervision. std is the sample (Bessel-corrected) standard deviation.
    A_i = r_i - mean(r_group)          (scale=False)
        Z. Liu et al. (2025), "Understanding R1-Zero-Like Training: A Critical Perspective"
        (Dr. GRPO), arXiv:2503.20783: dividing by the group std
        over-weights groups that are nearly all right or all wrong, so they drop it.

A group whose rewards are all equal carries no signal and gets advantage 0 exactly.

The per-token objective is PPO's clipped surrogate with the sequence advantage on every token
    ratio_t = exp(logp_t - old_logp_t),
    L_t = -min(ratio_t A, clip(ratio_t, 1 - eps, 1 + eps) A)
        Schulman, Wolski, Dhariwal, Radford, Klimov (2017), "Proximal Policy Optimization
        Algorithms", arXiv:1707.06347, eq. 7; applied per token as in Shao et al. 2024, eq. 3.
        clip_eps = 0.2 is the value Schulman et al. 2017 found best in their comparison
        and the usual GRPO setting.
plus an optional KL penalty towards the reference model with the k3 estimator
    kl_t = exp(ref_t - logp_t) - (ref_t - logp_t) - 1
        an unbiased, always non-negative estimate of KL(pi_theta || pi_ref) from samples of
        pi_theta (Schulman 2020, "Approximating KL Divergence", http://joschu.net/blog/kl-approx.html),
        used by Shao et al. 2024, eq. 4. kl_coef defaults to 0 (no KL term): Dr. GRPO and DAPO
        (Yu et al. 2025, arXiv:2503.14476) drop it for verifiable-reward training;
        Shao et al. used beta = 0.04.

Aggregation over tokens (`agg`):
    "sequence": mean over each completion's tokens, then mean over completions (Shao et al.
                2024, eq. 3, the 1/|o_i| factor);
    "token":    one mean over all completion tokens of the batch, so long completions weigh in
                proportion to their length (Yu et al. 2025, DAPO, arXiv:2503.14476, the
                token-level policy-gradient loss). Default.
"""

from __future__ import annotations

import torch
from torch import Tensor

AGGREGATIONS = ("token", "sequence")


def group_advantages(rewards: Tensor, group_size: int, scale: bool = True, eps: float = 1e-4) -> Tensor:
    """Group-relative advantages for rewards laid out group by group ([N*G] -> [N*G], float32).

    (r - group mean) / (group std + eps) when `scale`, else r - group mean. Groups whose rewards
    are all equal get exactly 0; with group_size 1 every advantage is 0.
    """
    if rewards.dim() != 1:
        raise ValueError(f"rewards must be 1-D [N*G], got shape {tuple(rewards.shape)}")
    if group_size < 1 or rewards.numel() % group_size:
        raise ValueError(f"{rewards.numel()} rewards do not split into groups of {group_size}")
    r = rewards.detach().float().view(-1, group_size)
    adv = r - r.mean(dim=1, keepdim=True)
    if scale and group_size > 1:
        adv = adv / (r.std(dim=1, keepdim=True) + eps)
    constant = (r.max(dim=1, keepdim=True).values == r.min(dim=1, keepdim=True).values)
    adv = torch.where(constant, torch.zeros_like(adv), adv)
    return adv.view(-1)


def _masked_mean(x: Tensor, mask: Tensor) -> Tensor:
    return (x * mask).sum() / mask.sum().clamp(min=1)


def _check_shapes(logp: Tensor, old_logp: Tensor, advantages: Tensor, mask: Tensor, ref_logp: Tensor | None,
                  kl_coef: float, agg: str) -> None:
    """policy_loss's inputs: [B, T] per-token tensors that agree, [B] advantages, a known agg."""
    if agg not in AGGREGATIONS:
        raise ValueError(f"unknown agg {agg!r}; known: {', '.join(AGGREGATIONS)}")
    if logp.dim() != 2 or old_logp.shape != logp.shape or mask.shape != logp.shape:
        raise ValueError(f"logp, old_logp and mask must share a [B, T] shape, got "
                         f"{tuple(logp.shape)}, {tuple(old_logp.shape)}, {tuple(mask.shape)}")
    if ref_logp is not None and ref_logp.shape != logp.shape:
        raise ValueError(f"ref_logp has shape {tuple(ref_logp.shape)}, expected {tuple(logp.shape)}")
    if advantages.shape != logp.shape[:1]:
        raise ValueError(f"advantages must have shape [{logp.shape[0]}], got {tuple(advantages.shape)}")
    if kl_coef and ref_logp is None:
        raise ValueError("kl_coef > 0 needs ref_logp")


def policy_loss(logp: Tensor, old_logp: Tensor, advantages: Tensor, mask: Tensor, clip_eps: float = 0.2,
                ref_logp: Tensor | None = None, kl_coef: float = 0.0,
                agg: str = "token") -> tuple[Tensor, dict[str, float]]:
    """Clipped group-relative policy loss (scalar) and stats.

    logp / old_logp / ref_logp / mask: [B, T], one entry per completion token (mask 1 on the
    tokens to train on); advantages: [B]. old_logp and ref_logp are treated as constants.
    Stats: clip_fraction (share of tokens whose gradient the clip removed), kl (mean k3, when
    ref_logp is given), ratio_mean, policy_loss (the surrogate without the KL term).
    """
    _check_shapes(logp, old_logp, advantages, mask, ref_logp, kl_coef, agg)
    lp = logp.float()
    m = mask.to(lp.dtype)
    a = advantages.detach().float()[:, None]  # the completion's advantage on each of its tokens
    # ratio_t = pi_theta(o_t | q, o_<t) / pi_old(o_t | q, o_<t), from log-probs for stability
    ratio = torch.exp(lp - old_logp.detach().float())
    clipped = ratio.clamp(1.0 - clip_eps, 1.0 + clip_eps)
    # PPO's pessimistic bound: min(ratio A, clip(ratio) A). For A > 0 the gradient stops once
    # ratio > 1 + eps (no further push up); for A < 0 once ratio < 1 - eps. Negated: a loss.
    surrogate = -torch.minimum(ratio * a, clipped * a)
    per_token = surrogate
    kl = None
    if ref_logp is not None:
        # k3 = r - log r - 1 with r = pi_ref / pi_theta = exp(d): >= 0, and its mean over samples of
        # pi_theta is KL(pi_theta || pi_ref) without bias; its gradient pulls towards pi_ref
        d = ref_logp.detach().float() - lp
        kl = torch.exp(d) - d - 1.0
        if kl_coef:
            per_token = per_token + kl_coef * kl

    # token: one mean over every completion token of the batch (DAPO); sequence: each completion's
    # token mean, then the mean over completions that have tokens (GRPO's 1/|o_i|)
    if agg == "token":
        def reduce(x: Tensor) -> Tensor:
            return _masked_mean(x, m)
    else:
        lengths = m.sum(dim=1)
        has_tokens = lengths > 0

        def reduce(x: Tensor) -> Tensor:
            per_seq = (x * m).sum(dim=1) / lengths.clamp(min=1)
            return per_seq[has_tokens].mean() if bool(has_tokens.any()) else per_seq.sum() * 0.0

    loss = reduce(per_token)
    with torch.no_grad():
        # the tokens whose gradient the clip removed: above the band with A > 0, below it with A < 0
        clip_active = ((ratio > 1.0 + clip_eps) & (a > 0)) | ((ratio < 1.0 - clip_eps) & (a < 0))
        stats = {
            "policy_loss": float(reduce(surrogate.detach())),
            "clip_fraction": float(_masked_mean(clip_active.to(m.dtype), m)),
            "ratio_mean": float(_masked_mean(ratio.detach(), m)),
            "kl": float(_masked_mean(kl.detach(), m)) if kl is not None else 0.0,
        }
    return loss, stats
