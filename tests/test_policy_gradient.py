"""The policy-gradient family (rlvr.algorithm): every advantage estimator, every loss variant, DAPO's
shaping and filter and the presets, against hand arithmetic."""

from __future__ import annotations

import math

import pytest
import torch

from lmbuild.params import ParamsError, validate_section
from lmbuild.posttrain.policy_gradient import (ALGORITHMS, algorithm_settings, constant_groups, dynamic_sampling,
                                               group_advantages, overlong_penalty, pg_loss, reinforce_pp_advantages,
                                               rloo_advantages, round_advantages, settings_metrics)

R = torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0])  # a mixed group and a solved one, G = 4
ONE_TOKEN = torch.ones(8, 1)


def settings(algorithm: str, max_new_tokens: int = 20, **over) -> dict:
    return algorithm_settings(validate_section("rlvr", {"algorithm": algorithm, **over}), max_new_tokens)


# ----------------------------------------------------------------------------- advantages

def test_advantages_by_hand_for_every_estimator():
    s = math.sqrt(1 / 3)  # sample std of [1, 0, 0, 1]: sqrt(4 x 0.25 / 3)
    g = 0.5 / (s + 1e-4)
    want = {
        "grpo": [g, -g, -g, g, 0, 0, 0, 0],
        "dr_grpo": [0.5, -0.5, -0.5, 0.5, 0, 0, 0, 0],
        "dapo": [g, -g, -g, g, 0, 0, 0, 0],
        "gspo": [g, -g, -g, g, 0, 0, 0, 0],
        # leave-one-out: 1 - (0 + 0 + 1)/3 = 2/3, 0 - (1 + 0 + 1)/3 = -2/3
        "rloo": [2 / 3, -2 / 3, -2 / 3, 2 / 3, 0, 0, 0, 0],
    }
    for algo, w in want.items():
        assert round_advantages(settings(algo), R, 4).tolist() == pytest.approx(w, rel=1e-5, abs=1e-7), algo
    assert rloo_advantages(R, 4).tolist() == pytest.approx(want["rloo"])
    # REINFORCE++ (one token per completion, no KL): the batch baseline mean 0.75 and Bessel std
    # sqrt((6 x 0.25^2 + 2 x 0.75^2) / 7) = sqrt(1.5 / 7); the solved group is NOT zeroed
    sd = math.sqrt(1.5 / 7)
    a = round_advantages(settings("reinforce_pp"), R, 4, mask=ONE_TOKEN)
    assert a.shape == (8, 1)
    hi, lo = 0.25 / sd, -0.75 / sd
    assert a[:, 0].tolist() == pytest.approx([hi, lo, lo, hi, hi, hi, hi, hi], rel=1e-5)
    # its baseline variant: group mean first ([0.5, -0.5, -0.5, 0.5, 0 x 4]), then the batch z-score:
    # mean 0, std sqrt(4 x 0.25 / 7)
    b = round_advantages(settings("reinforce_pp", reinforce_baseline=True), R, 4, mask=ONE_TOKEN)
    z = 0.5 / math.sqrt(1 / 7)
    assert b[:, 0].tolist() == pytest.approx([z, -z, -z, z, 0, 0, 0, 0], rel=1e-5, abs=1e-7)


def test_constant_group_is_zero_for_the_group_estimators():
    ones = torch.ones(4)
    for fn in (lambda r: group_advantages(r, 4), lambda r: group_advantages(r, 4, scale=False),
               lambda r: rloo_advantages(r, 4)):
        assert torch.equal(fn(ones), torch.zeros(4))
    with pytest.raises(ValueError, match="at least 2"):
        rloo_advantages(ones, 1)


