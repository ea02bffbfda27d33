"""Does LESS pick the data a target task needs? sft from the demo's annealed model on a mixed pool,
trained on the LESS-selected share, on a random share of the same size, and on the whole pool,
scored on the target family's held-out problems, over a few training seeds.

The pool: `--per-family` demonstrations of every task family (the sft `tasks` source), plus two
distractor files written here deterministically: `wrong`, target-family prompts whose answers
are wrong (the answer of another problem of the same family), and `chat`, short chit-chat that
no task needs. LESS (sft.select.method less, target = --target) and random keep --fraction of the
pool; every run trains about the same number of optimizer steps (the whole pool gets
epochs x fraction), so the comparison is of the data, not of the compute.

    dvc repro anneal                                                     # models/anneal
    .venv/bin/python benchmarks/less_selection.py                        # 3 seeds, target sort
    .venv/bin/python benchmarks/less_selection.py --target count --distractors chat
    .venv/bin/python benchmarks/less_selection.py --seeds 1 --per-family 200   # quick

Prints a table (mean +- sd over seeds of the target family's held-out accuracy, the paired
difference LESS - random with its standard error over seeds) and writes it to --out's .md, every
run to --out (reports/less_selection.json). The default target is sort: of the demo's families
the one its sft model learns best (metrics/sft.json), so a better or worse share shows.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("LMBUILD_NO_PROGRESS", "1")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "lib"))

import numpy as np  # noqa: E402
import yaml  # noqa: E402

from lmbuild.lm.task_setup import difficulties  # noqa: E402
from lmbuild.params import validate_section  # noqa: E402
from lmbuild.tasks import generate  # noqa: E402

TOPICS = ["the weather", "a good book", "cooking rice", "a walk in the park", "the sea", "music", "trains",
          "a garden", "the moon", "coffee", "winter", "a small town"]
ADJ = ["calm", "bright", "quiet", "long", "warm", "old", "simple", "busy"]


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        return next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def distractors(tp: dict, target: str, n: int, root: Path) -> None:
    """root/wrong.jsonl: target-family prompts with another problem's answer; root/chat.jsonl:
    unrelated chit-chat. Both fixed (seed 0), so every run sees the same files."""
    exs = generate(target, "train", n, 0, difficulties(tp)[target])
    with open(root / "wrong.jsonl", "w") as f:
        for k, ex in enumerate(exs):
            other = next((o.answer for o in exs[k + 1:] + exs[:k] if o.answer != ex.answer), ex.answer + " x")
            f.write(json.dumps({"messages": [{"role": "user", "content": ex.prompt},
                                             {"role": "assistant", "content": f"Answer: {other}"}]}) + "\n")
    rng = np.random.default_rng(0)
    with open(root / "chat.jsonl", "w") as f:
        for k in range(n):
            t, a, b = TOPICS[rng.integers(len(TOPICS))], ADJ[rng.integers(len(ADJ))], ADJ[rng.integers(len(ADJ))]
            f.write(json.dumps({"messages": [{"role": "user", "content": f"Tell me about {t}."},
                                             {"role": "assistant", "content": f"{t.capitalize()} is {a} and {b}. "
                                                                              f"Many people like it ({k})."}]}) + "\n")


def one_run(base: dict, method: str, seed: int, args, work: Path) -> dict:
    from lmbuild.posttrain.sft import run
    sft = json.loads(json.dumps(base["sft"]))
    sources = [{"name": "tasks", "type": "tasks", "count": args.per_family}]
    sources += [{"name": name, "type": "file", "path": f"{name}.jsonl", "count": args.per_family, "val_fraction": 0.0}
                for name in args.distractors]
    sft.update(seed=seed, sources=sources,
               epochs=args.epochs * (args.fraction if method == "none" else 1.0),
               eval={"every_steps": 100000, "batch_size": 16}, checkpoint={"every_steps": 100000},
               select={**sft.get("select", {}), "method": method, "fraction": args.fraction,
                       "target_family": args.target, "projection_dim": args.projection_dim})
    params = {"common": base["common"], "tasks": validate_section("tasks", base["tasks"]),
              "sft": validate_section("sft", sft)}
    d = work / f"{method}-s{seed}"
    t0 = time.perf_counter()
    m = run(params, init_model=args.model, out_model=d / "model", data_out=d / "data", ckpt_dir=d / "ckpt",
            live_dir=d / "live", root=work)
    return {"method": method, "seed": seed, "minutes": (time.perf_counter() - t0) / 60,
            "acc": m[f"task_accuracy_{args.target}"], "acc_all": m["task_accuracy"], "steps": m.get("steps"),
            "examples": m["examples"], "select": m.get("select", {})}


def summary(vals: list[float]) -> str:
    v = np.asarray(vals, dtype=float)
    return f"{v.mean():.3f} +- {v.std(ddof=1) if len(v) > 1 else float('nan'):.3f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=REPO / "models" / "anneal",
                    help="the sft starting model (dvc repro anneal)")
    ap.add_argument("--params", type=Path, default=REPO / "params.yaml")
    ap.add_argument("--target", default="sort")
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--per-family", type=int, default=600,
                    help="task demonstrations per family, and rows per distractor")
    ap.add_argument("--fraction", type=float, default=0.05)
    ap.add_argument("--epochs", type=float, default=100.0,
                    help="epochs over the selected share (the whole pool: x fraction)")
    ap.add_argument("--projection-dim", type=int, default=1024)
    ap.add_argument("--methods", nargs="+", default=["less", "random", "none"])
    ap.add_argument("--distractors", nargs="*", default=["wrong", "chat"], choices=["wrong", "chat"])
    ap.add_argument("--out", type=Path, default=REPO / "reports" / "less_selection.json",
                    help="every run as JSON here, the table next to it (.md)")
    args = ap.parse_args()
    base = yaml.safe_load(args.params.read_text())
    t0 = time.perf_counter()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        distractors(validate_section("tasks", base["tasks"]), args.target, args.per_family, work)
        for seed in args.seeds:
            for method in args.methods:
                r = one_run(base, method, seed, args, work)
                rows.append(r)
                s = r["select"]
                print(f"{method:6s} seed {seed}: {args.target} acc {r['acc']:.3f} (all {r['acc_all']:.3f}), "
                      f"{r['examples']} examples, {r['steps']} steps, {r['minutes']:.1f} min"
                      + (f", selected {s.get('selected_by_source')} {s.get('selected_by_family')}, "
                         f"{s.get('gradients_per_s', 0):.0f} gradients/s" if s else ""), flush=True)
    share = f"{args.fraction:.0%}"
    names = {"less": f"LESS {share}", "random": f"random {share}", "none": "whole pool"}
    lines = [f"{len(args.seeds)} seed(s) on {cpu_model()}, load average at the end {os.getloadavg()[0]:.1f}, "
             f"{(time.perf_counter() - t0) / 60:.0f} minutes; target {args.target}, pool: {args.per_family} per "
             f"task family + distractors {', '.join(args.distractors) or 'none'}", "",
             f"| pool share | {args.target} held-out acc | all families acc | examples | steps | minutes |",
             "|---|---|---|---|---|---|"]
    for m in args.methods:
        rs = [r for r in rows if r["method"] == m]
        lines.append(f"| {names[m]} | {summary([r['acc'] for r in rs])} | {summary([r['acc_all'] for r in rs])} | "
                     f"{rs[0]['examples']} | {rs[0]['steps']} | {np.mean([r['minutes'] for r in rs]):.1f} |")
    if {"less", "random"} <= set(args.methods):
        d = [a["acc"] - b["acc"] for a, b in zip([r for r in rows if r["method"] == "less"],
                                                 [r for r in rows if r["method"] == "random"])]
        se = np.std(d, ddof=1) / np.sqrt(len(d)) if len(d) > 1 else float("nan")
        lines += ["", f"LESS - random ({args.target}, paired over seeds): {np.mean(d):+.3f} +- {se:.3f} (se)"]
    text = "\n".join(lines) + "\n"
    print("\n" + text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(rows, indent=1, sort_keys=True) + "\n")
        args.out.with_suffix(".md").write_text(text)

if __name__ == "__main__":
    main()
