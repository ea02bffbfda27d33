"""The data ablation study's pieces that need no data: recipe params (overlays validated and
named as the user wrote them), the stage a recipe starts from, the study's checks, and the fit
ranking recipes per eval-suite metric with paired differences. The study on the demo data, end to
end, is in test_pipeline_e2e.py (it reuses that file's data pipeline run)."""

from __future__ import annotations

import copy

import pytest
import yaml

from conftest import REPO

from lmbuild.params import ParamsError, validate_section
from lmbuild.study.ablation_fit import fit, suite_metrics
from lmbuild.study.data_ablation import check_ablation, first_changed, main_inputs, recipe_params
from lmbuild.study.proxies import StudyError

SECTIONS = ("common", "filter", "dedup", "rate", "mix", "decontaminate", "tokenize")


def params(recipes=None, **ablation) -> dict:
    demo = yaml.safe_load((REPO / "params.yaml").read_text())
    p = {s: validate_section(s, demo[s]) for s in SECTIONS}
    p["studies"] = validate_section("studies", {"ablation": {
        "recipes": recipes if recipes is not None else {"default": {}, "no_dedup": {"dedup": {"exact": {"enabled": False}}}},
        **ablation}})
    return p


def test_a_recipe_is_its_overlay_on_the_data_sections_and_starts_at_the_first_it_changes():
    p = params({"default": {}, "no_dedup": {"dedup": {"exact": {"enabled": False}}},
                "late": {"decontaminate": {"mode": "drop"}},
                "both": {"mix": {"val": {"fraction": 0.1}}, "filter": {"rules": {"gopher_quality": {"enabled": False}}}}})
    assert first_changed(p, recipe_params(p, "default")) is None
    r = recipe_params(p, "no_dedup")
    assert r["dedup"]["exact"]["enabled"] is False and r["dedup"]["minhash"] == p["dedup"]["minhash"]
    assert first_changed(p, r) == "dedup"
    assert first_changed(p, recipe_params(p, "late")) == "decontaminate"
    assert first_changed(p, recipe_params(p, "both")) == "filter"  # pipeline order, not the overlay's
    # an overlay equal to the defaults changes nothing
    same = params({"default": {}, "same": {"dedup": {"exact": {"enabled": True}}}})
    assert first_changed(same, recipe_params(same, "same")) is None


def test_bad_recipes_are_one_line_each_naming_the_recipe():
    p = params({"default": {}, "tok": {"tokenize": {"vocab_size": 512}},
                "typo": {"dedup": {"minhash": {"num_perms": 10}}}})
    with pytest.raises(ParamsError) as e:
        check_ablation(p)
    lines = e.value.problems
    assert any("studies.ablation.recipes.tok: tokenize cannot be ablated" in line for line in lines)
    assert any("studies.ablation.recipes.typo.dedup.minhash" in line and "num_perms" in line for line in lines)
    with pytest.raises(ParamsError, match="studies.ablation.baseline: 'base' is not a recipe"):
        check_ablation(params(baseline="base"))
    with pytest.raises(ParamsError, match="at least 2 seeds"):
        check_ablation(params(seeds=[1, 1]))


def suite(bpb: float, code: float, cloze: float) -> dict:
    return {"bpb": {"all": bpb, "all_stderr": 0.1, "code": code, "code_stderr": 0.2}, "mc_acc_norm_mean": cloze,
            "mc": {"cloze_code": {"acc_norm": cloze, "acc": cloze}},
            "preference": {"preferences": {"accuracy": 0.5}}}


def test_suite_metrics_carry_their_direction():
    m = suite_metrics(suite(2.0, 1.5, 0.3))
    assert m["bpb.all"] == (2.0, False) and m["bpb.code"] == (1.5, False)
    assert m["mc_acc_norm_mean"] == (0.3, True) and m["mc.cloze_code.acc_norm"] == (0.3, True)
    assert m["preference.preferences.accuracy"] == (0.5, True)
    assert not any(k.endswith("_stderr") for k in m)


