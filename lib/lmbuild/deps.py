"""The library files each stage imports, as dvc.yaml must declare them: DVC does not follow
imports, so a stage's deps list the exact modules its script reaches (directly or through other
modules, with every package __init__.py that Python runs on the way). Declaring whole packages
would rerun a stage after edits to modules it never imports; declaring fewer would miss edits.

    python -m lmbuild.deps --check    # exit 1 and list the differences
    python -m lmbuild.deps --write    # rewrite the lib/ entries of every stage's deps in dvc.yaml

Only the `lib/lmbuild/...` entries of a stage's deps are managed; the script, specs and
upstream outputs are left as written. Imports are read from the source (ast), never executed.

Code fingerprints: a pipeline with many stages running one script (the studies' proxies) would
list the same ~60 files in every stage, and DVC reads, hashes and locks each entry of each stage:
a no-op `dvc repro` spent most of its time there. Instead one stage per script,

    code_<script>:  cmd: python -m lmbuild.deps --fingerprint stages/<script>.py
                    deps: the script and its import closure (managed as above)
                    outs: studies/code/<script>.json (a digest of every one of those files)

and each stage running the script depends on that one file, which changes exactly when one of
the files changes: the same invalidation, one dependency instead of sixty.
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
LIB = REPO / "lib"
PREFIX = "lib/lmbuild"
FINGERPRINTS = "studies/code"   # where code_<script> stages write their digests


def module_file(name: str, lib: Path = LIB) -> Path | None:
    base = lib.joinpath(*name.split("."))
    for cand in (base.with_suffix(".py"), base / "__init__.py"):
        if cand.exists():
            return cand
    return None


def lmbuild_imports(path: Path, package: str | None, lib: Path = LIB) -> set[str]:
    """Modules of lmbuild that a file imports (absolute and relative imports, `from pkg import
    module` included)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "lmbuild")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = (package or "").split(".")
                base = ".".join(parts[: len(parts) - node.level + 1])
                mod = f"{base}.{node.module}" if node.module else base
            else:
                mod = node.module or ""
            if mod.split(".")[0] != "lmbuild":
                continue
            found.add(mod)
            for alias in node.names:
                if module_file(f"{mod}.{alias.name}", lib) is not None:
                    found.add(f"{mod}.{alias.name}")
    return found


def closure(script: Path, lib: Path = LIB) -> set[Path]:
    """Every lmbuild source file a script imports, directly or through other modules, with the
    __init__.py of every package on the way (Python runs them on import)."""
    todo, seen = list(lmbuild_imports(script, None, lib)), set()
    files: set[Path] = set()
    while todo:
        mod = todo.pop()
        if mod in seen:
            continue
        seen.add(mod)
        parts = mod.split(".")
        for i in range(1, len(parts) + 1):
            f = module_file(".".join(parts[:i]), lib)
            if f is None:
                continue
            files.add(f)
            pkg = ".".join(parts[:i]) if f.name == "__init__.py" else ".".join(parts[: i - 1])
            todo.extend(lmbuild_imports(f, pkg, lib))
    return files


def stage_scripts(dvc: dict) -> dict[str, str]:
    """stage name (a foreach or matrix stage once, under its own name) -> its script path: the
    module it runs, or for a code fingerprint stage the script it fingerprints."""
    out = {}
    for name, st in dvc["stages"].items():
        body = st.get("do", st)
        cmd = body["cmd"].split()
        if "--fingerprint" in cmd:
            out[name] = cmd[cmd.index("--fingerprint") + 1]
        else:
            out[name] = cmd[cmd.index("-m") + 1].replace(".", "/") + ".py"
    return out


def fingerprint_path(script: str) -> str:
    """The digest file of a script's code (the output of its code_<script> stage)."""
    return f"{FINGERPRINTS}/{Path(script).stem}.json"


def fingerprinted(dvc: dict) -> set[str]:
    """Stages whose code comes in through a fingerprint: they depend on their script's digest
    file and declare no lib/ files of their own."""
    scripts = stage_scripts(dvc)
    return {name for name, st in dvc["stages"].items()
            if "--fingerprint" not in st.get("do", st)["cmd"]
            and fingerprint_path(scripts[name]) in map(_dep_name, st.get("do", st).get("deps", []))}


def wanted(dvc: dict, repo: Path = REPO) -> dict[str, list[str]]:
    """stage -> the sorted lib/ files its script imports, as repo-relative paths (none for a
    stage that depends on its script's fingerprint instead)."""
    lib = repo / "lib"
    skip = fingerprinted(dvc)
    return {name: [] if name in skip else sorted(p.relative_to(repo).as_posix() for p in closure(repo / script, lib))
            for name, script in stage_scripts(dvc).items()}


