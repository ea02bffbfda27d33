"""Document shards: the Parquet layout every data stage reads and writes.

Documents follow the schema in DESIGN.md (`id`, `text`, `source`, `domain`, `url`, plus columns
later stages add). Shards are Parquet with zstd compression and row groups of a few thousand
rows, read and written one record batch at a time so memory stays bounded whatever the corpus
size. Output directories appear atomically: a stage writes into a hidden sibling directory and
renames it into place only when everything succeeded, so a killed stage never leaves a
half-written output behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
from pathlib import Path
from typing import Iterable, Iterator

import pyarrow as pa
import pyarrow.parquet as pq

DOC_SCHEMA = pa.schema([
    pa.field("id", pa.string(), nullable=False),
    pa.field("text", pa.string(), nullable=False),
    pa.field("source", pa.string(), nullable=False),
    pa.field("domain", pa.string(), nullable=False),
    pa.field("url", pa.string(), nullable=True),
])

ROW_GROUP_ROWS = 4096
# A row group is also cut at this many bytes, so a batch of very long documents stays bounded.
ROW_GROUP_BYTES = 64 * 2**20
# Shards roll over at this many bytes of text: 64-512 MB at scale keeps the file count low for
# DVC; the demo passes a smaller size so both cores get work.
DEFAULT_SHARD_BYTES = 256 * 2**20
COMPRESSION = "zstd"


class ShardError(Exception):
    """An input shard that cannot be read; the message names the file and what to do."""


def doc_id(source: str, position: str) -> str:
    """Stable document id: a hash of the source name and the position (file:line or URL)."""
    return hashlib.blake2b(f"{source}\x00{position}".encode(), digest_size=12).hexdigest()


def list_shards(root: Path | str, pattern: str = "**/*.parquet") -> list[Path]:
    """All shards under root in a stable (sorted) order."""
    return sorted(p for p in Path(root).glob(pattern) if p.is_file())


def read_batches(path: Path | str, batch_size: int = ROW_GROUP_ROWS, columns: list[str] | None = None) -> Iterator[pa.RecordBatch]:
    """Yield record batches of one shard; a damaged file raises ShardError naming it."""
    try:
        pf = pq.ParquetFile(path)
        yield from pf.iter_batches(batch_size=batch_size, columns=columns)
    except (pa.ArrowInvalid, pa.ArrowIOError, OSError) as exc:
        raise ShardError(f"{path}: not a readable Parquet shard ({exc}); delete it and rerun the stage that writes it "
                         f"(`dvc repro -f <stage>`)") from None


class ShardWriter:
    """Write record batches to `<directory>/<prefix>-NNNN.parquet`, rolling to a new file once
    `shard_bytes` of data went into the current one. File names depend only on the order of the
    batches, never on timing, so the same input gives the same files."""

    def __init__(self, directory: Path | str, prefix: str, schema: pa.Schema,
                 shard_bytes: int = DEFAULT_SHARD_BYTES, row_group_rows: int = ROW_GROUP_ROWS,
                 numbered: bool = True):
        self.numbered = numbered  # False: one file named `<prefix>.parquet`, never rolled over
        self.directory = Path(directory)
        self.prefix = prefix
        self.schema = schema
        self.shard_bytes = shard_bytes
        self.row_group_rows = row_group_rows
        self.paths: list[Path] = []
        self.rows = 0
        self._writer: pq.ParquetWriter | None = None
        self._bytes_in_shard = 0
        self._pending: list[pa.RecordBatch] = []
        self._pending_rows = 0
        self._pending_bytes = 0

    def _open(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        name = f"{self.prefix}-{len(self.paths):04d}" if self.numbered else self.prefix
        path = self.directory / f"{name}.parquet"
        self.paths.append(path)
        self._writer = pq.ParquetWriter(path, self.schema, compression=COMPRESSION,
                                        write_statistics=False, store_schema=True)
        self._bytes_in_shard = 0

    def _flush(self) -> None:
        if not self._pending:
            return
        table = pa.Table.from_batches(self._pending, schema=self.schema)
        self._pending, self._pending_rows, self._pending_bytes = [], 0, 0
        if self._writer is None:
            self._open()
        self._writer.write_table(table, row_group_size=self.row_group_rows)
        self._bytes_in_shard += table.nbytes
        if self.numbered and self._bytes_in_shard >= self.shard_bytes:
            self._writer.close()
            self._writer = None

    def write(self, batch: pa.RecordBatch | pa.Table) -> None:
        if isinstance(batch, pa.Table):
            batches = batch.to_batches()
        else:
            batches = [batch]
        for b in batches:
            if b.num_rows == 0:
                continue
            if b.schema != self.schema:
                b = pa.RecordBatch.from_arrays([b.column(f.name).cast(f.type) for f in self.schema], schema=self.schema)
            self._pending.append(b)
            self._pending_rows += b.num_rows
            self._pending_bytes += b.nbytes
            self.rows += b.num_rows
            if self._pending_rows >= self.row_group_rows or self._pending_bytes >= ROW_GROUP_BYTES:
                self._flush()

    def close(self) -> list[Path]:
        self._flush()
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        return self.paths

    def __enter__(self) -> "ShardWriter":
        return self

    def __exit__(self, exc_type, *_) -> None:
        if exc_type is None:
            self.close()
        elif self._writer is not None:
            self._writer.close()


def _tmp_sibling(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp")


@contextlib.contextmanager
def atomic_dir(path: Path | str) -> Iterator[Path]:
    """Yield a fresh temporary directory; on success it replaces `path` in one rename."""
    path = Path(path)
    tmp = _tmp_sibling(path)
    if tmp.exists():
        shutil.rmtree(tmp)  # left over from a killed run
    tmp.mkdir(parents=True)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if path.exists():
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    os.replace(tmp, path)


def atomic_write_bytes(path: Path | str, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def atomic_write_text(path: Path | str, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def table_from_pylist(rows: Iterable[dict], schema: pa.Schema = DOC_SCHEMA) -> pa.Table:
    return pa.Table.from_pylist(list(rows), schema=schema)
