"""Does the demo's conclusion hold on any machine? The post-training chain (sft -> dpo_pairs ->
reward_model -> dpo -> rlvr) over several training seeds x two precisions, and the whole chain from pretrain over a
few seeds, each run in a scratch workspace (lmbuild.workspace) from the repository's upstream
outputs; then the demo's targets checked over the runs.

A change of precision (fp32 vs bf16 autocast) perturbs the numerics the way another CPU does, and
a new pretrain seed stands for the different base model another machine trains, so a claim that
survives this table survives a fresh clone elsewhere.

    make repro                                   # the upstream outputs (models/anneal, data/tokens)
    .venv/bin/python benchmarks/demo_robustness.py                     # 5 seeds x fp32/bf16 + 3 full
    .venv/bin/python benchmarks/demo_robustness.py --seeds 1 2 --precisions bf16 --full-seeds   # quick

Writes reports/robustness.json (every run's metrics) and reports/robustness.md (the table and the
targets). --jobs 2 runs two workspaces at once with one thread each (on 2 cores that is ~15%
more work per hour than one 2-thread run; timings then are per 1-thread process).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))

import yaml  # noqa: E402

from lmbuild import stats  # noqa: E402
from lmbuild.tasks.example import digest  # noqa: E402
from lmbuild.workspace import REPO, make, read_metrics, run_stage  # noqa: E402

POST = ("sft", "dpo_pairs", "reward_model", "dpo", "rlvr")
SEED_KEYS = {"pretrain": "pretrain.seed", "anneal": "anneal.seed", "sft": "sft.seed", "dpo_pairs": "dpo.pairs.seed",
             "reward_model": "reward_model.seed", "dpo": "dpo.seed", "rlvr": "rlvr.seed"}
PRECISION_KEYS = ("pretrain.precision", "anneal.precision", "sft.precision", "reward_model.precision",
                  "dpo.precision", "rlvr.precision")
# the demo's targets on average over the runs: dpo's held-out reward accuracy, the reward model's
# held-out pair accuracy, rlvr's held-out sampled pass@1 gain (benchmarks/posttrain_sweep.py reads them too)
TARGET = {"dpo": 0.65, "reward_model": 0.65, "rlvr": 0.05}
Z95 = 1.959963984540054  # a paired difference beyond noise: outside its 95% interval
# the params a run's figures depend on besides its seeds and precisions: rows of another recipe
# (params.yaml changed since) are not pooled with this one's
RECIPE_SECTIONS = ("common", "tasks", "sft", "dpo", "reward_model", "rlvr")


def recipe(params: dict) -> str:
    """A short digest of the recipe sections with the keys the runs vary (seeds, precision) removed."""
    def strip(node):
        if isinstance(node, dict):
            return {k: strip(v) for k, v in sorted(node.items()) if k not in ("seed", "precision")}
        return node
    return digest(json.dumps({s: strip(params.get(s)) for s in RECIPE_SECTIONS}, sort_keys=True), size=6).hex()


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        return next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def finished(root: Path, stages: tuple[str, ...], overrides: dict) -> bool:
    """A workspace whose every stage wrote its metrics, with the same overrides (--reuse)."""
    if not all((root / "metrics" / f"{s}.json").is_file() for s in stages):
        return False
    p = yaml.safe_load((root / "params.yaml").read_text())
    for key, value in overrides.items():
        node = p
        for part in key.split("."):
            node = node[part]
        if node != value:
            return False
    return True


def one_run(work: Path, name: str, seed: int, precision: str, full: bool, threads: int, reuse: bool = False) -> dict:
    stages = (("pretrain", "anneal") if full else ()) + POST
    overrides = {SEED_KEYS[s]: seed for s in stages}
    if precision != "demo":  # "demo": every stage at params.yaml's own precision
        overrides.update({k: precision for k in PRECISION_KEYS if full or not k.startswith(("pretrain", "anneal"))})
    links = ["data/tokens", "models/tokenizer"] if full else ["models/anneal"]
    root = work / name
    times = {}
    if reuse and finished(root, stages, overrides):
        times_file = root / "logs" / "seconds.json"
        times = json.loads(times_file.read_text()) if times_file.is_file() else {}
        print(f"{name}: reusing the finished run in {root}", file=sys.stderr, flush=True)
    else:
        make(root, overrides, links)
        os.environ.setdefault("OMP_NUM_THREADS", str(threads))
        for stage in stages:
            times[stage] = run_stage(root, stage)
            print(f"{name}: {stage} {times[stage]:.0f} s", file=sys.stderr, flush=True)
            (root / "logs" / "seconds.json").write_text(json.dumps(times))
    m = {s: read_metrics(root, s) for s in stages if s != "dpo_pairs"}
    if not times:  # reused from a run that kept no timings: the training stages' own wall times
        times = {s: m[s]["wall_time_s"] for s in m if "wall_time_s" in m[s]}
    row = {"run": name, "seed": seed, "precision": precision, "full_chain": full, "seconds": times,
           "sft.task_accuracy": m["sft"]["task_accuracy"], "sft.task_accuracy_stderr": m["sft"]["task_accuracy_stderr"],
           "dpo.reward_accuracy": m["dpo"]["val.reward_accuracy"],
           "dpo.reward_accuracy_stderr": m["dpo"].get("val.reward_accuracy_stderr"),
           "dpo.task_accuracy": m["dpo"]["task_accuracy"],
           "dpo.task_accuracy_gain": m["dpo"]["task_accuracy_gain"],
           "dpo.task_accuracy_gain_stderr": m["dpo"]["task_accuracy_gain_stderr"],
           "reward_model.accuracy": m["reward_model"]["accuracy"],
           "reward_model.accuracy_stderr": m["reward_model"]["accuracy_stderr"]}
    r = m["rlvr"]
    # the RL start model's headroom: sampled pass@k - pass@1 on the held-out problems
    k = int(r["start.pass_k.samples"])
    row["rlvr.start.pass@1"], row[f"rlvr.start.pass@k"] = r["start.pass_k.pass@1"], r[f"start.pass_k.pass@{k}"]
    row["rlvr.start.headroom"], row["pass_k"] = r["start.pass_k.headroom"], k
    for k in ("task_accuracy", "sampled_reward", "sampled_accuracy"):
        row[f"rlvr.start.{k}"], row[f"rlvr.{k}"] = r[f"start.{k}"], r[k]
        row[f"rlvr.{k}_gain"], row[f"rlvr.{k}_gain_stderr"] = r[f"{k}_gain"], r[f"{k}_gain_stderr"]
    if full:
        row["pretrain.val_loss"] = m["pretrain"]["val_loss"]
        row["anneal.val_loss"] = m["anneal"]["val_loss"]
    for s in ("sft", "rlvr"):
        row[f"{s}.numerics"] = {k[len("numerics."):]: v for k, v in m[s].items() if k.startswith("numerics.")}
    return row


def _beyond(rows: list[dict], key: str, sign: int) -> int:
    """Runs whose paired gain `key` is beyond noise in the direction `sign` (+1 up, -1 down)."""
    return sum(sign * r[key] > Z95 * r[f"{key}_stderr"] for r in rows)


def targets(rows: list[dict]) -> list[tuple[str, bool, str]]:
    """(target, met, what was measured) for what each post-training stage exists to do, over
    every run; a gain is beyond noise when outside its paired 95% interval."""
    n = len(rows)
    s_sft = stats.summarize([r["sft.task_accuracy"] for r in rows])
    head = stats.summarize([r["rlvr.start.headroom"] for r in rows])
    k = rows[0]["pass_k"]
    out = [("sft: held-out task accuracy (the annealed base model scores ~0)", s_sft["mean"] > 0.1,
            f"mean {s_sft['mean']:.3f} (sd {s_sft['sd']:.3f})"),
           (f"headroom for RL: sampled pass@{k} - pass@1 of rlvr's start model >= 0.15 on average",
            head["mean"] >= 0.15, f"mean {head['mean']:.3f} (sd {head['sd']:.3f})")]
    rw = stats.summarize([r["dpo.reward_accuracy"] for r in rows])
    out.append((f"dpo: held-out reward accuracy >= {TARGET['dpo']} on average", rw["mean"] >= TARGET["dpo"],
                f"mean {rw['mean']:.3f} (sd {rw['sd']:.3f})"))
    out.append(("dpo: held-out reward accuracy >= 0.55 in every run", rw["min"] >= 0.55, f"min {rw['min']:.3f}"))
    down = _beyond(rows, "dpo.task_accuracy_gain", -1)
    out.append(("dpo: task accuracy not below sft's beyond noise (paired)", down == 0, f"{down} of {n} runs below"))
    g = stats.summarize([r["rlvr.sampled_accuracy_gain"] for r in rows])
    out.append((f"rlvr: held-out sampled pass@1 up by >= {TARGET['rlvr']} on average", g["mean"] >= TARGET["rlvr"],
                f"{g['mean']:+.3f} (sd {g['sd']:.3f})"))
    ups, need = _beyond(rows, "rlvr.sampled_accuracy_gain", +1), -(-8 * n // 10)
    out.append(("rlvr: sampled pass@1 up beyond noise in >= 8 of 10 runs", ups >= need, f"{ups} of {n}"))
    down = _beyond(rows, "rlvr.task_accuracy_gain", -1)
    out.append(("rlvr: greedy accuracy not down beyond noise", down == 0, f"{down} of {n} runs down"))
    rm = stats.summarize([r["reward_model.accuracy"] for r in rows])
    out.append((f"reward model: held-out pair accuracy >= {TARGET['reward_model']} on average",
                rm["mean"] >= TARGET["reward_model"],
                f"mean {rm['mean']:.3f} (sd {rm['sd']:.3f})"))
    return out


def markdown(rows: list[dict], head: str) -> str:
    lines = [head, "", "| run | seed | precision | sft acc | rm pair acc | dpo reward acc | dpo acc | "
             "rlvr start pass@1 / pass@k | rlvr greedy start -> end | rlvr sampled pass@1 start -> end (gain +- se) "
             "| minutes | threads x jobs, load |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['run']} | {r['seed']} | {r['precision']} | {r['sft.task_accuracy']:.3f} | "
                     f"{r['reward_model.accuracy']:.3f} | {r['dpo.reward_accuracy']:.3f} | {r['dpo.task_accuracy']:.3f} | "
                     f"{r['rlvr.start.pass@1']:.3f} / {r['rlvr.start.pass@k']:.3f} | "
                     f"{r['rlvr.start.task_accuracy']:.3f} -> {r['rlvr.task_accuracy']:.3f} | "
                     f"{r['rlvr.start.sampled_accuracy']:.3f} -> {r['rlvr.sampled_accuracy']:.3f} "
                     f"({r['rlvr.sampled_accuracy_gain']:+.3f} +- {r['rlvr.sampled_accuracy_gain_stderr']:.3f}) | "
                     f"{sum(r['seconds'].values()) / 60:.1f} | {r.get('threads', '?')} x {r.get('jobs', '?')}, "
                     f"{r.get('load_at_end', '?')} |")
    lines += ["", "Over all runs (mean +- sd, [min, max]):", ""]
    for key in ("sft.task_accuracy", "reward_model.accuracy", "dpo.reward_accuracy", "dpo.task_accuracy",
                "dpo.task_accuracy_gain", "rlvr.start.headroom", "rlvr.task_accuracy_gain", "rlvr.sampled_reward_gain",
                "rlvr.sampled_accuracy_gain", "pretrain.val_loss"):
        vals = [r[key] for r in rows if key in r]
        if vals:
            s = stats.summarize(vals)
            lines.append(f"- {key}: {s['mean']:.4f} +- {s['sd']:.4f} [{s['min']:.4f}, {s['max']:.4f}] "
                         f"(n {s['n']}, se of the mean {s['se']:.4f})")
    lines += ["", "| target | met | measured |", "|---|---|---|"]
    lines += [f"| {t} | {'yes' if ok else 'NO'} | {what} |" for t, ok, what in targets(rows)]
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, nargs="*", default=[1, 2, 3, 4, 5])
    ap.add_argument("--precisions", nargs="*", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    ap.add_argument("--full-seeds", type=int, nargs="*", default=[11, 12, 13],
                    help="seeds of whole-chain runs from pretrain (each stage at params.yaml's precision)")
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--work", type=Path, default=REPO / ".cache" / "robustness")
    ap.add_argument("--out", type=Path, default=REPO / "reports" / "robustness")
    ap.add_argument("--reuse", action="store_true",
                    help="read runs whose workspace already holds every stage's metrics instead of rerunning them")
    ap.add_argument("--add", action="store_true",
                    help="keep the runs already in --out's JSON that this call does not run (a table grown over "
                         "several sittings; each run's CPU, threads and load are in its row)")
    ap.add_argument("--threads", type=int, default=None,
                    help="threads per run (default: 2 with --jobs 1, else 1)")
    args = ap.parse_args()
    threads = args.threads or (2 if args.jobs == 1 else 1)
    plan = [(f"post-s{s}-{p}", s, p, False) for s in args.seeds for p in args.precisions]
    plan += [(f"full-s{s}", s, "demo", True) for s in args.full_seeds]
    t0 = time.time()
    with ThreadPoolExecutor(args.jobs) as pool:
        rows = list(pool.map(lambda job: one_run(args.work, *job, threads=threads, reuse=args.reuse), plan))
    load = os.getloadavg()
    current = recipe(yaml.safe_load((REPO / "params.yaml").read_text()))
    where = {"cpu": cpu_model(), "cores": os.cpu_count(), "jobs": args.jobs, "threads": threads,
             "load_at_end": round(load[0], 1), "recipe": current}
    rows = [{**where, **r} for r in rows]
    out_json = args.out.with_suffix(".json")
    if args.add and out_json.is_file():
        ran = {r["run"] for r in rows}
        earlier = [r for r in json.loads(out_json.read_text()) if r["run"] not in ran]
        kept = [r for r in earlier if r.get("recipe") == current]
        rows = sorted(kept + rows, key=lambda r: (r["full_chain"], r["seed"], r["precision"]))
        print(f"kept {len(kept)} earlier runs from {out_json}; dropped {len(earlier) - len(kept)} measured on "
              f"another recipe (params.yaml's {', '.join(RECIPE_SECTIONS)} sections changed since)", file=sys.stderr)
    cpus = sorted({r.get("cpu", "an unrecorded CPU") for r in rows})
    sitting = (f"this sitting: {len(plan)} run(s), {args.jobs} at a time with {threads} thread(s) each, load "
               f"average at the end {load[0]:.1f}, {(time.time() - t0) / 60:.0f} minutes" if plan else
               f"the table rebuilt from {out_json.name}; each run's threads, jobs and load are in its row")
    head = (f"# Demo robustness\n\n{len(rows)} runs on {', '.join(cpus)} ({os.cpu_count()} cores; {sitting}). "
            f"Post-training runs start from the repository's "
            f"models/anneal; full-chain runs from its data/tokens. Held-out items are the same in every run "
            f"(common.seed); only the training seeds and the precision change. Recipe {current} (a digest of "
            f"params.yaml's {', '.join(RECIPE_SECTIONS)} sections less seeds and precisions).")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    out_json.write_text(json.dumps(rows, indent=1, sort_keys=True) + "\n")
    md = markdown(rows, head)
    args.out.with_suffix(".md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
