"""The studies: candidate mixtures (seeded, stable as proxies are added, within the pools' caps),
the mixture fit choosing the mixture a known loss prefers, the comparison table, and the study
stages end to end on a tiny project (RegMix proxies and fit, DoReMi, the paired comparison)."""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from conftest import Project, stage_env
from lmbuild.study.compare_study import compare
from lmbuild.study.mixture_study import fit_study
from lmbuild.study.proxies import StudyError, candidate, prior, proxy_job, scaled_model
from test_train import PARAMS, TINY_MODEL
from train_data import make_project_inputs

MIX = {"pretrain": {"token_budget": 1000, "domains": {"code": {"weight": 0.3}, "prose": {"weight": 0.7}}},
       "anneal": {"token_budget": 100, "domains": {"prose": {"weight": 1.0}}}}
STUDIES = {"proxy": {"max_tokens": 2048, "seq_len": 32, "batch_size": 8, "micro_batch_size": 8, "log_every": 2,
                     "eval": {"every_steps": 4, "blocks_per_domain": 2}, "checkpoint": {"every_steps": 100},
                     "model": TINY_MODEL},
           "mixture": {"proxies": [0, 1, 2, 3, 4], "seed": 0, "concentration": 1.0, "max_epochs": 4,
                       "target": "mean", "regression": "linear", "candidates": 2000, "top_k": 20},
           "doremi": {"seed": 0}, "compare": {"seeds": [1, 2], "baseline": "default"}}


def study_params() -> dict:
    params = copy.deepcopy(PARAMS)
    params["mix"] = copy.deepcopy(MIX)
    params["studies"] = copy.deepcopy(STUDIES)
    return params


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("study_inputs")
    make_project_inputs(root, n_docs=300, vocab_size=300, shard_tokens=3000)
    shutil.copytree(root / "data/tokens/pretrain", root / "data/tokens/pool")
    (root / "metrics").mkdir()
    (root / "metrics/tokenize.json").write_text(json.dumps(
        {"val.domains.code.bytes_per_token": 2.0, "val.domains.prose.bytes_per_token": 3.0}))
    return root


def validated(params):
    from lmbuild.params import validate_section
    out = copy.deepcopy(params)
    out["studies"] = validate_section("studies", params["studies"])
    return out


def test_candidates_start_at_the_prior_are_seeded_and_stay_put(inputs):
    params = validated(study_params())
    tokens = inputs / "data/tokens"
    assert prior(params) == pytest.approx({"code": 0.3, "prose": 0.7})
    assert candidate(params, tokens, 0) == pytest.approx(prior(params))
    first = [candidate(params, tokens, i) for i in range(1, 5)]
    assert all(sum(w.values()) == pytest.approx(1.0) for w in first)
    assert len({round(w["code"], 6) for w in first}) == 4            # distinct draws
    assert candidate(params, tokens, 3) == first[2]                  # proxy 3 is proxy 3 whatever the count
    other = validated(study_params())
    other["studies"]["mixture"]["seed"] = 1
    assert candidate(other, tokens, 3) != first[2]


def test_caps_that_no_mixture_can_meet_are_an_error(inputs):
    params = validated(study_params())
    params["studies"]["proxy"]["max_tokens"] = 10**9   # far beyond pools x max_epochs
    with pytest.raises(StudyError, match="studies.mixture"):
        candidate(params, inputs / "data/tokens", 1)


def synthetic_proxies(n: int, rng) -> dict:
    """Proxies whose mean bpb falls linearly with the code weight: the fit must choose more code."""
    out = {}
    for i in range(n):
        c = float(rng.uniform(0.05, 0.95))
        bpb = {"code": 2.0 - 0.5 * c + rng.normal(0, 0.002), "prose": 1.8 - 0.1 * c + rng.normal(0, 0.002)}
        out[str(i)] = {"mixture": {"average_weights": {"code": c, "prose": 1 - c}}, "bpb": bpb,
                       "bpb_mean": (bpb["code"] + bpb["prose"]) / 2, "wall_time_s": 1.0}
    return out


def test_the_fit_chooses_the_mixture_a_known_loss_prefers(inputs):
    params = validated(study_params())
    result, metrics, report = fit_study(params, synthetic_proxies(12, np.random.default_rng(0)), inputs / "data/tokens")
    assert result["weights"]["code"] > 0.8 and result["predicted_bpb"] < result["prior_predicted_bpb"]
    assert metrics["regression"]["linear"]["r2"] > 0.95 and metrics["regression"]["linear"]["cv_spearman"] > 0.9
    assert "| **chosen** |" in report and "cross-validated Spearman" in report


