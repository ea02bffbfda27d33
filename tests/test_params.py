"""params.yaml validates; every section rejects wrong types, out-of-range values and unknown keys
with one readable line naming the key, and the stage exits non-zero before doing any work."""

from __future__ import annotations

import copy

import pytest
import yaml

from conftest import REPO, run_stage_in_process
from lmbuild.params import ParamsError, load_params, load_spec, validate_section

PARAMS = yaml.safe_load((REPO / "params.yaml").read_text())
# the sections of the main pipeline; `studies` is read by studies/dvc.yaml (its own test below)
STAGE_SECTIONS = [s for s in PARAMS if s not in ("common", "studies")]
# both pipelines' stages: a section such as `rephrase` is read by a stage of studies/dvc.yaml
PIPELINE = {**yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"],
            **{f"studies/dvc.yaml:{k}": v for k, v in yaml.safe_load((REPO / "studies/dvc.yaml").read_text())["stages"].items()}}


def stage_reading(section: str) -> str:
    """The first pipeline stage whose params name the section (whole or a key in it)."""
    for name, st in PIPELINE.items():
        if any(p == section or str(p).startswith(section + ".") for p in st.get("do", st).get("params", [])):
            return name
    raise AssertionError(f"params.yaml: section {section} is read by no stage in dvc.yaml or studies/dvc.yaml")


def test_params_yaml_validates_every_section():
    for section in STAGE_SECTIONS:
        reader = PIPELINE[stage_reading(section)]
        shared = tuple(s for s in STAGE_SECTIONS if s != section and s in reader.get("do", reader)["params"])
        out = load_params(section, REPO / "params.yaml", shared=shared)
        assert set(out) == {"common", section, *shared}


def test_defaults_are_filled():
    out = validate_section("filter", {})
    assert out["rules"]["gopher_quality"]["min_words"] == 50
    assert out["rules"]["langid"]["min_score"] == 0.65


def test_overrides_do_not_fill_defaults():
    out = validate_section("filter", {"domains": {"code": {"c4": {"enabled": False}}}})
    assert out["domains"]["code"] == {"c4": {"enabled": False}}


def _numeric_leaf(spec: dict, path=()):
    """First (path, rule) in a spec with a numeric range, for building out-of-range values."""
    for key, rule in spec.items():
        if key == "registry" or not isinstance(rule, dict):
            continue
        if rule.get("type") in ("integer", "float", "number") and ("min" in rule or "max" in rule):
            return path + (key,), rule
    return None


def _mutations(section: str):
    """(description, mutated section, key path expected in the message) for one section."""
    spec = yaml.safe_load((REPO / "specs" / f"{section}.yaml").read_text())
    base = copy.deepcopy(PARAMS[section])
    (key,), rule = _numeric_leaf(spec)
    bad_range = copy.deepcopy(base)
    bad_range[key] = (rule["min"] - 5) if "min" in rule else rule["max"] + 5
    bad_type = copy.deepcopy(base)
    bad_type[key] = "not-a-number"
    unknown = copy.deepcopy(base)
    unknown["no_such_key"] = 1
    return [
        ("out of range", bad_range, f"{section}.{key}: must be {'>=' if 'min' in rule else '<='}"),
        ("wrong type", bad_type, f"{section}.{key}: must be of type"),
        ("unknown key", unknown, f"{section}.no_such_key: unknown key"),
    ]


CASES = [(section, *m) for section in ["common", *STAGE_SECTIONS] for m in _mutations(section)]


