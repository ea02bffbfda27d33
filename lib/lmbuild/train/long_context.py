"""Long-context extension in anneal: continue a model at a longer seq_len with its RoPE adjusted,
on a mix of long and short documents, with attention kept inside each document.

- RoPE (`long_context.rope_theta`, `rope_scaling`): the model is loaded with a new base frequency
  ("adjusted base frequency", Xiong et al. 2023, arXiv:2309.16039: raising theta slows the
  rotation of every pair of dimensions, so positions beyond the trained range look like ones it
  has seen; Llama 3 raises it to 500000) and/or one of transformers' scaling methods: linear
  position interpolation (Chen et al. 2023, arXiv:2306.15595: positions divided by the factor),
  dynamic NTK, or YaRN (Peng et al. 2023, arXiv:2309.00071). The positions the extended model
  supports: the model's max_position_embeddings, times the scaling factor where there is one, or
  `max_length` when given (a base-frequency change alone sets no limit but the one asked for).
- Long and short documents (`long_share`, `long_min_tokens`): rows are drawn from two pools, the
  documents of at least long_min_tokens tokens and the rest, in the ratio asked (ProLong, Gao et
  al. 2024, arXiv:2410.02660, trains 60% long and 40% short to keep short-context skills). Which
  pool row i comes from is the low-discrepancy assignment of lmbuild/train/mixture.py; a row's
  draw number within its pool is the count of earlier rows of that pool, so the sampler has no
  state to checkpoint: a resumed run reads what an uninterrupted one would.
- Document masking (`doc_masking`): each block's documents (split after every end-of-text
  token) attend only within themselves and their positions restart at 0, the block-diagonal
  mask sft's packing uses (lmbuild/posttrain/packing.py: flash-attn's varlen kernel on a GPU, a
  dense mask on a CPU). Llama 3 trains long context this way (Dubey et al. 2024, section 3.2).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

from ..params import ParamsError
from ..posttrain.packing import model_inputs
from .data import DataError
from .mixture import DomainPools, row_domains

LONG, SHORT = "long", "short"


def extended_config(model_dir: Path, lc: dict, seq_len: int, stage: str):
    """The init model's config with the RoPE and length changes of `lc`, or None when there are
    none. ParamsError when seq_len or max_length exceeds what the RoPE settings support."""
    from transformers import AutoConfig
    theta, scaling, max_length = lc["rope_theta"], lc["rope_scaling"], lc["max_length"]
    if theta is None and scaling is None and max_length is None:
        return None
    config = AutoConfig.from_pretrained(model_dir)
    base = int(config.max_position_embeddings)
    rope = dict(getattr(config, "rope_parameters", None) or {"rope_type": "default", "rope_theta": 10000.0})
    problems = []
    if theta is not None:
        rope["rope_theta"] = float(theta)
    if scaling is not None:
        rope.update(rope_type=scaling["type"], factor=float(scaling["factor"]))
        if scaling["type"] == "yarn":
            rope["original_max_position_embeddings"] = base
        limit = int(base * scaling["factor"])
    elif theta is not None:
        limit = max_length or max(base, seq_len)
    else:
        limit = base
    if max_length is not None and max_length > limit:
        why = f"the model's {base}" + (f" x rope_scaling.factor {scaling['factor']:g}" if scaling else "")
        problems.append(f"params.yaml: {stage}.long_context.max_length: {max_length} exceeds the {limit} positions "
                        f"the RoPE settings support ({why}); raise rope_scaling.factor or set rope_theta, or lower "
                        f"max_length")
    supported = max_length or limit
    if seq_len > supported:
        problems.append(f"params.yaml: {stage}.seq_len: {seq_len} exceeds the {supported} positions the RoPE settings "
                        f"support; set {stage}.long_context.rope_scaling (factor >= {seq_len / base:.2g}) or "
                        f"rope_theta with max_length >= {seq_len}")
    if problems:
        raise ParamsError(problems)
    config.rope_parameters = rope
    config.max_position_embeddings = supported
    return config


class LengthMix:
    """Global batches drawn from the long and the short documents of one split in a fixed ratio."""

    def __init__(self, split_dir: Path, seq_len: int, seed: int, long_share: float, long_min_tokens: int, stage: str):
        self.pools = DomainPools(split_dir, seq_len, seed,
                                 group=lambda dom, length: np.where(length >= long_min_tokens, LONG, SHORT))
        self.seed, self.min_tokens = seed, long_min_tokens
        share = {LONG: long_share, SHORT: 1.0 - long_share}
        for name, w in share.items():
            if w > 0 and self.pools.n_blocks.get(name, 0) == 0:
                raise DataError(f"{split_dir}: no {name} documents ({'at least' if name == LONG else 'under'} "
                                f"{long_min_tokens} tokens) fill a block of {seq_len}; change "
                                f"{stage}.long_context.long_share or long_min_tokens")
        self.names = self.pools.domains            # sorted: the order row_domains indexes
        self.weights = np.array([share.get(n, 0.0) for n in self.names])

    def rows(self, ids: list[int]) -> torch.Tensor:
        """The blocks of global rows `ids` (row i is the i-th row of the whole run)."""
        pool = row_domains(0, max(ids) + 1, self.weights, self.seed)
        nth = np.zeros(len(pool), dtype=np.int64)   # draw number of each row within its pool
        for k in range(len(self.names)):
            m = pool == k
            nth[m] = np.arange(int(m.sum()))
        out = []
        for i in ids:
            name = self.names[pool[i]]
            out.append(self.pools.read(name, self.pools.block_of(name, int(nth[i]))))
        return torch.from_numpy(np.stack(out))

    def metrics(self) -> dict:
        return {f"{n}_tokens": self.pools.tokens[n] for n in self.names} | {
            "long_share": float(self.weights[self.names.index(LONG)]) if LONG in self.names else 0.0,
            "long_min_tokens": self.min_tokens}


def segments(x: torch.Tensor, eot: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(seq_ids, position_ids) [B, L] of the documents in blocks x: a document runs to and
    including its end-of-text token; positions restart at 0 in each."""
    is_eot = (x == eot).long()
    seq = is_eot.cumsum(dim=1) - is_eot
    idx = torch.arange(x.shape[1]).expand_as(x)
    start = torch.zeros_like(x)
    start[:, 1:] = torch.where(seq[:, 1:] != seq[:, :-1], idx[:, 1:], torch.zeros_like(idx[:, 1:]))
    start = start.cummax(dim=1).values
    return seq, idx - start


def doc_masked(batch: dict, eot: int, attn: str) -> dict:
    """A {input_ids, labels} batch with document masking: the mask (or flattened varlen rows)
    and restarted position_ids of lmbuild/posttrain/packing.model_inputs."""
    seq, pos = segments(batch["input_ids"], eot)
    return model_inputs({"input_ids": batch["input_ids"], "labels": batch["labels"], "position_ids": pos,
                         "seq_ids": seq}, attn, with_labels=True)


def say(stage: str, config, lc: dict, doc_masking: bool) -> None:
    rope = config.rope_parameters if config is not None else None
    print(f"{stage}: long context: RoPE {rope}, {config.max_position_embeddings if config else 'unchanged'} "
          f"positions; long share {lc['long_share']}; document masking {'on' if doc_masking else 'off'}",
          file=sys.stderr)
