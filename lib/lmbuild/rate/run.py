"""Plan, run and account for the rate stage.

1. Check the raters (config.check_raters) and the pool: problems stop the stage before it reads
   any data.
2. Sample: a count of the documents per source (the `source` column only), then one read-only
   pass over the pool (a task per shard through `map_tasks`) that collects what the raters that
   train need (fasttext: seeded positive/negative samples; bradley_terry: the texts of the
   judged documents). Too little training data stops the stage here, before any
   output exists.
3. Train, in the main process, into the temporary models directory (`atomic_dir`).
4. Score: a task per shard reads it in record batches, adds one float32 column
   `quality_<name>` per rater (rows in input order, every input column passed through) and
   writes `<rated>/<source>/<same file name>`. Each worker process loads each rater's model
   from the temporary models directory once.
5. Statistics: a second, column-only pass over the rated shards histograms every score into
   `histogram_bins * 1000` bins between the rater's lowest and highest score (0 and 1 for
   probabilities). The quantiles p10/p50/p90 per rater and source are read off that fine
   histogram (resolution: score range / (bins * 1000)); means are exact.
"""

from __future__ import annotations

import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..executor import map_tasks
from ..params import ParamsError
from ..shards import COMPRESSION, ShardWriter, atomic_dir, list_shards, read_batches
from . import bradley_terry, fasttext_rater, hf_classifier
from .config import check_raters

KINDS = {"fasttext": fasttext_rater, "bradley_terry": bradley_terry, "hf_classifier": hf_classifier}
QUANTILES = {"p10": 0.10, "p50": 0.50, "p90": 0.90}
FINE_PER_BIN = 1000


def column(name: str) -> str:
    return f"quality_{name}"


# -- tasks (top level, so that worker processes can import them) -------------------------------

def collect_task(task: dict) -> dict:
    shard = Path(task["shard"])
    collectors = {r["name"]: KINDS[r["kind"]].Collector(r, ctx, task["key"]) for r, ctx in task["raters"]}
    for batch in read_batches(shard, batch_size=task["batch_rows"], columns=["id", "text", "source"]):
        for c in collectors.values():
            c.add(batch)
    return {name: c.result() for name, c in collectors.items()}


_SCORERS: dict[tuple, object] = {}


def _scorer(rater: dict, model_dir: str):
    """One scorer per rater and process. Every run writes a new rater.json into a fresh
    temporary directory, so its inode and mtime tell a long-lived worker (a Dask cluster kept
    between runs) that the model changed."""
    stat = (Path(model_dir) / "rater.json").stat()
    key = (rater["name"], model_dir, stat.st_ino, stat.st_mtime_ns, repr(sorted(rater.items())))
    if key not in _SCORERS:
        for stale in [k for k in _SCORERS if k[0] == rater["name"]]:
            del _SCORERS[stale]
        _SCORERS[key] = KINDS[rater["kind"]].Scorer(rater, model_dir)
    return _SCORERS[key]


def score_task(task: dict) -> dict:
    shard = Path(task["shard"])
    scorers = [(r["name"], _scorer(r, d)) for r, d in task["raters"]]
    names = {column(name) for name, _ in scorers}
    in_schema = pq.read_schema(shard)
    keep = [f.name for f in in_schema if f.name not in names]  # re-rating replaces old columns
    schema = pa.schema([in_schema.field(n) for n in keep] + [pa.field(column(n), pa.float32()) for n, _ in scorers])
    stats = {name: {"documents": 0, "sum": 0.0, "min": np.inf, "max": -np.inf, "empty": 0} for name, _ in scorers}
    out = Path(task["out"])
    writer = ShardWriter(out, shard.stem, schema, numbered=False)
    for batch in read_batches(shard, batch_size=task["batch_rows"]):
        arrays = [batch.column(n) for n in keep]
        for name, scorer in scorers:
            scores, empty = scorer.score(batch.column("text"))
            arrays.append(pa.array(scores, pa.float32()))
            s = stats[name]
            finite = scores[np.isfinite(scores)]
            s["documents"] += len(scores)
            s["empty"] += int(empty.sum())
            if finite.size:
                s["sum"] += float(finite.sum(dtype=np.float64))
                s["min"], s["max"] = min(s["min"], float(finite.min())), max(s["max"], float(finite.max()))
        writer.write(pa.RecordBatch.from_arrays(arrays, schema=schema))
    writer.close()
    if writer.rows == 0:  # an empty input shard still gets its (empty) output shard
        out.mkdir(parents=True, exist_ok=True)
        pq.write_table(schema.empty_table(), out / shard.name, compression=COMPRESSION, write_statistics=False)
    return {"source": shard.parent.name, "documents": writer.rows, "stats": stats}


