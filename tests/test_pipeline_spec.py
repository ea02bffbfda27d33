"""dvc.yaml keeps the stage contract: desc, `python -m stages.<name>`, params [common, <name>],
and deps covering the stage script, its spec and every lib module it imports (DVC does not
follow imports, so a missing dep would let a code change go unnoticed)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

from conftest import REPO

DVC = yaml.safe_load((REPO / "dvc.yaml").read_text())
LIB = REPO / "lib"


def module_file(name: str) -> Path | None:
    base = LIB.joinpath(*name.split("."))
    for cand in (base.with_suffix(".py"), base / "__init__.py"):
        if cand.exists():
            return cand
    return None


def lmbuild_imports(path: Path, package: str | None) -> set[str]:
    """Modules of lmbuild that a file imports (absolute and relative imports)."""
    tree = ast.parse(path.read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "lmbuild")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1])
                mod = f"{base}.{node.module}" if node.module else base
            else:
                mod = node.module or ""
            if mod.split(".")[0] != "lmbuild":
                continue
            found.add(mod)
            for alias in node.names:  # `from pkg import module`
                if module_file(f"{mod}.{alias.name}") is not None:
                    found.add(f"{mod}.{alias.name}")
    return found


def closure(script: Path) -> set[Path]:
    """Every lmbuild source file a stage script imports, directly or through other modules
    (including each package's __init__.py, which Python runs on import)."""
    todo, seen = list(lmbuild_imports(script, None)), set()
    files: set[Path] = set()
    while todo:
        mod = todo.pop()
        if mod in seen:
            continue
        seen.add(mod)
        parts = mod.split(".")
        for i in range(1, len(parts) + 1):  # parent packages' __init__ run too
            f = module_file(".".join(parts[:i]))
            if f is None:
                continue
            files.add(f)
            pkg = ".".join(parts[:i]) if f.name == "__init__.py" else ".".join(parts[: i - 1])
            todo.extend(lmbuild_imports(f, pkg))
    return files


SHARED_SECTIONS = {"tasks"}
# Stages named otherwise than the params section they read: dpo_pairs reads only dpo.pairs (so a
# change of the dpo loss keeps the pairs and reference log-probs); the eval stages read `eval`.
OWN_SECTION = {"dpo_pairs": "dpo", "eval_sets": "eval", "contamination": "eval"}
# Reads of another stage's section: contamination regenerates rlvr's prompt pool to check it.
CROSS_READS = {"contamination": {"rlvr.prompts_per_family", "rlvr.seed"}}


def covered(path: Path, deps: list[str]) -> bool:
    rel = path.relative_to(REPO).as_posix()
    return any(rel == d or rel.startswith(d.rstrip("/") + "/") for d in deps)


def stage_defs() -> dict[str, tuple[str, dict]]:
    """stage name -> (script name, definition); a foreach stage counts once, by its template."""
    return {name: (name, st.get("do", st)) for name, st in DVC["stages"].items()}


@pytest.mark.parametrize("name", sorted(DVC["stages"]))
def test_stage_contract(name):
    script, stage = stage_defs()[name]
    assert stage.get("desc"), f"{name}: needs a desc"
    foreach = "foreach" in DVC["stages"][name]
    assert stage["cmd"] == f"python -m stages.{script}" + (" ${item}" if foreach else "")
    params, own = stage["params"], OWN_SECTION.get(name, name)
    assert params[0] == "common", params
    rest = [p for p in params[1:] if p not in SHARED_SECTIONS | CROSS_READS.get(name, set())]
    assert rest and all(p.split(".")[0] == own for p in rest), params
    deps = stage["deps"]
    assert f"stages/{script}.py" in deps
    for section in {p.split(".")[0] for p in params}:
        assert f"specs/{section}.yaml" in deps, section
    missing = sorted(p.relative_to(REPO).as_posix() for p in closure(REPO / "stages" / f"{script}.py")
                     if not covered(p, deps))
    assert not missing, f"stage {name} imports lib modules it does not declare as deps: {missing}"


def test_every_stage_script_is_in_the_pipeline():
    scripts = {p.stem for p in (REPO / "stages").glob("*.py") if p.stem != "__init__"}
    assert scripts == set(DVC["stages"])


def test_import_closure_sees_transitive_modules():
    # acquire's script imports lmbuild.acquire.run, which imports the executor and shards
    files = {p.relative_to(REPO).as_posix() for p in closure(REPO / "stages" / "acquire.py")}
    assert {"lib/lmbuild/executor.py", "lib/lmbuild/shards.py", "lib/lmbuild/acquire/records.py"} <= files


def test_a_missing_dep_is_caught():
    deps = [d for d in DVC["stages"]["acquire"]["deps"] if d != "lib/lmbuild/shards.py"]
    files = closure(REPO / "stages" / "acquire.py")
    assert any(not covered(p, deps) for p in files)


def test_metrics_and_plots_are_declared_top_level():
    outs = {next(iter(o)) if isinstance(o, dict) else o for _, s in stage_defs().values() for o in s.get("outs", [])}
    for m in DVC["metrics"]:
        assert m in outs
    for plot in DVC["plots"]:
        path = next(iter(plot))
        assert any(path == o or path.startswith(o + "/") for o in outs), path


def test_dvc_analytics_off():
    assert "analytics = false" in (REPO / ".dvc" / "config").read_text()
