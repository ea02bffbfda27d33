"""Mixtures applied at training time: each batch drawn from per-domain token pools with weights.

The default pretrain path reads one stream the mix stage already mixed. With `mixture` set, the
trainer reads the `pool` split instead (every usable document once, tokenized once) and draws
each row of a batch from one domain's pool, so a proxy, DoReMi or dynamic batch loading can train
on any mixture without re-tokenizing.

Which domain row i of the run comes from: a low-discrepancy sequence u_i = frac(i * phi + s)
(phi = golden ratio conjugate, s from the seed) mapped through the cumulative weights in force at
that step. Over any window of n rows each domain gets n * w_d rows to within about log(n) rows,
far closer than independent draws (whose error grows as sqrt(n)), and the assignment of row i
depends only on i and the weights, not on the number of processes. Within a domain, its blocks
(seq_len tokens of the domain's documents concatenated in index order) are taken in a seeded
permutation per epoch of that domain. The counters of blocks taken per domain are the sampler's
state; they live in the checkpoint with the weights, so a resumed run draws what an
uninterrupted one would.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch

from .data import DataError, TokenStream

PHI = (np.sqrt(5.0) - 1.0) / 2.0  # golden ratio conjugate: the one-dimensional Kronecker sequence


class DomainPools:
    """The documents of one token split grouped by domain, each domain one virtual stream cut into
    blocks of seq_len tokens. `first_copies_only` keeps rows with repeat == 0 (the mix writes one
    row per epoch copy; a pool holds each document once and the sampler decides the epochs).
    `group(domains, lengths)` pools by another label (long-context training: long and short
    documents); the pools are then named by those labels."""

    def __init__(self, split_dir: Path | str, seq_len: int, seed: int, first_copies_only: bool = True,
                 group=None):
        self.stream = TokenStream(split_dir)
        self.seq_len, self.seed = seq_len, seed
        cols = ["shard", "start", "length", "domain"] + (["repeat"] if first_copies_only else [])
        index = pq.read_table(Path(split_dir) / "index.parquet", columns=cols)
        shard = index.column("shard").to_numpy().astype(np.int64)
        start = self.stream.offsets[shard] + index.column("start").to_numpy().astype(np.int64)
        length = index.column("length").to_numpy().astype(np.int64)
        domain = np.asarray(index.column("domain").to_pylist(), dtype=object)
        if group is not None:  # pools by another key than the domain: group(domains, lengths) -> labels
            domain = np.asarray(group(domain, length), dtype=object)
        keep = index.column("repeat").to_numpy() == 0 if first_copies_only else np.ones(len(length), bool)
        self.domains = sorted(set(domain[keep].tolist()))
        self._starts, self._cum, self.n_blocks, self.tokens = {}, {}, {}, {}
        for d in self.domains:
            rows = np.flatnonzero(keep & (domain == d))
            self._starts[d] = start[rows]
            self._cum[d] = np.concatenate([[0], np.cumsum(length[rows])])
            self.tokens[d] = int(self._cum[d][-1])
            self.n_blocks[d] = self.tokens[d] // seq_len
        self._perm: dict[tuple[str, int], np.ndarray] = {}

    def block_of(self, domain: str, k: int) -> int:
        """The block the k-th draw from `domain` reads: a seeded permutation per epoch."""
        n = self.n_blocks[domain]
        if n == 0:
            raise DataError(f"domain {domain!r} has {self.tokens[domain]} tokens, fewer than one block of "
                            f"seq_len {self.seq_len}; give it weight 0 or lower seq_len")
        epoch, j = divmod(k, n)
        key = (domain, epoch)
        if key not in self._perm:
            d = self.domains.index(domain)
            self._perm = {kk: v for kk, v in self._perm.items() if kk[0] != domain}
            self._perm[key] = np.random.default_rng([self.seed, d, epoch]).permutation(n)
        return int(self._perm[key][j])

    def read(self, domain: str, block: int) -> np.ndarray:
        """Tokens [block * seq_len, (block + 1) * seq_len) of the domain's stream, as int64."""
        lo, hi = block * self.seq_len, (block + 1) * self.seq_len
        cum, starts = self._cum[domain], self._starts[domain]
        out, pos = [], lo
        doc = int(np.searchsorted(cum, lo, side="right") - 1)
        while pos < hi:
            take = min(hi, int(cum[doc + 1])) - pos
            out.append(self.stream.read(int(starts[doc] + pos - cum[doc]), take))
            pos += take
            doc += 1
        return np.concatenate(out)


