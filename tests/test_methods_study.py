"""The post-training methods study: a method's params laid over its base stage (seeded, typos
named where the user wrote them, rl_steps for the RL methods only) and the fit ranking methods
against the SFT model, paired by seed."""

from __future__ import annotations

import pytest

from lmbuild.params import ParamsError, load_params
from lmbuild.study.methods_study import fit, method_section

SHARED = ("tasks", "sft", "dpo", "rlvr", "judge")


@pytest.fixture(scope="module")
def params():
    return load_params("studies", shared=SHARED)


def test_a_method_is_its_stage_with_its_params_over_it(params):
    stage, s = method_section(params, "simpo", 7)
    assert stage == "dpo" and s["loss"] == "simpo" and s["rpo_alpha"] == 0.0 and s["seed"] == 7
    assert s["epochs"] == params["dpo"]["epochs"]          # the rest is the dpo section's
    stage, s = method_section(params, "dapo", 2)
    assert stage == "rlvr" and s["algorithm"] == "dapo" and s["kl_coef"] is None and s["seed"] == 2


def test_rl_steps_shortens_the_rl_methods_only(params):
    p = {**params, "studies": {**params["studies"],
                               "methods": {**params["studies"]["methods"], "rl_steps": 3}}}
    assert method_section(p, "grpo", 1)[1]["steps"] == 3
    assert method_section(p, "dpo", 1)[1]["epochs"] == params["dpo"]["epochs"]


def test_a_typo_in_a_method_is_named_where_it_was_written(params):
    methods = params["studies"]["methods"]
    p = {**params, "studies": {**params["studies"], "methods": {**methods, "dpo": {**methods["dpo"], "bad": {"los": "dpo"}}}}}
    with pytest.raises(ParamsError) as exc:
        method_section(p, "bad", 1)
    assert exc.value.problems[0].startswith("params.yaml: studies.methods.dpo.bad.los"), exc.value.problems
    with pytest.raises(ParamsError, match="no method 'nope'"):
        method_section(params, "nope", 1)
    # one name on both base stages would make `study_method <name>` ambiguous
    twice = {**params, "studies": {**params["studies"], "methods": {**methods, "rlvr": {**methods["rlvr"], "dpo": {}}}}}
    with pytest.raises(ParamsError, match="two methods named 'dpo'"):
        method_section(twice, "dpo", 1)


def _run(method, seed, acc, win, start=0.5):
    return {"method": method, "seed": seed, "task_accuracy": acc, "task_accuracy_gain": acc - start,
            "win_rate": win, "lc_win_rate": win, "heldout_reward": win, "time_s": 10.0 * seed,
            "start_task_accuracy": start}


def test_fit_ranks_methods_against_sft_paired_by_seed(params):
    runs = {f"a-{s}": _run("a", s, 0.5 + 0.1 * s, 0.6) for s in (1, 2, 3)}
    runs.update({f"b-{s}": _run("b", s, 0.45, 0.4 + 0.01 * s) for s in (1, 2, 3)})
    metrics, report = fit(params, runs, {"win_rate": 0.5, "lc_win_rate": 0.5, "task_accuracy_gain": 0.0,
                                         "heldout_reward": 0.5})
    acc = metrics["task_accuracy"]
    assert acc["sft"]["mean"] == pytest.approx(0.5)        # from the runs' start measurement
    assert acc["a"]["mean"] == pytest.approx(0.7) and acc["a"]["diff"] == pytest.approx(0.2)
    assert acc["a"]["diff_stderr"] == pytest.approx(0.1 / 3 ** 0.5)   # sd of (0.1, 0.2, 0.3) - 0.5 over sqrt 3
    assert acc["b"]["diff"] == pytest.approx(-0.05) and acc["b"]["diff_stderr"] == pytest.approx(0.0)
    assert metrics["win_rate"]["b"]["diff"] == pytest.approx(-0.08)
    assert "sft" not in metrics["time_s"] and metrics["time_s"]["a"]["mean"] == pytest.approx(20.0)
    assert "| a | 3 |" in report