def test_reinforce_pp_folds_the_k1_kl_into_the_return_to_go():
    # completion 0: reward 1, two tokens with KL 0.1 and 0.3; completion 1: reward 0, one token, KL 0
    mask = torch.tensor([[0.0, 1.0, 1.0], [0.0, 1.0, 0.0]])
    kl = torch.tensor([[9.0, 0.1, 0.3], [9.0, 0.0, 9.0]])  # off-mask values must not count
    a = reinforce_pp_advantages(torch.tensor([1.0, 0.0]), mask, kl=kl, kl_coef=0.5)
    # returns: 1 - 0.5 x (0.1 + 0.3) = 0.8, 1 - 0.5 x 0.3 = 0.85, 0; mean 0.55,
    # Bessel std sqrt((0.25^2 + 0.3^2 + 0.55^2) / 2)
    sd = math.sqrt((0.25 ** 2 + 0.3 ** 2 + 0.55 ** 2) / 2)
    assert a[0, 1:].tolist() == pytest.approx([0.25 / sd, 0.3 / sd], rel=1e-5)
    assert a[1, 1].item() == pytest.approx(-0.55 / sd, rel=1e-5)
    assert a[0, 0] == 0 and a[1, 0] == 0 and a[1, 2] == 0
    # the earlier token carries the later token's KL too: it gets the lower return
    assert a[0, 1] < a[0, 2]


# ----------------------------------------------------------------------------- DAPO's shaping and filter

def test_overlong_penalty_in_its_three_regions():
    # L_max 20, L_cache 4: free up to 16, linear to -1 at 20, -1 beyond
    got = overlong_penalty(torch.tensor([3.0, 16.0, 17.0, 18.0, 20.0, 25.0]), 20, 4).tolist()
    assert got == pytest.approx([0.0, 0.0, -0.25, -0.5, -1.0, -1.0])
    with pytest.raises(ValueError):
        overlong_penalty(torch.tensor([1.0]), 20, 20)


def test_dynamic_sampling_keeps_exactly_the_non_constant_groups_and_refills():
    r = torch.tensor([1.0, 0, 0, 1, 1, 1, 1, 1, 0.5, 0.5, 0.5, 0.5, 0, 0, 0, 0.1])
    assert constant_groups(r, 4).tolist() == [False, True, True, False]
    first = [("a", [1.0, 0.0]), ("b", [1.0, 1.0]), ("c", [0.0, 0.0]), ("d", [0.0, 0.1])]
    extra = {0: [("e", [1.0, 1.0]), ("f", [0.2, 0.0])], 1: [("g", [0.3, 0.0]), ("h", [0.4, 0.0])]}
    asked = []

    def refill(k):
        asked.append(k)
        return extra[k]

    def rewards(g):
        return torch.tensor(g[1])

    kept, st = dynamic_sampling(first, rewards, refill, target=4, max_refills=5)
    assert [g[0] for g in kept] == ["a", "d", "f", "g"] and asked == [0, 1]
    assert st == {"groups_skipped": 3.0, "refills": 2.0, "groups_short": 0.0}  # b, c, e
    # the cap: one refill allowed, the round is topped up with the first draw's constant groups
    asked.clear()
    kept, st = dynamic_sampling(first, rewards, refill, target=4, max_refills=1)
    assert [g[0] for g in kept] == ["a", "d", "f", "b"] and asked == [0]
    assert st == {"groups_skipped": 3.0, "refills": 1.0, "groups_short": 1.0}
    # enough informative groups in the first draw: no refill, the surplus is cut
    kept, st = dynamic_sampling(first, rewards, refill, target=2, max_refills=5)
    assert [g[0] for g in kept] == ["a", "d"] and st["refills"] == 0.0


# ----------------------------------------------------------------------------- the losses

MASK = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
OLD = torch.tensor([[-1.0, -2.0, -3.0], [-0.5, -1.5, -2.5]])
DELTA = torch.tensor([[0.1, -0.1, 7.0], [0.05, 0.3, -0.3]])  # logp - old; 7.0 sits on padding
ADV = torch.tensor([1.0, -2.0])


def _toy(**kw):
    logp = (OLD + DELTA).clone().requires_grad_(True)
    loss, st = pg_loss(logp, OLD, ADV, MASK, **kw)
    loss.backward()
    return loss.item(), st, logp.grad


