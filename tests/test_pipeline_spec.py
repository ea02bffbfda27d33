"""dvc.yaml keeps the stage contract: desc, `python -m stages.<name>`, params [common, <name>],
and deps naming the stage script, its spec and exactly the lib modules it imports (DVC does not
follow imports: a missing dep would let a code change go unnoticed, an extra one reruns a stage,
hours on a GPU, after an edit it never sees). `python -m lmbuild.deps --write` keeps them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from conftest import REPO
from lmbuild.deps import closure, differences, fingerprint_path, fingerprinted, stage_scripts

DVC = yaml.safe_load((REPO / "dvc.yaml").read_text())
LIB = REPO / "lib"


SHARED_SECTIONS = {"tasks"}
# Stages named otherwise than the params section they read: dpo_pairs reads only dpo.pairs (so a
# change of the dpo loss keeps the pairs and reference log-probs); the eval stages read `eval`.
OWN_SECTION = {"dpo_pairs": "dpo", "eval_sets": "eval", "contamination": "eval"}
# Reads of another stage's section: contamination regenerates rlvr's prompt pool to check it;
# decontaminate builds the eval items as contamination does (eval.bpb caps the held-out text)
# and takes its n-gram definition from eval.contamination, so removal matches the measurement;
# judge asks the held-out prompts of sft's chat files; the eval stages run the harness tasks of
# `harness` (a section of its own, so that the studies' proxies, which read `eval`, keep theirs).
CROSS_READS = {"contamination": {"rlvr.prompts_per_family", "rlvr.seed"},
               "decontaminate": {"eval.bpb", "eval.contamination"}, "judge": {"sft.sources"},
               "eval": {"harness"}}


def covered(path: Path, deps: list[str]) -> bool:
    rel = path.relative_to(REPO).as_posix()
    return any(rel == d or rel.startswith(d.rstrip("/") + "/") for d in deps)


READS_NO_PARAMS = {"card"}


def stage_defs() -> dict[str, tuple[str, dict]]:
    """stage name -> (script name, definition); a foreach stage counts once, by its template."""
    return {name: (name, st.get("do", st)) for name, st in DVC["stages"].items()}


@pytest.mark.parametrize("name", sorted(DVC["stages"]))
def test_stage_contract(name):
    script, stage = stage_defs()[name]
    assert stage.get("desc"), f"{name}: needs a desc"
    foreach = "foreach" in DVC["stages"][name]
    assert stage["cmd"] == f"python -m stages.{script}" + (" ${item}" if foreach else "")
    deps = stage["deps"]
    if name in READS_NO_PARAMS:  # it quotes what upstream stages ran with, from dvc.lock
        assert "params" not in stage and "load_params" not in (REPO / "stages" / f"{script}.py").read_text()
        params = []
    else:
        params, own = stage["params"], OWN_SECTION.get(name, name)
        assert params[0] == "common", params
        rest = [p for p in params[1:] if p not in SHARED_SECTIONS | CROSS_READS.get(name, set())]
        assert rest and all(p.split(".")[0] == own for p in rest), params
    assert f"stages/{script}.py" in deps
    for section in {p.split(".")[0] for p in params}:
        assert f"specs/{section}.yaml" in deps, section
    missing = sorted(p.relative_to(REPO).as_posix() for p in closure(REPO / "stages" / f"{script}.py")
                     if not covered(p, deps))
    assert not missing, f"stage {name} imports lib modules it does not declare as deps: {missing}"


def test_lib_deps_are_exactly_the_imports():
    # both ways: nothing imported is undeclared, nothing declared is left unimported, in the main
    # pipeline and in the studies' (whose stages run at the repository root)
    assert differences(DVC, REPO) == [], "run `python -m lmbuild.deps --write`"
    studies = yaml.safe_load((REPO / "studies" / "dvc.yaml").read_text())
    assert differences(studies, REPO) == [], "run `python -m lmbuild.deps --write`"
    scripts = stage_scripts(studies)
    for name, st in studies["stages"].items():
        body = st.get("do", st)
        assert body["wdir"] == ".." and body["desc"], name
        assert scripts[name] in ("stages/study_proxy.py", "stages/study_fit.py", "stages/study_method.py",
                                 "stages/study_ablation.py", "stages/rephrase.py"), name
        if name.startswith("code_"):  # the script's fingerprint: the script and its imports in, one digest out
            assert body["deps"][0] == scripts[name] and body["outs"] == [{fingerprint_path(scripts[name]): {"cache": False}}]
        else:  # a study stage: its code through that digest only
            assert name in fingerprinted(studies), name
            assert not [d for d in body["deps"] if d.startswith(("lib/", "stages/"))], name


def test_a_code_fingerprint_changes_exactly_when_a_file_it_covers_changes(tmp_path):
    from lmbuild.deps import fingerprint
    for d in ("stages", "lib", "specs"):
        shutil.copytree(REPO / d, tmp_path / d, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    (tmp_path / "studies").mkdir()
    shutil.copy(REPO / "studies" / "dvc.yaml", tmp_path / "studies" / "dvc.yaml")
    pipeline = tmp_path / "studies" / "dvc.yaml"
    out = fingerprint(pipeline, "stages/study_proxy.py")
    assert out == tmp_path / "studies" / "code" / "study_proxy.json"
    first = out.read_bytes()
    assert "lib/lmbuild/train/trainer.py" in json.loads(first)["files"]
    (tmp_path / "lib/lmbuild/eval/judge.py").write_text("# not imported by the proxies\n", encoding="utf-8")
    assert fingerprint(pipeline, "stages/study_proxy.py").read_bytes() == first
    trainer = tmp_path / "lib/lmbuild/train/trainer.py"
    trainer.write_text(trainer.read_text(encoding="utf-8") + "\n# an edit\n", encoding="utf-8")
    assert fingerprint(pipeline, "stages/study_proxy.py").read_bytes() != first
    with pytest.raises(SystemExit, match="0 stages fingerprinting"):
        fingerprint(pipeline, "stages/nope.py")


def test_editing_a_module_reruns_exactly_the_stages_that_import_it():
    # what DVC reruns after an edit: the stages with a dep equal to the file or a directory
    # above it; what should rerun: the stages whose import closure holds the file
    importers: dict[str, set[str]] = {}
    for name, (script, _) in stage_defs().items():
        for p in closure(REPO / "stages" / f"{script}.py"):
            importers.setdefault(p.relative_to(REPO).as_posix(), set()).add(name)
    for path in sorted((REPO / "lib" / "lmbuild").rglob("*.py")):
        rel = path.relative_to(REPO).as_posix()
        reruns = {name for name, (_, st) in stage_defs().items() if covered(path, st["deps"])}
        assert reruns == importers.get(rel, set()), rel


def test_every_stage_script_is_in_the_pipeline():
    scripts = {p.stem for p in (REPO / "stages").glob("*.py") if p.stem != "__init__"}
    studies = yaml.safe_load((REPO / "studies" / "dvc.yaml").read_text())["stages"]
    study_scripts = {Path(s).stem for s in stage_scripts({"stages": studies}).values()}
    assert scripts == set(DVC["stages"]) | study_scripts


def test_import_closure_sees_transitive_modules():
    # acquire's script imports lmbuild.acquire.run, which imports the executor and shards
    files = {p.relative_to(REPO).as_posix() for p in closure(REPO / "stages" / "acquire.py")}
    assert {"lib/lmbuild/executor.py", "lib/lmbuild/shards.py", "lib/lmbuild/acquire/records.py"} <= files


def test_a_missing_or_extra_dep_is_caught():
    import copy
    dvc = copy.deepcopy(DVC)
    deps = dvc["stages"]["sft"]["deps"]
    deps.remove("lib/lmbuild/shards.py")
    deps.append("lib/lmbuild/posttrain/grpo.py")
    lines = differences(dvc, REPO)
    assert "dvc.yaml: sft: imports but does not declare lib/lmbuild/shards.py" in lines
    assert "dvc.yaml: sft: declares but does not import lib/lmbuild/posttrain/grpo.py" in lines


def test_metrics_and_plots_are_declared_top_level():
    outs = {next(iter(o)) if isinstance(o, dict) else o for _, s in stage_defs().values() for o in s.get("outs", [])}
    for m in DVC["metrics"]:
        assert m in outs
    for plot in DVC["plots"]:
        path = next(iter(plot))
        assert any(path == o or path.startswith(o + "/") for o in outs), path


def test_dvc_analytics_off():
    assert "analytics = false" in (REPO / ".dvc" / "config").read_text()


def test_deps_tool_rewrites_only_lib_entries_and_keeps_comments(tmp_path):
    from lmbuild import deps
    for d in ("stages", "lib"):
        (tmp_path / d).symlink_to(REPO / d)
    text = (REPO / "dvc.yaml").read_text()
    # a whole-package dep, as dvc.yaml had before: rewritten into the imported files
    text = text.replace("      - lib/lmbuild/mix/__init__.py\n", "      - lib/lmbuild/mix\n", 1)
    (tmp_path / "dvc.yaml").write_text(text)
    assert deps.main(["--check", "--dvc-yaml", str(tmp_path / "dvc.yaml")]) == 1
    assert deps.main(["--write", "--dvc-yaml", str(tmp_path / "dvc.yaml")]) == 0
    assert deps.main(["--check", "--dvc-yaml", str(tmp_path / "dvc.yaml")]) == 0
    assert (tmp_path / "dvc.yaml").read_text() == (REPO / "dvc.yaml").read_text()  # comments, order, style kept


def test_model_stage_list_has_one_source():
    from lmbuild.model_stages import MODEL_STAGES
    from lmbuild.report.collect import MODEL_STAGES as report_stages
    from lmbuild.seeds import TRAINING_SECTIONS
    stages = list(MODEL_STAGES)
    assert DVC["stages"]["eval"]["foreach"] == stages
    assert DVC["stages"]["card"]["foreach"] == stages
    assert report_stages is MODEL_STAGES
    assert TRAINING_SECTIONS == ("pretrain", "anneal", "sft", "dpo.pairs", "dpo", "rlvr")
    specs = {s: yaml.safe_load((REPO / "specs" / f"{s}.yaml").read_text()) for s in ("eval", "report")}
    assert specs["eval"]["chat_stages"]["schema"]["allowed"] == stages
    assert specs["report"]["stages"]["schema"]["allowed"] == stages
    assert specs["report"]["stages"]["default"] == stages
    assert yaml.safe_load((REPO / "params.yaml").read_text())["report"]["stages"] == stages
    assert "from lmbuild.model_stages import MODEL_STAGES" in (REPO / "stages" / "eval.py").read_text()
    # every model stage is a stage, and a training stage with a seed in its params spec
    for s in stages:
        assert s in DVC["stages"] and "seed" in yaml.safe_load((REPO / "specs" / f"{s}.yaml").read_text())


def test_eval_and_posttrain_are_siblings():
    # eval scores models through the shared model layer (lmbuild.lm), never through a training
    # stage's internals, so an edit to the dpo losses or the trainer does not re-evaluate anything
    for script in ("eval", "eval_sets", "contamination"):
        files = {p.relative_to(REPO).as_posix() for p in closure(REPO / "stages" / f"{script}.py")}
        inside = sorted(f for f in files if f.startswith(("lib/lmbuild/posttrain/", "lib/lmbuild/train/")))
        assert not inside, f"{script} imports {inside}"
