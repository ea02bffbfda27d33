"""Training throughput of the lmbuild loop against a bare PyTorch loop on the same model and data.

Builds a tiny tokenizer and token shards in a temporary directory (tests/train_data.py), then
runs (1) lmbuild.train.causal_lm.run (Accelerate, grad accumulation, clipping, nan/spike checks,
logging, checkpoints) and (2) a bare loop: the same model, AdamW, bf16/fp32 autocast and batches,
nothing else. The two alternate for --repeats rounds in one process (bare first), so both see the
same warm kernel caches and the same background load; it prints tokens/s of every round and the
ratio of the medians (lmbuild / bare). The loop's figure excludes eval and checkpoint time, the
bare loop has neither.

    python benchmarks/train_throughput.py [--steps 30] [--repeats 3] [--precision bf16] [--hidden 128]
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "tests"), str(REPO / "lib")]

from lmbuild.params import validate_section  # noqa: E402
from lmbuild.train.data import BlockOrder, TokenStream  # noqa: E402
from lmbuild.train.causal_lm import run  # noqa: E402
from lmbuild.train.model import build_model  # noqa: E402
from train_data import make_project_inputs  # noqa: E402


def bare_loop(root: Path, p: dict, seed: int, steps: int, vocab: int) -> float:
    train = TokenStream(root / "data/tokens/pretrain")
    order = BlockOrder(train.total, p["seq_len"], seed)
    model = build_model(p["model"], vocab, 0, 1, seed)
    model.config.use_cache = False
    opt = torch.optim.AdamW(model.parameters(), lr=p["optim"]["lr"])
    B, L = p["batch_size"], p["seq_len"]
    def amp():
        return torch.autocast("cpu", dtype=torch.bfloat16) if p["precision"] == "bf16" else contextlib.nullcontext()
    model.train()
    t0 = time.perf_counter()  # no warm-up excluded: the loop's figure includes its first steps too
    for step in range(steps):
        x = order.batch(train, range(step * B, (step + 1) * B))
        with amp():
            loss = model(input_ids=x, labels=x).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return steps * B * L / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--precision", default="bf16", choices=["bf16", "fp32"])
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--batch", type=int, default=8)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        meta = make_project_inputs(root, n_docs=3000, vocab_size=1024)
        section = {"max_tokens": a.steps * a.batch * a.seq_len, "seq_len": a.seq_len, "batch_size": a.batch,
                   "micro_batch_size": a.batch, "precision": a.precision, "log_every": 10,
                   "eval": {"every_steps": 10 ** 6, "blocks_per_domain": 1},
                   "checkpoint": {"every_steps": 10 ** 6},
                   "model": {"hidden_size": a.hidden, "num_layers": a.layers, "num_heads": max(1, a.hidden // 32),
                             "intermediate_size": a.hidden * 3, "max_length": max(512, a.seq_len)}}
        p = validate_section("pretrain", section)
        params = {"common": {"seed": 0}, "pretrain": p}
        import os
        import statistics
        os.environ.setdefault("LMBUILD_NO_PROGRESS", "1")
        loop_tps, bare_tps = [], []
        for r in range(a.repeats):
            bare_tps.append(bare_loop(root, p, 0, a.steps, meta["vocab_size"]))
            for d in ("models/pretrain", "checkpoints/pretrain", "dvclive/pretrain"):
                shutil.rmtree(root / d, ignore_errors=True)
            m = run("pretrain", params, tokens_dir=root / "data/tokens", train_split="pretrain",
                    tokenizer_dir=root / "models/tokenizer", out_model=root / "models/pretrain",
                    ckpt_dir=root / "checkpoints/pretrain", live_dir=root / "dvclive/pretrain")
            loop_tps.append(m["tokens_per_s"])
            print(f"round {r + 1}: bare {bare_tps[-1]:,.0f} tokens/s, lmbuild {loop_tps[-1]:,.0f} tokens/s", flush=True)
    lo, ba = statistics.median(loop_tps), statistics.median(bare_tps)
    print(f"model: {m['parameters']:,} params, seq {a.seq_len}, batch {a.batch}, {a.precision}, {a.steps} steps, "
          f"{torch.get_num_threads()} threads")
    print(f"lmbuild loop: {lo:,.0f} tokens/s median (steps only), MFU est. {m['mfu']:.3f} of "
          f"{m['peak_tflops'] * 1e3:.1f} GFLOP/s measured")
    print(f"bare loop:    {ba:,.0f} tokens/s median")
    print(f"ratio lmbuild / bare: {lo / ba:.2f}")


if __name__ == "__main__":
    main()