@pytest.mark.parametrize("section,kind,mutated,expected", CASES, ids=[f"{c[0]}-{c[1]}" for c in CASES])
def test_bad_params_stop_the_stage_before_any_work(project, section, kind, mutated, expected):
    params = copy.deepcopy(PARAMS)
    params[section] = mutated
    project.write_params(params)
    stage = STAGE_SECTIONS[0] if section == "common" else stage_reading(section)
    # the common section's cases run the command line itself (`python -m stages.<stage>`: its exit
    # status and stderr); the others call the same main() in this process, which checks the same
    # lines, exit status and absence of outputs without a Python start-up per case
    if section == "common":
        proc = project.run(stage, check=False)
    else:
        # a foreach stage (eval@<stage>) runs for its first item
        item = (str(PIPELINE[stage]["foreach"][0]),) if "foreach" in PIPELINE[stage] else ()
        proc = run_stage_in_process(project.root, stage.removeprefix("studies/dvc.yaml:"), item)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert any(line.startswith("params.yaml: ") and expected in line for line in lines), proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (project.root / "data").exists() and not (project.root / "metrics").exists()


def test_every_problem_is_reported_at_once():
    with pytest.raises(ParamsError) as exc:
        validate_section("filter", {"batch_rows": 0, "rules": {"langid": {"min_score": 2, "typo": 1}}})
    text = str(exc.value)
    assert "filter.batch_rows: must be >= 1, got 0" in text
    assert "filter.rules.langid.min_score: must be <= 1.0, got 2" in text
    assert "filter.rules.langid.typo: unknown key" in text
    assert len(exc.value.problems) == 3


def test_list_items_are_named_by_index():
    with pytest.raises(ParamsError) as exc:
        validate_section("acquire", {"sources": [{"name": "a", "kind": "nope", "domain": "web"}]})
    assert "acquire.sources[0].kind: must be one of" in str(exc.value)


def test_filter_spec_defaults_match_the_rules_module():
    """specs/filter.yaml fills the defaults users see; lmbuild.filter.rules.DEFAULTS (with the
    citations) is what the library falls back on. They must agree."""
    from lmbuild.filter.rule_config import PII_DEFAULTS
    from lmbuild.filter.rules import DEFAULTS

    spec_rules = validate_section("filter", {})["rules"]
    for group, defaults in {**DEFAULTS, "pii": PII_DEFAULTS}.items():
        spec = {k: v for k, v in spec_rules[group].items() if k != "bad_words_file"}
        lib = {k: v for k, v in defaults.items() if k != "bad_words"}
        assert spec == lib, group


def test_unknown_key_lists_the_known_ones_at_any_depth():
    with pytest.raises(ParamsError) as exc:
        validate_section("filter", {"domains": {"code": {"c4": {"min_sentense": 1}}}})
    line = exc.value.problems[0]
    assert line.startswith("params.yaml: filter.domains.code.c4.min_sentense: unknown key")
    assert "known keys:" in line and "min_sentences" in line


# the sections whose specs take the shared training keys from specs/fragments/training.yaml
TRAINING_SPECS = ["pretrain", "anneal", "sft", "dpo", "reward_model", "rlvr"]


def _write_specs(root, files: dict[str, str]):
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def test_a_spec_extending_a_fragment_validates_its_keys(tmp_path):
    specs = _write_specs(tmp_path / "specs", {
        "fragments/shared.yaml": "log_every: {type: integer, min: 1, default: 10}\n"
                                 "optim: {type: dict, default: {}, schema: {\n"
                                 "  lr: {type: number, min: 0, max: 1, default: 0.003},\n"
                                 "  beta1: {type: number, min: 0, max: 1, default: 0.9}}}\n",
        "stage.yaml": "extends: [shared]\nsteps: {type: integer, min: 1, default: 3}\n"
                      "optim: {schema: {lr: {default: 9.0e-6}}}\n",
    })
    # the fragment's keys are the stage's: defaults filled, its own default wins over the fragment's
    assert validate_section("stage", {}, specs) == {"steps": 3, "log_every": 10, "optim": {"lr": 9.0e-6, "beta1": 0.9}}
    out = validate_section("stage", {"log_every": 2, "optim": {"beta1": 0.5}}, specs)
    assert out == {"steps": 3, "log_every": 2, "optim": {"lr": 9.0e-6, "beta1": 0.5}}
    # the fragment's rules still hold on the key whose default the stage set, and unknown keys fail
    with pytest.raises(ParamsError) as exc:
        validate_section("stage", {"optim": {"lr": 2, "lrr": 1}, "log_every": 0}, specs)
    assert exc.value.problems == [
        "params.yaml: stage.log_every: must be >= 1, got 0",
        "params.yaml: stage.optim.lr: must be <= 1, got 2",
        "params.yaml: stage.optim.lrr: unknown key (typo?), got 1 (known keys: beta1, lr)",
    ]


