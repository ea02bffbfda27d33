"""Fill-in-the-middle on the demo's pretraining: what it costs on ordinary left-to-right text and
what it buys for infilling, over seeds and both precisions.

One scratch workspace (lmbuild.workspace) reruns the tokenize stage with `tokenize.fim_tokens:
true` (the same token ids as the repository's, plus the three sentinels); from it, the pretrain
stage runs at each `pretrain.fim.rate` (0 is the plain model with the same tokenizer) for every
seed and precision. Each run's metrics give the held-out loss (all domains, and code alone) and
the infilling eval of lmbuild/eval/infill.py (single held-out lines of code: bits per byte of
the line with prefix and suffix, with the prefix only, the difference, and greedy exact match).
Every rate above 0 is compared with rate 0 paired by seed (same initialisation and data order).

    python benchmarks/fim_effect.py [--seeds 1 2 3] [--precisions fp32 bf16] [--rates 0 0.5]
        [--level char] [--jobs 1] [--threads N] [--reuse]

Writes reports/fim_effect.json (every run) and reports/fim_effect.md (the table), with the CPU,
threads and load.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))

from lmbuild.workspace import make, run_stage  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from demo_robustness import cpu_model  # noqa: E402
from seed_stats import arms_table, common_args, stage_run, write_report  # noqa: E402

# (metrics key, column title, lower is better)
COLUMNS = [("val_loss", "held-out loss", True), ("val_loss_domain.code", "held-out loss, code", True),
           ("infill.l2r_bpb", "line bpb, prefix only", True), ("infill.fim_bpb", "line bpb, prefix + suffix", True),
           ("infill.suffix_gain_bpb", "suffix gain (bpb)", False), ("infill.exact_match", "line exact match", False)]


def base_workspace(work: Path) -> Path:
    """The tokenizer with sentinels and the token shards, made once by the real tokenize stage."""
    root = work / "tokenized"
    if (root / "metrics/tokenize.json").is_file():
        return root
    make(root, {"tokenize.fim_tokens": True}, ["data/mix", "data/decontam"])
    seconds = run_stage(root, "tokenize")
    print(f"tokenize with FIM sentinels: {seconds:.0f} s", file=sys.stderr, flush=True)
    return root


def one_run(work: Path, base: Path, rate: float, level: str, seed: int, precision: str, threads: int,
            reuse: bool = False) -> dict:
    name = f"fim{rate:g}-s{seed}-{precision}"
    over = {"pretrain.fim.rate": rate, "pretrain.fim.level": level, "pretrain.seed": seed,
            "pretrain.precision": precision}
    m, seconds, _ = stage_run(work / name, "pretrain", over, ["data/tokens", "models/tokenizer"], threads, reuse, base)
    print(f"{name}: val loss {m['val_loss']:.4f}, line bpb {m['infill.l2r_bpb']:.3f} -> {m['infill.fim_bpb']:.3f} "
          f"with the suffix ({seconds:.0f} s)", file=sys.stderr, flush=True)
    return {"run": name, "rate": rate, "level": level, "seed": seed, "precision": precision, "seconds": seconds,
            **{k: m[k] for k, _, _ in COLUMNS}, "infill.tasks": m["infill.tasks"]}


def summarise(rows: list[dict]) -> list[str]:
    """Per precision: each rate's mean +- se over seeds, then each rate against 0 paired by seed."""
    return arms_table(rows, "rate", sorted({r["rate"] for r in rows}), 0.0, COLUMNS, "fim rate")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    common_args(ap, "fim_effect")
    ap.add_argument("--rates", type=float, nargs="*", default=[0.0, 0.5])
    ap.add_argument("--level", choices=["char", "token"], default="char")
    args = ap.parse_args()
    if 0.0 not in args.rates:
        ap.error("--rates must include 0 (the plain model every rate is compared with)")
    threads = args.threads or (2 if args.jobs == 1 else 1)
    t0 = time.time()
    base = base_workspace(args.work)
    plan = [(rate, s, p) for p in args.precisions for s in args.seeds for rate in args.rates]
    with ThreadPoolExecutor(args.jobs) as pool:
        rows = list(pool.map(lambda job: one_run(args.work, base, job[0], args.level, job[1], job[2], threads, args.reuse), plan))
    load = os.getloadavg()[0]
    head = (f"# Fill-in-the-middle on the demo's pretraining\n\n{len(rows)} pretrain runs on {cpu_model()} "
            f"({os.cpu_count()} cores; {args.jobs} at a time with {threads} thread(s) each, load average at the end "
            f"{load:.1f}, {(time.time() - t0) / 60:.0f} minutes); {args.level}-level cuts, SPM share as params.yaml; "
            f"{rows[0]['infill.tasks']} held-out lines of code per run. Loss in nats per token, line scores in bits "
            f"per byte; mean +- standard error over seeds (n).\n")
    md = "\n".join([head, *summarise(rows)])
    write_report(args.out, md, {"cpu": cpu_model(), "jobs": args.jobs, "threads": threads, "load_at_end": round(load, 1),
                                "level": args.level, "runs": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