def fingerprint(dvc_yaml: Path, script: str, repo: Path | None = None) -> Path:
    """Write the digest of `script`'s code: the MD5 of every file its code stage in `dvc_yaml`
    declares as a dependency (the script and its import closure), keyed by path."""
    import hashlib
    import json

    import yaml
    repo = repo or root_of(dvc_yaml)
    dvc = yaml.safe_load(dvc_yaml.read_text(encoding="utf-8"))
    found = [name for name, s in stage_scripts(dvc).items()
             if s == script and "--fingerprint" in dvc["stages"][name].get("do", dvc["stages"][name])["cmd"]]
    if len(found) != 1:
        raise SystemExit(f"deps: {dvc_yaml} has {len(found)} stages fingerprinting {script} (want exactly one)")
    digests = {}
    for dep in sorted(map(_dep_name, dvc["stages"][found[0]]["deps"])):
        digests[dep] = hashlib.md5((repo / dep).read_bytes()).hexdigest()
    out = repo / fingerprint_path(script)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"script": script, "files": digests}, indent=1) + "\n", encoding="utf-8")
    return out


def _dep_name(dep) -> str:
    return dep if isinstance(dep, str) else next(iter(dep))


def declared(dvc: dict) -> dict[str, list[str]]:
    return {name: [d for d in map(_dep_name, st.get("do", st).get("deps", [])) if d.startswith(PREFIX)]
            for name, st in dvc["stages"].items()}


def differences(dvc: dict, repo: Path = REPO) -> list[str]:
    """One line per stage whose lib deps differ from its imports: missing and extra files."""
    want, have = wanted(dvc, repo), declared(dvc)
    lines = []
    for name in want:
        missing = sorted(set(want[name]) - set(have.get(name, [])))
        extra = sorted(set(have.get(name, [])) - set(want[name]))
        if missing:
            lines.append(f"dvc.yaml: {name}: imports but does not declare {', '.join(missing)}")
        if extra:
            lines.append(f"dvc.yaml: {name}: declares but does not import {', '.join(extra)}")
    return lines


def write(path: Path, repo: Path = REPO) -> int:
    """Rewrite the lib/ deps of every stage (round-trip YAML: comments and order kept); returns
    the number of stages changed."""
    from ruamel.yaml import YAML
    yml = YAML()
    yml.preserve_quotes = True
    yml.width = 4096
    yml.indent(mapping=2, sequence=4, offset=2)  # the file's own style: "- " two spaces in
    doc = yml.load(path.read_text(encoding="utf-8"))
    want = wanted(doc, repo)
    changed = 0
    for name, st in doc["stages"].items():
        body = st.get("do", st)
        deps = body["deps"]
        old = [d for d in deps if _dep_name(d).startswith(PREFIX)]
        if [_dep_name(d) for d in old] == want[name]:
            continue
        at = next((i for i, d in enumerate(deps) if _dep_name(d).startswith(PREFIX)), min(1, len(deps)))
        for d in old:
            deps.remove(d)
        for k, f in enumerate(want[name]):
            deps.insert(at + k, f)
        changed += 1
    with path.open("w", encoding="utf-8") as fh:
        yml.dump(doc, fh)
    return changed


def pipelines(repo: Path = REPO) -> list[Path]:
    """The pipeline files: dvc.yaml and the studies' (its stages run at the root: wdir ..)."""
    return [f for f in (repo / "dvc.yaml", repo / "studies" / "dvc.yaml") if f.exists()]


def root_of(dvc_yaml: Path) -> Path:
    """The directory stage paths are relative to: the file's own, or its parent for a pipeline
    in a subdirectory whose stages run at the repository root."""
    here = dvc_yaml.resolve().parent
    return here if (here / "lib").is_dir() else here.parent


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lmbuild.deps", description=__doc__.split("\n\n")[0])
    ap.add_argument("--write", action="store_true", help="rewrite the lib/ deps of the pipeline files")
    ap.add_argument("--check", action="store_true", help="exit 1 when a pipeline file differs (the default)")
    ap.add_argument("--dvc-yaml", type=Path, default=None, help="one pipeline file (default: dvc.yaml and "
                    "studies/dvc.yaml)")
    ap.add_argument("--fingerprint", metavar="SCRIPT", default=None,
                    help=f"write {FINGERPRINTS}/<script>.json, the digest of the files SCRIPT's code stage declares "
                         "(default pipeline file: ./studies/dvc.yaml)")
    args = ap.parse_args(argv)
    if args.fingerprint:  # run by DVC at the root of the repository (or of a test's copy of it)
        pipeline = args.dvc_yaml or Path.cwd() / "studies" / "dvc.yaml"
        out = fingerprint(pipeline, args.fingerprint)
        print(f"deps: wrote {out.relative_to(root_of(pipeline))}", file=sys.stderr)
        return 0
    targets = [args.dvc_yaml] if args.dvc_yaml else pipelines()
    if args.write:
        for path in targets:
            n = write(path, root_of(path))
            print(f"deps: {n} stage(s) rewritten in {path}", file=sys.stderr)
        return 0
    import yaml
    lines = [line for path in targets
             for line in differences(yaml.safe_load(path.read_text(encoding="utf-8")), root_of(path))]
    for line in lines:
        print(line, file=sys.stderr)
    if lines:
        print("deps: run `python -m lmbuild.deps --write` to fix", file=sys.stderr)
    return 1 if lines else 0


if __name__ == "__main__":
    raise SystemExit(main())
