"""The policy-gradient family of the rlvr stage: advantage estimators, the clipped surrogate in
its variants, DAPO's reward shaping and group filter, and the presets `rlvr.algorithm` picks.

Every algorithm samples G completions per prompt, scores them with the verifiers, turns the rewards
into advantages and minimises a PPO-style clipped surrogate (Schulman, Wolski, Dhariwal, Radford,
Klimov 2017, "Proximal Policy Optimization Algorithms", arXiv:1707.06347, eq. 7). They differ in
six places, which `algorithm_settings` resolves from `rlvr.algorithm` plus the explicit params:

| algorithm    | advantage                         | ratio    | clip (low, high) | aggregation        | KL       |
|--------------|-----------------------------------|----------|------------------|--------------------|----------|
| grpo         | (r - mean) / (std + eps), group   | token    | 0.2, 0.2         | token mean         | k3 loss  |
| dr_grpo      | r - mean, group                   | token    | 0.2, 0.2         | sum / (L_max x B)  | k3 loss  |
| dapo         | (r - mean) / (std + eps), group   | token    | 0.2, 0.28        | token mean         | none     |
| gspo         | (r - mean) / (std + eps), group   | sequence | 3e-4, 4e-4       | sequence mean      | k3 loss  |
| rloo         | r_i - mean of the other G-1       | token    | 0.2, 0.2         | sum / B            | k3 loss  |
| reinforce_pp | r - beta sum_{s>=t} k1_s, batch z | token    | 0.2, 0.2         | token mean         | k1 reward|

(k3 loss: kl_coef x k3 added to each token's loss, off by default; k1 reward: kl_coef x k1 taken
out of the per-token reward.) DAPO also filters constant groups and refills the batch (dynamic
sampling) and penalises completions that run into the generation budget (overlong shaping).

Sources, next to each function below: Shao et al. 2024 arXiv:2402.03300 (GRPO); Liu et al. 2025
arXiv:2503.20783 (Dr. GRPO); Yu et al. 2025 arXiv:2503.14476 (DAPO); Zheng et al. 2025
arXiv:2507.18071 (GSPO); Ahmadian et al. 2024 arXiv:2402.14740 and Kool, van Hoof, Welling 2019
"Buy 4 REINFORCE Samples, Get a Baseline for Free!" (RLOO); Hu 2025 arXiv:2501.03262 (REINFORCE++).
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from ..params import ParamsError

ALGORITHMS = ("grpo", "dr_grpo", "dapo", "gspo", "rloo", "reinforce_pp")
AGGREGATIONS = ("token", "sequence", "sum")
RATIO_LEVELS = ("token", "sequence")


# ----------------------------------------------------------------------------- advantages

def _groups(rewards: Tensor, group_size: int) -> Tensor:
    """Rewards laid out group by group ([N*G]) as a float32 [N, G] view, with the shape checks."""
    if rewards.dim() != 1:
        raise ValueError(f"rewards must be 1-D [N*G], got shape {tuple(rewards.shape)}")
    if group_size < 1 or rewards.numel() % group_size:
        raise ValueError(f"{rewards.numel()} rewards do not split into groups of {group_size}")
    return rewards.detach().float().view(-1, group_size)


def constant_groups(rewards: Tensor, group_size: int) -> Tensor:
    """[N] bool: the groups whose G rewards are all equal (no signal for any group baseline)."""
    r = _groups(rewards, group_size)
    return r.max(dim=1).values == r.min(dim=1).values


def group_advantages(rewards: Tensor, group_size: int, scale: bool = True, eps: float = 1e-4) -> Tensor:
    """Group-relative advantages for rewards laid out group by group ([N*G] -> [N*G], float32).

        A_i = (r_i - mean(r_group)) / (std(r_group) + eps)
            Shao et al. (2024), DeepSeekMath, arXiv:2402.03300, GRPO with outcome supervision;
            std is the sample (Bessel-corrected) standard deviation.
        A_i = r_i - mean(r_group)          (scale=False)
            Liu et al. (2025), "Understanding R1-Zero-Like Training" (Dr. GRPO), arXiv:2503.20783:
            the std over-weights groups that are nearly all right or all wrong, so they drop it.

    Groups whose rewards are all equal get exactly 0 (0.1 * 3 / 3 is not exactly 0.1 in floating
    point); with group_size 1 every advantage is 0.
    """
    r = _groups(rewards, group_size)
    adv = r - r.mean(dim=1, keepdim=True)
    if scale and group_size > 1:
        adv = adv / (r.std(dim=1, keepdim=True) + eps)
    constant = (r.max(dim=1, keepdim=True).values == r.min(dim=1, keepdim=True).values)
    adv = torch.where(constant, torch.zeros_like(adv), adv)
    return adv.view(-1)


def rloo_advantages(rewards: Tensor, group_size: int) -> Tensor:
    """Leave-one-out advantages ([N*G] -> [N*G]): A_i = r_i - 1/(G-1) sum_{j != i} r_j.

    Kool, van Hoof, Welling (2019), "Buy 4 REINFORCE Samples, Get a Baseline for Free!"; as the RLOO
    estimator of Ahmadian et al. (2024), "Back to Basics: Revisiting REINFORCE Style Optimization
    for Learning from Human Feedback in LLMs", arXiv:2402.14740, eq. 6. The baseline of sample i does
    not depend on sample i, so the estimate stays unbiased. Algebraically
    A_i = G/(G-1) (r_i - mean), computed that way; constant groups get exactly 0.
    """
    r = _groups(rewards, group_size)
    if group_size < 2:
        raise ValueError("RLOO needs at least 2 samples per prompt")
    adv = (r - r.mean(dim=1, keepdim=True)) * (group_size / (group_size - 1))
    constant = (r.max(dim=1, keepdim=True).values == r.min(dim=1, keepdim=True).values)
    return torch.where(constant, torch.zeros_like(adv), adv).view(-1)


def reinforce_pp_advantages(rewards: Tensor, mask: Tensor, kl: Tensor | None = None, kl_coef: float = 0.0,
                            group_size: int | None = None, eps: float = 1e-8) -> Tensor:
    """REINFORCE++ per-token advantages ([B] rewards, [B, T] mask -> [B, T], 0 off the mask).

    Hu (2025), "REINFORCE++", arXiv:2501.03262, eqs. 8-10: the KL penalty is folded into the
    per-token reward, r_t = 1[t = last] r(x, y) - beta KL_t with KL_t = log pi_old(o_t) / pi_ref(o_t)
    (the k1 estimator, `kl` = old_logp - ref_logp), and the advantage is the undiscounted return
    A_t = r(x, y) - beta sum_{s >= t} KL_s. The advantages are then normalised over every completion
    token of the batch: (A - mean) / std (global batch normalisation, the paper's replacement for a
    per-prompt baseline).

    group_size given: the "REINFORCE++ w/ baseline" variant of the same paper, for group sampling:
    the outcome reward has its group mean subtracted before the KL term and the batch
    normalisation.
    """
    if mask.dim() != 2 or rewards.shape != mask.shape[:1]:
        raise ValueError(f"rewards [B] and mask [B, T] must agree, got {tuple(rewards.shape)}, {tuple(mask.shape)}")
    m = mask.detach().float()
    r = rewards.detach().float()
    if group_size is not None:
        g = _groups(r, group_size)
        r = (g - g.mean(dim=1, keepdim=True)).view(-1)
    ret = r[:, None].expand_as(m).clone()
    if kl is not None and kl_coef:
        if kl.shape != m.shape:
            raise ValueError(f"kl has shape {tuple(kl.shape)}, expected {tuple(m.shape)}")
        k = kl.detach().float() * m
        # sum_{s >= t} KL_s: a reversed cumulative sum along the completion
        to_go = k.flip(dims=[1]).cumsum(dim=1).flip(dims=[1])
        ret = ret - kl_coef * to_go
    n = m.sum().clamp(min=1)
    mean = (ret * m).sum() / n
    var = (((ret - mean) * m) ** 2).sum() / (n - 1).clamp(min=1)  # Bessel, as torch.std
    return ((ret - mean) / (var.sqrt() + eps)) * m


def overlong_penalty(lengths: Tensor, max_len: int, cache: int) -> Tensor:
    """DAPO's soft overlong punishment, added to the reward ([B] lengths in tokens -> [B]).

    Yu et al. (2025), "DAPO: An Open-Source LLM Reinforcement Learning System at Scale",
    arXiv:2503.14476, eq. 13, with L_max = max_len and L_cache = cache:
        0                              |y| <= L_max - L_cache
        ((L_max - L_cache) - |y|) / L_cache   L_max - L_cache < |y| <= L_max (0 down to -1)
        -1                             |y| > L_max
    """
    if not 0 < cache < max_len:
        raise ValueError(f"overlong cache must be in (0, {max_len}), got {cache}")
    y = lengths.detach().float()
    soft = max_len - cache
    inside = (soft - y) / cache
    return torch.where(y <= soft, torch.zeros_like(y), torch.where(y <= max_len, inside, torch.full_like(y, -1.0)))


def dynamic_sampling(groups: list, rewards_of: Callable[[object], Tensor], refill: Callable[[int], list],
                     target: int, max_refills: int) -> tuple[list, dict[str, float]]:
    """DAPO's dynamic sampling (Yu et al. 2025, arXiv:2503.14476, eq. 11, "0 < |correct| < G"; here:
    the group's rewards are not all equal, which is what makes a group advantage non-zero).

    groups: one round's sampled groups; rewards_of(group) -> its [G] rewards; refill(k) -> the
    groups of the k-th extra draw (k = 0, 1, ...). Informative groups are kept in order and extra
    draws are made while fewer than `target` are kept and fewer than `max_refills` draws were made.
    A round still short is topped up with the first draw's constant groups (advantage 0, so no
    gradient), which keeps every round the same size; there are always enough of them, since the
    kept list only grows. Returns (target groups, {groups_skipped, refills, groups_short}).
    """
    def split(gs: list) -> tuple[list, list]:
        keep, drop = [], []
        for g in gs:
            r = rewards_of(g)
            (drop if bool(constant_groups(r, r.numel())[0]) else keep).append(g)
        return keep, drop

    kept, dropped = split(groups)
    skipped, refills = len(dropped), 0
    while len(kept) < target and refills < max_refills:
        more_kept, more_dropped = split(refill(refills))
        refills += 1
        kept += more_kept
        skipped += len(more_dropped)
    short = max(0, target - len(kept))
    return kept[:target] + dropped[:short], {"groups_skipped": float(skipped), "refills": float(refills),
                                             "groups_short": float(short)}


# ----------------------------------------------------------------------------- the loss

def _masked_mean(x: Tensor, mask: Tensor) -> Tensor:
    return (x * mask).sum() / mask.sum().clamp(min=1)


def _check_shapes(logp: Tensor, old_logp: Tensor, advantages: Tensor, mask: Tensor, ref_logp: Tensor | None,
                  kl_coef: float, agg: str, ratio_level: str) -> None:
    """pg_loss's inputs: [B, T] per-token tensors that agree, [B] or [B, T] advantages, known modes."""
    if agg not in AGGREGATIONS:
        raise ValueError(f"unknown agg {agg!r}; known: {', '.join(AGGREGATIONS)}")
    if ratio_level not in RATIO_LEVELS:
        raise ValueError(f"unknown ratio_level {ratio_level!r}; known: {', '.join(RATIO_LEVELS)}")
    if logp.dim() != 2 or old_logp.shape != logp.shape or mask.shape != logp.shape:
        raise ValueError(f"logp, old_logp and mask must share a [B, T] shape, got "
                         f"{tuple(logp.shape)}, {tuple(old_logp.shape)}, {tuple(mask.shape)}")
    if ref_logp is not None and ref_logp.shape != logp.shape:
        raise ValueError(f"ref_logp has shape {tuple(ref_logp.shape)}, expected {tuple(logp.shape)}")
    if advantages.shape not in (logp.shape[:1], logp.shape):
        raise ValueError(f"advantages must have shape [{logp.shape[0]}] or {list(logp.shape)}, "
                         f"got {tuple(advantages.shape)}")
    if kl_coef and ref_logp is None:
        raise ValueError("kl_coef > 0 needs ref_logp")