def test_too_few_proxies_for_the_regression_is_a_params_error(inputs):
    from lmbuild.params import ParamsError
    params = validated(study_params())
    with pytest.raises(ParamsError, match=r"studies.mixture.proxies \(linear\): 2 runs cannot fit 3 parameters"):
        fit_study(params, synthetic_proxies(2, np.random.default_rng(0)), inputs / "data/tokens")


def test_comparison_table_pairs_by_seed():
    params = validated(study_params())
    recs = {}
    for name, shift in (("default", 0.0), ("regmix", -0.05)):
        for seed, noise in ((1, 0.01), (2, -0.01), (3, 0.0)):
            recs[f"{name}-{seed}"] = {"mixture_name": name, "seed": seed, "bpb_mean": 2.0 + shift + noise,
                                      "bpb": {"code": 2.0 + shift + noise}, "mixture": {"average_weights": {"code": 1.0}}}
    metrics, report = compare(params, recs)
    assert metrics["mean"]["regmix"]["diff"] == pytest.approx(-0.05)
    assert metrics["mean"]["regmix"]["diff_stderr"] == pytest.approx(0.0, abs=1e-12)  # same seed noise: paired
    assert metrics["mean"]["default"]["stderr"] == pytest.approx(0.01 / np.sqrt(3))
    assert "| regmix | 3 |" in report


def test_proxy_job_names_and_scaled_models(inputs):
    params = validated(study_params())
    with pytest.raises(StudyError, match="unknown proxy compare best 1"):
        proxy_job(params, inputs / "data/tokens", "compare", ["best", "1"])
    assert scaled_model(64, 3) == {"hidden_size": 64, "num_layers": 3, "num_heads": 4, "num_kv_heads": None,
                                   "intermediate_size": 168}


# ---------------------------------------------------------------- the stages, end to end

def run(root, *args, check=True):
    p = subprocess.run([sys.executable, "-m", *args], cwd=root, env=stage_env(), capture_output=True, text=True,
                       timeout=300)
    if check and p.returncode:
        raise AssertionError(f"{args} failed ({p.returncode}):\n{p.stderr[-3000:]}")
    return p


def stage(monkeypatch, module, *args):
    """A stage's main() in this process (its cwd the project): the same code as the command line
    without a Python start-up per proxy."""
    import importlib
    monkeypatch.setattr(sys, "argv", [module, *args])
    importlib.import_module(f"stages.{module}").main()


@pytest.mark.slow
def test_study_stages_end_to_end(tmp_path, inputs, monkeypatch):
    proj = Project(tmp_path)
    for sub in ("models/tokenizer", "data/tokens", "metrics"):
        shutil.copytree(inputs / sub, tmp_path / sub)
    proj.write_params(study_params())
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LMBUILD_NO_PROGRESS", "1")
    for i in range(4):
        stage(monkeypatch, "study_proxy", "mixture", str(i))
    stage(monkeypatch, "study_fit", "mixture")
    chosen = json.loads((tmp_path / "studies/mixture/weights.json").read_text())
    assert set(chosen["weights"]) == {"code", "prose"} and sum(chosen["weights"].values()) == pytest.approx(1.0)
    proxy0 = json.loads((tmp_path / "studies/mixture/proxies/0/metrics.json").read_text())
    assert proxy0["mixture"]["average_weights"] == pytest.approx({"code": 0.3, "prose": 0.7})
    assert proxy0["bpb"]["code"] == pytest.approx(proxy0["val_loss_domain"]["code"] / np.log(2) / 2.0)
    assert not (tmp_path / "studies/mixture/proxies/0/ckpt").exists()
    stage(monkeypatch, "study_proxy", "doremi", "reference")
    stage(monkeypatch, "study_proxy", "doremi", "proxy")
    doremi = json.loads((tmp_path / "studies/doremi/weights.json").read_text())
    assert sum(doremi["weights"].values()) == pytest.approx(1.0)
    for name, seeds in (("default", (1, 2)), ("regmix", (1, 2)), ("uniform", (1,)), ("doremi", (1,))):
        for seed in seeds:
            stage(monkeypatch, "study_proxy", "compare", name, str(seed))
    stage(monkeypatch, "study_fit", "compare")
    # compare_full trains with pretrain's own recipe, not studies.proxy
    stage(monkeypatch, "study_proxy", "compare_full", "default", "1")
    full = json.loads((tmp_path / "studies/compare_full/proxies/default-1/metrics.json").read_text())
    assert full["tokens_seen"] == PARAMS["pretrain"]["max_tokens"] != STUDIES["proxy"]["max_tokens"]
    m = json.loads((tmp_path / "metrics/study_compare.json").read_text())
    assert {"mean.default.mean", "mean.regmix.diff", "mean.regmix.diff_stderr", "code.doremi.diff"} <= set(m)
    assert "| regmix | 2 |" in (tmp_path / "studies/compare/report.md").read_text()
    # bad input to a study stage is one line and exit 2
    with pytest.raises(SystemExit) as exit_:
        stage(monkeypatch, "study_proxy", "compare", "best", "1")
    assert exit_.value.code == 2
    # a study result feeds the main pretrain through pretrain.mixture.weights_file
    params = study_params()
    params["pretrain"]["mixture"] = {"kind": "fixed", "weights_file": "studies/mixture/weights.json"}
    proj.write_params(params)
    p = run(tmp_path, "stages.pretrain")
    assert "starting from studies/mixture/weights.json" in p.stderr


