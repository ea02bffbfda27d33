"""Do the demo's dpo, reward-model and rlvr figures move with their main knobs? Each stage rerun
over a small grid (learning rate, the RPO weight, epochs, group size and rounds) from the
repository's own start models and pairs (models/sft and data/dpo for dpo and the reward model,
models/dpo for rlvr), each in a scratch workspace (lmbuild.workspace), beside the reference
model's own likelihood ordering of the held-out pairs: the share of pairs whose chosen answer
models/sft already finds more likely than the rejected one, which a policy that only sharpens
its distribution would turn into reward accuracy.

    make repro                                          # models/sft, data/dpo, models/dpo
    .venv/bin/python benchmarks/posttrain_sweep.py --jobs 2 [--stages dpo reward_model rlvr]
        [--seeds 2 3] [--rlvr-seeds 2] [--reuse]

Every row runs with the demo's own seeds (its `demo` row is the pipeline's own metrics file: no
rerun) and once more per --seeds value (--rlvr-seeds for rlvr; the `demo` row too).
Writes reports/posttrain_sweep.{json,md}, with the CPU, threads and load.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))

from lmbuild import stats  # noqa: E402
from lmbuild.workspace import REPO, read_metrics  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from demo_robustness import TARGET as TARGET_VALUE  # noqa: E402  (the demo's targets, checked there over seeds)
from lmbuild.lm.reward import accuracy_by_family  # noqa: E402
from seed_stats import machine_line, run_plan, stage_run, write_report  # noqa: E402

# (label, overrides) per stage; the first is the demo's own recipe
GRID = {
    "dpo": [("demo", {}), ("lr 1e-4", {"dpo.optim.lr": 1e-4}), ("lr 3e-4", {"dpo.optim.lr": 3e-4}),
            ("rpo_alpha 1", {"dpo.rpo_alpha": 1.0}),
            ("lr 1e-4, rpo_alpha 1", {"dpo.optim.lr": 1e-4, "dpo.rpo_alpha": 1.0}),
            ("lr 3e-4, rpo_alpha 1", {"dpo.optim.lr": 3e-4, "dpo.rpo_alpha": 1.0})],
    "reward_model": [("demo", {}), ("1 epoch", {"reward_model.epochs": 1}),
                     ("lr 3e-4", {"reward_model.optim.lr": 3e-4}),
                     ("lr 1e-4, 8 epochs", {"reward_model.optim.lr": 1e-4, "reward_model.epochs": 8})],
    "rlvr": [("demo", {}), ("lr 5e-4", {"rlvr.optim.lr": 5e-4}),
             ("8 samples x 50 rounds", {"rlvr.group_size": 8, "rlvr.steps": 50, "rlvr.micro_batch_size": 32,
                                        "rlvr.eval.every_steps": 50}),
             ("100 rounds", {"rlvr.steps": 100, "rlvr.eval.every_steps": 100})],
}
LINKS = {"dpo": ["models/sft", "data/dpo"], "reward_model": ["models/sft", "data/dpo"], "rlvr": ["models/dpo"]}
SEED_KEY = {"dpo": "dpo.seed", "reward_model": "reward_model.seed", "rlvr": "rlvr.seed"}
# (metrics key, title); each has a `<key>_stderr` beside it
COLUMNS = {
    "dpo": [("val.reward_accuracy", "held-out reward accuracy"), ("task_accuracy_gain", "task accuracy gain")],
    "reward_model": [("accuracy", "held-out pair accuracy"), ("train.accuracy", "last batch's pair accuracy")],
    "rlvr": [("sampled_accuracy_gain", "sampled pass@1 gain"), ("task_accuracy_gain", "greedy accuracy gain")],
}
PER_FAMILY = {"dpo": "val.reward_accuracy", "reward_model": "accuracy"}
TARGETS = {s: f"{COLUMNS[s][0][1]} >= {v}" for s, v in TARGET_VALUE.items()}


def slug(label: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in label).strip("-")


def one_run(job: tuple, threads: int, work: Path, reuse: bool) -> dict:
    stage, label, over, seed = job
    name = f"{stage}-{slug(label)}" + (f"-s{seed}" if seed is not None else "")
    if label == "demo" and seed is None:  # the pipeline's own run
        m, kept = read_metrics(REPO, stage), True
        if not m:
            raise SystemExit(f"metrics/{stage}.json: missing; run `make repro` first")
    else:
        over = {**over, **({SEED_KEY[stage]: seed} if seed is not None else {})}
        m, _, kept = stage_run(work / name, stage, over, LINKS[stage], threads, reuse)
    print(f"{name}: " + ", ".join(f"{k} {m.get(k, float('nan')):.4f}" for k, _ in COLUMNS[stage]),
          file=sys.stderr, flush=True)
    keys = [k for k, _ in COLUMNS[stage]]
    fam = PER_FAMILY.get(stage)
    if fam:
        keys += [k for k in m if k.startswith(fam + "_") and not k.endswith("_stderr")]
    # the stage's own training time (its metrics' wall_time_s), the same for a kept run as for a new one
    return {"run": name, "stage": stage, "label": label, "seed": seed, "seconds": m.get("wall_time_s"), "kept": kept,
            **{k: m.get(k) for k in keys}, **{f"{k}_stderr": m.get(f"{k}_stderr") for k in keys}}


def reference_ordering(pairs: Path) -> dict:
    """Share of pairs (per split, per family) whose chosen answer has the higher summed log-prob
    under the reference model (ref_chosen > ref_rejected), with standard errors."""
    rows = [json.loads(line) for line in pairs.read_text().splitlines()]
    out = {}
    for split in ("train", "val"):
        rs = [r for r in rows if r["split"] == split]
        right = [float(r["ref_chosen"] > r["ref_rejected"]) for r in rs]
        per_family = accuracy_by_family("ref", right, rs)   # ref_<family>: the same grouping as the stages'
        out[split] = {**stats.with_stderr("all", right), "n": len(rs),
                      **{k.removeprefix("ref_"): v for k, v in per_family.items()}}
    return out


def cell(row: dict, key: str) -> str:
    v, se = row.get(key), row.get(f"{key}_stderr")
    if v is None:
        return "-"
    text = f"{v:+.3f}" if "gain" in key else f"{v:.3f}"
    return f"{text} ± {se:.3f}" if se is not None and math.isfinite(se) else text


def table(stage: str, rows: list[dict]) -> list[str]:
    fam = PER_FAMILY.get(stage)
    fams = sorted({k[len(fam) + 1:] for r in rows for k in r if fam and k.startswith(fam + "_")
                   and not k.endswith("_stderr")})
    head = ["run", "seed", *[t for _, t in COLUMNS[stage]], *fams, "training seconds"]
    out = [f"### {stage} (target: {TARGETS[stage]})", "", "| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for r in rows:
        cells = [r["label"], "demo's" if r["seed"] is None else str(r["seed"]),
                 *[cell(r, k) for k, _ in COLUMNS[stage]], *[cell(r, f"{fam}_{f}") for f in fams],
                 f"{r['seconds']:.0f}" if r.get("seconds") else "-"]
        out.append("| " + " | ".join(cells) + " |")
    labels = list(dict.fromkeys(r["label"] for r in rows))
    if any(sum(r["label"] == lab for r in rows) > 1 for lab in labels):  # each knob setting over its seeds
        out += ["", "Over seeds (mean ± standard error of the mean, n runs):", ""]
        for lab in labels:
            runs = [r for r in rows if r["label"] == lab]
            if len(runs) < 2:
                continue
            parts = []
            for key, title in COLUMNS[stage]:
                s = stats.summarize([r[key] for r in runs if r.get(key) is not None])
                parts.append(f"{title} {s['mean']:+.3f} ± {s['se']:.3f}" if "gain" in key
                             else f"{title} {s['mean']:.3f} ± {s['se']:.3f}")
            out.append(f"- {lab} (n {len(runs)}): " + "; ".join(parts))
    key, title = COLUMNS[stage][0]
    means = {lab: stats.mean([r[key] for r in rows if r["label"] == lab and r.get(key) is not None])
             for lab in labels}
    best = max(means, key=means.get)
    met = [lab for lab, v in means.items() if v >= TARGET_VALUE[stage]]
    out += ["", f"Highest mean {title}: {best} ({means[best]:.3f}); the target is met by "
            + (", ".join(met) if met else "no setting of this grid") + "."]
    return out + [""]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--stages", nargs="*", default=list(GRID), choices=list(GRID))
    ap.add_argument("--seeds", type=int, nargs="*", default=[],
                    help="training seeds of dpo and the reward model to run beside the demo's own")
    ap.add_argument("--rlvr-seeds", type=int, nargs="*", default=[],
                    help="the same for rlvr, whose runs take about ten times longer")
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--threads", type=int, default=None, help="threads per run (default: 2 with --jobs 1, else 1)")
    ap.add_argument("--reuse", action="store_true", help="keep runs whose workspace already holds their metrics")
    ap.add_argument("--work", type=Path, default=REPO / ".cache" / "posttrain_sweep")
    ap.add_argument("--out", type=Path, default=REPO / "reports" / "posttrain_sweep")
    args = ap.parse_args()
    seeds = {s: [None, *(args.rlvr_seeds if s == "rlvr" else args.seeds)] for s in args.stages}
    # the longest stage first, so that two jobs finish together
    plan = [(s, label, over, seed) for s in sorted(args.stages, key=lambda s: s != "rlvr")
            for label, over in GRID[s] for seed in seeds[s]]
    rows, where = run_plan(args, plan, lambda job, threads: one_run(job, threads, args.work, args.reuse))
    ordering = reference_ordering(REPO / "data/dpo/pairs.jsonl")
    val = ordering["val"]
    fams = [k for k in val if k not in ("all", "n") and not k.endswith("_stderr")]
    md = ["# Post-training knobs on the demo", "",
          machine_line(sum(not r["kept"] for r in rows), "new post-training runs", where)
          + f"; {sum(r['kept'] for r in rows)} more kept from earlier sittings (--reuse) or read from the pipeline's "
          "metrics, whose training seconds were measured under their own load. Start models and pairs: the repository's models/sft, data/dpo and models/dpo; fp32 as the demo. "
          "Rows without a seed use the demo's own seeds, and their `demo` row is the pipeline's own metrics file.", "",
          "Reference ordering: of the held-out pairs, models/sft itself gives the chosen answer the higher "
          f"log-likelihood in {val['all']:.3f} ± {val['all_stderr']:.3f} ({val['n']} pairs; "
          + ", ".join(f"{f} {val[f]:.2f}" for f in fams) + "). A policy that only sharpened models/sft "
          "would score about that as dpo's reward accuracy; the reward model has to learn the ordering from its "
          "last token.", ""]
    for s in args.stages:
        md += table(s, [r for r in rows if r["stage"] == s])
    write_report(args.out, "\n".join(md).rstrip() + "\n", {"where": where, "reference_ordering": ordering, "runs": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
