"""Shared fixtures: a scratch copy of the project to run stages in, and small corpora."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # `stages` imports in process, whichever directory pytest starts in
    sys.path.insert(0, str(REPO))
# Under pytest-xdist (`make test` runs two workers) each worker, and every stage it starts (they
# inherit the environment), gets an equal share of the cores for torch's OpenMP threads: two
# workers of two threads each on two cores spin against each other. Set before torch is imported;
# an OMP_NUM_THREADS already in the environment wins.
if int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")) > 1:
    os.environ.setdefault("OMP_NUM_THREADS",
                          str(max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"]))))
LID_MODEL = REPO / "assets" / "lid.176.ftz"

# The modules that take minutes, longest first (pytest --durations on 2 cores). Under xdist each
# file runs whole on one worker (`--dist loadfile`, so module fixtures are built once), in
# collection order: these start first and the short files fill in around them, rather than a
# long one starting last while the other worker sits idle.
LONG_MODULES = ("test_posttrain.py", "test_pipeline_e2e.py", "test_reward_model.py", "test_train.py",
                "test_mixture_training.py", "test_studies.py")


def pytest_collection_modifyitems(config, items):
    if os.environ.get("PYTEST_XDIST_WORKER"):
        rank = {name: i for i, name in enumerate(LONG_MODULES)}
        items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: the rest keep their order


def stage_env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env["LMBUILD_NO_PROGRESS"] = "1"
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    return env


def run_stage(workdir: Path, stage: str, check: bool = True, timeout: int = 600,
              args: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", f"stages.{stage}", *args], cwd=workdir, env=stage_env(),
                          capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"stage {stage} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return proc


def run_stage_in_process(workdir: Path, stage: str, args: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    """`python -m stages.<stage>` as this process's call of the stage's main() in workdir: the
    same code, exit status and stderr, without the Python start-up and imports that are most of
    the time of a stage stopping at its params check. An exception other than SystemExit is
    raised here (where the command line would have printed its traceback)."""
    import contextlib
    import importlib
    import io

    out, err = io.StringIO(), io.StringIO()
    cwd, argv = os.getcwd(), sys.argv
    code = 0
    try:
        os.chdir(workdir)
        sys.argv = [f"stages.{stage}", *args]
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                importlib.import_module(f"stages.{stage}").main()
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
    finally:
        os.chdir(cwd)
        sys.argv = argv
    return subprocess.CompletedProcess([sys.executable, "-m", f"stages.{stage}", *args], code,
                                       out.getvalue(), err.getvalue())


def expand_stages(stages: dict) -> dict[str, dict]:
    """dvc.yaml stages with each `foreach` stage expanded as DVC names them (eval@sft, ...)."""
    import json as _json

    out = {}
    for name, st in stages.items():
        if "foreach" not in st:
            out[name] = st
            continue
        template = _json.dumps(st["do"])
        for item in st["foreach"]:
            out[f"{name}@{item}"] = _json.loads(template.replace("${item}", str(item)))
    return out


def pipeline_stages() -> dict[str, dict]:
    return expand_stages(yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"])


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


def sigkill_after_checkpoint(workdir: Path, stage: str, min_step: int, seed: int = 0,
                             timeout: float = 240) -> int:
    """Start a training stage, wait until its checkpoint has reached `min_step`, wait a random
    moment more (the run is slowed with LMBUILD_STEP_DELAY_S), then SIGKILL its process group.
    Returns the checkpointed step at the kill."""
    import random
    import signal
    import time

    env = stage_env()
    env["LMBUILD_STEP_DELAY_S"] = "0.1"
    proc = subprocess.Popen([sys.executable, "-m", f"stages.{stage}"], cwd=workdir, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    state = workdir / "checkpoints" / stage / "latest" / "state.json"  # the loop state, plain JSON
    deadline = time.monotonic() + timeout
    try:
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"{stage} ended ({proc.returncode}) before the kill:\n"
                                     f"{proc.stderr.read().decode()[-3000:]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{stage}: no checkpoint at step >= {min_step} within {timeout} s")
            if state.exists():
                try:
                    step = json.loads(state.read_text())["step"]
                except Exception:  # replaced while reading
                    step = -1
                if step >= min_step:
                    break
            time.sleep(0.05)
        time.sleep(random.Random(seed).uniform(0.3, 0.6))  # a few steps past the checkpoint
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stderr.close()
    return json.loads(state.read_text())["step"]


TIMING = {"tokens_per_s", "mfu", "wall_time_s", "peak_tflops"}  # measured on CPU: may differ run to run


def assert_same_metrics(full: dict, resumed: dict, keys: tuple[str, ...]) -> None:
    """A killed + resumed run's metrics (flat metrics/<stage>.json) against an uninterrupted run's:
    every number but the timings equal within 1e-6; the named keys must be there."""
    for k in keys:
        assert full.get(k) is not None, k
    assert set(resumed) == set(full), set(resumed) ^ set(full)
    diff = {k: (full[k], resumed[k]) for k in sorted(full) if k not in TIMING and full[k] != resumed[k]
            and (full[k] is None or resumed[k] is None or abs(full[k] - resumed[k]) > 1e-6)}
    assert not diff, f"resumed != uninterrupted (full, resumed): {diff}"


def live_steps(root: Path, stage: str) -> list[int]:
    """The steps of the dvclive train-loss curve, in file order."""
    rows = [line.split("\t") for line in
            (root / f"dvclive/{stage}/plots/metrics/train/loss.tsv").read_text().splitlines()]
    return [int(r[rows[0].index("step")]) for r in rows[1:]]
