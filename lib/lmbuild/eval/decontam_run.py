"""The work of the decontaminate stage: the pretrain and anneal mixes without the eval sets' n-grams.

Reads data/mix/{pretrain,anneal} (and data/mix/val, data/eval_sets, evals/ for the eval items) and
writes the same layout under data/decontam/<split>/<source>/, with the documents it dropped in
data/decontam/removed/<split>/<source>/ (column `decontam_sets`: the eval sets they matched).
The eval side depends only on held-out data and the tasks' test split, never on a model, so
tokenize and training can depend on this stage without a cycle.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pyarrow as pa

from ..executor import map_tasks
from ..params import ParamsError
from ..shards import ShardWriter, atomic_dir, list_shards, read_batches
from .decontaminate import EvalIndex, decide, scan
from .pipeline import eval_set_texts


def check_sets(cfg: dict, available: list[str]) -> list[str]:
    """The eval sets to decontaminate against; an unknown name is a params error."""
    if cfg["sets"] is None:
        return available
    unknown = [s for s in cfg["sets"] if s not in available]
    if unknown:
        raise ParamsError([f"params.yaml: decontaminate.sets: {', '.join(map(repr, unknown))} not an eval set; "
                           f"the eval sets are {', '.join(available)}"])
    return list(cfg["sets"])


def _counts(names: list[str]) -> dict:
    return {"documents": 0, "rows": 0, "chars": 0, "documents_matched": 0, "documents_masked": 0,
            "documents_dropped": 0, "spans_cut": 0, "chars_removed": 0,
            "sets": {n: {"documents_matched": 0} for n in names}}


def clean_shard(task: dict) -> dict:
    """Decontaminate one mix shard: kept documents to task['out'], dropped ones to task['removed']."""
    index: EvalIndex = task["index"]
    names = index.names
    counts = _counts(names)
    before, after = [], []
    kept = dropped = None
    for batch in read_batches(task["shard"]):
        texts = batch.column("text").to_pylist()
        first = np.asarray(batch.column("repeat").to_numpy(zero_copy_only=False) == 0)
        result = scan(index, texts)
        before.append(result.items)
        decisions = decide(texts, result, task["mode"], task["drop_above"])
        keep = np.fromiter((d.text is not None for d in decisions), bool, len(decisions))
        counts["rows"] += len(texts)
        for d, (text, dec) in enumerate(zip(texts, decisions)):
            if not first[d]:
                continue  # a later copy of a document already counted (mix repeats whole epochs)
            counts["documents"] += 1
            counts["chars"] += len(text)
            if not len(dec.sets):
                continue
            counts["documents_matched"] += 1
            for s in dec.sets:
                counts["sets"][names[s]]["documents_matched"] += 1
            if task["mode"] == "off":
                continue
            counts["documents_dropped" if dec.text is None else "documents_masked"] += 1
            counts["spans_cut"] += dec.spans
            counts["chars_removed"] += dec.chars_cut
        new_texts = [d.text for d in decisions if d.text is not None]
        out = batch.filter(pa.array(keep)).set_column(
            batch.schema.get_field_index("text"), "text", pa.array(new_texts, pa.string()))
        # the overlap left in what training will read: unmatched documents never matched and
        # dropped ones are gone, so only the documents cut in place are scanned again
        if task["mode"] == "off":
            after.append(result.items)
        else:
            cut = [d.text for d in decisions if d.text is not None and d.spans]
            after.append(scan(index, cut).items if cut else np.empty(0, np.int64))
        if kept is None:
            kept = ShardWriter(task["out"], Path(task["shard"]).stem, out.schema, numbered=False)
        kept.write(out)
        if not keep.all():
            gone = batch.filter(pa.array(~keep))
            labels = [",".join(names[s] for s in d.sets) for d in decisions if d.text is None]
            gone = gone.append_column("decontam_sets", pa.array(labels, pa.string()))
            if dropped is None:
                dropped = ShardWriter(task["removed"], Path(task["shard"]).stem, gone.schema, numbered=False)
            dropped.write(gone)
    for w in (kept, dropped):
        if w is not None:
            w.close()
    return {"counts": counts, "before": _union(before), "after": _union(after)}


def _union(parts: list[np.ndarray]) -> np.ndarray:
    return np.unique(np.concatenate(parts)) if parts else np.empty(0, np.int64)


def _overlap(index: EvalIndex, items: np.ndarray) -> dict:
    """{set: contaminated items / checked items}, as contamination.overlap reports it."""
    hit = np.bincount(index.item_set[items], minlength=len(index.names))
    return {n: float(hit[s]) / index.checked[s] if index.checked[s] else 0.0 for s, n in enumerate(index.names)}


def decontaminate(params: dict, mix_dir: Path, out_dir: Path, val_dir: Path | None = None) -> dict:
    """val_dir: the held-out documents of the eval sets (default mix_dir/val)."""
    cfg, c = params["decontaminate"], params["eval"]["contamination"]
    all_sets = eval_set_texts(params, Path(mix_dir) / "val" if val_dir is None else Path(val_dir))
    chosen = check_sets(cfg, sorted(all_sets))
    index = EvalIndex({n: all_sets[n] for n in chosen}, n=c["ngram"], min_tokens=c["min_tokens"])
    splits = [s for s in cfg["splits"] if (Path(mix_dir) / s).is_dir()]
    for s in sorted(set(cfg["splits"]) - set(splits)):
        print(f"decontaminate: {mix_dir}/{s} does not exist (mix.pool is off?); split {s} skipped", file=sys.stderr)
    shards = {s: list_shards(Path(mix_dir) / s, "*/*.parquet") for s in splits}
    metrics: dict = {"ngram": c["ngram"], "eval_items": int(len(index.item_set)), "eval_items_checked": int(sum(index.checked))}
    with atomic_dir(out_dir) as tmp:
        tasks = [{"split": s, "shard": str(p), "index": index, "mode": cfg["mode"], "drop_above": cfg["drop_above"],
                  "out": str(tmp / s / p.parent.name), "removed": str(tmp / "removed" / s / p.parent.name)}
                 for s in splits for p in shards[s]]
        results = map_tasks(clean_shard, tasks, params["common"], desc="decontaminate",
                            postfix=lambda r: {"docs": r["counts"]["documents"],
                                               "dropped": r["counts"]["documents_dropped"]})
        for split in splits:
            (tmp / split).mkdir(parents=True, exist_ok=True)
            mine = [r for t, r in zip(tasks, results) if t["split"] == split]
            total = _counts(index.names)
            for r in mine:
                for k, v in r["counts"].items():
                    if k == "sets":
                        for n, sv in v.items():
                            total["sets"][n]["documents_matched"] += sv["documents_matched"]
                    else:
                        total[k] += v
            total["chars_removed_share"] = total["chars_removed"] / total["chars"] if total["chars"] else 0.0
            total["overlap_before"] = _overlap(index, _union([r["before"] for r in mine]))
            total["overlap_after"] = _overlap(index, _union([r["after"] for r in mine]))
            metrics[split] = total
            worst = max(total["overlap_after"].values(), default=0.0)
            print(f"decontaminate {split}: {total['documents_matched']} of {total['documents']} documents matched an "
                  f"eval set, {total['documents_masked']} masked, {total['documents_dropped']} dropped, "
                  f"{total['chars_removed']:,} characters removed; highest overlap after: {worst:.3f}",
                  file=sys.stderr)
    return metrics
