"""Token shards: the format the pretrain and anneal stages memory-map.

`data/tokens/<split>/`:
- `tokens-NNNNN.bin`  flat little-endian uint16 (vocab_size <= 65536) or uint32 token ids; each
                      document's tokens followed by the `<|endoftext|>` id; a document never
                      spans two files; files roll over once `shard_bytes` would be exceeded
- `index.parquet`     one row per document, in mix order: shard int32, start int64 (token offset
                      in its shard), length int32 (tokens incl. the trailing eot), id, source,
                      domain (strings), repeat int32
- `meta.json`         dtype, vocab_size, eot_id, pad_id, tokens, documents, shards (file names),
                      tokens_per_domain

Read a document back: np.memmap(dir / meta["shards"][shard], dtype)[start:start + length].
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

INDEX_SCHEMA = pa.schema([
    pa.field("shard", pa.int32(), nullable=False), pa.field("start", pa.int64(), nullable=False),
    pa.field("length", pa.int32(), nullable=False), pa.field("id", pa.string(), nullable=False),
    pa.field("source", pa.string(), nullable=False), pa.field("domain", pa.string(), nullable=False),
    pa.field("repeat", pa.int32(), nullable=False),
])
PART_SCHEMA = pa.schema([f for f in INDEX_SCHEMA if f.name not in ("shard", "start")])


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype("<u2") if vocab_size <= 65536 else np.dtype("<u4")


def shard_name(i: int) -> str:
    return f"tokens-{i:05d}.bin"


class TokenShardWriter:
    """Append (tokens, per-document rows) in order; roll files at document boundaries."""

    def __init__(self, directory: Path, dtype: np.dtype, shard_bytes: int):
        self.directory, self.dtype = Path(directory), np.dtype(dtype)
        self.cap = max(1, shard_bytes // self.dtype.itemsize)  # tokens per shard
        self.names: list[str] = []
        self.index: list[pa.Table] = []
        self._file = None
        self._used = 0

    def _roll(self) -> None:
        if self._file is not None:
            self._file.close()
        self.names.append(shard_name(len(self.names)))
        self._file = open(self.directory / self.names[-1], "wb")
        self._used = 0

    def write(self, tokens: np.ndarray, rows: pa.Table) -> None:
        """tokens: flat ids of rows' documents (with eots); rows: PART_SCHEMA, `length` column."""
        lengths = rows.column("length").to_numpy().astype(np.int64)
        ends = np.cumsum(lengths)
        done = 0  # documents written
        while done < len(lengths):
            if self._file is None:
                self._roll()
            base = ends[done - 1] if done else 0
            fit = int(np.searchsorted(ends, base + self.cap - self._used, side="right")) - done
            if fit <= 0:
                if self._used > 0:
                    self._roll()
                    continue
                fit = 1  # one document longer than a shard gets a shard of its own
            stop = done + fit
            chunk = tokens[base:ends[stop - 1]]
            starts = self._used + np.concatenate([[0], np.cumsum(lengths[done:stop])[:-1]])
            part = rows.slice(done, fit)
            self.index.append(pa.table({
                "shard": pa.array(np.full(fit, len(self.names) - 1, np.int32)),
                "start": pa.array(starts.astype(np.int64)), **{n: part.column(n) for n in PART_SCHEMA.names}},
            ).select(INDEX_SCHEMA.names).cast(INDEX_SCHEMA))
            self._file.write(chunk.astype(self.dtype, copy=False).tobytes())
            self._used += len(chunk)
            done = stop

    def close(self, meta: dict) -> dict:
        if self._file is not None:
            self._file.close()
        index = pa.concat_tables(self.index) if self.index else INDEX_SCHEMA.empty_table()
        pq.write_table(index, self.directory / "index.parquet", compression="zstd", row_group_size=65536,
                       write_statistics=False)
        tokens = int(pc.sum(index.column("length")).as_py() or 0)
        per_domain: dict[str, int] = {}
        if index.num_rows:
            grouped = index.group_by("domain").aggregate([("length", "sum")])
            per_domain = dict(sorted(zip(grouped.column("domain").to_pylist(),
                                         grouped.column("length_sum").to_pylist())))
        meta = {**meta, "dtype": self.dtype.name, "tokens": tokens, "documents": index.num_rows,
                "shards": list(self.names), "tokens_per_domain": per_domain}
        (self.directory / "meta.json").write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")
        return meta


def read_document(directory: Path, meta: dict, row: dict) -> np.ndarray:
    """One document's tokens (incl. its eot) from an index row, via a memory map."""
    data = np.memmap(Path(directory) / meta["shards"][row["shard"]], dtype=np.dtype(meta["dtype"]).newbyteorder("<"),
                     mode="r")
    return np.asarray(data[row["start"]:row["start"] + row["length"]])
