"""FSDP through the trainer, on GPUs (Accelerate enables FSDP only on GPU-like devices, so CI
cannot run this): the demo pretrain under `accelerate launch --use_fsdp` on N GPUs against the
same run on one GPU with the same global batch. Prints both val losses, their difference and
tokens/s; exits 1 when they differ by more than --tolerance (default 1e-3: bf16 on different
reduction orders, measured nowhere yet: record what you see).

    .venv/bin/python benchmarks/fsdp_gpu_check.py --gpus 2 [--fsdp-version 2] [--precision bf16]

Needs `make repro` (or at least `dvc repro tokenize`) first: it reuses data/tokens and the tokenizer.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "lib"))
from lmbuild import workspace  # noqa: E402


def run(root: Path, launcher: list[str]) -> tuple[dict, float]:
    env = {**os.environ, "LMBUILD_NO_PROGRESS": "1", "PYTHONPATH": str(root)}
    t0 = time.perf_counter()
    p = subprocess.run([*launcher, "-m", "stages.pretrain"], cwd=root, env=env, capture_output=True, text=True)
    if p.returncode:
        raise SystemExit(f"{' '.join(launcher)}: exit {p.returncode}\n{p.stderr[-3000:]}")
    if "FSDP was asked for" in p.stderr:
        raise SystemExit("Accelerate did not enable FSDP on this machine (see the log line); no check possible")
    return workspace.read_metrics(root, "pretrain"), time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--gpus", type=int, default=2)
    ap.add_argument("--fsdp-version", type=int, default=2, choices=[1, 2])
    ap.add_argument("--precision", default="bf16", choices=["bf16", "fp32"])
    ap.add_argument("--tolerance", type=float, default=1e-3)
    ap.add_argument("--out", type=Path, default=Path("/tmp/lmbuild_fsdp_check"))
    args = ap.parse_args()
    over = {"pretrain.precision": args.precision, "pretrain.micro_batch_size": 8 // args.gpus,
            "pretrain.checkpoint.on_mismatch": "restart"}
    links = ["data/tokens", "models/tokenizer"]
    one_root = workspace.make(args.out / "one", over, links)
    one, t_one = run(one_root, [sys.executable])
    many_root = workspace.make(args.out / "fsdp", over, links)
    many, t_many = run(many_root, ["accelerate", "launch", "--use_fsdp", "--fsdp_version", str(args.fsdp_version),
                                   "--num_processes", str(args.gpus), "--mixed_precision",
                                   "bf16" if args.precision == "bf16" else "no"])
    diff = abs(one["val_loss"] - many["val_loss"])
    print(f"one GPU: val {one['val_loss']:.5f}, {one['tokens_per_s']:,.0f} tok/s, {t_one:.0f} s")
    print(f"FSDP x{args.gpus} (v{args.fsdp_version}): val {many['val_loss']:.5f}, {many['tokens_per_s']:,.0f} tok/s, "
          f"{t_many:.0f} s, world_size {many['world_size']}")
    print(f"|difference| {diff:.2e} (tolerance {args.tolerance:g})")
    return 0 if diff <= args.tolerance and many["world_size"] == args.gpus else 1


if __name__ == "__main__":
    raise SystemExit(main())
