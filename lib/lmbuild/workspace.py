"""Scratch workspaces: run pipeline stages with changed params beside the repository, without
touching its outputs, dvc.lock or DVC cache.

A workspace is a directory holding a params.yaml (the repository's with overrides applied),
links to the stage scripts and to the upstream outputs it starts from, and a git repository of
its own (dvclive wants one). Stage commands run inside it exactly as `dvc repro` runs them
(`python -m stages.<name>`), so what a sweep measures is what the pipeline does. Used by
benchmarks/demo_robustness.py to train many variants of the post-training chain; a researcher's
own sweeps should prefer queued `dvc exp` runs (docs/numbers-and-noise.md, "Seed studies"), which
cache every run.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]


def set_dotted(tree: dict, key: str, value: Any) -> None:
    """tree["a"]["b"] = value for key "a.b" (intermediate mappings created as needed)."""
    parts = key.split(".")
    node = tree
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value


def parse_override(text: str) -> tuple[str, Any]:
    """'sft.optim.lr=0.01' -> ('sft.optim.lr', 0.01): the value is read as YAML, as `dvc exp run -S` does."""
    if "=" not in text:
        raise ValueError(f"override {text!r}: expected key=value (e.g. sft.epochs=4)")
    key, raw = text.split("=", 1)
    return key.strip(), yaml.safe_load(raw)


def make(root: Path, overrides: dict[str, Any], links: list, repo: Path = REPO) -> Path:
    """A fresh workspace at `root`: params.yaml with `overrides`, `links` (paths relative to the
    repository: upstream outputs to start from; a (here, there) pair links another path in)
    symlinked, stages/, assets/, evals/ and
    harness_tasks/ linked."""
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    params = yaml.safe_load((repo / "params.yaml").read_text())
    for key, value in overrides.items():
        set_dotted(params, key, value)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    for link in ["stages", "assets", "evals", "harness_tasks", *links]:
        dst_rel, src_rel = link if isinstance(link, tuple) else (link, link)   # (path here, path in the repository)
        src, dst = repo / src_rel, root / dst_rel
        if not src.exists():
            raise FileNotFoundError(f"{src}: missing; run `make repro` (or `dvc repro`) first")
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.symlink_to(src)
    env = {**os.environ, "GIT_AUTHOR_NAME": "lmbuild", "GIT_AUTHOR_EMAIL": "lmbuild@localhost",
           "GIT_COMMITTER_NAME": "lmbuild", "GIT_COMMITTER_EMAIL": "lmbuild@localhost"}
    for cmd in (["git", "init", "-q"], ["git", "add", "params.yaml"], ["git", "commit", "-q", "-m", "workspace"]):
        subprocess.run(cmd, cwd=root, check=True, env=env, stdout=subprocess.DEVNULL)
    return root


def run_stage(root: Path, stage: str, *args: str, log: Path | None = None) -> float:
    """Run `python -m stages.<stage> [args]` in the workspace; returns its wall time in seconds.
    Raises RuntimeError with the tail of its log when it fails."""
    log = log or root / "logs" / f"{stage}{'_' + '_'.join(args) if args else ''}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "LMBUILD_NO_PROGRESS": "1", "PYTHONPATH": str(root)}
    t0 = time.perf_counter()
    with log.open("w") as fh:
        rc = subprocess.run([sys.executable, "-m", f"stages.{stage}", *args], cwd=root, env=env, stdout=fh,
                            stderr=subprocess.STDOUT).returncode
    if rc:
        tail = "".join(log.read_text(errors="replace").splitlines(True)[-15:])
        raise RuntimeError(f"{root}: stages.{stage} {' '.join(args)} exited with {rc}:\n{tail}")
    return time.perf_counter() - t0


def read_metrics(root: Path, name: str) -> dict:
    path = root / "metrics" / f"{name}.json"
    return json.loads(path.read_text()) if path.is_file() else {}
