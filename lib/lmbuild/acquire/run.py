"""Plan, run and account for the acquire stage.

Every source expands into tasks (`readers.plan_tasks`); each task streams its records through a
`RecordSink` into `<raw>/<source>/part-TTTTT-NNNN.parquet` and
`<quarantine>/<source>/part-TTTTT-NNNN.parquet`, where TTTTT is the task's position within its
source, so the files and their contents do not depend on which worker ran what or when.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from ..executor import map_tasks
from ..shards import DOC_SCHEMA, ShardWriter, atomic_dir, atomic_write_text
from .readers import READERS, SourceError, plan_tasks
from .records import QUARANTINE_SCHEMA, REASONS, RecordSink


def run_task(task: dict) -> dict:
    src = task["source"]
    prefix = f"part-{task['index']:05d}"
    sink = RecordSink(
        src["name"], src["domain"],
        ShardWriter(Path(task["out"]) / src["name"], prefix, DOC_SCHEMA, task["shard_bytes"]),
        ShardWriter(Path(task["quarantine"]) / src["name"], prefix, QUARANTINE_SCHEMA, task["shard_bytes"]),
        max_chars=src.get("max_chars") or task["max_chars"], own_ids=bool(src.get("id_field")),
    )
    for record in READERS[src["kind"]](task):
        sink.add(record)
    sink.close()
    return {"source": src["name"], "counts": dict(sink.counts), "bytes": sink.doc_bytes,
            "files": len(task["files"]), "domains": dict(sink.domains)}


def _origin(src: dict) -> str:
    if src["kind"] == "demo":
        from .demo import DEMO_DATASETS

        return DEMO_DATASETS[src["dataset"]].origin() + f" ({src['dataset']})"
    if src["kind"] == "hf":
        return f"datasets:{src['dataset']}" + (f" data_files={src['data_files']}" if src.get("data_files") else "")
    return ", ".join(src["paths"])


def _licence(src: dict) -> str:
    if src.get("licence"):
        return src["licence"]
    if src["kind"] == "demo":
        from .demo import DEMO_DATASETS

        return DEMO_DATASETS[src["dataset"]].licence
    return "unknown"


def acquire(params: dict, raw_dir: Path, quarantine_dir: Path) -> dict:
    """Run the stage; return the metrics tree. Raises SourceError before any work on bad sources."""
    common, cfg = params["common"], params["acquire"]
    names = [s["name"] for s in cfg["sources"]]
    dupes = sorted(n for n, c in Counter(names).items() if c > 1)
    if dupes:
        raise SourceError(f"params.yaml: acquire.sources: names must be unique, got {', '.join(dupes)} twice")
    for s in cfg["sources"]:
        own = [k for k in ("id_field", "domain_field") if s.get(k)]
        if own and s["kind"] not in ("jsonl", "parquet"):
            raise SourceError(f"params.yaml: acquire.sources[{s['name']}].{own[0]}: only jsonl and parquet sources "
                              f"carry their own fields, got kind {s['kind']!r}")
    planned = {s["name"]: plan_tasks(s) for s in cfg["sources"]}  # fails fast on globs matching nothing

    with atomic_dir(raw_dir) as raw_tmp, atomic_dir(quarantine_dir) as q_tmp:
        tasks = []
        for name, source_tasks in planned.items():
            for i, task in enumerate(source_tasks):
                tasks.append({**task, "index": i, "out": str(raw_tmp), "quarantine": str(q_tmp),
                              "shard_bytes": cfg["shard_mb"] * 2**20, "max_chars": cfg["max_chars"]})
        results = map_tasks(run_task, tasks, common, desc="acquire",
                            postfix=lambda r: {"docs": r["counts"].get("documents", 0), "MiB": r["bytes"] / 2**20})

        per_source: dict[str, dict] = {}
        for src in cfg["sources"]:
            counts: Counter = Counter()
            domains: Counter = Counter()
            nbytes = files = 0
            for r in results:
                if r["source"] == src["name"]:
                    counts.update(r["counts"])
                    domains.update(r["domains"])
                    nbytes += r["bytes"]
                    files += r["files"]
            quarantined = {reason: counts.get(reason, 0) for reason in REASONS}
            per_source[src["name"]] = {
                "kind": src["kind"], "domain": src["domain"], "origin": _origin(src), "licence": _licence(src),
                "files": files, "documents": counts.get("documents", 0), "bytes": nbytes,
                "documents_per_domain": dict(sorted(domains.items())),
                "quarantined": quarantined,
                "shards": sorted(p.name for p in (raw_tmp / src["name"]).glob("*.parquet")),
            }
        manifest = {"sources": per_source}
        atomic_write_text(raw_tmp / "manifest.json", json.dumps(manifest, indent=1, sort_keys=True) + "\n")

    metrics = {
        "documents": sum(s["documents"] for s in per_source.values()),
        "bytes": sum(s["bytes"] for s in per_source.values()),
        "quarantined": sum(sum(s["quarantined"].values()) for s in per_source.values()),
        "sources": {name: {"documents": s["documents"], "bytes": s["bytes"], "quarantined": s["quarantined"],
                           **({"domains": s["documents_per_domain"]} if src.get("domain_field") else {})}
                    for src in cfg["sources"] for name, s in [(src["name"], per_source[src["name"]])]},
    }
    return metrics