def pg_loss(logp: Tensor, old_logp: Tensor, advantages: Tensor, mask: Tensor, clip_low: float = 0.2,
            clip_high: float | None = None, ratio_level: str = "token", agg: str = "token", sum_norm: float = 1.0,
            ref_logp: Tensor | None = None, kl_coef: float = 0.0) -> tuple[Tensor, dict[str, float]]:
    """The clipped policy-gradient loss (scalar) and stats, in every variant of the family.

    logp / old_logp / ref_logp / mask: [B, T], one entry per completion token (mask 1 on the tokens
    to train on); advantages: [B] (one per completion, put on each of its tokens) or [B, T].
    old_logp and ref_logp are constants. The band is [1 - clip_low, 1 + clip_high] (clip_high None:
    symmetric); Yu et al. 2025 (DAPO, arXiv:2503.14476, eq. 10) decouple the two so a rare good
    token can rise further than 1 + 0.2 ("clip-higher").

    ratio_level "token": ratio_t = exp(logp_t - old_logp_t), PPO per token (Shao et al. 2024, eq. 3).
    ratio_level "sequence": GSPO (Zheng et al. 2025, "Group Sequence Policy Optimization",
        arXiv:2507.18071, eq. 7) s_i = exp(1/|y_i| sum_t (logp_t - old_logp_t)), the geometric mean
        of the token ratios, clipped once per completion. It is applied in the paper's token form
        (GSPO-token, eq. 13): ratio_t = sg[s_i] pi(o_t) / sg[pi(o_t)], whose value is s_i and
        whose gradient, averaged over the completion's tokens, is the gradient of s_i itself.

    agg: "token" one mean over all completion tokens of the batch (DAPO's token-level loss);
         "sequence" each completion's token mean, then the mean over completions (GRPO's 1/|o_i|);
         "sum" the sum over every completion token / (B x sum_norm): with sum_norm = the
         generation budget this is Dr. GRPO's constant normaliser (Liu et al. 2025, eq. 3's
         1/|o_i| replaced by a constant), with sum_norm = 1 the per-completion sum of log-probs
         of REINFORCE / RLOO (Ahmadian et al. 2024, eq. 6).

    KL: with ref_logp, k3_t = exp(ref_t - logp_t) - (ref_t - logp_t) - 1, an unbiased, non-negative
    estimate of KL(pi_theta || pi_ref) (Schulman 2020, "Approximating KL Divergence"), added as
    kl_coef x k3 to each token's loss (Shao et al. 2024, eq. 4).
    Stats: clip_fraction (share of tokens whose gradient the clip removed), ratio_mean (tokens, or
    sequences for GSPO), kl (mean k3 when ref_logp is given), policy_loss (without the KL term).
    """
    _check_shapes(logp, old_logp, advantages, mask, ref_logp, kl_coef, agg, ratio_level)
    high = clip_low if clip_high is None else clip_high
    lp = logp.float()
    m = mask.to(lp.dtype)
    a = advantages.detach().float()
    if a.dim() == 1:
        a = a[:, None]  # the completion's advantage on each of its tokens
    old = old_logp.detach().float()
    if ratio_level == "token":
        # ratio_t = pi_theta(o_t | q, o_<t) / pi_old(o_t | q, o_<t), from log-probs for stability
        ratio = torch.exp(lp - old)
        clipped = ratio.clamp(1.0 - clip_low, 1.0 + high)
        watched = ratio.detach()  # what the clip looks at, for the stats
    else:
        lengths = m.sum(dim=1).clamp(min=1)
        log_s = ((lp - old) * m).sum(dim=1) / lengths  # log of the geometric mean of token ratios
        s = torch.exp(log_s).detach()
        # value s_i on every token, gradient s_i * d logp_t: GSPO-token with the sequence advantage
        ratio = s[:, None] * torch.exp(lp - lp.detach())
        # clip(s_i): the ratio itself inside the band (so min() of two equal terms keeps the whole
        # gradient: torch.minimum splits a tie's gradient between its inputs), a constant bound outside
        in_band = ((s >= 1.0 - clip_low) & (s <= 1.0 + high))[:, None]
        clipped = torch.where(in_band, ratio, s.clamp(1.0 - clip_low, 1.0 + high)[:, None].expand_as(lp))
        watched = s[:, None].expand_as(lp)
    # PPO's pessimistic bound: min(ratio A, clip(ratio) A). For A > 0 the gradient stops once
    # ratio > 1 + clip_high (no further push up); for A < 0 once ratio < 1 - clip_low. Negated.
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

    B = lp.shape[0]
    if agg == "token":
        def reduce(x: Tensor) -> Tensor:
            return _masked_mean(x, m)
    elif agg == "sum":
        def reduce(x: Tensor) -> Tensor:
            # a constant denominator: a completion's weight does not depend on its own or others' lengths
            return (x * m).sum() / (B * sum_norm)
    else:
        seq_len = m.sum(dim=1)
        has_tokens = seq_len > 0

        def reduce(x: Tensor) -> Tensor:
            per_seq = (x * m).sum(dim=1) / seq_len.clamp(min=1)
            return per_seq[has_tokens].mean() if bool(has_tokens.any()) else per_seq.sum() * 0.0

    loss = reduce(per_token)
    with torch.no_grad():
        # the tokens whose gradient the clip removed: above the band with A > 0, below it with A < 0
        clip_active = ((watched > 1.0 + high) & (a > 0)) | ((watched < 1.0 - clip_low) & (a < 0))
        if ratio_level == "token":
            ratio_mean = float(_masked_mean(watched, m))
        else:
            has = m.sum(dim=1) > 0
            ratio_mean = float(s[has].mean()) if bool(has.any()) else 1.0
        stats = {
            "policy_loss": float(reduce(surrogate.detach())),
            "clip_fraction": float(_masked_mean(clip_active.expand_as(m).to(m.dtype), m)),
            "ratio_mean": ratio_mean,
            "kl": float(_masked_mean(kl.detach(), m)) if kl is not None else 0.0,
        }
    return loss, stats