def test_token_losses_on_a_toy_batch_by_hand():
    e = math.exp
    # per-token surrogate -min(ratio A, clip(ratio) A) with the band [0.8, 1.2]:
    #   seq 0, A = +1: ratios e^0.1 and e^-0.1, both inside -> -e^0.1, -e^-0.1
    #   seq 1, A = -2: e^0.05 inside -> 2 e^0.05; e^0.3 above the band, A < 0 keeps the unclipped
    #   (larger) loss 2 e^0.3; e^-0.3 = 0.741 below the band -> the clipped 2 x 0.8 = 1.6
    toks = [-e(0.1), -e(-0.1), 2 * e(0.05), 2 * e(0.3), 1.6]
    loss, st, grad = _toy(clip_low=0.2, clip_high=0.2)  # GRPO
    assert loss == pytest.approx(sum(toks) / 5)
    assert st["clip_fraction"] == pytest.approx(1 / 5)
    # Dr. GRPO: the same sum over a constant 2 completions x 3 tokens of budget
    loss, _, _ = _toy(clip_low=0.2, clip_high=0.2, agg="sum", sum_norm=3.0)
    assert loss == pytest.approx(sum(toks) / 6)
    # RLOO: per-completion sums, averaged over the 2 completions
    loss, _, _ = _toy(clip_low=0.2, clip_high=0.2, agg="sum")
    assert loss == pytest.approx(sum(toks) / 2)
    # sequence mean (GRPO's 1/|o_i|)
    loss, _, _ = _toy(clip_low=0.2, clip_high=0.2, agg="sequence")
    assert loss == pytest.approx((sum(toks[:2]) / 2 + sum(toks[2:]) / 3) / 2)
    # DAPO's band [0.8, 1.28] changes nothing here (no A > 0 ratio above 1.2)
    loss, _, _ = _toy(clip_low=0.2, clip_high=0.28)
    assert loss == pytest.approx(sum(toks) / 5)
    # REINFORCE++-style per-token advantages [B, T]
    adv_t = torch.tensor([[1.0, 0.5, 0.0], [-2.0, -2.0, -1.0]])
    logp = (OLD + DELTA).clone().requires_grad_(True)
    loss, _ = pg_loss(logp, OLD, adv_t, MASK)
    assert loss.item() == pytest.approx((-e(0.1) - 0.5 * e(-0.1) + 2 * e(0.05) + 2 * e(0.3) + 0.8) / 5)


def test_gspo_sequence_ratio_is_the_geometric_mean_and_clips_per_sequence():
    e = math.exp
    loss, st, grad = _toy(clip_low=3e-4, clip_high=4e-4, ratio_level="sequence", agg="sequence")
    # s_0 = exp((0.1 - 0.1) / 2) = 1: inside the band; s_1 = exp((0.05 + 0.3 - 0.3) / 3) = (e^0.05 e^0.3 e^-0.3)^(1/3)
    s1 = (e(0.05) * e(0.3) * e(-0.3)) ** (1 / 3)
    assert s1 > 1 + 4e-4
    assert st["ratio_mean"] == pytest.approx((1.0 + s1) / 2)
    # seq 1 (A = -2) is above the band: A < 0 keeps the unclipped loss 2 s_1
    assert loss == pytest.approx((-1.0 + 2 * s1) / 2)
    # gradient: d(-s_i A)/d logp_t = -A s_i / |y_i|, then the 1/2 of the mean over sequences
    want = torch.tensor([[-1 / 2, -1 / 2, 0.0], [2 * s1 / 3, 2 * s1 / 3, 2 * s1 / 3]]) / 2
    assert torch.allclose(grad, want, atol=1e-6)
    # A > 0 above the band: the whole sequence's gradient is zero, the other's is untouched
    logp = (OLD + DELTA).clone().requires_grad_(True)
    loss, st = pg_loss(logp, OLD, torch.tensor([1.0, 2.0]), MASK, clip_low=3e-4, clip_high=4e-4,
                       ratio_level="sequence", agg="sequence")
    loss.backward()
    assert torch.equal(logp.grad[1], torch.zeros(3)) and logp.grad[0, 0] != 0
    assert loss.item() == pytest.approx((-1.0 - 2 * (1 + 4e-4)) / 2)
    assert st["clip_fraction"] == pytest.approx(3 / 5)  # seq 1's three tokens