def row_domains(first: int, n: int, weights: np.ndarray, seed: int) -> np.ndarray:
    """Domain index of rows first .. first+n-1 under `weights` (one weight vector for all n)."""
    offset = np.random.default_rng([seed, 7]).random()
    u = np.mod((np.arange(first, first + n, dtype=np.float64) * PHI) + offset, 1.0)
    cum = np.cumsum(weights / weights.sum())
    return np.minimum(np.searchsorted(cum, u, side="right"), len(weights) - 1)


class MixtureSampler:
    """Global batches of blocks drawn from DomainPools with per-step weights.

    `weights` is the vector in force; a schedule or an online method (DoReMi, dynamic batch
    loading) sets it between steps with `set_weights`. `batch(step)` must be called for steps in
    increasing order (the trainer does); it returns the global batch as (rows, domain index per
    row); each process then takes its slice, so every world size trains on the same batches.
    """

    def __init__(self, pools: DomainPools, weights: dict[str, float], batch_size: int, seed: int):
        missing = sorted(set(weights) - set(pools.domains))
        if missing:
            raise DataError(f"mixture weights name {', '.join(map(repr, missing))}, not a domain of the pool "
                            f"({', '.join(pools.domains)})")
        self.pools, self.B, self.seed = pools, batch_size, seed
        self.domains = pools.domains
        self.weights = self._vector(weights)
        self.taken = np.zeros(len(self.domains), dtype=np.int64)   # blocks drawn per domain so far
        self.next_step = 0
        self.weight_sum = np.zeros(len(self.domains))              # for the average over training
        self._cache: tuple[int, torch.Tensor, np.ndarray] | None = None

    def _vector(self, weights: dict[str, float]) -> np.ndarray:
        w = np.array([float(weights.get(d, 0.0)) for d in self.domains])
        if w.sum() <= 0:
            raise DataError("mixture weights are all zero")
        return w / w.sum()

    def set_weights(self, weights: np.ndarray | dict[str, float]) -> None:
        self.weights = self._vector(weights) if isinstance(weights, dict) else np.asarray(weights, float) / np.sum(weights)

    def batch(self, step: int) -> tuple[torch.Tensor, np.ndarray]:
        if self._cache is not None and self._cache[0] == step:
            return self._cache[1], self._cache[2]
        if step != self.next_step:
            raise RuntimeError(f"mixture sampler: step {step} asked, expected {self.next_step} (steps run in order)")
        doms = row_domains(step * self.B, self.B, self.weights, self.seed)
        rows = []
        for d in doms:
            name = self.domains[d]
            rows.append(self.pools.read(name, self.pools.block_of(name, int(self.taken[d]))))
            self.taken[d] += 1
        self.weight_sum += self.weights
        self.next_step = step + 1
        x = torch.from_numpy(np.stack(rows))
        self._cache = (step, x, doms)
        return x, doms

    def epochs(self) -> dict[str, float]:
        """Epochs of each domain's pool drawn so far."""
        return {d: float(self.taken[i]) / max(self.pools.n_blocks[d], 1) for i, d in enumerate(self.domains)}

    def average_weights(self) -> dict[str, float]:
        steps = max(self.next_step, 1)
        return {d: float(self.weight_sum[i]) / steps for i, d in enumerate(self.domains)}

    def state_dict(self) -> dict:
        return {"taken": self.taken.tolist(), "weights": self.weights.tolist(), "next_step": self.next_step,
                "weight_sum": self.weight_sum.tolist()}

    def load_state_dict(self, state: dict) -> None:
        self.taken = np.asarray(state["taken"], dtype=np.int64)
        self.weights = np.asarray(state["weights"], dtype=np.float64)
        self.next_step = int(state["next_step"])
        self.weight_sum = np.asarray(state["weight_sum"], dtype=np.float64)
        self._cache = None


def planned_epochs(pools: DomainPools, weights: dict[str, float], total_rows: int) -> dict[str, float]:
    """Epochs of each pool a run of `total_rows` blocks at fixed `weights` would draw."""
    tot = sum(weights.values())
    return {d: total_rows * weights.get(d, 0.0) / tot / max(pools.n_blocks[d], 1) for d in pools.domains}
