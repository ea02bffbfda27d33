"""How long does DVC take to find that nothing needs to run? A no-op `dvc status` and
`dvc repro --dry` over both pipelines (dvc.yaml and studies/dvc.yaml) with every stage locked,
as the studies grow to a few hundred proxies.

Each size is a scratch copy of the working tree (the tracked files plus params.yaml with
`studies.mixture.proxies` set to that many proxies) in which every stage's outputs are stand-ins
(a small file, or a directory holding one), every code fingerprint is real (`python -m
lmbuild.deps --fingerprint`), and `dvc commit --force` has locked everything: the same stages,
dependencies and lock DVC reads on a machine where the pipelines have run, without running them.

    .venv/bin/python benchmarks/dvc_noop.py                       # the repository's own 12 proxies and 300
    .venv/bin/python benchmarks/dvc_noop.py --proxies 12 --repeats 5

Writes reports/dvc_noop.json (seconds per command, the median of --repeats, with the stage and
dependency counts, the lock's size, the CPU and the load) and the table as reports/dvc_noop.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "lib"))
sys.path.insert(0, str(REPO / "benchmarks"))

import yaml  # noqa: E402

from demo_robustness import cpu_model  # noqa: E402
from lmbuild.deps import stage_scripts  # noqa: E402

DVC = [sys.executable, "-m", "dvc"]


def tracked(repo: Path) -> list[str]:
    out = subprocess.run(["git", "ls-files", "-z"], cwd=repo, capture_output=True, text=True, check=True).stdout
    return [p for p in out.split("\0") if p and (repo / p).is_file()]


def scratch_copy(dest: Path, proxies: int) -> None:
    for rel in tracked(REPO):
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / rel, dest / rel)
    params = dest / "params.yaml"
    text = params.read_text(encoding="utf-8")
    p = yaml.safe_load(text)
    old = p["studies"]["mixture"]["proxies"]
    line = f"    proxies: {old}"
    if line.replace("'", "") not in text:
        raise SystemExit(f"dvc_noop: params.yaml has no line {line!r} to resize")
    params.write_text(text.replace(line, f"    proxies: {list(range(proxies))}", 1), encoding="utf-8")
    for lock in ("dvc.lock", "studies/dvc.lock"):  # locked afresh: no entries of stages that are gone
        (dest / lock).unlink(missing_ok=True)
    subprocess.run(["git", "init", "-q"], cwd=dest, check=True)
    for d in ("data", "models", "checkpoints", "studies", "metrics", "plots", "reports", "evals", "dvclive"):
        (dest / d).mkdir(exist_ok=True)


def stand_in(path: Path) -> None:
    """A small file where the path has a suffix, else a directory with one file."""
    if path.exists():
        return
    if path.suffix:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("{}\n" if path.suffix == ".json" else "stand-in\n", encoding="utf-8")
    else:
        path.mkdir(parents=True, exist_ok=True)
        (path / "part.txt").write_text("stand-in\n", encoding="utf-8")


def lock_everything(root: Path) -> dict:
    """Stand-ins for every output and missing dependency, real code fingerprints, everything
    committed; returns the stage and dependency counts."""
    from dvc.repo import Repo
    with Repo(str(root)) as repo:
        stages = list(repo.index.stages)
        for s in stages:
            for o in s.outs:
                stand_in(Path(o.fs_path))
        for s in stages:
            for d in s.deps:
                if getattr(d, "params", None) is None:
                    stand_in(Path(d.fs_path))
        counts = {"stages": len(stages), "deps": sum(len(s.deps) for s in stages)}
    studies = yaml.safe_load((root / "studies" / "dvc.yaml").read_text(encoding="utf-8"))
    for name, script in stage_scripts(studies).items():
        if name.startswith("code_"):
            subprocess.run([sys.executable, "-m", "lmbuild.deps", "--fingerprint", script], cwd=root, check=True,
                           capture_output=True)
    subprocess.run(DVC + ["commit", "--force", "--quiet"], cwd=root, check=True)
    lock_bytes = sum((root / f).stat().st_size for f in ("dvc.lock", "studies/dvc.lock") if (root / f).is_file())
    return {**counts, "lock_bytes": lock_bytes}


def timed(root: Path, args: list[str], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        r = subprocess.run(DVC + args, cwd=root, capture_output=True, text=True)
        times.append(time.perf_counter() - t0)
        if r.returncode != 0:
            raise SystemExit(f"dvc_noop: `dvc {' '.join(args)}` failed:\n{r.stdout[-2000:]}{r.stderr[-2000:]}")
    return statistics.median(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--proxies", type=int, nargs="*", default=None,
                    help="studies sizes to measure (default: the repository's own and 300)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, default=REPO / "reports" / "dvc_noop.json")
    args = ap.parse_args()
    own = len(yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))["studies"]["mixture"]["proxies"])
    sizes = args.proxies or [own, 300]
    rows = []
    for n in sizes:
        with tempfile.TemporaryDirectory(prefix="dvc-noop-") as tmp:
            root = Path(tmp)
            scratch_copy(root, n)
            counts = lock_everything(root)
            row = {"proxies": n, **counts,
                   "status_s": timed(root, ["status"], args.repeats),
                   "repro_dry_s": timed(root, ["repro", "--dry"], args.repeats),
                   "repro_dry_main_s": timed(root, ["repro", "--dry", "dvc.yaml"], args.repeats)}
            rows.append(row)
            print(f"{n} proxies: {row}", file=sys.stderr, flush=True)
    load = os.getloadavg()[0]
    result = {"cpu": cpu_model(), "cores": os.cpu_count(), "load_at_end": round(load, 2), "repeats": args.repeats,
              "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    lines = [f"No-op `dvc` commands with every stage locked, median of {args.repeats} runs on {result['cpu']} "
             f"({result['cores']} cores, load average at the end {load:.1f}); `benchmarks/dvc_noop.py`.", "",
             "| mixture proxies | stages | dependencies | lock KB | `dvc status` s | `dvc repro --dry` s | "
             "`dvc repro --dry dvc.yaml` s |", "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['proxies']} | {r['stages']} | {r['deps']} | {r['lock_bytes'] / 1024:.0f} | {r['status_s']:.2f} "
              f"| {r['repro_dry_s']:.2f} | {r['repro_dry_main_s']:.2f} |" for r in rows]
    text = "\n".join(lines) + "\n"
    args.out.with_suffix(".md").write_text(text, encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