def test_gspo_token_form_gives_the_gradient_of_the_sequence_ratio():
    g = torch.Generator().manual_seed(1)
    old = -torch.rand(3, 5, generator=g) * 3
    logp = (old + torch.randn(3, 5, generator=g) * 1e-5).requires_grad_(True)  # inside 3e-4 / 4e-4
    mask = torch.tensor([[1.0] * 5, [1.0] * 3 + [0.0] * 2, [1.0] * 4 + [0.0]])
    adv = torch.tensor([0.7, -1.2, 0.4])
    loss, _ = pg_loss(logp, old, adv, mask, clip_low=3e-4, clip_high=4e-4, ratio_level="sequence", agg="sequence")
    loss.backward()
    lp = logp.detach().clone().requires_grad_(True)
    s = torch.exp(((lp - old) * mask).sum(1) / mask.sum(1))  # the sequence ratio, differentiated directly
    (-(s * adv).mean()).backward()
    assert torch.allclose(logp.grad, lp.grad, atol=1e-7)


@pytest.mark.parametrize("algo", ALGORITHMS)
def test_gradient_signs_for_every_algorithm(algo):
    """On policy, a positive advantage lowers the loss by raising the sampled token's logp (negative
    gradient), a negative one the other way, under every preset."""
    s = settings(algo)
    logp = torch.tensor([[-1.0, -2.0], [-1.5, -0.5]], requires_grad=True)
    mask = torch.ones(2, 2)
    adv = torch.tensor([1.0, -1.0])
    loss, _ = pg_loss(logp, logp.detach(), adv, mask, clip_low=s["clip_low"], clip_high=s["clip_high"],
                      ratio_level=s["ratio_level"], agg=s["agg"], sum_norm=s["sum_norm"])
    loss.backward()
    assert (logp.grad[0] < 0).all() and (logp.grad[1] > 0).all(), (algo, logp.grad)


@pytest.mark.parametrize("adv, ratio, grpo_clipped, dapo_clipped", [
    (1.0, 1.25, True, False),    # inside DAPO's raised upper bound 1.28, beyond GRPO's 1.2
    (1.0, 1.30, True, True),     # beyond both
    (-1.0, 0.75, True, True),    # the lower bound is 0.8 for both
    (-1.0, 1.30, False, False),  # A < 0 and made more likely: never clipped
    (1.0, 0.75, False, False),   # A > 0 and made less likely: never clipped
])
def test_dapo_band_is_asymmetric(adv, ratio, grpo_clipped, dapo_clipped):
    for high, clipped in ((0.2, grpo_clipped), (0.28, dapo_clipped)):
        old = torch.tensor([[-2.0]])
        logp = (old + math.log(ratio)).clone().requires_grad_(True)
        loss, st = pg_loss(logp, old, torch.tensor([adv]), torch.ones(1, 1), clip_low=0.2, clip_high=high)
        loss.backward()
        if clipped:
            assert logp.grad.item() == 0.0 and st["clip_fraction"] == 1.0
        else:
            assert logp.grad.item() == pytest.approx(-adv * ratio) and st["clip_fraction"] == 0.0


def test_dr_grpo_normaliser_ignores_other_completions_lengths():
    logp = torch.full((2, 4), -1.0, requires_grad=True)
    adv = torch.tensor([1.0, -1.0])

    def grad_of_first(other_len: int, agg: str) -> torch.Tensor:
        mask = torch.tensor([[1.0, 1.0, 0.0, 0.0], [1.0] * other_len + [0.0] * (4 - other_len)])
        logp.grad = None
        pg_loss(logp, logp.detach(), adv, mask, agg=agg, sum_norm=4.0)[0].backward()
        return logp.grad[0].clone()

    short, long = grad_of_first(1, "sum"), grad_of_first(4, "sum")
    assert torch.equal(short, long)
    assert short[:2].tolist() == pytest.approx([-1 / 8, -1 / 8])  # -A / (B x L_max)
    assert not torch.equal(grad_of_first(1, "token"), grad_of_first(4, "token"))  # the token mean does depend


