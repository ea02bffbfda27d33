"""What a model (or any pipeline output) was built from, read from dvc.lock: the chain of stages
from that output back to the raw sources, each with its params sections (and a digest of their
values), its data inputs and outputs with their content hashes.

    python -m lmbuild.lineage models/sft            # the chain, newest stage first
    python -m lmbuild.lineage models/sft --params   # with every param value in force
    python -m lmbuild.lineage models/sft --json     # machine-readable

dvc.lock records what each stage last ran with (DVC writes it after each stage), so the chain is
exact for the workspace's outputs when `dvc status` is clean; the tool says when it is not
checked. Library code and stage scripts are listed as a count and a digest per stage, not file by
file: they are in git at the commit named alongside.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

CODE_PREFIXES = ("lib/", "stages/", "specs/")


class LineageError(Exception):
    """The output is not produced by any stage in dvc.lock, or dvc.lock is missing."""


@dataclass
class Node:
    stage: str
    cmd: str
    params: dict                      # {section: values} from params.yaml as the stage last ran
    data_deps: list[dict]             # [{path, md5, size, produced_by}]
    outs: list[dict]                  # [{path, md5, size}]
    code_files: int = 0
    code_digest: str = ""
    upstream: list[str] = field(default_factory=list)

    def params_digest(self) -> dict[str, str]:
        return {k: digest(v) for k, v in self.params.items()}


def digest(value) -> str:
    """A short, stable digest of a JSON-able value (params sections, lists of hashes)."""
    return hashlib.md5(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:12]


def read_lock(root: Path = Path(".")) -> dict[str, dict]:
    lock = root / "dvc.lock"
    if not lock.is_file():
        raise LineageError(f"{lock}: no dvc.lock; run the pipeline first (make repro or dvc repro)")
    return (yaml.safe_load(lock.read_text()) or {}).get("stages", {})


def _producer(stages: dict[str, dict], path: str) -> str | None:
    """The stage whose outputs contain `path` (the path itself or a file inside an output directory)."""
    path = path.rstrip("/")
    for name, st in stages.items():
        for out in st.get("outs", []):
            o = out["path"].rstrip("/")
            if path == o or path.startswith(o + "/"):
                return name
    return None


def _node(stages: dict[str, dict], name: str) -> Node:
    st = stages[name]
    data, code = [], []
    for dep in st.get("deps", []):
        entry = {"path": dep["path"], "md5": dep.get("md5", ""), "size": dep.get("size")}
        if dep["path"].startswith(CODE_PREFIXES):
            code.append(entry)
        else:
            data.append({**entry, "produced_by": _producer(stages, dep["path"])})
    params = {}
    for file_params in (st.get("params") or {}).values():
        params.update(file_params)
    outs = [{"path": o["path"], "md5": o.get("md5", ""), "size": o.get("size")} for o in st.get("outs", [])]
    upstream = sorted({d["produced_by"] for d in data if d["produced_by"]})
    return Node(stage=name, cmd=st.get("cmd", ""), params=params, data_deps=data, outs=outs,
                code_files=len(code), code_digest=digest([c["md5"] for c in code]), upstream=upstream)


def chain(target: str, root: Path = Path(".")) -> list[Node]:
    """Every stage `target` depends on, transitively, the producing stage first, then upstream in
    breadth-first order (each stage once)."""
    stages = read_lock(root)
    first = _producer(stages, target)
    if first is None:
        known = sorted({o["path"] for st in stages.values() for o in st.get("outs", [])
                        if o["path"].startswith("models/")})
        raise LineageError(f"{target}: no stage in dvc.lock produces it (models: {', '.join(known) or 'none'})")
    order, seen, queue = [], {first}, [first]
    while queue:
        name = queue.pop(0)
        node = _node(stages, name)
        order.append(node)
        for up in node.upstream:
            if up not in seen:
                seen.add(up)
                queue.append(up)
    return order


def git_commit(root: Path = Path(".")) -> dict:
    """HEAD's commit and whether the tracked tree differs from it."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                                    capture_output=True, text=True, check=True).stdout.strip())
    except (OSError, subprocess.CalledProcessError):
        return {"commit": "unknown", "dirty": None}
    return {"commit": head, "dirty": dirty}


def _short(md5: str) -> str:
    return md5[:12] + (".dir" if md5.endswith(".dir") else "")


def render(nodes: list[Node], with_params: bool = False) -> str:
    lines = []
    for node in nodes:
        lines.append(f"{node.stage}  ({node.cmd})")
        if node.params:
            lines.append("  params: " + ", ".join(f"{k} [{v}]" for k, v in node.params_digest().items()))
            if with_params:
                for k, v in node.params.items():
                    lines.append(f"    {k}: {json.dumps(v, sort_keys=True, default=str)}")
        for d in node.data_deps:
            src = f" <- {d['produced_by']}" if d["produced_by"] else ""
            lines.append(f"  in   {d['path']}  {_short(d['md5'])}{src}")
        for o in node.outs:
            lines.append(f"  out  {o['path']}  {_short(o['md5'])}")
        lines.append(f"  code {node.code_files} files [{node.code_digest}]")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lmbuild.lineage", description=__doc__.split("\n\n")[0])
    ap.add_argument("target", help="an output path, e.g. models/sft")
    ap.add_argument("--params", action="store_true", help="print every param value in force")
    ap.add_argument("--json", action="store_true", help="print the chain as JSON")
    args = ap.parse_args(argv)
    try:
        nodes = chain(args.target)
    except LineageError as exc:
        print(f"lineage: {exc}", file=sys.stderr)
        return 2
    git = git_commit()
    if args.json:
        print(json.dumps({"target": args.target, "git": git,
                          "stages": [{**node.__dict__, "params_digest": node.params_digest()} for node in nodes]},
                         indent=1, default=str))
        return 0
    print(f"{args.target}: {len(nodes)} stages back to the raw sources (dvc.lock at git {git['commit'][:12]}"
          f"{', uncommitted changes' if git['dirty'] else ''}; `dvc status` says whether the workspace matches)")
    print(render(nodes, args.params))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
