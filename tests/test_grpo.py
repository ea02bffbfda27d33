"""GRPO: group-relative advantages and the clipped policy loss, against hand arithmetic."""

from __future__ import annotations

import math

import pytest
import torch

from lmbuild.posttrain.grpo import group_advantages, policy_loss


def test_group_advantages_by_hand():
    r = torch.tensor([1.0, 0.0, 0.0, 1.0, 2.0, 2.0, 2.0, 2.0, 0.0, 0.0, 0.0, 3.0])
    a = group_advantages(r, group_size=4)
    # group 0: mean 0.5, sample std sqrt((4 * 0.25) / 3) = sqrt(1/3)
    s0 = math.sqrt(1 / 3) + 1e-4
    # group 2: mean 0.75, deviations -0.75 x3 and 2.25, sample std sqrt((3*0.5625 + 5.0625)/3) = 1.5
    s2 = 1.5 + 1e-4
    want = [0.5 / s0, -0.5 / s0, -0.5 / s0, 0.5 / s0, 0, 0, 0, 0, -0.75 / s2, -0.75 / s2, -0.75 / s2, 2.25 / s2]
    assert a.tolist() == pytest.approx(want, rel=1e-5)
    # Dr. GRPO: no std
    b = group_advantages(r, group_size=4, scale=False)
    assert b.tolist() == pytest.approx([0.5, -0.5, -0.5, 0.5, 0, 0, 0, 0, -0.75, -0.75, -0.75, 2.25])


def test_zero_variance_groups_get_exactly_zero():
    r = torch.tensor([0.1, 0.1, 0.1, 0.7, 0.7, 0.7])  # 0.1*3/3 is not exactly 0.1 in floating point
    for scale in (True, False):
        assert torch.equal(group_advantages(r, 3, scale=scale), torch.zeros(6))
    assert torch.equal(group_advantages(torch.tensor([1.0, 5.0]), 1), torch.zeros(2))


def test_group_advantages_errors():
    with pytest.raises(ValueError, match="groups of 4"):
        group_advantages(torch.zeros(6), 4)
    with pytest.raises(ValueError, match="1-D"):
        group_advantages(torch.zeros(2, 3), 3)


MASK = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])


def test_on_policy_gradient_is_minus_advantage_times_grad_logp():
    logp = torch.tensor([[-1.0, -2.0, -3.0], [-0.5, -1.5, -2.5]], requires_grad=True)
    adv = torch.tensor([1.0, -2.0])
    loss, stats = policy_loss(logp, logp.detach(), adv, MASK)
    loss.backward()
    # token mean over the 5 completion tokens: d loss / d logp[b, t] = -A_b * mask / 5
    want = -adv[:, None] * MASK / 5
    assert torch.allclose(logp.grad, want)
    assert loss.item() == pytest.approx((-1 - 1 + 2 + 2 + 2) / 5)
    assert stats["ratio_mean"] == pytest.approx(1.0) and stats["clip_fraction"] == 0.0
    # per-sequence mean: -A_b * mask / (len_b * B)
    logp.grad = None
    policy_loss(logp, logp.detach(), adv, MASK, agg="sequence")[0].backward()
    assert torch.allclose(logp.grad, -adv[:, None] * MASK / (MASK.sum(1, keepdim=True) * 2))


@pytest.mark.parametrize("adv, ratio, clipped", [
    (1.0, 1.5, True),    # good completion already made more likely beyond 1+eps: stop
    (1.0, 0.5, False),   # good completion made less likely: keep pushing it up
    (-1.0, 0.5, True),   # bad completion already pushed below 1-eps: stop
    (-1.0, 1.5, False),  # bad completion made more likely: keep pushing it down
])
def test_clipping_stops_gradient_only_in_the_right_direction(adv, ratio, clipped):
    old = torch.tensor([[-2.0]])
    logp = (old + math.log(ratio)).clone().requires_grad_(True)
    loss, stats = policy_loss(logp, old, torch.tensor([adv]), torch.ones(1, 1), clip_eps=0.2)
    loss.backward()
    if clipped:
        assert logp.grad.item() == 0.0
        assert loss.item() == pytest.approx(-(1.2 if adv > 0 else 0.8) * adv)
        assert stats["clip_fraction"] == 1.0
    else:
        assert logp.grad.item() == pytest.approx(-adv * ratio)  # d(-ratio*A)/dlogp = -A*ratio
        assert math.copysign(1, -logp.grad.item()) == math.copysign(1, adv)
        assert stats["clip_fraction"] == 0.0
    assert stats["ratio_mean"] == pytest.approx(ratio)