def test_the_fit_ranks_recipes_with_paired_differences():
    p = params({"default": {}, "better": {}, "same": {}})
    # seed effects shared by every recipe (+0.0, +0.2, -0.1): pairing removes them
    shift = {1: 0.0, 2: 0.2, 3: -0.1}
    runs = {"default": {s: suite(3.0 + d, 2.0, 0.25) for s, d in shift.items()},
            "better": {s: suite(2.9 + d + 0.001 * s, 1.9, 0.25) for s, d in shift.items()},
            "same": {s: suite(3.0 + d + (0.01 if s == 2 else -0.01), 2.0, 0.25) for s, d in shift.items()}}
    added = {"stages": {"filter": {"sources": {"rephrase_qa": {"documents_in": 256, "documents_kept": 101}}}}}
    metrics, report = fit(p, runs, {"better": {"overlay": {"dedup": {}}, "start": "dedup"}, "same": added})
    assert "| same | rephrase_qa | 256 | 101 |" in report   # what the filter kept of an added source
    b = metrics["metrics"]["bpb.all"]
    assert b["better"]["diff"] == pytest.approx(-0.098)
    assert b["better"]["diff_stderr"] == pytest.approx(0.001 / 3 ** 0.5)  # sd of (-0.099, -0.098, -0.097) / sqrt 3
    assert b["better"]["beyond_noise"] == 1 and b["better"]["better"] == 1
    assert b["same"]["beyond_noise"] == 0
    assert b["default"]["diff"] == 0.0 and b["default"]["runs"] == 3
    # unpaired, the seed effects (sd 0.15) would swamp the 0.1 difference
    assert b["better"]["diff_stderr"] < 0.01 < b["better"]["stderr"]
    assert metrics["headline"]["better"]["metrics_beyond_noise"] == metrics["headline"]["better"]["metrics_better"] == 2
    assert metrics["headline"]["same"]["metrics_beyond_noise"] == 0
    assert "bpb.all (better), bpb.code (better)" in report
    assert "mc_acc_norm_mean" in metrics["metrics"]  # constant metrics are ranked too (diff 0, se 0)
    assert "| 1 | better | 3 |" in report and "yes, better" in report


def test_the_fit_needs_the_baseline():
    runs = {"other": {1: suite(3.0, 2.0, 0.2), 2: suite(3.1, 2.0, 0.2)}}
    with pytest.raises(Exception, match="baseline 'default' has no finished proxies"):
        fit(params(), runs, {})


def test_recipe_params_leave_the_main_params_alone():
    p = params()
    before = copy.deepcopy(p)
    recipe_params(p, "no_dedup")
    assert p == before


def test_each_recipe_stage_reads_its_input_from_dvc_yaml(tmp_path):
    # the chain a recipe rebuilds is the main pipeline's: each stage's input is what the stage
    # before it writes there, so moving a directory in dvc.yaml moves it here
    inputs = main_inputs(REPO / "dvc.yaml")
    assert [p.as_posix() for p in inputs.values()] == ["data/raw", "data/filtered", "data/dedup", "data/rated", "data/mix"]
    dvc = yaml.safe_load((REPO / "dvc.yaml").read_text())
    dvc["stages"]["rate"]["outs"][0] = "data/scored"
    dvc["stages"]["mix"]["deps"] = ["data/scored" if d == "data/rated" else d for d in dvc["stages"]["mix"]["deps"]]
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump(dvc))
    assert main_inputs(tmp_path / "dvc.yaml")["mix"].as_posix() == "data/scored"
    # a stage that reads nothing the stage before it writes is a broken chain, said in one line
    dvc["stages"]["mix"]["deps"] = [d for d in dvc["stages"]["mix"]["deps"] if d != "data/scored"]
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump(dvc))
    with pytest.raises(StudyError, match="stage mix should read exactly one data/ directory"):
        main_inputs(tmp_path / "dvc.yaml")


def test_the_recipe_stage_depends_on_every_input_it_reads():
    # DVC refuses dvc.yaml as a dependency, so ablation_data lists the directories main_inputs
    # finds there: a recipe rebuilds when the main pipeline's data it starts from changes
    study = yaml.safe_load((REPO / "studies" / "dvc.yaml").read_text())["stages"]["ablation_data"]["do"]
    assert {p.as_posix() for p in main_inputs(REPO / "dvc.yaml").values()} <= set(study["deps"])


def test_a_recipe_with_extra_sources_starts_at_the_filter_and_names_bad_ones():
    p = params({"default": {}, "syn": {"sources": ["studies/synthetic/rephrased"],
                                       "mix": {"pretrain": {"domains": {"rephrased": {"weight": 0.1}}}}}})
    r = recipe_params(p, "syn")
    assert r["sources"] == ["studies/synthetic/rephrased"] and "rephrased" in r["mix"]["pretrain"]["domains"]
    assert first_changed(p, r) == "filter"    # even though its first changed section is mix
    assert recipe_params(p, "default")["sources"] == []
    with pytest.raises(ParamsError, match="recipes.bad.sources: a list of directories"):
        recipe_params(params({"default": {}, "bad": {"sources": "studies/x"}}), "bad")


def test_every_recipe_source_is_a_dependency_of_the_recipe_stage():
    # a recipe's data rebuilds when the extra source it filters (the rephrased data) changes
    study = yaml.safe_load((REPO / "studies" / "dvc.yaml").read_text())["stages"]["ablation_data"]["do"]
    demo = yaml.safe_load((REPO / "params.yaml").read_text())["studies"]["ablation"]["recipes"]
    sources = {s for r in demo.values() for s in (r or {}).get("sources", [])}
    assert sources and sources <= set(study["deps"])
