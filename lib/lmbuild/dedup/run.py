"""Plan and run the dedup stage: out of core, one shard or one band per task.

1. Signatures (`signature_task`, one task per input shard, in parallel): per record batch,
   normalise, split into hashed words, take the 128-bit exact key and the MinHash signature,
   and cut the signature into band keys. The task writes, in the working directory,
   `docs/<k>.parquet` (id, source, length, words, exact key per document, in shard order) and
   `bands/<k>.parquet` (for each band: its keys sorted, with the row each came from).
   Documents with no word are left out of the band tables.
2. Exact join, in the driver: sort the exact keys of all documents, link equal ones.
3. Band joins (`band_task`, one task per band, in parallel): read that band's sorted keys from
   every shard (two columns of each band table), merge-sort them, and write the bucket edges.
   The driver merges each band's edges into the clusters (lmbuild.dedup.clusters.Components).
   Memory is O(documents) per band: keys and integer indices, never text or signatures.
4. Keepers (lmbuild.dedup.clusters.choose_keepers), then per-shard decision tables.
4b. Paragraph dedup, when `dedup.paragraphs.enabled` (lmbuild.dedup.paragraph_join): unit keys
   per shard, then a join per key range, in parallel; it finds the later copies.
5. Outputs (`write_task`, one task per input shard, in parallel): kept documents with
   `dup_cluster_size` (later paragraph copies cut out; a document left too short is removed),
   removed ones with `duplicate_of` and `dup_kind`, same file names.

The working directory lives inside the kept output's temporary directory (lmbuild.shards.
atomic_dir) and is deleted before that directory is renamed into place; a killed run leaves it
in the temporary directory, which the next run clears.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..executor import map_tasks
from ..shards import COMPRESSION, ShardError, ShardWriter, atomic_dir, list_shards, read_batches
from . import lsh
from .clusters import Components, choose_keepers
from .config import DedupConfig
from .exact import exact_edges, exact_keys
from .minhash import MinHasher
from .normalize import normalize
from .paragraph_join import COUNTERS, Rewriter
from .paragraph_join import plan as plan_paragraphs
from .report import clusters_markdown, members_to_show, pick_clusters, size_histogram
from .words import split_and_hash

REQUIRED_COLUMNS = ("id", "text", "source")
CLUSTER_FIELD = pa.field("dup_cluster_size", pa.int32(), nullable=False)
REMOVED_FIELDS = (pa.field("duplicate_of", pa.string(), nullable=False),
                  pa.field("dup_kind", pa.string(), nullable=False))
KEPT, EXACT, NEAR, PARAGRAPHS = 0, 1, 2, 3
# PARAGRAPHS: kept by document dedup, then emptied by paragraph dedup (duplicate_of is "": the
# removed paragraphs may come from many documents)
KIND_NAMES = {EXACT: "exact", NEAR: "near", PARAGRAPHS: "paragraphs"}
DOCS_SCHEMA = pa.schema([("id", pa.string()), ("source", pa.string()), ("length", pa.int64()), ("words", pa.int64()),
                         ("exact_hi", pa.uint64()), ("exact_lo", pa.uint64())])


def _band_columns(band: int) -> tuple[str, str]:
    return f"key{band:04d}", f"row{band:04d}"


def _write_work(table: pa.Table, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path, compression="none", write_statistics=False)


# ---------------------------------------------------------------- 1. signatures, per shard

def signature_task(task: dict) -> dict:
    cfg: DedupConfig = task["cfg"]
    minhasher = MinHasher(cfg.ngram, cfg.num_perm, cfg.seed) if cfg.near else None
    docs, keys = [], []
    n_bytes = 0
    for batch in read_batches(task["shard"], batch_size=cfg.batch_rows, columns=list(REQUIRED_COLUMNS)):
        text = batch.column("text")
        n_bytes += int(pc.sum(pc.binary_length(text)).as_py() or 0)
        norm = normalize(text, cfg.normalize, collapse_whitespace=False)
        words = split_and_hash(norm, cfg.seed)
        hi, lo = exact_keys(norm, words, cfg.normalize["collapse_whitespace"], cfg.seed)
        length = pc.fill_null(pc.utf8_length(text), 0).cast(pa.int64())
        docs.append(pa.table([batch.column("id"), batch.column("source"), length, pa.array(words.count), pa.array(hi),
                              pa.array(lo)], schema=DOCS_SCHEMA))
        if minhasher is not None:
            sig, _ = minhasher.signatures(norm, words)
            keys.append(lsh.band_keys(sig, cfg.bands, cfg.rows, cfg.seed))
    table = pa.concat_tables(docs) if docs else DOCS_SCHEMA.empty_table()
    _write_work(table, Path(task["docs"]))
    words = table.column("words").to_numpy()
    if minhasher is not None:
        rows = np.flatnonzero(words > 0).astype(np.uint32)
        all_keys = np.concatenate(keys, axis=1)[:, rows] if keys else np.zeros((cfg.bands, 0), np.uint64)
        columns = {}
        for band in range(cfg.bands):
            key_col, row_col = _band_columns(band)
            columns[key_col], columns[row_col] = lsh.sort_band(all_keys[band], rows)
        _write_work(pa.table(columns), Path(task["bands"]))
    return {"docs": len(words), "MiB": n_bytes / 2**20, "without_words": int((words == 0).sum()),
            "short": int(((words > 0) & (words < cfg.ngram)).sum())}


# ---------------------------------------------------------------- 3. band joins, per band

def band_task(task: dict) -> dict:
    key_col, row_col = _band_columns(task["band"])
    keys, docs = [], []
    for path, offset in zip(task["files"], task["offsets"]):
        table = pq.read_table(path, columns=[key_col, row_col])
        keys.append(table.column(key_col).to_numpy())
        docs.append(table.column(row_col).to_numpy().astype(np.int64) + offset)
    # each shard's run is sorted already: the stable sort merges them, ties in document order
    sorted_keys, sorted_docs = lsh.sort_band(np.concatenate(keys), np.concatenate(docs))
    u, v, counts = lsh.bucket_edges(sorted_keys, sorted_docs)
    np.save(task["edges"], np.stack([u, v]))
    return counts


# ---------------------------------------------------------------- 5. outputs, per shard

def _write_empty(path: Path, schema: pa.Schema) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(schema.empty_table(), path, compression=COMPRESSION, write_statistics=False, store_schema=True)


def write_task(task: dict) -> dict:
    shard = Path(task["shard"])
    decisions = pq.read_table(task["decisions"])
    size = decisions.column("cluster_size").to_numpy()
    kind = decisions.column("kind").to_numpy()
    dup_of = decisions.column("duplicate_of")
    schema = pq.read_schema(shard).remove_metadata()
    kept_schema = schema.append(CLUSTER_FIELD)
    removed_schema = schema
    for f in REMOVED_FIELDS:
        removed_schema = removed_schema.append(f)
    kept_path = Path(task["kept"]) / shard.parent.name / shard.name
    kept_w = ShardWriter(kept_path.parent, shard.stem, kept_schema, numbered=False)
    removed_w = ShardWriter(Path(task["removed"]) / shard.parent.name, shard.stem, removed_schema, numbered=False)
    wanted = np.array(sorted(task["sample_rows"]), np.int64)
    rewriter = Rewriter(task["cfg"], task["paragraphs"]) if task.get("paragraphs") else None
    text_at = schema.get_field_index("text")
    samples, start = {}, 0
    for batch in read_batches(shard, batch_size=task["batch_rows"]):
        n = batch.num_rows
        k = kind[start:start + n].copy()
        keep = np.flatnonzero(k == KEPT)
        kept = batch.take(pa.array(keep))
        if rewriter is not None:  # paragraph dedup: later copies cut out, emptied documents dropped
            group = kept.column("domain") if "domain" in schema.names else kept.column("source")
            new_text, emptied = rewriter.apply(kept.column("text"), group, kept.column("source"))
            k[keep[emptied]] = PARAGRAPHS
            columns = list(kept.columns)
            columns[text_at] = new_text
            kept = pa.RecordBatch.from_arrays(columns, schema=batch.schema).filter(pa.array(~emptied))
            keep = keep[~emptied]
        kept_w.write(pa.RecordBatch.from_arrays(
            list(kept.columns) + [pa.array(size[start:start + n][keep].astype(np.int32))], schema=kept_schema))
        drop = np.flatnonzero(k != KEPT)
        if len(drop):
            removed = batch.take(pa.array(drop))
            names = pa.array([KIND_NAMES[x] for x in k[drop].tolist()], pa.string())
            removed_w.write(pa.RecordBatch.from_arrays(
                list(removed.columns) + [pc.fill_null(dup_of.take(pa.array(drop + start)), "").combine_chunks(), names],
                schema=removed_schema))
        here = wanted[(wanted >= start) & (wanted < start + n)]
        if len(here):
            local = pa.array(here - start)
            texts = pc.utf8_slice_codeunits(batch.column("text").take(local), 0, task["chars"]).to_pylist()
            for row, id_, source, text in zip(here.tolist(), batch.column("id").take(local).to_pylist(),
                                              batch.column("source").take(local).to_pylist(), texts):
                samples[row] = {"id": id_, "source": source, "text": text or ""}
        start += n
    if not kept_w.close():
        _write_empty(kept_path, kept_schema)  # every input shard has its kept shard, even if empty
    removed_w.close()
    paragraphs = rewriter.counts if rewriter is not None else None
    dropped = sum(g["documents_dropped"] for g in paragraphs["sources"].values()) if paragraphs else 0
    return {"docs": start, "kept": int((kind == KEPT).sum()) - dropped, "samples": samples, "paragraphs": paragraphs}


# ---------------------------------------------------------------- the driver

def _check_inputs(shards: list[Path]) -> None:
    for shard in shards:
        try:
            names = pq.read_schema(shard).names
        except (pa.ArrowInvalid, OSError) as exc:
            raise ShardError(f"{shard}: not a readable Parquet shard ({exc}); rerun the filter stage "
                             f"(`dvc repro -f filter`)") from None
        missing = [c for c in REQUIRED_COLUMNS if c not in names]
        if missing:
            raise ShardError(f"{shard}: missing column(s) {missing}; dedup reads filtered document shards "
                             f"(columns {list(REQUIRED_COLUMNS)}, ...)")


def dedup_corpus(cfg: DedupConfig, common: dict, in_dir: Path, kept_dir: Path,
                 removed_dir: Path) -> tuple[dict, list[dict], str]:
    """Run the stage; return (metrics tree, cluster-size histogram rows, clusters report)."""
    shards = list_shards(in_dir, "*/*.parquet")
    if not shards:
        raise FileNotFoundError(f"{in_dir}: no shards to deduplicate; run the filter stage first (dvc repro filter)")
    _check_inputs(shards)
    with atomic_dir(kept_dir) as kept_tmp, atomic_dir(removed_dir) as removed_tmp:
        work = kept_tmp / ".work"
        tasks = [{"shard": str(s), "cfg": cfg, "docs": str(work / "docs" / f"{k:05d}.parquet"),
                  "bands": str(work / "bands" / f"{k:05d}.parquet")} for k, s in enumerate(shards)]
        sig_results = map_tasks(signature_task, tasks, common, desc="dedup: signatures",
                                postfix=lambda r: {"docs": r["docs"], "MiB": r["MiB"]})
        counts = np.array([r["docs"] for r in sig_results], np.int64)
        offsets = np.concatenate([[0], np.cumsum(counts)])
        docs = pa.concat_tables([pq.read_table(t["docs"]) for t in tasks])
        n = docs.num_rows
        words = docs.column("words").to_numpy()
        hi, lo = docs.column("exact_hi").to_numpy(), docs.column("exact_lo").to_numpy()
        has_words = np.flatnonzero(words > 0)
        comps = Components(n)
        exact_stats = {"groups": 0, "documents": 0}
        if cfg.exact:
            u, v, exact_stats = exact_edges(hi[has_words], lo[has_words], has_words)
            comps.merge(u, v)
        exact_merges = comps.merged_edges
        lsh_stats = {"buckets": 0, "documents_in_buckets": 0, "candidate_pairs": 0, "edges": 0}
        if cfg.near:
            band_tasks = [{"band": b, "files": [t["bands"] for t in tasks], "offsets": offsets[:-1].tolist(),
                           "edges": str(work / "edges" / f"{b:04d}.npy")} for b in range(cfg.bands)]
            (work / "edges").mkdir(parents=True)
            band_results = map_tasks(band_task, band_tasks, common, desc="dedup: band joins",
                                     postfix=lambda r: {"pairs": r["pairs"]})
            for task, result in zip(band_tasks, band_results):
                u, v = np.load(task["edges"])
                comps.merge(u, v)
                lsh_stats["buckets"] += result["buckets"]
                lsh_stats["documents_in_buckets"] += result["documents"]
                lsh_stats["candidate_pairs"] += result["pairs"]
                lsh_stats["edges"] += len(u)
        lsh_stats["merges"] = comps.merged_edges - exact_merges

        root = comps.root
        sizes = comps.sizes()
        ids = docs.column("id").cast(pa.large_string()).combine_chunks()  # 64-bit offsets: any corpus size
        id_rank = np.empty(n, np.int64)
        id_rank[pc.sort_indices(ids).to_numpy()] = np.arange(n)
        source_names = sorted(pc.unique(docs.column("source")).to_pylist())
        codes = pc.index_in(docs.column("source"), value_set=pa.array(source_names, pa.string())).to_numpy()
        codes = codes.astype(np.int64)
        prio = np.array([cfg.source_priority.index(s) if s in cfg.source_priority else len(cfg.source_priority)
                         for s in source_names], np.int64)
        unknown_priority = [s for s in cfg.source_priority if s not in source_names]
        if unknown_priority:
            print(f"dedup: warning: dedup.source_priority names source(s) not in the corpus: "
                  f"{', '.join(unknown_priority)} (sources: {', '.join(source_names)}); they are ignored", file=sys.stderr)
        length = docs.column("length").to_numpy()
        keeper = choose_keepers(root, prio[codes], length, id_rank)
        removed = keeper != np.arange(n)
        same_text = (hi == hi[keeper]) & (lo == lo[keeper]) & (words > 0)
        kind = np.where(removed, np.where(same_text, EXACT, NEAR), KEPT).astype(np.int8)
        dup_of = pc.if_else(pa.array(removed), ids.take(pa.array(keeper)), pa.nulls(n, pa.large_string()))

        picked = pick_clusters(root, cfg.report["largest"], cfg.report["random"], cfg.seed)
        shown = [(label, why, *members_to_show(root, keeper, label, cfg.report["members"])) for label, why in picked]
        wanted: dict[int, list[int]] = {}
        for _, _, members, _ in shown:
            for g in members.tolist():
                k = int(np.searchsorted(offsets, g, side="right") - 1)
                wanted.setdefault(k, []).append(g - int(offsets[k]))

        # Paragraph dedup keeps the first copy in this document order: source_priority, then
        # position in the corpus (lmbuild.dedup.paragraph_join says why).
        rank = np.empty(n, np.uint64)
        rank[np.lexsort((np.arange(n), prio[codes]))] = np.arange(n, dtype=np.uint64)
        write_tasks = []
        for k, shard in enumerate(shards):
            a, b = int(offsets[k]), int(offsets[k + 1])
            path = work / "decisions" / f"{k:05d}.parquet"
            _write_work(pa.table({"cluster_size": pa.array(sizes[a:b].astype(np.int32)),
                                  "kind": pa.array(kind[a:b]),
                                  "duplicate_of": dup_of.slice(a, b - a).cast(pa.string()),
                                  "rank": pa.array(rank[a:b])}), path)
            write_tasks.append({"shard": str(shard), "decisions": str(path), "kept": str(kept_tmp),
                                "removed": str(removed_tmp), "batch_rows": cfg.batch_rows, "cfg": cfg,
                                "sample_rows": wanted.get(k, []), "chars": cfg.report["chars"]})
        paragraph_plan = {}
        if cfg.paragraphs["enabled"]:
            per_shard, paragraph_plan = plan_paragraphs(cfg, common, work, shards, [t["decisions"] for t in write_tasks])
            for t, info in zip(write_tasks, per_shard):
                t["paragraphs"] = info
        write_results = map_tasks(write_task, write_tasks, common, desc="dedup: write",
                                  postfix=lambda r: {"docs": r["docs"], "kept": r["kept"]})
        shutil.rmtree(work)

    samples = {int(offsets[k]) + row: s for k, r in enumerate(write_results) for row, s in r["samples"].items()}
    metrics = summarise(cfg, n, kind, sizes, root, keeper, codes, source_names, length, words, exact_stats, lsh_stats)
    if cfg.paragraphs["enabled"]:
        add_paragraph_metrics(metrics, [r["paragraphs"] for r in write_results], paragraph_plan)
    picked_md = [{"label": label, "why": why, "size": size,
                  "members": [{**samples[g], "status": "kept" if kind[g] == KEPT else f"removed, {KIND_NAMES[kind[g]]}"}
                              for g in members.tolist()]} for label, why, members, size in shown]
    report = clusters_markdown(picked_md, metrics, cfg.report["chars"])
    return metrics, size_histogram(root), report


def add_paragraph_metrics(metrics: dict, per_shard: list[dict], plan: dict) -> None:
    """Fold paragraph dedup's counts into the metrics: its own `paragraphs` block (totals, per
    domain), and the documents and characters it dropped or cut out taken off the kept totals."""
    totals: dict[str, dict[str, dict[str, int]]] = {"domains": {}, "sources": {}}
    for counts in per_shard:
        for kind in totals:
            for name, group in counts[kind].items():
                into = totals[kind].setdefault(name, dict.fromkeys(group, 0))
                for key, value in group.items():
                    into[key] += value
    overall = {key: sum(g[key] for g in totals["sources"].values()) for key in COUNTERS}
    metrics["paragraphs"] = {**overall, **plan, "domains": dict(sorted(totals["domains"].items()))}
    for name, group in totals["sources"].items():
        src = metrics["sources"][name]
        src["documents_kept"] -= group["documents_dropped"]
        src["chars_kept"] -= group["chars_removed"] + group["chars_dropped"]
        src["paragraph_units_removed"] = group["units_removed"]
    metrics["documents_kept"] -= overall["documents_dropped"]
    metrics["documents_removed"] += overall["documents_dropped"]
    metrics["chars_kept"] -= overall["chars_removed"] + overall["chars_dropped"]
    metrics["kept_fraction"] = _rate(metrics["documents_kept"], metrics["documents_in"])


def _rate(num: float, den: float) -> float:
    return float(num) / den if den else 0.0


def summarise(cfg: DedupConfig, n: int, kind: np.ndarray, sizes: np.ndarray, root: np.ndarray, keeper: np.ndarray,
              codes: np.ndarray, source_names: list[str], length: np.ndarray, words: np.ndarray,
              exact_stats: dict, lsh_stats: dict) -> dict:
    kept = kind == KEPT
    cross = (kind != KEPT) & (codes != codes[keeper]) if n else np.zeros(0, bool)
    cluster_sizes = np.bincount(root) if n else np.zeros(0, np.int64)
    multi = cluster_sizes[cluster_sizes >= 2]
    n_src = len(source_names)

    def per_code(mask: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
        return np.bincount(codes[mask], weights=None if weights is None else weights[mask], minlength=n_src)

    ones = np.ones(n, bool)
    docs_in, docs_kept = per_code(ones), per_code(kept)
    exact_n, near_n, cross_n = per_code(kind == EXACT), per_code(kind == NEAR), per_code(cross)
    chars_in, chars_kept = per_code(ones, length), per_code(kept, length)
    sources = {}
    for i in range(n_src):  # source_names are sorted
        d = int(docs_in[i])
        sources[source_names[i]] = {
            "documents_in": d, "documents_kept": int(docs_kept[i]),
            "exact_duplicates": int(exact_n[i]), "near_duplicates": int(near_n[i]),
            "exact_duplicate_rate": _rate(exact_n[i], d), "near_duplicate_rate": _rate(near_n[i], d),
            "cross_source_duplicates": int(cross_n[i]),
            "chars_in": int(chars_in[i]), "chars_kept": int(chars_kept[i]),
        }
    n_exact, n_near = int((kind == EXACT).sum()), int((kind == NEAR).sum())
    return {
        "documents_in": n, "documents_kept": int(kept.sum()), "documents_removed": n - int(kept.sum()),
        "source_priority_unknown": sum(s not in source_names for s in cfg.source_priority),  # named, absent
        "kept_fraction": _rate(kept.sum(), n),
        "exact_duplicates": n_exact, "near_duplicates": n_near,
        "exact_duplicate_rate": _rate(n_exact, n), "near_duplicate_rate": _rate(n_near, n),
        "duplicate_rate": _rate(n_exact + n_near, n),
        "cross_source_duplicates": int(cross.sum()),
        "chars_in": int(length.sum()), "chars_kept": int(length[kept].sum()),
        "documents_without_words": int((words == 0).sum()),
        "documents_shorter_than_ngram": int(((words > 0) & (words < cfg.ngram)).sum()),
        "clusters": int(len(multi)), "documents_in_clusters": int(multi.sum()),
        "largest_cluster": int(cluster_sizes.max()) if n else 0,
        "mean_cluster_size": float(multi.mean()) if len(multi) else 0.0,
        "exact": {"key_groups": exact_stats["groups"], "documents_in_key_groups": exact_stats["documents"]},
        "lsh": {"bands": cfg.bands, "rows": cfg.rows, "num_perm": cfg.num_perm, "ngram": cfg.ngram,
                "threshold": lsh.threshold(cfg.bands, cfg.rows),
                "p_candidate_j050": float(lsh.s_curve(0.5, cfg.bands, cfg.rows)),
                "p_candidate_j085": float(lsh.s_curve(0.85, cfg.bands, cfg.rows)),
                **lsh_stats},
        "sources": sources,
    }
