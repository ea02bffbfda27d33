"""The committed results match the committed code: `dvc status` on the repository finds no stage
of the main pipeline whose code, params or command differ from dvc.lock.

Outputs may be absent (a fresh clone has none until `dvc pull` or `dvc repro`), and a dependency
that another stage produces is judged through that stage, so only the declared inputs that no
stage writes (code, specs, params, source data) are checked. A change to a stage's code must
come with that stage's rerun, or `dvc commit <stage>` where its outputs are provably unchanged.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


from conftest import REPO, pipeline_stages


def _stage_outputs() -> set[str]:
    """Every path a main-pipeline stage writes (outs, metrics, plots), as written in dvc.yaml."""
    paths = set()
    for st in pipeline_stages().values():
        for key in ("outs", "metrics", "plots"):
            for entry in st.get(key, []):
                paths.add(next(iter(entry)) if isinstance(entry, dict) else entry)
    return paths


def _produced(path: str, outputs: set[str]) -> bool:
    return any(path == o or path.startswith(o.rstrip("/") + "/") for o in outputs)


def stale_entries(status: dict, outputs: set[str]) -> list[str]:
    """What `dvc status --json` reports that the lock does not account for: a changed command,
    changed params, or a modified input that no stage produces."""
    found = []
    for stage, changes in status.items():
        for change in changes:
            if not isinstance(change, dict):  # e.g. "changed checksum", "always changed"
                found.append(f"{stage}: {change}")
                continue
            if "changed command" in change:
                found.append(f"{stage}: changed command")
            for path, state in change.get("changed deps", {}).items():
                if isinstance(state, dict):  # params.yaml: {"sft.epochs": "modified", ...}
                    found += [f"{stage}: param {k} {v}" for k, v in state.items()]
                elif state != "deleted" and not _produced(path, outputs):
                    found.append(f"{stage}: {path} {state}")
    return found


def test_stale_entries_reads_dvc_status_shapes():
    outputs = {"data/tokens", "models/sft"}
    status = {"sft": [{"changed deps": {"data/tokens": "modified", "lib/x.py": "modified",
                                        "params.yaml": {"sft.epochs": "modified"}}},
                      {"changed outs": {"models/sft": "deleted"}}],
              "dpo": [{"changed deps": {"models/sft": "deleted", "models/sft/config.json": "modified"}}],
              "rlvr": ["changed command"]}
    assert stale_entries(status, outputs) == ["sft: lib/x.py modified", "sft: param sft.epochs modified",
                                              "rlvr: changed command"]


def test_lock_matches_the_committed_code_and_params():
    proc = subprocess.run([str(Path(sys.executable).parent / "dvc"), "status", "--json", "dvc.yaml"], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    stale = stale_entries(json.loads(proc.stdout or "{}"), _stage_outputs())
    assert not stale, ("dvc.lock does not match the code: rerun these stages (`dvc repro <stage>`), or "
                       "`dvc commit <stage>` where the outputs are provably unchanged:\n  " + "\n  ".join(stale))
