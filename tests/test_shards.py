"""Shard I/O: zstd Parquet in bounded row groups, deterministic names, atomic directories, and a
damaged shard reported by name."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lmbuild.shards import DOC_SCHEMA, ShardError, ShardWriter, atomic_dir, doc_id, list_shards, read_batches


def docs(n, start=0):
    return pa.table({"id": [doc_id("s", str(i)) for i in range(start, start + n)],
                     "text": [f"text {i} " * 20 for i in range(start, start + n)],
                     "source": ["s"] * n, "domain": ["web"] * n, "url": [None] * n}, schema=DOC_SCHEMA)


def test_writer_rolls_shards_and_keeps_order(tmp_path):
    with ShardWriter(tmp_path, "part", DOC_SCHEMA, shard_bytes=50_000, row_group_rows=500) as w:
        for i in range(10):
            w.write(docs(300, i * 300))
    paths = list_shards(tmp_path)
    assert [p.name for p in paths] == [f"part-{i:04d}.parquet" for i in range(len(paths))]
    assert len(paths) > 1
    meta = pq.ParquetFile(paths[0]).metadata
    assert meta.row_group(0).column(1).compression == "ZSTD"
    assert all(meta.row_group(i).num_rows <= 500 for i in range(meta.num_row_groups))
    back = pa.concat_tables(pq.read_table(p) for p in paths)
    assert back["id"].to_pylist() == docs(3000)["id"].to_pylist()


def test_same_input_gives_identical_bytes(tmp_path):
    for name in ("a", "b"):
        with ShardWriter(tmp_path / name, "part", DOC_SCHEMA, shard_bytes=40_000) as w:
            for i in range(5):
                w.write(docs(200, i * 200))
    a, b = list_shards(tmp_path / "a"), list_shards(tmp_path / "b")
    assert [p.read_bytes() for p in a] == [p.read_bytes() for p in b]


def test_atomic_dir_replaces_only_on_success(tmp_path):
    out = tmp_path / "out"
    with atomic_dir(out) as tmp:
        (tmp / "x").write_text("first")
    assert (out / "x").read_text() == "first"
    with pytest.raises(RuntimeError):
        with atomic_dir(out) as tmp:
            (tmp / "x").write_text("half-written")
            raise RuntimeError("killed")
    assert (out / "x").read_text() == "first"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_damaged_shard_names_the_file(tmp_path):
    with ShardWriter(tmp_path, "part", DOC_SCHEMA) as w:
        w.write(docs(100))
    path = list_shards(tmp_path)[0]
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ShardError, match=str(path)):
        list(read_batches(path))