def test_scaling_fit_of_a_grid_and_its_held_out_point():
    from lmbuild.study.scaling_study import fit_grid
    law = {"E": 2.0, "A": 300.0, "B": 900.0, "alpha": 0.4, "beta": 0.35}
    recs = {}
    for n in (2e4, 5e4, 1.2e5):
        for d in (6e4, 1.3e5, 2.6e5):
            recs[f"n{n:g}-d{d:g}"] = {"parameters_non_embedding": n, "tokens_seen": d,
                                      "val_loss": law["E"] + law["A"] / n ** law["alpha"] + law["B"] / d ** law["beta"]}
    recs["big"] = {"parameters_non_embedding": 4e5, "tokens_seen": 5e5,
                   "val_loss": law["E"] + law["A"] / 4e5 ** law["alpha"] + law["B"] / 5e5 ** law["beta"]}
    params = validated(study_params())
    params["studies"]["scaling"] = {"holdout": "big", "grid": []}
    metrics, report = fit_grid(params, recs)
    assert metrics["runs"] == 9 and metrics["holdout"]["rel_error"] < 0.01
    assert metrics["alpha"] == pytest.approx(0.4, rel=0.1) and metrics["beta"] == pytest.approx(0.35, rel=0.1)
    assert metrics["compute_optimal"]["largest_grid_point"]["tokens_per_param"] > 0
    assert "| **big** (held out) |" in report
    params["studies"]["scaling"]["holdout"] = "missing"
    from lmbuild.params import ParamsError
    with pytest.raises(ParamsError, match="studies.scaling.holdout: 'missing' is not a finished grid point"):
        fit_grid(params, recs)


def test_a_study_that_could_not_be_fitted_stops_at_its_first_proxy(inputs):
    from lmbuild.params import ParamsError
    from lmbuild.study.checks import check_study
    params = validated(study_params())
    params["studies"]["mixture"]["proxies"] = [0, 1, 2]
    params["studies"]["mixture"]["target"] = "web"
    with pytest.raises(ParamsError) as err:
        check_study(params, inputs / "data/tokens", "mixture")
    assert err.value.problems == [
        "params.yaml: studies.mixture.proxies: 3 proxies cannot fit the linear regression's 3 parameters over "
        "2 domains; list at least 4",
        "params.yaml: studies.mixture.target: 'web' is not a domain of the pool (code, prose) or 'mean'"]
    params["studies"]["scaling"] = {"holdout": "x", "grid": [
        {"name": f"p{i}", "hidden_size": 32 * (1 + i % 2), "num_layers": 2, "max_tokens": 10**9} for i in range(4)]}
    with pytest.raises(ParamsError) as err:
        check_study(params, inputs / "data/tokens", "scaling")
    text = "\n".join(err.value.problems)
    assert "studies.scaling.holdout: 'x' is not a grid point" in text
    assert "4 fitted points cannot fit the law's 5 parameters" in text
    assert "2 distinct model sizes" in text and "1 distinct token budgets" in text
    assert "point 'p0'" in text
