"""Token shards as training blocks.

A split directory (data/tokens/<split>/) holds `tokens-NNNNN.bin` (flat little-endian uint16 or
uint32 token ids, each document followed by the eot id), `index.parquet` (one row per document:
shard, start, length, domain, ...) and `meta.json`. Training reads the shards memory-mapped as one
concatenated stream cut into fixed-length blocks of `seq_len` tokens. Block order is a seeded
permutation per epoch, so sample number i (counted over the whole run) always names the same
block: the data position in a checkpoint is just the number of samples consumed.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch


class DataError(Exception):
    """Token data that cannot be used; the message names the file and what to do."""


class TokenStream:
    """The shards of one split, memory-mapped, addressable as one token array."""

    def __init__(self, split_dir: Path | str):
        self.dir = Path(split_dir)
        meta_path = self.dir / "meta.json"
        if not meta_path.exists():
            raise DataError(f"{meta_path}: missing; run the tokenize stage first (`dvc repro tokenize`)")
        self.meta = json.loads(meta_path.read_text())
        self.dtype = np.dtype(self.meta["dtype"]).newbyteorder("<")
        self.arrays = []
        for name in self.meta["shards"]:
            path = self.dir / name
            if not path.exists() or path.stat().st_size % self.dtype.itemsize:
                raise DataError(f"{path}: missing or truncated; rerun the tokenize stage")
            self.arrays.append(np.memmap(path, dtype=self.dtype, mode="r") if path.stat().st_size
                               else np.zeros(0, self.dtype))
        self.offsets = np.cumsum([0] + [len(a) for a in self.arrays])
        self.total = int(self.offsets[-1])

    def read(self, start: int, n: int) -> np.ndarray:
        """Tokens [start, start + n) of the concatenated stream, as int64."""
        out = np.empty(n, dtype=np.int64)
        done = 0
        k = int(np.searchsorted(self.offsets, start, side="right") - 1)
        while done < n:
            lo = start + done - self.offsets[k]
            take = min(n - done, len(self.arrays[k]) - lo)
            out[done:done + take] = self.arrays[k][lo:lo + take]
            done += take
            k += 1
        return out

    def unigram_counts(self, vocab_size: int, chunk: int = 1 << 24) -> np.ndarray:
        counts = np.zeros(vocab_size, dtype=np.int64)
        for a in self.arrays:
            for i in range(0, len(a), chunk):
                counts += np.bincount(a[i:i + chunk], minlength=vocab_size)[:vocab_size]
        return counts


class EpochOrder:
    """Sample i (counted over the whole run) -> item index: a fresh seeded permutation per epoch."""

    def __init__(self, n: int, seed: int):
        self.n, self.seed = n, seed
        self._perm: dict[int, np.ndarray] = {}

    def index(self, i: int) -> int:
        epoch, j = divmod(i, self.n)
        if epoch not in self._perm:
            self._perm = {epoch: np.random.default_rng([self.seed, epoch]).permutation(self.n)}
        return int(self._perm[epoch][j])


class BlockOrder(EpochOrder):
    """Sample i -> block of seq_len tokens, in a seeded order per epoch."""

    def __init__(self, n_tokens: int, seq_len: int, seed: int):
        self.seq_len = seq_len
        self.n_blocks = n_tokens // seq_len
        if self.n_blocks == 0:
            raise DataError(f"only {n_tokens} tokens, fewer than one block of seq_len {seq_len}")
        super().__init__(self.n_blocks, seed)

    def block(self, i: int) -> int:
        return self.index(i)

    def batch(self, stream: TokenStream, samples) -> torch.Tensor:
        rows = [stream.read(self.block(i) * self.seq_len, self.seq_len) for i in samples]
        return torch.from_numpy(np.stack(rows))


def rank_samples(step: int, global_batch: int, rank: int, world: int, micro: int) -> list[list[int]]:
    """Sample ids of one optimizer step for one process, as micro-batches. Each process takes a
    contiguous slice of the global batch, so any world size sees the same global batch."""
    per_rank = global_batch // world
    first = step * global_batch + rank * per_rank
    ids = list(range(first, first + per_rank))
    return [ids[i:i + micro] for i in range(0, per_rank, micro)]


def val_blocks(split_dir: Path | str, seq_len: int, blocks_per_domain: int) -> dict[str, torch.Tensor]:
    """Fixed validation blocks per domain: each domain's documents in index order, concatenated
    and cut into up to `blocks_per_domain` blocks (one shorter block when a domain is small)."""
    stream = TokenStream(split_dir)
    index = pq.read_table(Path(split_dir) / "index.parquet", columns=["shard", "start", "length", "domain"])
    cols = {c: index.column(c).to_numpy(zero_copy_only=False) for c in index.column_names}
    out: dict[str, torch.Tensor] = {}
    want = seq_len * blocks_per_domain
    for domain in sorted(set(cols["domain"].tolist())):
        parts, have = [], 0
        for i in np.flatnonzero(cols["domain"] == domain):
            s, st, ln = int(cols["shard"][i]), int(cols["start"][i]), int(cols["length"][i])
            parts.append(np.asarray(stream.arrays[s][st:st + ln], dtype=np.int64))
            have += ln
            if have >= want:
                break
        toks = np.concatenate(parts)[:want]
        n = len(toks) // seq_len
        out[domain] = (torch.from_numpy(toks[:n * seq_len].reshape(n, seq_len)) if n
                       else torch.from_numpy(toks[None, :]))
    return out


def unigram_loss(train: TokenStream, val: dict[str, torch.Tensor], vocab_size: int) -> float:
    """Cross-entropy (nats/token) of the val blocks under the train unigram distribution
    (add-one smoothed): the loss a model that ignores context would reach."""
    counts = train.unigram_counts(vocab_size).astype(np.float64) + 1.0
    logp = np.log(counts / counts.sum())
    toks = np.concatenate([b[:, 1:].reshape(-1).numpy() for b in val.values()])  # predicted positions
    return float(-logp[toks].mean())
