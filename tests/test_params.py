"""params.yaml validates; every section rejects wrong types, out-of-range values and unknown keys
with one readable line naming the key, and the stage exits non-zero before doing any work."""

from __future__ import annotations

import copy

import pytest
import yaml

from conftest import REPO, run_stage_in_process
from lmbuild.params import ParamsError, load_params, validate_section

PARAMS = yaml.safe_load((REPO / "params.yaml").read_text())
# the sections of the main pipeline; `studies` is read by studies/dvc.yaml (its own test below)
STAGE_SECTIONS = [s for s in PARAMS if s not in ("common", "studies")]
PIPELINE = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]


def stage_reading(section: str) -> str:
    """The first pipeline stage whose params name the section (whole or a key in it)."""
    for name, st in PIPELINE.items():
        if any(p == section or str(p).startswith(section + ".") for p in st.get("params", [])):
            return name
    raise AssertionError(f"params.yaml: section {section} is read by no stage in dvc.yaml")


def test_params_yaml_validates_every_section():
    for section in STAGE_SECTIONS:
        shared = tuple(s for s in STAGE_SECTIONS if s != section and s in PIPELINE[stage_reading(section)]["params"])
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
        proc = run_stage_in_process(project.root, stage)
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