def histogram_task(task: dict) -> dict:
    counts = {name: np.zeros(len(edges) - 1, dtype=np.int64) for name, edges in task["edges"].items()}
    cols = [column(name) for name in task["edges"]]
    for batch in read_batches(task["shard"], columns=cols):
        for name, edges in task["edges"].items():
            values = batch.column(column(name)).to_numpy(zero_copy_only=False)
            values = np.clip(values[np.isfinite(values)], edges[0], edges[-1])  # e.g. an empty_score outside [0, 1]
            counts[name] += np.histogram(values, bins=edges)[0]
    return {"source": Path(task["shard"]).parent.name, "counts": counts}


# -- the stage ---------------------------------------------------------------------------------

def pool_census(shards: list[Path]) -> dict[str, int]:
    """Documents per value of the `source` column (reads that column only)."""
    counts: dict[str, int] = defaultdict(int)
    for shard in shards:
        for batch in read_batches(shard, batch_size=65536, columns=["source"]):
            vc = pc.value_counts(batch.column("source"))
            for value, n in zip(vc.field("values").to_pylist(), vc.field("counts").to_pylist()):
                counts[value] += n
    return dict(counts)


def _check_pool(raters: list[dict], sources: list[str], dedup_dir: Path, source: str = "params.yaml") -> list[str]:
    problems = []
    for i, r in enumerate(raters):
        for s in r.get("positive_sources", []):
            if s not in sources:
                problems.append(f"{source}: rate.raters[{i}].positive_sources: no source {s!r} in {dedup_dir} "
                                f"(sources: {', '.join(sources)})")
    return problems


def rate_corpus(params: dict, dedup_dir: Path, rated_dir: Path, models_dir: Path) -> tuple[dict, list[dict], dict]:
    """Run the stage; return (metrics tree, histogram plot rows, timing of the scoring pass)."""
    cfg, common = params["rate"], params["common"]
    # 1. check
    raters = check_raters(params)
    shards = list_shards(dedup_dir, "*/*.parquet")
    if not shards:
        raise FileNotFoundError(f"{dedup_dir}: no shards to rate; run the dedup stage first (dvc repro dedup)")
    sources = sorted({s.parent.name for s in shards})
    problems = _check_pool(raters, sources, dedup_dir)
    if problems:
        raise ParamsError(problems)

    # 2. sample what the training raters need
    census = pool_census(shards)
    contexts = {r["name"]: KINDS[r["kind"]].prepare_context(r, census) for r in raters}
    trainers = [r for r in raters if KINDS[r["kind"]].Collector is not None]
    collected: list[dict] = []
    if trainers:
        needs = [(r, KINDS[r["kind"]].worker_context(contexts[r["name"]])) for r in trainers]
        tasks = [{"shard": str(s), "key": s.relative_to(dedup_dir).as_posix(), "batch_rows": cfg["batch_rows"],
                  "raters": needs} for s in shards]
        collected = map_tasks(collect_task, tasks, common, desc="rate: sample")
    data = {}
    for i, r in enumerate(raters):
        module = KINDS[r["kind"]]
        data[r["name"]] = module.gather(r, contexts[r["name"]], [c[r["name"]] for c in collected if r["name"] in c])
        problems.extend(module.problems(i, r, data[r["name"]]))
    if problems:
        raise ParamsError(problems)

    with atomic_dir(models_dir) as models_tmp, atomic_dir(rated_dir) as rated_tmp:
        # 3. train
        trained = {r["name"]: KINDS[r["kind"]].train(r, data[r["name"]], models_tmp / r["name"]) for r in raters}
        del data
        # 4. score
        tasks = [{"shard": str(s), "out": str(rated_tmp / s.parent.name), "batch_rows": cfg["batch_rows"],
                  "raters": [(r, str(models_tmp / r["name"])) for r in raters]} for s in shards]
        start = time.perf_counter()
        results = map_tasks(score_task, tasks, common, desc="rate: score", postfix=lambda r: {"docs": r["documents"]})
        seconds = time.perf_counter() - start
        # 5. statistics
        edges = _edges(raters, results, cfg["histogram_bins"] * FINE_PER_BIN)
        hist_tasks = [{"shard": str(rated_tmp / s.parent.name / s.name), "edges": edges} for s in shards]
        histograms = map_tasks(histogram_task, hist_tasks, common, desc="rate: statistics")
    metrics, rows = summarise(raters, trained, results, histograms, edges, cfg["histogram_bins"])
    timing = {"seconds": seconds, "documents": metrics["documents"]}
    return metrics, rows, timing


