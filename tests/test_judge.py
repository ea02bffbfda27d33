"""Judged win rates: win rate and its standard error by hand, position-swap averaging (a pure
position bias cancels), the length-controlled win rate on synthetic judgements (a judge that only
likes longer answers: raw win rate high, LC near 0.5; a judge that likes the model whatever the
length: LC keeps it); and (slow) the judge stage on the tiny chain."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lmbuild.eval.judge import lc_win_rate, swap_average, win_rate


def test_win_rate_and_stderr_by_hand():
    got = win_rate([1.0, 0.0, 0.5, 1.0])
    assert got["win_rate"] == pytest.approx(0.625)
    # sd(ddof=1) of (1, 0, .5, 1): mean .625, squares .140625+.390625+.015625+.140625 = .6875 / 3
    assert got["win_rate_stderr"] == pytest.approx(math.sqrt(0.6875 / 3) / 2)
    soft = win_rate([0.9, 0.4, 0.5])
    assert soft["win_rate"] == pytest.approx(0.6) and soft["discrete_win_rate"] == pytest.approx(0.5)


def test_swap_average_cancels_a_position_bias():
    # a judge that says "A" with probability 0.8 whatever the answers: the model wins 0.8 when
    # shown first and 1 - 0.8 when shown second
    assert swap_average([0.8, 0.8], [0.2, 0.2]) == pytest.approx([0.5, 0.5])
    assert swap_average([0.9], [0.7]) == pytest.approx([0.8])


def _lengths(n, shift, rng):
    base = rng.integers(20, 200, size=n).astype(float)
    return base + shift + rng.normal(0, 40, size=n), base


def test_length_only_judge_is_length_controlled_to_a_half():
    rng = np.random.default_rng(0)
    lm, lb = _lengths(300, 40.0, rng)  # the model answers ~40 characters longer
    d = lm - lb
    prefs = 1 / (1 + np.exp(-3 * np.tanh(d / d.std(ddof=1))))  # the judge sees only length
    raw = win_rate(prefs)["win_rate"]
    lc = lc_win_rate(prefs, lm, lb, reps=200)
    assert raw > 0.75
    assert abs(lc["lc_win_rate"] - 0.5) < 0.01 and lc["lc_length_coef"] == pytest.approx(3.0, abs=0.05)
    assert 0 < lc["lc_win_rate_stderr"] < 0.05


def test_quality_judge_keeps_its_win_rate_when_lengths_differ():
    rng = np.random.default_rng(1)
    lm, lb = _lengths(300, -30.0, rng)  # shorter, but better: theta = 1
    prefs = np.full(300, 1 / (1 + math.exp(-1.0)))
    lc = lc_win_rate(prefs, lm, lb, reps=100)
    assert lc["lc_win_rate"] == pytest.approx(1 / (1 + math.exp(-1.0)), abs=1e-6)
    assert lc["lc_length_coef"] == pytest.approx(0.0, abs=1e-6)


def test_hard_separable_preferences_stay_finite():
    lm, lb = np.array([10.0, 20, 30, 40]), np.array([20.0, 10, 40, 30])
    lc = lc_win_rate([0.0, 1.0, 0.0, 1.0], lm, lb, reps=50)
    assert math.isfinite(lc["lc_win_rate"]) and lc["lc_win_rate"] == pytest.approx(0.5, abs=1e-6)


def test_heldout_prompts_are_task_problems_then_held_out_chat_prompts(tmp_path):
    import json
    from lmbuild.eval.judge_run import heldout_prompts
    from lmbuild.lm.chat_data import in_heldout
    from lmbuild.params import validate_section
    convs = [[{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"},
              {"role": "user", "content": f"follow-up {i}"}, {"role": "assistant", "content": "ok"}] for i in range(40)]
    (tmp_path / "chat.jsonl").write_text("".join(json.dumps({"messages": c}) + "\n" for c in convs))
    params = {"common": {"seed": 1},
              "tasks": validate_section("tasks", {"families": ["sort"], "test_examples": 5}),
              "sft": validate_section("sft", {"sources": [{"name": "tasks", "type": "tasks"},
                                                          {"name": "chat", "type": "file", "path": "chat.jsonl",
                                                           "val_fraction": 0.5}]})}
    got = heldout_prompts(params, tmp_path)
    held = [c for c in convs if in_heldout(c, 0.5)]
    assert 5 < len(held) < 35  # the hash split holds out some, not all
    assert [p["source"] for p in got] == ["tasks.sort"] * 5 + ["chat"] * len(held)
    # a conversation's prompt: everything before its last assistant turn
    assert [p["messages"] for p in got[5:]] == [c[:3] for c in held]


def test_causal_lm_judge_asks_both_orders():
    """The LM judge's preference is the swap average: a judge that says "A" with probability 0.8
    whatever it reads gives 0.5; one that reads the answers gives P(model wins) in both orders."""
    from lmbuild.eval.judge import CausalLMJudge
    judge = object.__new__(CausalLMJudge)
    prompts = [[{"role": "user", "content": "q"}]] * 3
    judge.p_first = lambda qs, firsts, seconds: [0.8] * len(qs)
    assert judge.preferences(prompts, ["long answer", "x", "same"], ["y", "long answer", "same"]) == [0.5] * 3
    # prefers the longer answer, with probability 0.9 in either position
    judge.p_first = lambda qs, firsts, seconds: [0.9 if len(a) > len(b) else 0.1 for a, b in zip(firsts, seconds)]
    assert judge.preferences(prompts, ["long answer", "x", "same"], ["y", "long answer", "same"]) == \
        pytest.approx([0.9, 0.1, 0.5])
