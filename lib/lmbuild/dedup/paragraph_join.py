"""Paragraph-level exact dedup across the corpus, out of core: which units are later copies.

Runs after document-level dedup, over the documents it keeps, in three passes (the batch work is
in lmbuild.dedup.paragraphs):

1. `hash_task`, one per input shard, in parallel: split each kept document into units, key
   them, and keep the eligible ones (a word after normalisation, >= `min_chars` characters, a
   domain not in `skip_domains`).
   Copies within the shard are settled here: the shard's first copy of each key stands for it,
   every later one is a duplicate (`<k>.local.npy`). The representatives go to `<k>.reps.npy`,
   a sorted hash table: rows (key high, key low, document rank, unit index, unit number) sorted
   by key. A paragraph repeated a million times in one shard costs one row, so no key can make
   a partition big by itself beyond one row per shard.
2. `join_task`, one per key range, in parallel: the key space is cut into P equal ranges of the
   high half (keys are uniform: fmix64 output), P = ceil(representatives / `partition_rows`),
   so a task holds at most about `partition_rows` rows whatever the corpus size. It reads its
   range from every shard's table (binary search on a memory map, then a contiguous slice),
   sorts by (key, document rank, unit index) and flags every row but the first of each key.
3. Per shard again (in lmbuild.dedup.run.write_task): `duplicate_units` puts the local and the
   joined flags together, one bool per unit of the shard, and the documents are rewritten.

Which copy is kept: the first in the global order (document rank, unit index). A document's
rank orders documents by `source_priority` (earlier sources first, unlisted ones after), then by
position in the corpus (shards in sorted path order, rows in file order). The priority comes
first for the reason it does in the document keeper choice (lmbuild.dedup.clusters): a licence
header or a navigation paragraph shared by wiki and web text stays in the source the user
trusts most. The rest is fixed by the input files alone, so the result does not depend on
worker counts, task completion order or the machine; within a document, the first copy of a
repeated paragraph is kept.

Why sorted hashes rather than a Bloom filter (dolma's paragraph dedup): a Bloom filter sized
for n items and false-positive rate p needs m = -n ln p / (ln 2)^2 bits and k = (m / n) ln 2
hash functions (Broder and Mitzenmacher, "Network Applications of Bloom Filters", 2004), i.e.
1.44 log2(1/p) bits per item, about 14.4 bits at p = 0.1%, against 40 bytes per row here. But
every false positive deletes a unique paragraph, and the answer depends on the order in which
items are inserted, which forces one sequential pass over the corpus. Sorted 128-bit keys are
exact, parallel over key ranges, and their disk use (the tables live in the stage's working
directory and are deleted at the end) is cheap at the scale this stage targets.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..executor import map_tasks
from ..shards import read_batches
from .exact import key_runs
from .paragraphs import find_units, remove_units, unit_keys

U64 = np.uint64
HI, LO, RANK, INDEX, NUMBER = range(5)  # rows of a representatives table


def _first_copies(table: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(order, first): rows of `table` (5 x n) sorted by key, ties by (rank, index), and which of
    them is the first of its key."""
    by_rank = np.lexsort((table[INDEX], table[RANK]))
    order, first = key_runs(table[HI][by_rank], table[LO][by_rank])  # stable: ties keep rank order
    return by_rank[order], first


def hash_task(task: dict) -> dict:
    cfg = task["cfg"]
    p = cfg.paragraphs
    decisions = pq.read_table(task["decisions"], columns=["kind", "rank"])
    kind, rank = decisions.column("kind").to_numpy(), decisions.column("rank").to_numpy()
    parts, start, number = [], 0, 0
    skip = pa.array(p["skip_domains"], pa.string())
    columns = ["text", "domain"] if p["skip_domains"] and "domain" in pq.read_schema(task["shard"]).names else ["text"]
    for batch in read_batches(task["shard"], batch_size=cfg.batch_rows, columns=columns):
        n = batch.num_rows
        keep = np.flatnonzero(kind[start:start + n] == 0)
        units = find_units(batch.column("text").take(pa.array(keep)), p["unit"])
        hi, lo, eligible = unit_keys(units, cfg.normalize, cfg.seed, p["min_chars"])
        if len(columns) == 2:  # units of documents in skip_domains are never removed
            skipped = pc.is_in(batch.column("domain").take(pa.array(keep)), value_set=skip).to_numpy(zero_copy_only=False)
            eligible &= ~skipped[units.doc]
        e = np.flatnonzero(eligible)
        parts.append(np.stack([hi[e], lo[e], rank[start + keep[units.doc[e]]].astype(U64),
                               units.index_in_doc[e].astype(U64), (number + e).astype(U64)]))
        number += len(units.starts)
        start += n
    table = np.concatenate(parts, axis=1) if parts else np.zeros((5, 0), U64)
    order, first = _first_copies(table)
    np.save(task["local"], table[NUMBER][order[~first]])
    np.save(task["reps"], np.ascontiguousarray(table[:, order[first]]))
    return {"units": number, "eligible": table.shape[1], "representatives": int(first.sum())}