def policy_loss(logp: Tensor, old_logp: Tensor, advantages: Tensor, mask: Tensor, clip_eps: float = 0.2,
                ref_logp: Tensor | None = None, kl_coef: float = 0.0,
                agg: str = "token") -> tuple[Tensor, dict[str, float]]:
    """GRPO's loss: pg_loss with a symmetric token-level clip (Shao et al. 2024, eq. 3)."""
    return pg_loss(logp, old_logp, advantages, mask, clip_low=clip_eps, clip_high=clip_eps, ratio_level="token",
                   agg=agg, ref_logp=ref_logp, kl_coef=kl_coef)


# ----------------------------------------------------------------------------- presets

# clip ranges: 0.2 is Schulman et al. 2017's best and the usual GRPO value; DAPO's clip-higher
# (eps_low 0.2, eps_high 0.28, Yu et al. 2025, section 3.1); GSPO's sequence ratios sit much
# closer to 1, hence its (3e-4, 4e-4) (Zheng et al. 2025, section 5.1).
PRESETS: dict[str, dict] = {
    "grpo": dict(advantage="group_std", ratio_level="token", clip_low=0.2, clip_high=0.2, agg="token",
                 kl="loss", dynamic_sampling=False, overlong=False),
    "dr_grpo": dict(advantage="group_mean", ratio_level="token", clip_low=0.2, clip_high=0.2, agg="sum",
                    kl="loss", dynamic_sampling=False, overlong=False),
    "dapo": dict(advantage="group_std", ratio_level="token", clip_low=0.2, clip_high=0.28, agg="token",
                 kl="none", dynamic_sampling=True, overlong=True),
    "gspo": dict(advantage="group_std", ratio_level="sequence", clip_low=3e-4, clip_high=4e-4, agg="sequence",
                 kl="loss", dynamic_sampling=False, overlong=False),
    "rloo": dict(advantage="leave_one_out", ratio_level="token", clip_low=0.2, clip_high=0.2, agg="sum",
                 kl="loss", dynamic_sampling=False, overlong=False),
    "reinforce_pp": dict(advantage="batch_norm", ratio_level="token", clip_low=0.2, clip_high=0.2, agg="token",
                         kl="reward", dynamic_sampling=False, overlong=False),
}
# DAPO: the paper's L_cache / L_max is 4096 / 20480 = 1/5 (Yu et al. 2025, section 4.1)
OVERLONG_CACHE_FRACTION = 0.2
# DAPO: extra sampling rounds allowed to refill a round's informative groups (our cap: the paper
# samples until the batch is full; a cap keeps a round's cost bounded when most groups are solved)
DEFAULT_MAX_REFILLS = 4