def test_training_specs_share_the_fragment_and_keep_their_own_defaults():
    fragment = yaml.safe_load((REPO / "specs" / "fragments" / "training.yaml").read_text())
    for section in TRAINING_SPECS:
        spec, _ = load_spec(section)
        assert set(fragment) <= set(spec), section
        for key, rule in fragment.items():  # every fragment key validates, sub-keys included
            assert set(rule.get("schema", {})) <= set(spec[key].get("schema", {})), (section, key)
    rm = validate_section("reward_model", {"optim": {"beta2": 0.99}, "nan": {"policy": "skip"}})
    assert rm["optim"] == {"lr": 9.0e-6, "weight_decay": 0.0, "beta1": 0.9, "beta2": 0.99, "eps": 1.0e-8, "grad_clip": 1.0,
                           "name": "adamw", "muon": {"lr": 0.02, "momentum": 0.95, "nesterov": True, "ns_steps": 5,
                                                     "weight_decay": None}}
    assert rm["nan"] == {"policy": "skip", "max_skipped": 10} and rm["spike"] == {"ratio": 1.5, "beta": 0.9}
    assert validate_section("pretrain", {})["optim"]["lr"] == 0.003  # each stage its own lr
    assert validate_section("rlvr", {})["schedule"]["kind"] == "constant"
    assert "blocks_per_domain" in validate_section("anneal", {})["eval"]
    assert "blocks_per_domain" not in validate_section("sft", {})["eval"]
    with pytest.raises(ParamsError) as exc:
        validate_section("reward_model", {"spike": {"beta": 1}})
    assert exc.value.problems == ["params.yaml: reward_model.spike.beta: must be <= 0.9999, got 1"]


def test_an_unknown_fragment_fails_with_one_line(tmp_path):
    specs = _write_specs(tmp_path / "specs", {"fragments/training.yaml": "seed: {type: integer}\n",
                                              "stage.yaml": "extends: [trainig]\n"})
    with pytest.raises(ParamsError) as exc:
        validate_section("stage", {}, specs)
    assert exc.value.problems == ["specs/stage.yaml: extends: no fragment 'trainig': create "
                                  "specs/fragments/trainig.yaml (known fragments: training)"]


def test_stages_depend_on_the_fragments_their_specs_extend():
    # DVC reruns a stage when a dep changes: a stage whose spec takes keys from a fragment must
    # list the fragment beside the spec, or an edit to the shared keys would go unnoticed
    for name, stage in PIPELINE.items():
        deps = stage.get("do", stage).get("deps", [])
        for dep in deps:
            if dep.startswith("specs/") and dep.count("/") == 1:
                for fragment in yaml.safe_load((REPO / dep).read_text()).get("extends", []):
                    assert f"specs/fragments/{fragment}.yaml" in deps, f"dvc.yaml: {name}: extends via {dep}"


@pytest.mark.parametrize("mutate, expected", [
    (lambda st: st["mixture"].update(seed=-1), "studies.mixture.seed: must be >= 0"),
    (lambda st: st["mixture"].update(regression="lasso"), "studies.mixture.regression: must be one of"),
    (lambda st: st.update(no_such_key=1), "studies.no_such_key: unknown key"),
    (lambda st: st["proxy"].update(max_tokns=5), "params.yaml: studies.proxy.max_tokns: unknown key"),
])
def test_bad_studies_params_stop_a_proxy_before_any_work(project, mutate, expected):
    params = copy.deepcopy(PARAMS)
    mutate(params["studies"])
    project.write_params(params)
    proc = run_stage_in_process(project.root, "study_proxy", args=("mixture", "0"))
    assert proc.returncode == 2 and expected in proc.stderr and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert not (project.root / "studies").exists()
