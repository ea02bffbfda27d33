"""Mixture-of-experts against the dense demo model at equal active parameters and equal tokens,
over seeds and both precisions, scored by the pretrain stage's held-out loss.

The dense arm is the demo's pretrain model (SwiGLU width 384). The MoE arm (OLMoE style: top-k
routing, load-balancing and router z-loss, lmbuild/train/moe.py) has --experts experts of width
384 / k with k per token, so every token passes through as many MLP parameters as in the dense
model while the layer holds --experts / k times more. Same attention, embeddings, data order and
token budget; each pair is compared paired by seed. Active and total parameters and tokens/s
are recorded beside the loss (tokens/s on a CPU says little about a GPU, where MoE's routed
matmuls run grouped).

    python benchmarks/moe_effect.py [--seeds 1 2 3] [--precisions fp32 bf16] [--experts 8] [--top-k 2]
        [--jobs 1] [--threads N] [--reuse]

Writes reports/moe_effect.{json,md}, with the CPU, threads and load.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))

from lmbuild.workspace import REPO  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from seed_stats import arms_table, common_args, machine_line, run_plan, stage_run, write_report  # noqa: E402

COLUMNS = [("val_loss", "held-out loss", True), ("val_loss_domain.code", "held-out loss, code", True),
           ("val_loss_domain.encyclopedic", "held-out loss, encyclopedic", True),
           ("tokens_per_s", "tokens/s", False)]


def arms(experts: int, k: int) -> dict[str, dict]:
    width = yaml.safe_load((REPO / "params.yaml").read_text())["pretrain"]["model"]["intermediate_size"]
    if width % k:
        raise SystemExit(f"--top-k {k} does not divide the dense width {width}")
    return {"dense": {},
            "moe": {"pretrain.model.type": "olmoe", "pretrain.model.moe.num_experts": experts,
                    "pretrain.model.moe.experts_per_token": k, "pretrain.model.moe.expert_size": width // k}}


def one_run(work: Path, arm: str, over: dict, seed: int, precision: str, threads: int, reuse: bool) -> dict:
    name = f"{arm}-s{seed}-{precision}"
    over = {**over, "pretrain.seed": seed, "pretrain.precision": precision}
    m, seconds, _ = stage_run(work / name, "pretrain", over, ["data/tokens", "models/tokenizer"], threads, reuse)
    print(f"{name}: val loss {m['val_loss']:.4f}, {m.get('parameters_active', m['parameters']):,} active of "
          f"{m['parameters']:,} parameters ({seconds:.0f} s)", file=sys.stderr, flush=True)
    return {"run": name, "arm": arm, "seed": seed, "precision": precision, "seconds": seconds,
            "parameters": m["parameters"], "parameters_active": m.get("parameters_active", m["parameters"]),
            **{k: m.get(k) for k, _, _ in COLUMNS}}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    common_args(ap, "moe_effect")
    ap.add_argument("--experts", type=int, default=8)
    ap.add_argument("--top-k", type=int, default=2)
    args = ap.parse_args()
    plan = [(arm, over, s, p) for p in args.precisions for s in args.seeds
            for arm, over in arms(args.experts, args.top_k).items()]
    rows, where = run_plan(args, plan, lambda job, threads: one_run(args.work, *job, threads, args.reuse))
    size = {r["arm"]: (r["parameters_active"], r["parameters"]) for r in rows}
    head = (f"# Mixture-of-experts against dense at equal active parameters\n\n"
            f"{machine_line(len(rows), 'pretrain runs', where)}. dense: {size['dense'][1]:,} "
            f"parameters; moe: {args.experts} experts, top-{args.top_k}, {size['moe'][0]:,} active of "
            f"{size['moe'][1]:,}. Same tokens (the demo's pretrain budget). Loss in nats per token; mean +- "
            f"standard error over seeds (n).\n")
    md = "\n".join([head, *arms_table(rows, "arm", ["dense", "moe"], "dense", COLUMNS, "arm")])
    write_report(args.out, md, {**where, "experts": args.experts, "top_k": args.top_k, "runs": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
