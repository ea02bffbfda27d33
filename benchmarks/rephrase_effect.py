"""Rephrased synthetic data in the pretrain mix against the mix without it, over seeds and both
precisions, scored by the pretrain stage's held-out loss on the same held-out documents.

The two arms are the data ablation study's recipes (studies/dvc.yaml): `default` trains on the
main pipeline's tokens, `with_rephrased` on the tokens of the recipe that filters, deduplicates
and mixes in the rephrase stage's rewrites at a tenth of the pretrain tokens (taken from
encyclopedic). The demo's own pretrain recipe (the study's proxies are smaller), the same token
budget and held-out split; each pair is compared paired by seed.

    dvc repro studies/dvc.yaml:ablation_data@with_rephrased    # the recipe's tokens first
    python benchmarks/rephrase_effect.py [--seeds 1 2 3] [--precisions fp32 bf16] [--jobs 1] [--reuse]

Writes reports/rephrase_effect.{json,md}, with the CPU, threads and load.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))

from lmbuild.workspace import REPO  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from seed_stats import arms_table, common_args, machine_line, run_plan, stage_run, write_report  # noqa: E402

RECIPE_TOKENS = "studies/ablation/data/with_rephrased/tokens"
ARMS = {"default": "data/tokens", "with_rephrased": RECIPE_TOKENS}
COLUMNS = [("val_loss", "held-out loss", True), ("val_loss_domain.encyclopedic", "held-out loss, encyclopedic", True),
           ("val_loss_domain.news", "held-out loss, news", True), ("val_loss_domain.code", "held-out loss, code", True)]


def one_run(work: Path, arm: str, seed: int, precision: str, threads: int, reuse: bool) -> dict:
    name = f"{arm}-s{seed}-{precision}"
    over = {"pretrain.seed": seed, "pretrain.precision": precision}
    m, seconds, _ = stage_run(work / name, "pretrain", over, [("data/tokens", ARMS[arm]), "models/tokenizer"],
                              threads, reuse)
    print(f"{name}: val loss {m['val_loss']:.4f} ({seconds:.0f} s)", file=sys.stderr, flush=True)
    return {"run": name, "arm": arm, "seed": seed, "precision": precision, "seconds": seconds,
            **{k: m.get(k) for k, _, _ in COLUMNS}}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    common_args(ap, "rephrase_effect")
    args = ap.parse_args()
    if not (REPO / RECIPE_TOKENS).is_dir():
        raise SystemExit(f"{RECIPE_TOKENS}: missing; build it first: dvc repro studies/dvc.yaml:ablation_data@with_rephrased")
    plan = [(arm, s, p) for p in args.precisions for s in args.seeds for arm in ARMS]
    rows, where = run_plan(args, plan, lambda job, threads: one_run(args.work, *job, threads, args.reuse))
    head = (f"# Rephrased synthetic data in the pretrain mix\n\n{machine_line(len(rows), 'pretrain runs', where)}. "
            f"default: the main pipeline's tokens; with_rephrased: the data ablation recipe that mixes the rephrase "
            f"stage's rewrites in at a tenth of the pretrain tokens. The demo's pretrain recipe and token budget; the "
            f"same held-out documents. Loss in nats per token; mean +- standard error over seeds (n).\n")
    md = "\n".join([head, *arms_table(rows, "arm", list(ARMS), "default", COLUMNS, "arm")])
    write_report(args.out, md, {**where, "runs": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