def _edges(raters: list[dict], results: list[dict], fine_bins: int) -> dict[str, np.ndarray]:
    edges = {}
    for r in raters:
        stats = [res["stats"][r["name"]] for res in results]
        lo = min((s["min"] for s in stats), default=np.inf)
        hi = max((s["max"] for s in stats), default=-np.inf)
        probability = r["kind"] == "fasttext" or (r["kind"] == "hf_classifier" and r["label"] is not None)
        if probability:
            lo, hi = 0.0, 1.0
        elif not np.isfinite(lo):  # no finite score at all
            lo, hi = 0.0, 1.0
        elif hi <= lo:
            lo, hi = lo - 0.5, lo + 0.5
        edges[r["name"]] = np.linspace(lo, hi, fine_bins + 1)
    return edges


def quantile(counts: np.ndarray, edges: np.ndarray, q: float) -> float:
    """The q-quantile of histogrammed values, interpolating linearly inside the bin."""
    total = counts.sum()
    if total == 0:
        return float("nan")
    cum = np.cumsum(counts)
    target = q * total
    i = int(np.searchsorted(cum, target, side="left"))
    i = min(i, len(counts) - 1)
    before = cum[i - 1] if i else 0
    frac = (target - before) / counts[i] if counts[i] else 0.0
    return float(edges[i] + frac * (edges[i + 1] - edges[i]))


def _round(x: float) -> float:
    return float(f"{x:.6g}")


def summarise(raters, trained, results, histograms, edges, bins) -> tuple[dict, list[dict]]:
    docs_per_source: dict[str, int] = defaultdict(int)
    for res in results:
        docs_per_source[res["source"]] += res["documents"]
    tree: dict = {"documents": sum(docs_per_source.values()),
                  "sources": {s: {"documents": n} for s, n in sorted(docs_per_source.items())}, "raters": {}}
    rows = []
    for r in raters:
        name = r["name"]
        e = edges[name]
        per_source: dict[str, dict] = defaultdict(lambda: {"documents": 0, "sum": 0.0, "empty": 0,
                                                            "counts": np.zeros(len(e) - 1, dtype=np.int64)})
        for res in results:
            s, agg = res["stats"][name], per_source[res["source"]]
            agg["documents"] += s["documents"]
            agg["sum"] += s["sum"]
            agg["empty"] += s["empty"]
        for h in histograms:
            per_source[h["source"]]["counts"] += h["counts"][name]

        def describe(counts, total_sum):
            n = int(counts.sum())
            out = {"mean": total_sum / n if n else float("nan")}
            out.update({k: quantile(counts, e, q) for k, q in QUANTILES.items()})
            return out

        all_counts = sum((a["counts"] for a in per_source.values()), np.zeros(len(e) - 1, dtype=np.int64))
        node = dict(trained[name])
        node["empty_documents"] = sum(a["empty"] for a in per_source.values())
        node["score"] = describe(all_counts, sum(a["sum"] for a in per_source.values()))
        node["sources"] = {}
        for source in sorted(per_source):
            agg = per_source[source]
            node["sources"][source] = {"documents": agg["documents"], "empty_documents": agg["empty"],
                                       **describe(agg["counts"], agg["sum"])}
            coarse = agg["counts"].reshape(bins, -1).sum(axis=1)
            for b in range(bins):
                rows.append({"rater": name, "source": source, "bin_low": _round(e[b * FINE_PER_BIN]),
                             "bin_high": _round(e[(b + 1) * FINE_PER_BIN]), "documents": int(coarse[b])})
        tree["raters"][name] = node
    return tree, rows