def key_ranges(count: int) -> list[tuple[int, int | None]]:
    """`count` equal ranges [lo, hi) of the high key half; hi None = to the end."""
    bounds = [(p << 64) // count for p in range(count + 1)]
    return [(bounds[p], bounds[p + 1] if p + 1 < count else None) for p in range(count)]


def join_task(task: dict) -> dict:
    low, high = task["range"]
    slices = []
    for path in task["reps"]:
        table = np.load(path, mmap_mode="r")
        a = int(np.searchsorted(table[HI], U64(low)))
        b = int(np.searchsorted(table[HI], U64(high))) if high is not None else table.shape[1]
        slices.append(np.array(table[:, a:b]))
    rows = np.concatenate(slices, axis=1) if slices else np.zeros((5, 0), U64)
    order, first = _first_copies(rows)
    later = np.zeros(rows.shape[1], bool)
    later[order[~first]] = True
    np.save(task["flags"], later)
    return {"sizes": [s.shape[1] for s in slices], "rows": rows.shape[1], "later": int(later.sum())}


def duplicate_units(units: int, local: Path, reps: Path, flags: list[tuple[str, int, int]]) -> np.ndarray:
    """One bool per unit of a shard (in unit-number order): True for a later copy. `flags` holds,
    per key range in order, (flags file, offset, length) of this shard's slice; the slices put end
    to end follow the shard's representatives table row by row."""
    dup = np.zeros(units, bool)
    dup[np.load(local)] = True
    numbers = np.load(reps, mmap_mode="r")[NUMBER]
    later = np.concatenate([np.load(path, mmap_mode="r")[a:a + n] for path, a, n in flags]) if flags \
        else np.zeros(0, bool)
    dup[numbers[later]] = True
    return dup


# ---------------------------------------------------------------- the plan, and pass 3's rewriter

def plan(cfg, common: dict, work: Path, shards: list[Path], decisions: list[str]) -> tuple[list[dict], dict]:
    """Passes 1 and 2 over every shard; returns, per shard, what `Rewriter` needs, and counts."""
    tasks = [{"cfg": cfg, "shard": str(s), "decisions": d, "local": str(work / "paragraphs" / f"{k:05d}.local.npy"),
              "reps": str(work / "paragraphs" / f"{k:05d}.reps.npy")} for k, (s, d) in enumerate(zip(shards, decisions))]
    (work / "paragraphs").mkdir(parents=True, exist_ok=True)
    hashed = map_tasks(hash_task, tasks, common, desc="dedup: paragraph keys",
                       postfix=lambda r: {"units": r["units"]})
    total = sum(r["representatives"] for r in hashed)
    count = max(1, -(-total // cfg.paragraphs["partition_rows"]))  # ceil
    joins = [{"range": r, "reps": [t["reps"] for t in tasks], "flags": str(work / "paragraphs" / f"range{p:05d}.npy")}
             for p, r in enumerate(key_ranges(count))]
    joined = map_tasks(join_task, joins, common, desc="dedup: paragraph join", postfix=lambda r: {"rows": r["rows"]})
    per_shard = []
    for k, (task, h) in enumerate(zip(tasks, hashed)):
        flags = [(j["flags"], sum(r["sizes"][:k]), r["sizes"][k]) for j, r in zip(joins, joined)]
        per_shard.append({"units": h["units"], "local": task["local"], "reps": task["reps"], "flags": flags})
    stats = {"key_ranges": count, "eligible": sum(r["eligible"] for r in hashed),
             "largest_key_range_rows": max((r["rows"] for r in joined), default=0)}
    return per_shard, stats


COUNTERS = ("units", "units_removed", "chars_removed", "documents", "documents_changed", "documents_dropped",
            "chars_dropped")


class Rewriter:
    """Pass 3 for one shard: cut the later copies out of the kept documents, batch by batch, and
    count what went, per group (domain or source)."""

    def __init__(self, cfg, info: dict):
        self.unit, self.min_doc_chars = cfg.paragraphs["unit"], cfg.paragraphs["min_doc_chars"]
        self.dup = duplicate_units(info["units"], Path(info["local"]), Path(info["reps"]), info["flags"])
        self.number = 0
        self.counts: dict[str, dict[str, dict[str, int]]] = {"domains": {}, "sources": {}}

    def _count(self, kind: str, names: pa.Array, columns: dict[str, np.ndarray]) -> None:
        if isinstance(names, pa.ChunkedArray):
            names = names.combine_chunks()
        encoded = pc.dictionary_encode(pc.fill_null(names.cast(pa.string()), ""))
        codes, labels = encoded.indices.to_numpy(), encoded.dictionary.to_pylist()
        for name, values in columns.items():
            sums = np.bincount(codes, weights=values, minlength=len(labels)) if len(codes) else np.zeros(len(labels))
            for label, v in zip(labels, sums.tolist()):
                group = self.counts[kind].setdefault(label, dict.fromkeys(COUNTERS, 0))
                group[name] += int(v)

    def apply(self, texts: pa.Array, domains: pa.Array, sources: pa.Array) -> tuple[pa.Array, np.ndarray]:
        """(new texts, dropped): the texts without their later-copy units, and which documents
        lost units and kept fewer than `min_doc_chars` characters (whitespace trimmed)."""
        units = find_units(texts, self.unit)
        n_units = len(units.starts)
        removed = self.dup[self.number:self.number + n_units]
        self.number += n_units
        n = len(texts)
        lost = np.bincount(units.doc[removed], minlength=n)
        if removed.any():
            new = remove_units(units, removed).cast(texts.type)
            before = pc.fill_null(pc.utf8_length(texts), 0).to_numpy(zero_copy_only=False)
            after = pc.utf8_length(new).to_numpy(zero_copy_only=False)
            left = pc.utf8_length(pc.utf8_trim_whitespace(new)).to_numpy(zero_copy_only=False)
        else:
            new, before = texts, np.zeros(n, np.int64)
            after, left = before, np.full(n, self.min_doc_chars, np.int64)
        changed = lost > 0
        dropped = changed & (left < self.min_doc_chars)
        per_doc = {"units": np.bincount(units.doc, minlength=n), "units_removed": lost,
                   "chars_removed": before - after, "documents": np.ones(n), "documents_changed": changed,
                   "documents_dropped": dropped, "chars_dropped": np.where(dropped, after, 0)}
        self._count("domains", domains, per_doc)
        self._count("sources", sources, per_doc)
        return new, dropped
