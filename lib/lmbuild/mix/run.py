"""Run the mix stage: index the pool, plan the validation, pretrain and anneal sets, then write
them shard by shard through the executor.

Outputs (val, pretrain, anneal, and with `mix.pool` the pool split: every document outside val
once), each `<split>/<source>/<input shard name>.parquet` with the pool's columns plus
`repeat` (0 for a document's first copy, 1 for its second...): a document drawn k times is
written k times, first copies first, so every file holds whole epochs in order.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pyarrow as pa

from ..executor import map_tasks
from ..shards import ShardWriter, atomic_dir, list_shards, read_batches
from .plan import SPLITS, MixError, build_index, check_request, heldout_mask, plan_split, raters_used, \
    shortfall_lines, validation_mask


def write_task(task: dict) -> dict:
    shard = Path(task["shard"])
    out: dict[str, ShardWriter] = {}
    counts = {split: 0 for split in task["repeats"]}
    row0 = 0
    for batch in read_batches(shard):
        n = batch.num_rows
        for split, repeats in task["repeats"].items():
            reps = repeats[row0:row0 + n]
            if not reps.any():
                continue
            if split not in out:
                schema = batch.schema.append(pa.field("repeat", pa.int32(), nullable=False))
                out[split] = ShardWriter(Path(task["out"]) / split / shard.parent.name, shard.stem, schema,
                                         numbered=False)
            for r in range(int(reps.max())):
                rows = np.flatnonzero(reps > r)
                part = batch.take(pa.array(rows))
                out[split].write(part.append_column("repeat", pa.array(np.full(len(rows), r, np.int32))))
                counts[split] += len(rows)
        row0 += n
    for w in out.values():
        w.close()
    return counts


def mix(params: dict, pool_dir: Path, out_dir: Path, heldout: Path | None = None) -> tuple[dict, list[dict]]:
    """heldout: another mix's val split whose documents are held out here instead of a new draw
    (a data ablation keeps the main pipeline's held-out set, so every recipe is scored on the
    same documents and none of them trains on one)."""
    common, cfg = params["common"], params["mix"]
    shards = list_shards(pool_dir, "*/*.parquet")
    if not shards:
        raise MixError(f"{pool_dir}: no shards to mix; run the upstream stages first (dvc repro rate)")
    index = build_index(shards, raters_used(cfg))
    problems = check_request(cfg, index)
    if problems:
        raise MixError("\n".join(problems))

    val = validation_mask(index, cfg["val"], common["seed"]) if heldout is None else heldout_mask(index, heldout)
    plans = {split: plan_split(split, cfg[split], index, ~val, cfg["bytes_per_token"], common["seed"])
             for split in SPLITS}
    lines = [line for split in SPLITS for line in shortfall_lines(split, cfg[split], plans[split])]
    if lines and cfg["on_shortfall"] == "fail":
        raise MixError("\n".join(lines))
    for line in lines:
        print(line.replace("; raise", " (proceeding); raise"), file=sys.stderr)

    repeats = {"val": val.astype(np.int32), **{s: p.repeats for s, p in plans.items()}}
    if cfg["pool"]:
        repeats["pool"] = (~val).astype(np.int32)
    with atomic_dir(out_dir) as tmp:
        for split in repeats:
            (tmp / split).mkdir()
        tasks = [{"shard": str(path), "out": str(tmp),
                  "repeats": {split: r[index.shard_of == s] for split, r in repeats.items()}}
                 for s, path in enumerate(shards)]
        map_tasks(write_task, tasks, common, desc="mix")
    return summarise(cfg, index, val, plans, len(lines))


def summarise(cfg: dict, index, val: np.ndarray, plans: dict, shortfalls: int) -> tuple[dict, list[dict]]:
    tokens = index.nbytes / cfg["bytes_per_token"]
    domains = sorted(set(index.domain.tolist()))
    tree: dict = {"pool": {"documents": len(index.ids), "tokens_est": float(tokens.sum())},
                  "val": {"documents": int(val.sum()), "tokens_est": float(tokens[val].sum()),
                          "domains": {d: {"documents": int((val & (index.domain == d)).sum())} for d in domains}},
                  "shortfalls": shortfalls}
    rows = []
    for split, plan in plans.items():
        total = float((plan.repeats * tokens).sum())
        per_domain = {}
        for d, f in plan.fills.items():
            mask = index.domain == d
            reps = plan.repeats[mask]
            achieved_share = f.achieved / total if total else 0.0
            per_domain[d] = {
                "requested_share": plan.shares[d], "achieved_share": achieved_share,
                "requested_tokens": f.requested, "tokens_est": f.achieved, "pool_tokens_est": f.available,
                "documents_selected": int((reps > 0).sum()), "documents_in_pool": int(mask.sum()),
                "copies": int(reps.sum()), "max_repeats": int(reps.max()) if len(reps) else 0,
                "epochs": f.achieved / f.available if f.available else 0.0, "capped": f.capped,
            }
            rows.append({"split": split, "domain": d, "requested_share": round(plan.shares[d], 6),
                         "achieved_share": round(achieved_share, 6), "tokens_est": round(f.achieved)})
        tree[split] = {"documents": int((plan.repeats > 0).sum()), "copies": int(plan.repeats.sum()),
                       "tokens_est": total, "token_budget": cfg[split]["token_budget"], "domains": per_domain}
        unmixed = sorted(set(domains) - set(plan.fills))
        tree[split]["unmixed_documents"] = int(np.isin(index.domain, unmixed).sum()) if unmixed else 0
    overlap = int(((plans["pretrain"].repeats > 0) | (plans["anneal"].repeats > 0))[val].sum())
    tree["val"]["train_overlap_documents"] = overlap  # 0 by construction; recorded as a check
    return tree, rows