def test_k3_kl_is_nonnegative_zero_when_equal_and_by_hand():
    g = torch.Generator().manual_seed(0)
    logp = -torch.rand(4, 6, generator=g) * 5
    ref = -torch.rand(4, 6, generator=g) * 5
    mask = torch.ones(4, 6)
    adv = torch.zeros(4)
    _, stats = policy_loss(logp, logp, adv, mask, ref_logp=ref, kl_coef=0.1)
    assert stats["kl"] > 0
    _, stats = policy_loss(logp, logp, adv, mask, ref_logp=logp.clone(), kl_coef=0.1)
    assert stats["kl"] == 0.0
    # ref - logp = 0.5: k3 = e^0.5 - 0.5 - 1; with A = 0 the loss is kl_coef * k3
    lp = torch.tensor([[-1.0]])
    loss, stats = policy_loss(lp, lp, torch.zeros(1), torch.ones(1, 1), ref_logp=lp + 0.5, kl_coef=0.04)
    k3 = math.exp(0.5) - 0.5 - 1
    assert stats["kl"] == pytest.approx(k3) and loss.item() == pytest.approx(0.04 * k3)
    # the KL term pulls logp towards ref: gradient of kl_coef*k3 wrt logp = kl_coef*(1 - e^(ref-logp)) < 0
    lp = lp.clone().requires_grad_(True)
    loss, _ = policy_loss(lp, lp.detach(), torch.zeros(1), torch.ones(1, 1), ref_logp=lp.detach() + 0.5, kl_coef=0.04)
    loss.backward()
    assert lp.grad.item() == pytest.approx(0.04 * (1 - math.exp(0.5)))


def test_mask_excludes_padding():
    logp = torch.tensor([[-1.0, -2.0, -3.0], [-0.5, -1.5, -2.5]])
    old = logp - 0.1
    adv = torch.tensor([1.0, -2.0])
    base, base_stats = policy_loss(logp, old, adv, MASK, ref_logp=old, kl_coef=0.1)
    garbage = logp.clone()
    garbage[0, 2] = 40.0  # a padding position with a wild value
    g = garbage.clone().requires_grad_(True)
    loss, stats = policy_loss(g, old, adv, MASK, ref_logp=old, kl_coef=0.1)
    assert loss.item() == pytest.approx(base.item()) and stats == pytest.approx(base_stats)
    loss.backward()
    assert g.grad[0, 2] == 0.0


def test_aggregation_modes_on_unequal_lengths():
    # sequence 0: one token, A = -1 ; sequence 1: three tokens, A = +1 ; on-policy so per-token loss = -A
    logp = torch.full((2, 3), -1.0)
    mask = torch.tensor([[1.0, 0.0, 0.0], [1.0, 1.0, 1.0]])
    adv = torch.tensor([-1.0, 1.0])
    tok, _ = policy_loss(logp, logp, adv, mask, agg="token")
    seq, _ = policy_loss(logp, logp, adv, mask, agg="sequence")
    assert tok.item() == pytest.approx((1.0 - 3.0) / 4)  # every token counts once
    assert seq.item() == pytest.approx((1.0 - 1.0) / 2)  # every sequence counts once
    # a sequence with no completion tokens is left out of the sequence mean
    mask0 = torch.tensor([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]])
    assert policy_loss(logp, logp, adv, mask0, agg="sequence")[0].item() == pytest.approx(-1.0)


def test_policy_loss_errors():
    x = torch.zeros(2, 3)
    with pytest.raises(ValueError, match="unknown agg 'mean'"):
        policy_loss(x, x, torch.zeros(2), x, agg="mean")
    with pytest.raises(ValueError, match="advantages"):
        policy_loss(x, x, torch.zeros(3), x)
    with pytest.raises(ValueError, match="needs ref_logp"):
        policy_loss(x, x, torch.zeros(2), x, kl_coef=0.1)
    with pytest.raises(ValueError, match="shape"):
        policy_loss(x, torch.zeros(2, 4), torch.zeros(2), x)