def algorithm_settings(p: dict, max_new_tokens: int) -> dict:
    """The resolved settings of `rlvr.algorithm`: its preset, then the explicit params where the
    algorithm has that knob. A param the algorithm lacks is a one-line ParamsError."""
    name = p["algorithm"]
    s = dict(PRESETS[name], algorithm=name, kl_coef=0.0, overlong_cache=None, max_refills=0,
             baseline=False, sum_norm=1.0)
    problems = []

    def refuse(key: str, why: str) -> None:
        problems.append(f"params.yaml: rlvr.{key}: {why}, got {p[key]}")

    problems.extend(f"params.yaml: rlvr.ppo.{k}: only the ppo algorithm has a value model and GAE, got {v}"
                    for k, v in (p.get("ppo") or {}).items() if v is not None)
    if p["clip_eps"] is not None:
        s["clip_low"] = p["clip_eps"]
        if name not in ("dapo", "gspo"):
            s["clip_high"] = p["clip_eps"]  # the symmetric algorithms: one eps both ways
    if p["clip_eps_high"] is not None:
        if name in ("dapo", "gspo"):
            s["clip_high"] = p["clip_eps_high"]
        else:
            refuse("clip_eps_high", f"the {name} algorithm clips symmetrically (set clip_eps); "
                                    "only dapo and gspo have a decoupled upper clip")
    if p["kl_coef"] is not None:
        if s["kl"] == "none" and p["kl_coef"] > 0:
            refuse("kl_coef", f"the {name} algorithm has no KL term (Yu et al. 2025 drop it); leave it unset or 0")
        else:
            s["kl_coef"] = p["kl_coef"]
    if p["scale_advantages"] is not None:
        if s["advantage"] == "group_std":
            s["advantage"] = "group_std" if p["scale_advantages"] else "group_mean"
        else:
            refuse("scale_advantages", f"the {name} algorithm's advantage ({s['advantage']}) has no group std "
                                       "to switch; only grpo, dapo and gspo have one")
    if p["loss_aggregation"] is not None:
        if name in ("grpo", "rloo", "reinforce_pp"):
            s["agg"] = p["loss_aggregation"]
        elif p["loss_aggregation"] != s["agg"]:
            refuse("loss_aggregation", f"the {name} algorithm's aggregation is fixed ({s['agg']}); "
                                       "only grpo, rloo and reinforce_pp take token or sequence")
    if p["overlong_cache"] is not None:
        if not s["overlong"]:
            refuse("overlong_cache", f"the {name} algorithm has no overlong reward shaping (dapo has)")
        elif not 0 < p["overlong_cache"] < max_new_tokens:
            refuse("overlong_cache", f"must be below tasks.max_new_tokens ({max_new_tokens})")
        else:
            s["overlong_cache"] = p["overlong_cache"]
    elif s["overlong"]:
        s["overlong_cache"] = max(1, round(OVERLONG_CACHE_FRACTION * max_new_tokens))
        if s["overlong_cache"] >= max_new_tokens:
            problems.append(f"params.yaml: tasks.max_new_tokens: dapo's overlong shaping needs at least 2 tokens "
                            f"of budget, got {max_new_tokens}")
    if p["max_refills"] is not None:
        if not s["dynamic_sampling"]:
            refuse("max_refills", f"the {name} algorithm has no dynamic sampling (dapo has)")
        else:
            s["max_refills"] = p["max_refills"]
    elif s["dynamic_sampling"]:
        s["max_refills"] = DEFAULT_MAX_REFILLS
    if p["reinforce_baseline"] is not None:
        if name != "reinforce_pp":
            refuse("reinforce_baseline", f"only reinforce_pp has a baseline variant, not {name}")
        else:
            s["baseline"] = p["reinforce_baseline"]
    if problems:
        raise ParamsError(problems)
    if s["agg"] == "sum" and name == "dr_grpo":
        s["sum_norm"] = float(max_new_tokens)  # Dr. GRPO: the generation budget per completion
    return s


