"""PPO's maths on hand-computed values: the KL-penalised per-token rewards, GAE and returns,
whitening, the clipped policy and value losses and their gradient signs."""

from __future__ import annotations

import math

import pytest
import torch

from lmbuild.posttrain.ppo import explained_variance, gae, kl_rewards, ppo_policy_loss, value_loss, whiten

# one prompt token then three completion tokens; a second row of two completion tokens, right-padded
MASK = torch.tensor([[0, 1, 1, 1], [1, 1, 0, 0]])


def test_kl_rewards_penalise_each_token_and_pay_the_score_on_the_last():
    logp = torch.tensor([[0.0, -1.0, -2.0, -3.0], [-1.0, -1.0, 0.0, 0.0]])
    ref = torch.tensor([[5.0, -1.1, -2.2, -2.9], [-1.5, -0.5, 7.0, 7.0]])
    r = kl_rewards(logp, ref, torch.tensor([1.0, -2.0]), MASK, kl_coef=0.5)
    want = torch.tensor([[0.0, -0.05, -0.1, 0.05 + 1.0], [-0.25, 0.25 - 2.0, 0.0, 0.0]])
    assert torch.allclose(r, want, atol=1e-6)


def test_gae_matches_the_recursion_by_hand():
    r = torch.tensor([[0.0, -0.05, -0.1, 1.05], [0.3, 0.7, 0.0, 0.0]])
    v = torch.tensor([[9.0, 0.5, 0.4, 0.3], [0.2, 0.1, 5.0, 5.0]])
    adv, ret = gae(r, v, MASK, gamma=1.0, lam=0.5)
    # row 0: delta3 = 1.05 - 0.3 = 0.75; delta2 = -0.1 + 0.3 - 0.4 = -0.2 -> A2 = -0.2 + 0.5 * 0.75;
    # delta1 = -0.05 + 0.4 - 0.5 = -0.15 -> A1 = -0.15 + 0.5 * A2; the prompt token gets nothing
    a2 = -0.2 + 0.5 * 0.75
    a1 = -0.15 + 0.5 * a2
    # row 1: delta1 = 0.7 - 0.1 = 0.6 (the episode ends: the padding's values never enter)
    # delta0 = 0.3 + 0.1 - 0.2 = 0.2 -> A0 = 0.2 + 0.5 * 0.6
    want = torch.tensor([[0.0, a1, a2, 0.75], [0.2 + 0.3, 0.6, 0.0, 0.0]])
    assert torch.allclose(adv, want, atol=1e-6)
    assert torch.allclose(ret, (want + v) * MASK, atol=1e-6)


def test_gae_with_lambda_one_gives_rewards_to_go():
    r = torch.tensor([[0.0, -0.05, -0.1, 1.05], [0.3, 0.7, 0.0, 0.0]])
    v = torch.rand(2, 4)
    _, ret = gae(r, v, MASK, gamma=1.0, lam=1.0)
    assert torch.allclose(ret, torch.tensor([[0.0, 0.9, 0.95, 1.05], [1.0, 0.7, 0.0, 0.0]]), atol=1e-6)


def test_gae_discounts_with_gamma():
    r = torch.tensor([[0.0, 0.0, 0.0, 1.0]])
    _, ret = gae(r, torch.zeros(1, 4), MASK[:1], gamma=0.5, lam=1.0)
    assert torch.allclose(ret, torch.tensor([[0.0, 0.25, 0.5, 1.0]]))


def test_whiten_over_the_mask_only():
    x = torch.tensor([[100.0, 1.0, 2.0, 3.0]])
    w = whiten(x, MASK[:1])
    s = math.sqrt(2 / 3)
    assert torch.allclose(w, torch.tensor([[0.0, -1 / s, 0.0, 1 / s]]), atol=1e-4)


def test_policy_loss_value_and_gradient_signs():
    old = torch.zeros(1, 4)
    adv = torch.tensor([[0.0, 1.0, -1.0, 2.0]])
    logp = torch.tensor([[0.0, 0.1, 0.1, 0.5]], requires_grad=True)
    loss, st = ppo_policy_loss(logp, old, adv, MASK[:1], clip_eps=0.2)
    e = math.exp
    # token 1: ratio e^0.1 inside the band, A=1 -> -e^0.1; token 2: A=-1, min(-e^0.1, -1.1) = -e^0.1
    # -> +e^0.1; token 3: ratio e^0.5 > 1.2 with A=2 -> clipped: -1.2 * 2
    want = (-e(0.1) + e(0.1) - 2.4) / 3
    assert loss.item() == pytest.approx(want, abs=1e-6)
    loss.backward()
    g = logp.grad[0]
    assert g[1] < 0          # positive advantage: raising logp lowers the loss
    assert g[2] > 0          # negative advantage: lowering logp lowers the loss
    assert g[3] == 0         # clipped: no push beyond 1 + eps
    assert g[0] == 0         # the prompt token is not trained
    assert st["clip_fraction"] == pytest.approx(1 / 3)


