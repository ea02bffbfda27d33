"""Muon against AdamW on the demo's pretraining: each optimizer at its best learning rate over a
small grid, several seeds and both precisions, scored by the held-out loss of the pretrain stage.

A comparison of optimizers at one shared learning rate measures the learning rate, not the
optimizer: each is tuned on its own grid (the AdamW arm varies `optim.lr`; the Muon arm varies
`optim.muon.lr`, the hidden matrices' rate, with the embeddings, head and norms on AdamW at the
demo's `optim.lr`), the best grid point is chosen by the mean over seeds, and the two best are
compared paired by seed (the same data order and initialisation; Jordan et al. 2024 and Liu et
al. 2025, arXiv:2502.16982, compare Muon with AdamW the same way, each at its tuned rate). A best
rate at the edge of its grid is flagged: the grid should then be widened.

Every run is the real pretrain stage in a scratch workspace (lmbuild.workspace) over the
repository's data/tokens and models/tokenizer, with `pretrain.max_tokens` optionally cut.

    python benchmarks/optimizer_sweep.py [--seeds 1 2 3] [--precisions fp32 bf16] [--jobs 1]
        [--adamw-lrs 0.0025 0.005 0.01] [--muon-lrs 0.01 0.02 0.04] [--max-tokens N] [--reuse]

Writes reports/optimizer_sweep.json (every run) and reports/optimizer_sweep.md (the table), with
the CPU, threads and load.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))

from lmbuild import stats  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from demo_robustness import cpu_model  # noqa: E402
from seed_stats import common_args, paired_by_seed, stage_run, write_report  # noqa: E402

LR_KEY = {"adamw": "pretrain.optim.lr", "muon": "pretrain.optim.muon.lr"}


def one_run(work: Path, opt: str, lr: float, seed: int, precision: str, max_tokens: int | None, threads: int,
            reuse: bool = False) -> dict:
    name = f"{opt}-lr{lr:g}-s{seed}-{precision}"
    over = {"pretrain.optim.name": opt, LR_KEY[opt]: lr, "pretrain.seed": seed, "pretrain.precision": precision}
    if max_tokens:
        over["pretrain.max_tokens"] = max_tokens
    m, seconds, reused = stage_run(work / name, "pretrain", over, ["data/tokens", "models/tokenizer"], threads, reuse)
    print(f"{name}: val loss {m['val_loss']:.4f} ({seconds:.0f} s)", file=sys.stderr, flush=True)
    return {"run": name, "optimizer": opt, "lr": lr, "seed": seed, "precision": precision,
            "val_loss": m["val_loss"], "seconds": seconds, "tokens_per_s": m.get("tokens_per_s"), "reused": reused}


def summarise(rows: list[dict], grids: dict[str, list[float]]) -> list[str]:
    """The table: mean +- se per grid point, each optimizer's best rate, and the paired
    difference Muon - AdamW at the best rates, per precision."""
    out = []
    for prec in sorted({r["precision"] for r in rows}):
        out += [f"### {prec}", "", "| optimizer | lr | val loss mean +- se (n) |", "|---|---|---|"]
        best = {}
        for opt, grid in grids.items():
            means = {}
            for lr in grid:
                vals = [r["val_loss"] for r in rows if (r["optimizer"], r["lr"], r["precision"]) == (opt, lr, prec)]
                if not vals:
                    continue
                s = stats.summarize(vals)
                means[lr] = s["mean"]
                out.append(f"| {opt} | {lr:g} | {s['mean']:.4f} +- {s['se']:.4f} ({s['n']}) |")
            if means:
                best[opt] = min(means, key=means.get)
        out.append("")
        for opt, lr in best.items():
            edge = " (at the edge of its grid: widen it)" if lr in (min(grids[opt]), max(grids[opt])) else ""
            out.append(f"- best {opt} lr: {lr:g}{edge}")
        if len(best) == 2:
            by_seed = {opt: {r["seed"]: r["val_loss"] for r in rows
                             if (r["optimizer"], r["lr"], r["precision"]) == (opt, best[opt], prec)} for opt in best}
            d = paired_by_seed(by_seed["adamw"], by_seed["muon"])
            if d is not None:
                verdict = ("within noise" if not d["beyond"] else
                           "Muon lower beyond noise" if d["mean"] < 0 else "AdamW lower beyond noise")
                out.append(f"- Muon - AdamW at their best rates, paired by seed: {d['mean']:+.4f} +- {d['se']:.4f} "
                           f"(n {d['n']}; 95% t interval +- {d['half']:.4f}: {verdict})")
        out.append("")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    common_args(ap, "optimizer_sweep")
    ap.add_argument("--adamw-lrs", type=float, nargs="*", default=[0.0025, 0.005, 0.01])
    ap.add_argument("--muon-lrs", type=float, nargs="*", default=[0.01, 0.02, 0.04])
    ap.add_argument("--max-tokens", type=int, default=None, help="cut pretrain.max_tokens (default: the demo's)")
    args = ap.parse_args()
    threads = args.threads or (2 if args.jobs == 1 else 1)
    grids = {"adamw": args.adamw_lrs, "muon": args.muon_lrs}
    plan = [(opt, lr, s, p) for p in args.precisions for s in args.seeds for opt, grid in grids.items() for lr in grid]
    t0 = time.time()
    with ThreadPoolExecutor(args.jobs) as pool:
        rows = list(pool.map(lambda job: one_run(args.work, *job, args.max_tokens, threads, args.reuse), plan))
    load = os.getloadavg()[0]
    reused = sum(r["reused"] for r in rows)
    head = (f"# Muon against AdamW on the demo's pretraining\n\n{len(rows)} pretrain runs on {cpu_model()} "
            f"({os.cpu_count()} cores; {args.jobs} at a time with {threads} thread(s) each, load average at the end "
            f"{load:.1f}; {len(rows) - reused} run in {(time.time() - t0) / 60:.0f} minutes"
            + (f", {reused} kept from earlier invocations in the same workspace (--reuse)" if reused else "")
            + f"); max_tokens {args.max_tokens or 'as params.yaml'}; "
            f"held-out loss of the pretrain stage (nats per token), mean +- standard error over seeds.\n")
    md = "\n".join([head, *summarise(rows, grids)])
    write_report(args.out, md, {"cpu": cpu_model(), "jobs": args.jobs, "threads": threads, "load_at_end": round(load, 1),
                                "max_tokens": args.max_tokens, "grids": grids, "runs": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
