"""DPO-family losses: values against arithmetic done by hand, gradient signs, errors, metrics."""

from __future__ import annotations

import math

import pytest
import torch

from lmbuild.posttrain.preference_losses import (
    DEFAULTS, LOSSES, NEEDS_REFERENCE, LossOut, PairLogps, preference_loss, reward_metrics)


def nls(x: float) -> float:
    """-log sigmoid(x) = log(1 + exp(-x))."""
    return math.log(1.0 + math.exp(-x))


def sig(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


# Two pairs, written out so every number below can be followed by hand.
#   pair 0: policy chosen -10 (5 tokens), rejected -12 (4 tokens); reference -11, -11
#   pair 1: policy chosen  -8 (4 tokens), rejected  -7 (4 tokens); reference -8.5, -7.5
# policy/reference log-ratios: pair 0  w: +1.0  l: -1.0;   pair 1  w: +0.5  l: +0.5
# KTO mismatched completions: policy [-9, -10], reference [-10, -10.5] -> diffs 1.0, 0.5 -> z0 = 0.75
CHOSEN, REJECTED = [-10.0, -8.0], [-12.0, -7.0]
CLEN, RLEN = [5.0, 4.0], [4.0, 4.0]
REF_C, REF_R = [-11.0, -8.5], [-11.0, -7.5]
KL_P, KL_R = [-9.0, -10.0], [-10.0, -10.5]


def pairs(grad: bool = False, **over) -> PairLogps:
    t = lambda v: torch.tensor(v, dtype=torch.float32, requires_grad=grad)  # noqa: E731
    vals = dict(chosen=CHOSEN, rejected=REJECTED, chosen_len=CLEN, rejected_len=RLEN,
                ref_chosen=REF_C, ref_rejected=REF_R, kl_policy=KL_P, kl_ref=KL_R)
    vals.update(over)
    lp = PairLogps(**{k: (None if v is None else torch.tensor(v, dtype=torch.float32)) for k, v in vals.items()})
    if grad:
        lp.chosen, lp.rejected = t(vals["chosen"]), t(vals["rejected"])
    return lp


def log_odds(m: float) -> float:
    return m - math.log(1.0 - math.exp(m))


EXPECTED = {
    # beta 0.1: margins 0.1*(1-(-1)) = 0.2 and 0.1*(0.5-0.5) = 0
    "dpo": (nls(0.2) + nls(0.0)) / 2,
    # tau 0.1 -> target 1/(2*0.1) = 5; h = 2 and 0 (sums)
    "ipo": ((2.0 - 5.0) ** 2 + (0.0 - 5.0) ** 2) / 2,
    # delta 1: pw - pl = 2 -> max(0, 1-2) = 0 ; pw - pl = -1 -> max(0, 1+1) = 2
    "hinge": (0.0 + 2.0) / 2,
    # beta 0.1: 0.1*(-10+12) = 0.2, 0.1*(-8+7) = -0.1; NLL weight 1 on sums 10 and 8
    "cpo": (nls(0.2) + 10.0 + nls(-0.1) + 8.0) / 2,
    # mean log p: w -2, l -3 ; w -2, l -1.75 ; lambda 0.1
    "orpo": ((2.0 + 0.1 * nls(log_odds(-2.0) - log_odds(-3.0)))
             + (2.0 + 0.1 * nls(log_odds(-2.0) - log_odds(-1.75)))) / 2,
    # beta 0.1, alpha 0.05: 0.2 + 0.05*(5-4) = 0.25 ; 0 + 0.05*(4-4) = 0
    "rdpo": (nls(0.25) + nls(0.0)) / 2,
    # beta 2, gamma 1: 2*(-10/5) - 2*(-12/4) - 1 = 1 ; 2*(-8/4) - 2*(-7/4) - 1 = -1.5
    "simpo": (nls(1.0) + nls(-1.5)) / 2,
    # beta 0.1, z0 0.75, lambdas 1: desirable 1 - sig(0.1*(r_w - z0)), undesirable 1 - sig(0.1*(z0 - r_l))
    "kto": ((1 - sig(0.1 * (1.0 - 0.75))) + (1 - sig(0.1 * (0.5 - 0.75)))
            + (1 - sig(0.1 * (0.75 + 1.0))) + (1 - sig(0.1 * (0.75 - 0.5)))) / 4,
    # p_w -2, p_l -3 -> rank 0 ; p_w -2, p_l -1.75 -> rank 0.25 ; SFT on chosen sums 10, 8
    "rrhf": ((0.0 + 10.0) + (0.25 + 8.0)) / 2,
}


def test_every_loss_has_defaults_and_a_hand_value():
    assert set(LOSSES) == set(DEFAULTS) == set(EXPECTED)
    assert NEEDS_REFERENCE == {"dpo", "ipo", "rdpo", "kto"}


@pytest.mark.parametrize("kind", LOSSES)
def test_loss_matches_hand_arithmetic(kind):
    out = preference_loss(kind, pairs())
    assert out.loss.shape == ()
    assert out.loss.item() == pytest.approx(EXPECTED[kind], rel=1e-5, abs=1e-6)
    assert out.chosen_reward.shape == out.rejected_reward.shape == (2,)


def test_hyperparameter_overrides_by_hand():
    # DPO beta 0.5: margins 1.0 and 0
    assert preference_loss("dpo", pairs(), beta=0.5).loss.item() == pytest.approx((nls(1.0) + nls(0.0)) / 2, rel=1e-6)
    # IPO with per-token means: h0 = 1/5 - (-1/4) = 0.45, h1 = 0.5/4 - 0.5/4 = 0
    want = ((0.45 - 5.0) ** 2 + (0.0 - 5.0) ** 2) / 2
    assert preference_loss("ipo", pairs(), average=True).loss.item() == pytest.approx(want, rel=1e-6)
    # SLiC-HF with its regulariser 0.5 * -log p(y_w): sums 10 and 8, or per-token 2 and 2
    loss = preference_loss("hinge", pairs(), sft_weight=0.5).loss.item()
    assert loss == pytest.approx((0 + 5 + 2 + 4) / 2)
    loss = preference_loss("hinge", pairs(), sft_weight=0.5, nll_mean=True).loss.item()
    assert loss == pytest.approx((0 + 1 + 2 + 1) / 2)
    # CPO with per-token NLL: 10/5 = 2, 8/4 = 2
    loss = preference_loss("cpo", pairs(), nll_mean=True).loss.item()
    assert loss == pytest.approx((nls(0.2) + 2 + nls(-0.1) + 2) / 2, rel=1e-6)
    # SimPO gamma 0: 2 and -0.5
    loss = preference_loss("simpo", pairs(), gamma=0.0).loss.item()
    assert loss == pytest.approx((nls(2.0) + nls(-0.5)) / 2, rel=1e-6)
    # KTO with lambda_U 2: undesirable terms doubled
    want = ((1 - sig(0.025)) + (1 - sig(-0.025)) + 2 * (1 - sig(0.175)) + 2 * (1 - sig(0.025))) / 4
    assert preference_loss("kto", pairs(), lambda_u=2.0).loss.item() == pytest.approx(want, rel=1e-6)


def test_kto_reference_point_is_clamped_at_zero_and_detached():
    # mismatched diffs -1 and -2 -> mean -1.5 -> z0 = max(0, -1.5) = 0
    lp = pairs(kl_policy=[-11.0, -12.0], kl_ref=[-10.0, -10.0])
    want = ((1 - sig(0.1)) + (1 - sig(0.05)) + (1 - sig(0.1)) + (1 - sig(-0.05))) / 4
    assert preference_loss("kto", lp).loss.item() == pytest.approx(want, rel=1e-6)
    lp = pairs(grad=True)
    lp.kl_policy.requires_grad_(True)
    out = preference_loss("kto", lp)
    assert out.loss.requires_grad
    out.loss.backward()
    assert lp.kl_policy.grad is None or torch.all(lp.kl_policy.grad == 0)
    # only the policy's own log-probs carry gradient through z0's detach
    lp2 = pairs()
    lp2.kl_policy.requires_grad_(True)
    assert not preference_loss("kto", lp2).loss.requires_grad


def test_rdpo_length_term_direction():
    # Park et al. 2024: the reward difference gains +alpha(|y_w| - |y_l|), so with equal
    # log-ratios a LONGER chosen completion already satisfies more of the preference.
    base = dict(chosen=[-10.0], rejected=[-10.0], ref_chosen=[-10.0], ref_rejected=[-10.0],
                kl_policy=None, kl_ref=None, rejected_len=[10.0])
    long_w = preference_loss("rdpo", pairs(chosen_len=[30.0], **base), alpha=0.1).loss.item()
    short_w = preference_loss("rdpo", pairs(chosen_len=[5.0], **base), alpha=0.1).loss.item()
    assert long_w == pytest.approx(nls(0.1 * 20)) and short_w == pytest.approx(nls(-0.1 * 5))
    assert long_w < short_w


def test_orpo_log_odds_stable_near_certainty():
    out = preference_loss("orpo", pairs(chosen=[-1e-9, -1e-3], rejected=[-50.0, -1e-3]))
    assert torch.isfinite(out.loss)
    assert torch.isfinite(out.chosen_reward).all() and torch.isfinite(out.rejected_reward).all()


# pairs on which each loss is active (hinge: pair 0 already beats its margin; rrhf: pair 0 is
# ranked right, so only the SFT term acts on its chosen completion)
ACTIVE = {k: [0, 1] for k in LOSSES} | {"hinge": [1], "rrhf": [1]}


@pytest.mark.parametrize("kind", LOSSES)
def test_gradient_sign(kind):
    lp = pairs(grad=True)
    preference_loss(kind, lp).loss.backward()
    for i in ACTIVE[kind]:
        assert lp.chosen.grad[i] < 0, f"{kind}: raising log p(chosen) must lower the loss (pair {i})"
        assert lp.rejected.grad[i] > 0, f"{kind}: raising log p(rejected) must raise the loss (pair {i})"
    if kind == "hinge":  # satisfied margin, no regulariser: no gradient at all
        assert lp.chosen.grad[0] == 0 and lp.rejected.grad[0] == 0
    if kind == "rrhf":
        assert lp.rejected.grad[0] == 0 and lp.chosen.grad[0] < 0


def test_dpo_gradient_by_hand():
    # d/d pi_w of -log sig(beta*m) = -beta * sig(-beta*m) / B
    lp = pairs(grad=True)
    preference_loss("dpo", lp).loss.backward()
    assert lp.chosen.grad[0].item() == pytest.approx(-0.1 * sig(-0.2) / 2, rel=1e-5)
    assert lp.rejected.grad[1].item() == pytest.approx(0.1 * sig(0.0) / 2, rel=1e-5)


def test_rpo_adds_the_chosen_nll_per_token():
    # RPO (Pang et al. 2024): DPO + w * (-pi_w / |y_w|); chosen sums -10 over 5 tokens, -8 over 4
    base = preference_loss("dpo", pairs()).loss.item()
    rpo = preference_loss("dpo", pairs(), rpo_alpha=0.2).loss.item()
    assert rpo == pytest.approx(base + 0.2 * (10 / 5 + 8 / 4) / 2, rel=1e-6)
    # the NLL term pushes the chosen log-prob up and leaves the rejected gradient as DPO's
    lp = pairs(grad=True)
    preference_loss("dpo", lp, rpo_alpha=0.2).loss.backward()
    assert lp.chosen.grad[0].item() == pytest.approx((-0.1 * sig(-0.2) - 0.2 / 5) / 2, rel=1e-5)
    assert lp.rejected.grad[1].item() == pytest.approx(0.1 * sig(0.0) / 2, rel=1e-5)


def test_errors_name_what_is_known():
    with pytest.raises(ValueError, match="unknown preference loss 'xpo'.*dpo, ipo, hinge"):
        preference_loss("xpo", pairs())
    with pytest.raises(ValueError, match=r"unknown hyperparameter.*'gamma'.*known: beta"):
        preference_loss("dpo", pairs(), gamma=1.0)
    with pytest.raises(ValueError, match="needs reference-model log-probs"):
        preference_loss("dpo", pairs(ref_chosen=None))
    with pytest.raises(ValueError, match="needs mismatched-completion"):
        preference_loss("kto", pairs(kl_policy=None))
    with pytest.raises(ValueError, match="shape"):
        preference_loss("simpo", pairs(rejected=[-1.0, -2.0, -3.0]))
    # reference-free losses need no reference
    for kind in ("hinge", "cpo", "orpo", "simpo", "rrhf"):
        preference_loss(kind, pairs(ref_chosen=None, ref_rejected=None, kl_policy=None, kl_ref=None))


def test_reward_metrics_by_hand():
    out = LossOut(loss=torch.tensor(0.0), chosen_reward=torch.tensor([0.1, 0.05, -0.2]),
                  rejected_reward=torch.tensor([-0.1, 0.05, -0.4]))
    m = reward_metrics(out)
    assert m["reward_accuracy"] == pytest.approx(2 / 3)  # a tie is not a win
    assert m["reward_margin"] == pytest.approx((0.2 + 0.0 + 0.2) / 3)
    assert m["reward_chosen"] == pytest.approx((0.1 + 0.05 - 0.2) / 3)
    assert m["reward_rejected"] == pytest.approx((-0.1 + 0.05 - 0.4) / 3)
    # DPO's rewards are beta * log-ratios: pair 0 0.1 vs -0.1, pair 1 0.05 vs 0.05
    m = reward_metrics(preference_loss("dpo", pairs()))
    assert m["reward_accuracy"] == pytest.approx(0.5) and m["reward_margin"] == pytest.approx(0.1)