def test_value_loss_clips_towards_the_old_values():
    old = torch.tensor([[0.0, 0.5, 0.5, 0.0]])
    ret = torch.tensor([[0.0, 2.0, 0.0, 0.0]])
    v = torch.tensor([[3.0, 1.0, 0.6, 0.1]], requires_grad=True)
    loss, st = value_loss(v, old, ret, MASK[:1], clip=0.2)
    # token 1: unclipped (1-2)^2 = 1, clipped (0.7-2)^2 = 1.69 -> 1.69; token 2: 0.6 within the band
    # -> 0.36; token 3: 0.01
    assert loss.item() == pytest.approx(0.5 * (1.69 + 0.36 + 0.01) / 3, abs=1e-6)
    loss.backward()
    assert v.grad[0, 1] == 0       # the clipped term wins: its value does not depend on v
    assert v.grad[0, 2] > 0 and v.grad[0, 3] > 0   # above the return: pushed down
    assert st["value_clip_fraction"] == pytest.approx(1 / 3)


def test_explained_variance():
    ret = torch.tensor([[0.0, 1.0, 2.0, 3.0]])
    assert explained_variance(ret, ret, MASK[:1]) == pytest.approx(1.0)
    assert explained_variance(torch.zeros(1, 4) + 2.0, ret, MASK[:1]) == pytest.approx(0.0)


def test_token_values_read_the_state_before_each_token(tmp_path):
    """V(s_t) for completion token t is the value head's output after tokens < t; a rollout batch
    carries advantages and returns on completion tokens only."""
    from lmbuild.lm.model import load_model
    from lmbuild.posttrain.ppo_job import PolicyAndValue, load_value_model, rollout_batch, token_values
    from lmbuild.train.export import export_model
    from lmbuild.train.model import build_model
    from lmbuild.params import validate_section
    from train_data import make_tokenizer, synthetic_docs
    tok = make_tokenizer([t for _, t in synthetic_docs(50)], tmp_path / "tok", 300)
    m = {**validate_section("pretrain", {})["model"], "hidden_size": 16, "num_layers": 1, "num_heads": 2,
         "intermediate_size": 32, "max_length": 64}
    pad = tok.convert_tokens_to_ids("<|pad|>")
    export_model(build_model(m, len(tok), 0, pad, 0), tmp_path / "tok", tmp_path / "lm", [0], pad)
    policy = load_model(tmp_path / "lm")
    value = load_value_model(tmp_path / "lm", len(tok), "sdpa")
    seqs = [([5, 6, 7], [8, 9]), ([5, 6], [10, 11, 12])]
    from lmbuild.lm.padding import right_pad
    b = right_pad(seqs, pad)
    v = token_values(value, b["input_ids"], b["attention_mask"], b["completion_mask"])
    with torch.no_grad():
        raw = value(input_ids=torch.tensor([[5, 6, 7, 8, 9]])).logits[0, :, 0]
    assert torch.allclose(v[0, 3:5], raw[2:4], atol=1e-5)   # tokens 8, 9 are chosen after 7 and after 8
    assert (v[0, :3] == 0).all()
    batch = rollout_batch(PolicyAndValue(policy, value), policy, seqs, [1.0, 0.0], pad_id=pad, temperature=1.0,
                          kl_coef=0.1, gamma=1.0, lam=1.0, device=torch.device("cpu"))
    outside = batch["completion_mask"] == 0
    assert (batch["advantages"][outside] == 0).all() and (batch["returns"][outside] == 0).all()
    # the reference is the policy itself: no KL penalty, so lambda 1 returns are the score on every token
    assert torch.allclose(batch["returns"][0, 3:5], torch.tensor([1.0, 1.0]), atol=1e-5)
    assert torch.allclose(batch["returns"][1, 2:5], torch.zeros(3), atol=1e-5)
