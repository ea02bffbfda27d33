"""Preference-optimisation losses of the DPO family behind one switch (`dpo.loss` in params).

Every loss works on per-sequence log-probabilities that the caller has already computed
(`logprobs.sequence_logps`): for each preference pair (x, y_w, y_l) the policy's summed token
log-probs of the chosen and the rejected completion, their token counts, and, for the losses that
need one, the same sums under the frozen reference model (computed once, before training).

Notation used below: pi_w = log pi_theta(y_w|x) (a SUM over completion tokens), pi_l likewise for
y_l, r_w / r_l the reference model's sums, |y| the number of completion tokens, sigma the logistic
function. Each formula carries the paper it comes from; the hyperparameter defaults in `DEFAULTS`
carry theirs.

- dpo   Rafailov, Sharma, Mitchell, Ermon, Manning, Finn (2023), "Direct Preference Optimization:
        Your Language Model is Secretly a Reward Model", arXiv:2305.18290, eq. 7:
            L = -log sigma(beta * [(pi_w - r_w) - (pi_l - r_l)])
- ipo   Azar, Rowland, Piot, Guo, Calandriello, Valko, Munos (2023), "A General Theoretical
        Paradigm to Understand Learning from Human Preferences", arXiv:2310.12036 (the
        sampled IPO loss):  L = (h - 1/(2 tau))^2,  h = (pi_w - r_w) - (pi_l - r_l).
        The paper's h_pi is a log-ratio of SEQUENCE probabilities, so by default h uses sums
        (`average=False`). With long completions the sums make the fixed target 1/(2 tau) easy
        to overshoot in either direction; `average=True` divides each log-ratio by its token
        count (the per-token variant some libraries default to). Sums are the default because
        that is what the paper defines.
- hinge SLiC-HF: Zhao, Joshi, Liu, Khalman, Saleh, Liu (2023), "SLiC-HF: Sequence Likelihood
        Calibration with Human Feedback", arXiv:2305.10425 (rank calibration loss plus
        cross-entropy regulariser):
            L = max(0, delta - pi_w + pi_l) - lambda * log pi_theta(y_ref|x)
        The paper's calibration loss uses NO reference model (it contrasts the policy's own
        sequence likelihoods); we implement that, not the reference-ratio hinge variant some
        libraries ship. The regulariser's target y_ref is the SFT target; with preference pairs
        we use the chosen completion y_w. Its weight `sft_weight` defaults to 0 (off).
- cpo   Xu, Sharaf, Chen, Tan, Shen, Van Durme, Murray, Kim (2024), "Contrastive Preference
        Optimization: Pushing the Boundaries of LLM Performance in Machine Translation",
        arXiv:2401.08417:
            L = -log sigma(beta * (pi_w - pi_l)) + lambda * NLL(y_w),  NLL(y_w) = -pi_w
- orpo  Hong, Lee, Thorne (2024), "ORPO: Monolithic Preference Optimization without Reference
        Model", arXiv:2403.07691:
            L = NLL_mean(y_w) + lambda * (-log sigma(log odds(y_w) - log odds(y_l)))
        with P(y|x) = exp(pi / |y|) (the per-token mean log-prob), odds = P / (1 - P), and
        log odds = m - log(1 - exp(m)) for m = pi/|y| < 0, computed as m - log1p(-exp(m)).
- rdpo  Park, Rafailov, Ermon, Finn (2024), "Disentangling Length from Quality in Direct Preference
        Optimization", arXiv:2403.19159 (R-DPO):
            L = -log sigma(beta * [(pi_w - r_w) - (pi_l - r_l)] + alpha * (|y_w| - |y_l|))
        Sign: the paper puts the length penalty alpha*|y| in the reward being optimised, so the
        Bradley-Terry reward difference becomes the DPO implicit-reward difference PLUS
        alpha(|y_w| - |y_l|); a longer chosen answer then needs a smaller implicit-reward margin,
        which is what stops the implicit reward from soaking up length. Written with
        "- alpha(|y_w| - |y_l|)" instead, long chosen answers would need a LARGER implicit margin
        and DPO's length bias would grow; tests/test_preference_losses.py pins the direction.
- simpo Meng, Xia, Chen (2024), "SimPO: Simple Preference Optimization with a Reference-Free
        Reward", arXiv:2405.14734, eq. 6:
            L = -log sigma(beta/|y_w| * pi_w - beta/|y_l| * pi_l - gamma)
- kto   Ethayarajh, Xu, Muennighoff, Jurafsky, Kiela (2024), "KTO: Model Alignment as Prospect
        Theoretic Optimization", arXiv:2402.01306:
            L = E[lambda_y - v(x, y)],  r = pi - r_ref (policy minus reference log-ratio),
            z0 = max(0, mean over mismatched pairs (x, y') of [log pi_theta(y'|x) - log pi_ref(y'|x)]),
            v = lambda_D * sigma(beta (r - z0)) for desirable y, lambda_U * sigma(beta (z0 - r))
            for undesirable y; z0 is not back-propagated through.
        Each pair is unpaired into one desirable (chosen) and one undesirable (rejected) example,
        so the loss is the mean of 2B terms lambda_D(1 - sigma(beta(r_w - z0))) and
        lambda_U(1 - sigma(beta(z0 - r_l))). The mismatched completions (prompt i with the chosen
        completion of pair (i+1) mod B) are scored by the caller into `kl_policy` / `kl_ref`.
- rrhf  Yuan, Yuan, Tan, Wang, Huang, Huang (2023), "RRHF: Rank Responses to Align Language Models
        with Human Feedback without tears", arXiv:2304.05302:
            p = pi / |y| (length-normalised),  L_rank = max(0, p_l - p_w),
            L = L_rank + sft_weight * L_ft,  L_ft = -log pi_theta(y_best|x) = -pi_w
        (with one pair per prompt the best-ranked response is the chosen one).

`rpo_alpha` (every loss; 0 by default): adds rpo_alpha x the chosen completion's negative
log-likelihood per token. With dpo this is RPO (Pang, Yuan, Cho, He, Sukhbaatar, Weston (2024),
"Iterative Reasoning Preference Optimization", arXiv:2404.19733, eq. 3), which keeps the chosen
answers likely where plain DPO lowers both log-probs; Llama 3's DPO recipe (Dubey et al. 2024,
arXiv:2407.21783, sec. 4.1.4) adds the same term with weight 0.2. cpo, hinge, rrhf and orpo
have a likelihood term of their own.

NLL terms: the SLiC-HF, CPO and RRHF papers write their likelihood term on the whole sequence,
-log pi_theta(y|x), i.e. a SUM over tokens; that is the default here. `nll_mean=True` divides by
|y_w| (per-token mean, ORPO's choice), which keeps the term's size independent of length. ORPO's
SFT term is always the per-token mean, as in its paper.

All arithmetic is done in float32 (inputs may be bf16). Losses are means over pairs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

LOSSES = ("dpo", "ipo", "hinge", "cpo", "orpo", "rdpo", "simpo", "kto", "rrhf")

# Losses whose formula contains reference-model log-probs (pi_ref). SLiC-HF's calibration loss,
# CPO, ORPO, SimPO and RRHF are reference-free in their papers.
NEEDS_REFERENCE: frozenset[str] = frozenset({"dpo", "ipo", "rdpo", "kto"})

# Losses that also need the mismatched-completion log-probs (KTO's reference point z0).
NEEDS_KL_SAMPLES: frozenset[str] = frozenset({"kto"})

# Per-loss hyperparameters with the papers' typical values.
DEFAULTS: dict[str, dict] = {
    # beta = 0.1: Rafailov et al. 2023 (arXiv:2305.18290), the value of their experiments unless
    # noted otherwise (0.5 only for TL;DR summarisation).
    "dpo": {"beta": 0.1},
    # tau = 0.1: Azar et al. 2023 (arXiv:2310.12036) leave tau to tuning; 0.1 is the value in the
    # middle of the IPO search range {0.01, 0.1, 0.5, 1.0} used by Meng et al. 2024
    # (arXiv:2405.14734, appendix, baseline hyperparameters). average=False: the paper's h uses
    # sequence log-probs (see module docstring).
    "ipo": {"tau": 0.1, "average": False},
    # delta = 1.0: the unit margin of the SLiC rank loss, Zhao et al. 2023 (arXiv:2305.10425)
    # and Zhao et al. 2022 (SLiC, arXiv:2210.00045). sft_weight (the paper's lambda on the
    # cross-entropy regulariser) = 0: regulariser off by default, set it to use the full
    # SLiC-HF objective.
    "hinge": {"delta": 1.0, "sft_weight": 0.0, "nll_mean": False},
    # beta = 0.1 and NLL weight 1: Xu et al. 2024 (arXiv:2401.08417) (the CPO objective
    # is L_prefer + L_NLL with beta = 0.1).
    "cpo": {"beta": 0.1, "nll_weight": 1.0, "nll_mean": False},
    # lambda = 0.1: Hong et al. 2024 (arXiv:2403.07691), the weight used to train their ORPO
    # models.
    "orpo": {"lam": 0.1},
    # beta = 0.1 as DPO (Park et al. 2024 build on DPO's setting); alpha is tuned per dataset in
    # Park et al. 2024 (arXiv:2403.19159); 0.05 is the low end of the R-DPO search range
    # {0.05, 0.1, 0.5, 1.0} used by Meng et al. 2024 (arXiv:2405.14734, appendix).
    "rdpo": {"beta": 0.1, "alpha": 0.05},
    # beta = 2.0, gamma = 1.0 (gamma/beta = 0.5): Meng et al. 2024 (arXiv:2405.14734), whose
    # tuned settings use beta in [2.0, 2.5] and gamma in [0.3, 1.6] across their setups.
    "simpo": {"beta": 2.0, "gamma": 1.0},
    # beta = 0.1, lambda_D = lambda_U = 1: Ethayarajh et al. 2024 (arXiv:2402.01306), their
    # defaults for balanced desirable/undesirable data (as here: one of each per pair; they
    # recommend lambda_D n_D / (lambda_U n_U) in [1, 4/3]).
    "kto": {"beta": 0.1, "lambda_d": 1.0, "lambda_u": 1.0},
    # sft_weight = 1: Yuan et al. 2023 (arXiv:2304.05302), L = L_rank + L_ft with unit weight.
    "rrhf": {"sft_weight": 1.0, "nll_mean": False},
}


@dataclass
class PairLogps:
    """Per-pair sequence log-probs; every field a float tensor of shape [B]."""

    chosen: Tensor  # policy: sum over completion tokens of log p(y_w | x)
    rejected: Tensor
    chosen_len: Tensor  # number of completion tokens
    rejected_len: Tensor
    ref_chosen: Tensor | None = None  # reference model, same sums (None for reference-free losses)
    ref_rejected: Tensor | None = None
    kl_policy: Tensor | None = None  # KTO only: policy sum log p of a mismatched completion
    kl_ref: Tensor | None = None  # KTO only: the reference model's sum for the same completion


@dataclass
class LossOut:
    loss: Tensor  # scalar
    chosen_reward: Tensor  # [B]: implicit reward / score of the chosen completion (detached)
    rejected_reward: Tensor  # [B]


def _check(kind: str, lp: PairLogps, hp: dict) -> dict:
    if kind not in DEFAULTS:
        raise ValueError(f"unknown preference loss {kind!r}; known: {', '.join(LOSSES)}")
    unknown = sorted(set(hp) - set(DEFAULTS[kind]))
    if unknown:
        raise ValueError(f"unknown hyperparameter(s) {unknown} for loss {kind!r}; "
                         f"known: {', '.join(sorted(DEFAULTS[kind]))}")
    if kind in NEEDS_REFERENCE and (lp.ref_chosen is None or lp.ref_rejected is None):
        raise ValueError(f"loss {kind!r} needs reference-model log-probs (ref_chosen, ref_rejected)")
    if kind in NEEDS_KL_SAMPLES and (lp.kl_policy is None or lp.kl_ref is None):
        raise ValueError(f"loss {kind!r} needs mismatched-completion log-probs (kl_policy, kl_ref) "
                         f"for its reference point z0")
    shape = lp.chosen.shape
    if lp.chosen.dim() != 1:
        raise ValueError(f"PairLogps.chosen must have shape [B], got {tuple(shape)}")
    for name in ("rejected", "chosen_len", "rejected_len", "ref_chosen", "ref_rejected"):
        t = getattr(lp, name)
        if t is not None and t.shape != shape:
            raise ValueError(f"PairLogps.{name} has shape {tuple(t.shape)}, expected {tuple(shape)}")
    return {**DEFAULTS[kind], **hp}


def _f(t: Tensor) -> Tensor:
    return t.float()


def _nll(logp_sum: Tensor, length: Tensor, mean: bool) -> Tensor:
    """Negative log-likelihood per pair: -sum, or -sum/|y| when `mean`."""
    return -(logp_sum / length.clamp(min=1)) if mean else -logp_sum


def _log_odds(mean_logp: Tensor) -> Tensor:
    """log(p / (1 - p)) for p = exp(mean_logp), stable for mean_logp < 0.

    log(1 - p) = log1p(-exp(m)); m is clamped just below 0 so that a completion the model is
    certain of (m == 0) gives a large finite log odds instead of inf.
    """
    m = mean_logp.clamp(max=-1e-6)
    return m - torch.log1p(-torch.exp(m))


def preference_loss(kind: str, lp: PairLogps, rpo_alpha: float = 0.0, **hp) -> LossOut:
    """The `kind` loss on a batch of pairs, plus `rpo_alpha` x the chosen NLL per token (RPO's
    term, see the module docstring); `hp` overrides `DEFAULTS[kind]`."""
    h = _check(kind, lp, hp)
    pw, pl = _f(lp.chosen), _f(lp.rejected)
    nw, nl = _f(lp.chosen_len), _f(lp.rejected_len)

    if kind in ("dpo", "ipo", "rdpo", "kto"):
        lw = pw - _f(lp.ref_chosen)  # policy/reference log-ratio of y_w
        ll = pl - _f(lp.ref_rejected)

    if kind == "dpo":
        beta = h["beta"]
        loss = -F.logsigmoid(beta * (lw - ll))
        cr, rr = beta * lw, beta * ll
    elif kind == "ipo":
        tau = h["tau"]
        if h["average"]:
            lw, ll = lw / nw.clamp(min=1), ll / nl.clamp(min=1)
        loss = (lw - ll - 1.0 / (2.0 * tau)) ** 2
        cr, rr = tau * lw, tau * ll  # tau plays beta's role in IPO's KL-regularised objective
    elif kind == "hinge":
        loss = torch.relu(h["delta"] - (pw - pl))
        if h["sft_weight"]:
            loss = loss + h["sft_weight"] * _nll(pw, nw, h["nll_mean"])
        cr, rr = pw, pl
    elif kind == "cpo":
        beta = h["beta"]
        loss = -F.logsigmoid(beta * (pw - pl)) + h["nll_weight"] * _nll(pw, nw, h["nll_mean"])
        cr, rr = beta * pw, beta * pl
    elif kind == "orpo":
        mw, ml = pw / nw.clamp(min=1), pl / nl.clamp(min=1)
        ow, ol = _log_odds(mw), _log_odds(ml)
        loss = -mw + h["lam"] * -F.logsigmoid(ow - ol)
        cr, rr = ow, ol
    elif kind == "rdpo":
        beta = h["beta"]
        loss = -F.logsigmoid(beta * (lw - ll) + h["alpha"] * (nw - nl))
        cr, rr = beta * lw, beta * ll
    elif kind == "simpo":
        beta = h["beta"]
        sw, sl = beta * pw / nw.clamp(min=1), beta * pl / nl.clamp(min=1)
        loss = -F.logsigmoid(sw - sl - h["gamma"])
        cr, rr = sw, sl
    elif kind == "kto":
        beta = h["beta"]
        z0 = (_f(lp.kl_policy) - _f(lp.kl_ref)).mean().clamp(min=0).detach()
        desirable = h["lambda_d"] * (1 - torch.sigmoid(beta * (lw - z0)))
        undesirable = h["lambda_u"] * (1 - torch.sigmoid(beta * (z0 - ll)))
        loss = torch.cat([desirable, undesirable])
        cr, rr = beta * lw, beta * ll
    elif kind == "rrhf":
        sw, sl = pw / nw.clamp(min=1), pl / nl.clamp(min=1)
        loss = torch.relu(sl - sw) + h["sft_weight"] * _nll(pw, nw, h["nll_mean"])
        cr, rr = sw, sl
    else:  # pragma: no cover - _check rejects unknown kinds
        raise ValueError(kind)
    if rpo_alpha:  # RPO's term: the NLL of y_w per token (Pang et al. normalise by length)
        loss = loss + rpo_alpha * _nll(pw, nw, mean=True)
    return LossOut(loss=loss.mean(), chosen_reward=cr.detach(), rejected_reward=rr.detach())


def reward_metrics(out: LossOut) -> dict[str, float]:
    """Reward accuracy (share of pairs with chosen_reward > rejected_reward), mean margin and
    mean chosen / rejected rewards, as plain floats for logging."""
    c, r = out.chosen_reward.detach().float(), out.rejected_reward.detach().float()
    if c.numel() == 0:
        return {"reward_accuracy": 0.0, "reward_margin": 0.0, "reward_chosen": 0.0, "reward_rejected": 0.0}
    return {
        "reward_accuracy": (c > r).float().mean().item(),
        "reward_margin": (c - r).mean().item(),
        "reward_chosen": c.mean().item(),
        "reward_rejected": r.mean().item(),
    }
