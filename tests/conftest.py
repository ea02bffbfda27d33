"""Shared fixtures: a scratch copy of the project to run stages in, and small corpora."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
LID_MODEL = REPO / "assets" / "lid.176.ftz"


def stage_env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env["LMBUILD_NO_PROGRESS"] = "1"
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    return env


def run_stage(workdir: Path, stage: str, check: bool = True, timeout: int = 600) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", f"stages.{stage}"], cwd=workdir, env=stage_env(),
                          capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"stage {stage} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return proc


class Project:
    """A scratch working directory with a params.yaml, where stages run as in the repo."""

    def __init__(self, root: Path):
        self.root = root
        (root / "assets").mkdir(exist_ok=True)
        link = root / "assets" / "lid.176.ftz"
        if LID_MODEL.exists() and not link.exists():
            link.symlink_to(LID_MODEL)
        self.params = yaml.safe_load((REPO / "params.yaml").read_text())

    def write_params(self, params: dict | None = None) -> None:
        (self.root / "params.yaml").write_text(yaml.safe_dump(params or self.params, sort_keys=False))

    def run(self, stage: str, **kw) -> subprocess.CompletedProcess:
        if not (self.root / "params.yaml").exists():
            self.write_params()
        return run_stage(self.root, stage, **kw)


@pytest.fixture
def project(tmp_path) -> Project:
    return Project(tmp_path)


def tree_digest(root: Path) -> dict[str, bytes]:
    """Relative path -> bytes of every file under root (for byte-identity checks)."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


requires_lid = pytest.mark.skipif(not LID_MODEL.exists(), reason="run `make setup` to fetch assets/lid.176.ftz")
