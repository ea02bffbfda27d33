"""Seed studies: rerun a range of training stages over N seeds as queued DVC experiments and
summarise every metric over them (mean, sd, standard error of the mean, min, max).

    python -m lmbuild.seeds --from sft --seeds 1 2 3 4 5            # sft, dpo_pairs, dpo, rlvr (+ evals)
    python -m lmbuild.seeds --from pretrain --seeds 1 2 3 -S sft.precision=fp32
    python -m lmbuild.seeds --from sft --seeds 1 2 3 --collect       # summarise runs made before

Each seed becomes one experiment, `dvc exp run --queue -n <name>-s<seed> -S <section>.seed=<seed>`
for every training section from `--from` on (pretrain, anneal, sft, dpo.pairs, dpo, rlvr), so the
stages upstream of the range and the held-out eval items (common.seed) are unchanged and come
from the DVC cache. `dvc exp run --run-all` then runs the queue (one experiment at a time: they
would compete for the same cores). The summary goes to studies/seeds/<name>.json (every metric)
and studies/seeds/<name>.md (the main ones), and `dvc exp show` lists the runs as usual.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import math
import subprocess
import sys
from pathlib import Path

from . import stats
from .compare import CompareError, read_metrics, resolve
from .model_stages import MODEL_STAGES

# the params sections with a training seed, in pipeline order (dpo_pairs samples with dpo.pairs.seed)
TRAINING_SECTIONS = tuple(s for m in MODEL_STAGES for s in (("dpo.pairs", "dpo") if m == "dpo" else (m,)))
OUT = Path("studies/seeds")
# The metrics the markdown summary shows (the JSON has every one).
MAIN = ("pretrain.val_loss", "anneal.val_loss", "sft.task_accuracy", "dpo.task_accuracy", "dpo.val.reward_accuracy",
        "rlvr.task_accuracy_gain", "rlvr.sampled_reward_gain", "eval.*.task_accuracy", "eval.*.bpb.all",
        "eval.*.mc_acc_norm_mean", "eval.*.preference.preferences.accuracy")
# Metrics that measure the machine, not the model: left out of the summary.
MACHINE = ("*tokens_per_s", "*mfu", "*wall_time_s", "*peak_tflops", "*numerics.*")


def sections_from(stage: str) -> list[str]:
    start = "dpo.pairs" if stage == "dpo_pairs" else stage
    if start not in TRAINING_SECTIONS:
        raise SystemExit(f"seeds: --from must be one of pretrain, anneal, sft, dpo_pairs, dpo, rlvr (got {stage!r})")
    return list(TRAINING_SECTIONS[TRAINING_SECTIONS.index(start):])


def exp_name(name: str, seed: int) -> str:
    return f"{name}-s{seed}"


def queue_commands(name: str, sections: list[str], seeds: list[int], sets: list[str],
                   copy_paths: list[str]) -> list[list[str]]:
    out = []
    for seed in seeds:
        cmd = ["dvc", "exp", "run", "--queue", "-n", exp_name(name, seed)]
        for sec in sections:
            cmd += ["-S", f"{sec}.seed={seed}"]
        for s in sets:
            cmd += ["-S", s]
        for p in copy_paths:
            cmd += ["-C", p]
        out.append(cmd)
    return out


def summarize_runs(runs: dict[int, dict[str, float]]) -> dict[str, dict[str, float]]:
    """{metric: summary over the seeds} for every metric that is not a machine measurement."""
    keys = sorted(set().union(*runs.values())) if runs else []
    out = {}
    for key in keys:
        if key.endswith("_stderr") or any(fnmatch.fnmatch(key, pat) for pat in MACHINE):
            continue
        out[key] = {**stats.summarize([runs[s].get(key, float("nan")) for s in sorted(runs)]),
                    "values": [runs[s].get(key) for s in sorted(runs)]}
    return out


def to_markdown(name: str, summary: dict, seeds: list[int], note: str) -> str:
    lines = [f"# Seed study `{name}`", "", note, "", f"Seeds: {', '.join(map(str, seeds))}.", "",
             "| metric | mean | sd | se | min | max |", "|---|---|---|---|---|---|"]
    for key, s in summary.items():
        if any(fnmatch.fnmatch(key, pat) for pat in MAIN):
            lines.append(f"| {key} | {s['mean']:.4f} | {s['sd']:.4f} | {s['se']:.4f} | {s['min']:.4f} | {s['max']:.4f} |"
                         if s["n"] else f"| {key} | | | | | |")
    return "\n".join(lines) + "\n"


def collect(root: Path, name: str, seeds: list[int]) -> dict[int, dict[str, float]]:
    runs = {}
    for seed in seeds:
        try:
            runs[seed] = read_metrics(root, resolve(root, exp_name(name, seed)))
        except CompareError as exc:
            print(f"seeds: {exc}", file=sys.stderr)
    return runs


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lmbuild.seeds", description=__doc__.split("\n\n")[0])
    ap.add_argument("--from", dest="start", required=True, help="first stage whose seed varies")
    ap.add_argument("--seeds", type=int, nargs="+", required=True)
    ap.add_argument("-S", "--set-param", dest="sets", action="append", default=[],
                    help="another param for every run, as dvc exp run -S (e.g. sft.precision=fp32)")
    ap.add_argument("--name", help="study name (default seeds-<from>)")
    ap.add_argument("--collect", action="store_true", help="only summarise experiments run before")
    ap.add_argument("--queue-only", action="store_true", help="queue the runs; start them yourself "
                    "(dvc exp run --run-all, or dvc queue start -j N on a machine with more cores)")
    args = ap.parse_args(argv)
    sections = sections_from(args.start)
    name = args.name or f"seeds-{args.start.replace('_', '-')}"
    root = Path(".")
    if not args.collect:
        copy = [p for p in ("assets/lid.176.ftz",) if (root / p).is_file()]  # git-ignored, needed by filter
        for cmd in queue_commands(name, sections, args.seeds, args.sets, copy):
            print("+ " + " ".join(cmd), file=sys.stderr)
            subprocess.run(cmd, check=True)
        if args.queue_only:
            print("seeds: queued; run `dvc exp run --run-all`, then this command again with --collect", file=sys.stderr)
            return 0
        subprocess.run(["dvc", "exp", "run", "--run-all", "-j", "1"], check=True)
    runs = collect(root, name, args.seeds)
    if not runs:
        print(f"seeds: no experiments named {exp_name(name, args.seeds[0])} ...; run without --collect first",
              file=sys.stderr)
        return 2
    summary = summarize_runs(runs)
    note = (f"Seeds of {', '.join(s + '.seed' for s in sections)} varied"
            + (f", with {', '.join(args.sets)}" if args.sets else "") + f"; {len(runs)} of {len(args.seeds)} runs found.")
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"{name}.json").write_text(json.dumps({"note": note, "seeds": sorted(runs), "metrics": summary},
                                                 indent=1, sort_keys=True, allow_nan=True) + "\n")
    md = to_markdown(name, summary, sorted(runs), note)
    (OUT / f"{name}.md").write_text(md)
    sys.stdout.write(md)
    bad = [k for k, s in summary.items() if s["n"] and not math.isfinite(s["mean"])]
    if bad:
        print(f"seeds: non-finite metrics: {', '.join(bad[:5])}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