def settings_metrics(s: dict) -> dict:
    """The resolved settings as numbers, for metrics/rlvr.json (which holds numbers only)."""
    return {f"algorithm.{s['algorithm']}": 1, "clip_low": s["clip_low"], "clip_high": s["clip_high"],
            "kl_coef": s["kl_coef"], "sequence_ratio": s["ratio_level"] == "sequence",
            "scaled_advantage": s["advantage"] in ("group_std", "batch_norm"),
            "dynamic_sampling": s["dynamic_sampling"], "max_refills": s["max_refills"],
            "overlong_cache": s["overlong_cache"] or 0, "sum_norm": s["sum_norm"]}


def round_advantages(s: dict, rewards: Tensor, group_size: int, mask: Tensor | None = None,
                     kl: Tensor | None = None) -> Tensor:
    """The advantages of one sampling round's rewards ([N*G]) by the resolved settings: [N*G], or
    [N*G, T] for REINFORCE++ (which needs the round's completion mask and k1 KL)."""
    kind = s["advantage"]
    if kind in ("group_std", "group_mean"):
        return group_advantages(rewards, group_size, scale=kind == "group_std")
    if kind == "leave_one_out":
        return rloo_advantages(rewards, group_size)
    if mask is None:
        raise ValueError("REINFORCE++ advantages need the completion mask")
    return reinforce_pp_advantages(rewards, mask, kl=kl, kl_coef=s["kl_coef"],
                                   group_size=group_size if s["baseline"] else None)