# ----------------------------------------------------------------------------- presets

def test_presets_resolve_to_the_papers_settings():
    s = settings("grpo")
    assert (s["advantage"], s["ratio_level"], s["clip_low"], s["clip_high"], s["agg"], s["kl_coef"]) == \
        ("group_std", "token", 0.2, 0.2, "token", 0.0)
    assert not s["dynamic_sampling"] and s["overlong_cache"] is None
    s = settings("dr_grpo")
    assert (s["advantage"], s["agg"], s["sum_norm"]) == ("group_mean", "sum", 20.0)
    s = settings("dapo")
    assert (s["clip_low"], s["clip_high"], s["agg"], s["kl"], s["overlong_cache"], s["max_refills"]) == \
        (0.2, 0.28, "token", "none", 4, 4)
    s = settings("gspo")
    assert (s["ratio_level"], s["clip_low"], s["clip_high"], s["agg"]) == ("sequence", 3e-4, 4e-4, "sequence")
    s = settings("rloo")
    assert (s["advantage"], s["agg"], s["sum_norm"]) == ("leave_one_out", "sum", 1.0)
    s = settings("reinforce_pp", kl_coef=0.01)
    assert (s["advantage"], s["kl"], s["kl_coef"], s["baseline"]) == ("batch_norm", "reward", 0.01, False)
    # explicit params override where the algorithm has the knob
    assert settings("grpo", clip_eps=0.1)["clip_high"] == 0.1
    assert settings("dapo", clip_eps_high=0.3, overlong_cache=5)["clip_high"] == 0.3
    assert settings("grpo", scale_advantages=False, loss_aggregation="sequence")["advantage"] == "group_mean"
    m = settings_metrics(settings("dapo"))
    assert m["algorithm.dapo"] == 1 and m["clip_high"] == 0.28 and m["dynamic_sampling"] is True


@pytest.mark.parametrize("algo, over, line", [
    ("grpo", {"overlong_cache": 4}, "params.yaml: rlvr.overlong_cache: the grpo algorithm has no overlong reward "
                                    "shaping (dapo has), got 4"),
    ("grpo", {"clip_eps_high": 0.3}, "params.yaml: rlvr.clip_eps_high: the grpo algorithm clips symmetrically"),
    ("dapo", {"kl_coef": 0.04}, "params.yaml: rlvr.kl_coef: the dapo algorithm has no KL term"),
    ("rloo", {"scale_advantages": True}, "params.yaml: rlvr.scale_advantages: the rloo algorithm's advantage"),
    ("gspo", {"loss_aggregation": "token"}, "params.yaml: rlvr.loss_aggregation: the gspo algorithm's aggregation"),
    ("gspo", {"max_refills": 2}, "params.yaml: rlvr.max_refills: the gspo algorithm has no dynamic sampling"),
    ("grpo", {"reinforce_baseline": True}, "params.yaml: rlvr.reinforce_baseline: only reinforce_pp"),
    ("dapo", {"overlong_cache": 20}, "params.yaml: rlvr.overlong_cache: must be below tasks.max_new_tokens (20), "
                                     "got 20"),
])
def test_params_the_algorithm_lacks_are_one_line_errors(algo, over, line):
    with pytest.raises(ParamsError) as e:
        settings(algo, **over)
    assert len(e.value.problems) == 1 and e.value.problems[0].startswith(line), e.value.problems
    # dapo with kl_coef 0 is not an error: it asks for what dapo does
    assert settings("dapo", kl_coef=0.0)["kl_coef"] == 0.0
