"""Long-context extension on the demo: anneal at 4x the pretraining length against the demo's
anneal, over seeds and both precisions, scored by loss by position, passkey retrieval and the
short-context loss (lmbuild/eval/long_context.py).

Every run is the real anneal stage in a scratch workspace (lmbuild.workspace) from the
repository's models/pretrain (256-token blocks, 512 positions), with the same token budget and
the long-context eval on. The arms:

- short: the demo's anneal (seq_len 256), the baseline;
- theta: seq_len 1024 with the RoPE base raised to --theta (adjusted base frequency), document
  masking, and --long-share of rows from documents of at least 1024 tokens (ProLong's 0.6);
- yarn: the same with YaRN at factor 2 (512 -> 1024 positions) instead of a new base.

Rows per step shrink by 4x at 4x the length, so every arm reads the same tokens per step and in
all. Each arm is compared with `short` paired by seed (same data order seed and initial model).

    python benchmarks/long_context_effect.py [--seeds 1 2 3] [--precisions fp32 bf16] [--jobs 1] [--reuse]

Writes reports/long_context_effect.{json,md}, with the CPU, threads and load.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))



sys.path.insert(0, str(Path(__file__).resolve().parent))
from demo_robustness import cpu_model  # noqa: E402
from seed_stats import arms_table, common_args, stage_run, write_report  # noqa: E402

LONG = 1024
LENGTHS = [256, 512, LONG]
EVAL = {"anneal.long_eval.lengths": LENGTHS, "anneal.long_eval.buckets": 4, "anneal.long_eval.documents": 24,
        "anneal.long_eval.short_length": 256, "anneal.long_eval.passkey_samples": 10}


def arms(theta: float, share: float) -> dict[str, dict]:
    long = {"anneal.seq_len": LONG, "anneal.batch_size": 2, "anneal.micro_batch_size": 2, "anneal.doc_masking": True,
            "anneal.long_context.long_share": share, "anneal.long_context.long_min_tokens": LONG}
    return {"short": {},
            "theta": {**long, "anneal.long_context.rope_theta": theta, "anneal.long_context.max_length": LONG},
            "yarn": {**long, "anneal.long_context.rope_scaling": {"type": "yarn", "factor": 2}}}


def columns() -> list[tuple[str, str, bool]]:
    edges = [0, 256, 512, 768, 1024]
    return ([("long_eval.short_loss", "loss at 256", True)]
            + [(f"long_eval.loss_{a}_{b}", f"loss, positions {a}-{b}", True) for a, b in zip(edges, edges[1:])]
            + [(f"long_eval.passkey_{n}_d50", f"passkey at {n}", False) for n in LENGTHS]
            + [("long_eval.passkey", "passkey, all", False)])


def one_run(work: Path, arm: str, over: dict, seed: int, precision: str, threads: int, reuse: bool = False) -> dict:
    name = f"{arm}-s{seed}-{precision}"
    over = {**over, **EVAL, "anneal.seed": seed, "anneal.precision": precision}
    m, seconds, _ = stage_run(work / name, "anneal", over, ["data/tokens", "models/tokenizer", "models/pretrain"],
                              threads, reuse)
    print(f"{name}: loss at 256 {m['long_eval.short_loss']:.4f}, last bucket {m['long_eval.loss_768_1024']:.4f}, "
          f"passkey {m['long_eval.passkey']:.2f} ({seconds:.0f} s)", file=sys.stderr, flush=True)
    return {"run": name, "arm": arm, "seed": seed, "precision": precision, "seconds": seconds,
            **{k: m.get(k) for k, _, _ in columns()}, "documents": m.get("long_eval.documents")}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    common_args(ap, "long_context_effect")
    ap.add_argument("--theta", type=float, default=40000.0, help="RoPE base of the theta arm (the demo's is 10000)")
    ap.add_argument("--long-share", type=float, default=0.6)
    args = ap.parse_args()
    threads = args.threads or (2 if args.jobs == 1 else 1)
    plan = [(arm, over, s, p) for p in args.precisions for s in args.seeds
            for arm, over in arms(args.theta, args.long_share).items()]
    t0 = time.time()
    with ThreadPoolExecutor(args.jobs) as pool:
        rows = list(pool.map(lambda job: one_run(args.work, *job, threads, args.reuse), plan))
    load = os.getloadavg()[0]
    head = (f"# Long-context extension in anneal\n\n{len(rows)} anneal runs on {cpu_model()} ({os.cpu_count()} cores; "
            f"{args.jobs} at a time with {threads} thread(s) each, load average at the end {load:.1f}, "
            f"{(time.time() - t0) / 60:.0f} minutes) from the demo's models/pretrain. Arms: `short` the demo's "
            f"anneal; `theta` seq_len {LONG}, RoPE base {args.theta:g}, document masking, {args.long_share:g} of rows "
            f"from documents of {LONG}+ tokens; `yarn` the same with YaRN x2 instead of the base. Loss in nats per "
            f"token on {rows[0]['documents']} held-out documents of {LONG}+ tokens (by position) and on 256-token "
            f"val blocks; passkey accuracy at depth 0.5 (10 keys per length and depth); mean +- standard error over "
            f"seeds (n).\n")
    md = "\n".join([head, *arms_table(rows, "arm", list(arms(1, 1)), "short", columns(), "arm")])
    write_report(args.out, md, {"cpu": cpu_model(), "jobs": args.jobs, "threads": threads, "load_at_end": round(load, 1),
                                "theta": args.theta, "long_share": args.long_share, "runs": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
