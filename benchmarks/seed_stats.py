"""Two arms of a benchmark compared over seeds: the per-seed differences, their mean and standard
error, and a 95% Student's t interval (3 to 5 seeds: t = 4.30 to 2.78, not the normal 1.96),
with a verdict a table can print; and the table of several arms over seeds and precisions, each
against a baseline arm; and how the runs are spread over the cores, with the machine line every
report opens with. Shared by the benchmarks that compare training recipes."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))

from lmbuild import stats  # noqa: E402
from lmbuild.study.figures import t95  # noqa: E402


def paired_by_seed(base: dict[int, float], other: dict[int, float]) -> dict | None:
    """other - base over the seeds both have: n, mean, sd, se, half (95% t half-width) and
    beyond (True when the interval excludes 0); None with fewer than 2 shared seeds."""
    seeds = sorted(set(base) & set(other))
    if len(seeds) < 2:
        return None
    d = stats.summarize([other[s] - base[s] for s in seeds])
    half = t95(d["n"] - 1) * d["se"]
    return {**d, "half": half, "beyond": abs(d["mean"]) > half}


def arms_table(rows: list[dict], arm_key: str, arms: list, base, columns: list[tuple[str, str, bool]],
               label: str) -> list[str]:
    """Markdown: per precision, each arm's mean +- se (n) over seeds of every column (metrics
    key, title, lower is better), then each arm against `base` paired by seed, with the verdict."""
    out = []
    for prec in sorted({r["precision"] for r in rows}):
        at = {a: [r for r in rows if (r[arm_key], r["precision"]) == (a, prec)] for a in arms}
        out += [f"### {prec}", "", f"| {label} | " + " | ".join(t for _, t, _ in columns) + " |",
                "|---" * (len(columns) + 1) + "|"]
        for a in arms:
            cells = []
            for key, _, _ in columns:
                s = stats.summarize([r[key] for r in at[a] if r.get(key) is not None])
                cells.append(f"{s['mean']:.4f} +- {s['se']:.4f} ({s['n']})")
            out.append(f"| {a} | " + " | ".join(cells) + " |")
        out.append("")
        for a in arms:
            if a == base:
                continue
            parts = []
            for key, title, lower in columns:
                d = paired_by_seed({r["seed"]: r[key] for r in at[base] if r.get(key) is not None},
                                   {r["seed"]: r[key] for r in at[a] if r.get(key) is not None})
                if d is None:
                    continue
                verdict = ("within noise" if not d["beyond"] else
                           f"{'better' if (d['mean'] < 0) == lower else 'worse'} beyond noise")
                parts.append(f"{title} {d['mean']:+.4f} +- {d['se']:.4f} (95% t +- {d['half']:.4f}, {verdict})")
            if parts:
                out.append(f"- {a} - {base}, paired by seed: " + "; ".join(parts))
        out.append("")
    return out


def common_args(ap, name: str) -> None:
    """The options every recipe benchmark takes: seeds, precisions, parallelism, --reuse, where
    the workspaces and the report go (.cache/<name>, reports/<name>)."""
    from lmbuild.workspace import REPO
    ap.add_argument("--seeds", type=int, nargs="*", default=[1, 2, 3])
    ap.add_argument("--precisions", nargs="*", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--threads", type=int, default=None, help="threads per run (default: 2 with --jobs 1, else 1)")
    ap.add_argument("--reuse", action="store_true", help="keep runs whose workspace already holds their metrics")
    ap.add_argument("--work", type=Path, default=REPO / ".cache" / name)
    ap.add_argument("--out", type=Path, default=REPO / "reports" / name)


def stage_run(root: Path, stage: str, over: dict, links: list[str], threads: int, reuse: bool,
              repo: Path | None = None) -> tuple[dict, float, bool]:
    """Run `stage` in a fresh workspace at root (params overridden by `over`, `links` from repo),
    or with `reuse` keep one that already wrote its metrics under the same overrides; returns
    (metrics, seconds, reused)."""
    import os
    from demo_robustness import finished
    from lmbuild.workspace import REPO, make, read_metrics, run_stage
    reused = reuse and finished(root, (stage,), over)
    if reused:
        seconds = read_metrics(root, stage)["wall_time_s"]
    else:
        make(root, over, links, repo=repo or REPO)
        os.environ.setdefault("OMP_NUM_THREADS", str(threads))
        seconds = run_stage(root, stage)
    return read_metrics(root, stage), seconds, reused


def write_report(out: Path, md: str, payload: dict) -> None:
    """<out>.md (the table) and <out>.json (every run), then the table on stdout."""
    import json
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(payload, indent=1, sort_keys=True) + "\n")
    out.with_suffix(".md").write_text(md)
    print(md)


def run_plan(args, plan: list, run_one) -> tuple[list[dict], dict]:
    """Every job of `plan` through `run_one(job, threads)`, args.jobs at a time (2 threads each
    when one at a time, else 1, unless --threads); returns (rows, where they ran: CPU, jobs,
    threads, load average at the end, minutes)."""
    import os
    import time
    from concurrent.futures import ThreadPoolExecutor
    from demo_robustness import cpu_model
    threads = args.threads or (2 if args.jobs == 1 else 1)
    t0 = time.time()
    with ThreadPoolExecutor(args.jobs) as pool:
        rows = list(pool.map(lambda job: run_one(job, threads), plan))
    return rows, {"cpu": cpu_model(), "jobs": args.jobs, "threads": threads,
                  "load_at_end": round(os.getloadavg()[0], 1), "minutes": (time.time() - t0) / 60}


def machine_line(n: int, what: str, where: dict) -> str:
    """'12 pretrain runs on <CPU> (2 cores; 1 at a time with 2 thread(s) each, load ..., N minutes)'."""
    import os
    return (f"{n} {what} on {where['cpu']} ({os.cpu_count()} cores; {where['jobs']} at a time with "
            f"{where['threads']} thread(s) each, load average at the end {where['load_at_end']:.1f}, "
            f"{where['minutes']:.0f} minutes)")
