"""Plan the mixes from an index of the pool: one row per document with its id, domain, size
and quality scores (never the text), so memory grows with the number of documents, not bytes.

Tokens are estimated from UTF-8 bytes as bytes / `mix.bytes_per_token` until a tokenizer
exists; the tokenize stage reports the real bytes per token per domain to set it from.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..shards import read_batches
from .selection import Fill, fill, order, pool_mask, uniform

SPLITS = ("pretrain", "anneal")


class MixError(Exception):
    """A mix request that the params or the data cannot satisfy; one line per problem."""


@dataclass
class Index:
    shards: list[Path]
    shard_of: np.ndarray  # per document: which shard
    row: np.ndarray  # per document: row within its shard
    ids: list[str]
    domain: np.ndarray  # object array of domain names
    nbytes: np.ndarray
    scores: dict[str, np.ndarray] = field(default_factory=dict)  # rater -> float64 (nan if missing)


def build_index(shards: list[Path], raters: set[str]) -> Index:
    parts: dict[str, list] = {"shard": [], "row": [], "id": [], "domain": [], "bytes": []}
    score_parts: dict[str, list] = {r: [] for r in raters}
    for s, path in enumerate(shards):
        row = 0
        for batch in read_batches(path):
            names = batch.schema.names
            n = batch.num_rows
            parts["shard"].append(np.full(n, s, dtype=np.int32))
            parts["row"].append(np.arange(row, row + n, dtype=np.int64))
            parts["id"].extend(batch.column("id").to_pylist())
            parts["domain"].extend(batch.column("domain").to_pylist())
            parts["bytes"].append(pc.binary_length(batch.column("text")).to_numpy(zero_copy_only=False))
            for rater in raters:
                col = f"quality_{rater}"
                if col not in names:
                    raise MixError(f"{path}: no column {col!r} (has {', '.join(n for n in names if n.startswith('quality_')) or 'no quality columns'}); "
                                   f"add a rater named {rater!r} to rate.raters or change the mix's select.rater")
                parts_col = batch.column(col).cast(pa.float64()).fill_null(np.nan)
                score_parts[rater].append(parts_col.to_numpy(zero_copy_only=False))
            row += n
    cat = lambda xs, dt: np.concatenate(xs) if xs else np.zeros(0, dtype=dt)  # noqa: E731
    return Index(shards=shards, shard_of=cat(parts["shard"], np.int32), row=cat(parts["row"], np.int64),
                 ids=parts["id"], domain=np.array(parts["domain"], dtype=object),
                 nbytes=cat(parts["bytes"], np.int64).astype(np.int64),
                 scores={r: cat(v, np.float64) for r, v in score_parts.items()})


def raters_used(cfg: dict) -> set[str]:
    return {d["select"]["rater"] for split in SPLITS for d in cfg[split]["domains"].values()
            if d["select"]["method"] != "all"}


def check_request(cfg: dict, index: Index) -> list[str]:
    """Cross-checks that need the data: domains named in params exist, selections have a rater."""
    problems = []
    present = set(index.domain.tolist())
    for split in SPLITS:
        for name, dcfg in cfg[split]["domains"].items():
            key = f"params.yaml: mix.{split}.domains.{name}"
            if name not in present:
                problems.append(f"{key}: no documents of domain {name!r} in the pool (domains: {', '.join(sorted(present))})")
            sel = dcfg["select"]
            if sel["method"] != "all" and not sel.get("rater"):
                problems.append(f"{key}.select.rater: method {sel['method']!r} needs a rater name")
            if sel["method"] == "threshold" and sel.get("threshold") is None:
                problems.append(f"{key}.select.threshold: method 'threshold' needs a threshold")
            if sel["method"] == "top_fraction" and sel.get("fraction") is None:
                problems.append(f"{key}.select.fraction: method 'top_fraction' needs a fraction")
            if sel["method"] == "qurating" and sel.get("tau") is None:
                problems.append(f"{key}.select.tau: method 'qurating' needs a temperature tau")
        if sum(d["weight"] for d in cfg[split]["domains"].values()) <= 0:
            problems.append(f"params.yaml: mix.{split}.domains: weights must sum to more than 0")
    return problems


def validation_mask(index: Index, val: dict, seed: int) -> np.ndarray:
    """Held-out documents: per domain the `fraction` with the smallest seeded hash, at least
    `min_docs` and at most `max_docs`. Chosen by id, so the same documents whatever the order."""
    u = uniform(index.ids, seed, "val")
    mask = np.zeros(len(index.ids), dtype=bool)
    for domain in sorted(set(index.domain.tolist())):
        idx = np.flatnonzero(index.domain == domain)
        k = max(int(np.ceil(val["fraction"] * len(idx))), val["min_docs"])
        k = min(k, val["max_docs"], len(idx) - 1)  # a domain always keeps a training document
        mask[idx[np.argsort(u[idx], kind="stable")[:k]]] = True
    return mask


def heldout_mask(index: Index, val_dir: Path) -> np.ndarray:
    """The documents of `index` whose id is in the val split at val_dir (another mix's)."""
    shards = sorted(Path(val_dir).glob("*/*.parquet"))
    if not shards:
        raise MixError(f"{val_dir}: no held-out shards to keep; run the main pipeline's mix first (dvc repro mix)")
    ids = [i for path in shards for batch in read_batches(path, columns=["id"]) for i in batch.column("id").to_pylist()]
    return np.isin(np.asarray(index.ids, dtype=object), np.asarray(ids, dtype=object))


@dataclass
class SplitPlan:
    repeats: np.ndarray  # per document of the index
    fills: dict[str, Fill]  # per domain
    shares: dict[str, float]  # requested share per domain


def plan_split(name: str, split_cfg: dict, index: Index, train: np.ndarray, bytes_per_token: float,
               seed: int) -> SplitPlan:
    tokens = index.nbytes / bytes_per_token
    weights = {d: c["weight"] for d, c in split_cfg["domains"].items()}
    total_w = sum(weights.values())
    repeats = np.zeros(len(index.ids), dtype=np.int32)
    fills: dict[str, Fill] = {}
    for domain, dcfg in split_cfg["domains"].items():
        idx = np.flatnonzero((index.domain == domain) & train)
        sel = dcfg["select"]
        scores = index.scores[sel["rater"]][idx] if sel["method"] != "all" else None
        if scores is not None:
            scores = np.nan_to_num(scores, nan=-np.inf)  # a document without a score is drawn last
        u = uniform([index.ids[i] for i in idx], seed, f"{name}:{domain}")
        eligible = pool_mask(len(idx), scores, sel)
        sub = np.flatnonzero(eligible)
        draw = order(scores[sub] if scores is not None else None, u[sub], sel)
        target = split_cfg["token_budget"] * weights[domain] / total_w
        f = fill(tokens[idx], eligible, draw, target, dcfg["max_epochs"])
        repeats[idx] = f.repeats
        fills[domain] = f
    return SplitPlan(repeats, fills, {d: w / total_w for d, w in weights.items()})


def shortfall_lines(name: str, split_cfg: dict, plan: SplitPlan) -> list[str]:
    lines = []
    for domain, f in plan.fills.items():
        if f.capped:
            cap = split_cfg["domains"][domain]["max_epochs"]
            lines.append(f"mix: {name} domain {domain!r} asks for {f.requested:,.0f} tokens but its pool holds "
                         f"{f.available:,.0f} (estimated), so {cap} epoch(s) (mix.{name}.domains.{domain}.max_epochs) "
                         f"give {f.achieved:,.0f}; raise max_epochs, lower its weight or mix.{name}.token_budget, "
                         f"or set mix.on_shortfall: proceed")
    return lines
