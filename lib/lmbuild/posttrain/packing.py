"""Packing: put many short (input_ids, labels) examples into full rows of `seq_len` tokens, so SFT
spends its compute on tokens rather than padding, and keep the examples from seeing each other.

Placement: first-fit decreasing (FFD). Examples are taken longest first (ties: input order) and
each goes into the lowest-numbered row that still has room, found in O(log rows) with a max-tree
over the rows' free space. FFD needs at most 11/9 OPT + 6/9 rows (Dosa 2007) and is
deterministic: same examples and seq_len give byte-identical arrays. Because it sorts by length,
row index correlates with example length: shuffle the rows (seeded) when training. An example is
never split across rows; one longer than seq_len keeps its first seq_len tokens and is counted in
`n_truncated`; empty examples are skipped.

Inside a row: `position_ids` restart at 0 for every example (and once more for the padding tail),
`seq_ids` hold the example's index within the row (-1 on padding), labels are -100 on padding and
on each example's first token. That first label is never a target for the example alone either
(causal LMs shift labels by one), but in a packed row it would be predicted from the previous
example's last token; blanking it keeps the loss of a packed row the sum of its examples' losses.

Keeping examples apart (what `model_inputs` passes to a transformers 5.23 model):

- flash_attention_2: no mask. transformers uses flash-attn's varlen kernel when `position_ids`
  show several sequences (each restart at 0 begins one), but only for batch size 1, so the rows
  are flattened to [1, N*L]. The varlen kernel skips the blocks between examples: packing costs
  no extra FLOPs.
- sdpa / eager: an explicit 4D mask [N, 1, L, L] from `packed_attention_mask`: token i attends to
  j iff j <= i and both belong to the same example; padding attends to itself only, so no softmax
  row is empty (no NaN). A 4D mask is passed through `masking_utils` unchanged. eager *adds* the
  mask to the scores, so it must be additive float (0 = attend, finfo.min = blocked) in the
  model's dtype; a bool mask there would be added as 0/1 and leak silently. SDPA takes either a
  bool mask (True = attend) or an additive float one; `model_inputs` gives it bool (4x smaller).
  With any mask SDPA on CPU (and CUDA's efficient/math kernels) computes the full dense [L, L]
  score matrix for every row and head and then discards the masked part: no cross-example
  attention, but no FLOP savings, and the mask itself costs N*L*L bytes (bool) or 4x that
  (float32).
- Why not position_ids alone under sdpa/eager: transformers 5.23 does infer the same block mask
  from position_ids resets, but only when `past_key_values` is None, and Llama-style models make a
  DynamicCache whenever `config.use_cache` is True (the default, in train() mode too). So
  `model(input_ids, position_ids=...)` leaks across examples unless `use_cache=False` is also
  passed. `model_inputs` passes the explicit mask and `use_cache=False` (a cache is wasted memory
  on packed rows anyway); tests pin both behaviours.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..lm.chat import IGNORE_INDEX


@dataclass
class Packed:
    input_ids: np.ndarray  # [N, L] int64, pad_id on padding
    labels: np.ndarray  # [N, L] int64, -100 on padding and on each example's first token
    position_ids: np.ndarray  # [N, L] int64, 0.. within each example, 0.. again over the padding tail
    seq_ids: np.ndarray  # [N, L] int64, example index within the row, -1 on padding
    n_examples: int  # examples packed (non-empty inputs)
    n_truncated: int  # of those, cut to seq_len
    fill: float  # share of non-pad tokens over N*L
    placement: np.ndarray  # [len(examples), 2] int64: (row, start) of each input example, (-1, -1) if skipped


def _first_fit_decreasing(lengths: list[int], seq_len: int) -> tuple[list[int], int]:
    """Row of each example (FFD order), number of rows used."""
    n = len(lengths)
    size = 1
    while size < max(n, 1):
        size *= 2
    # Max-tree over the free space of `size` rows (all empty at first): tree[1] is the root,
    # leaves tree[size + r]. Unopened rows are empty, so "leftmost row with room" opens rows in order.
    tree = [seq_len] * (2 * size)
    rows = [-1] * n
    used = 0
    for i in sorted(range(n), key=lambda k: (-lengths[k], k)):
        need, node = lengths[i], 1
        while node < size:
            node = 2 * node if tree[2 * node] >= need else 2 * node + 1
        row = node - size
        rows[i] = row
        used = max(used, row + 1)
        tree[node] -= need
        node //= 2
        while node:
            tree[node] = max(tree[2 * node], tree[2 * node + 1])
            node //= 2
    return rows, used


def pack(examples: list[tuple[list[int], list[int]]], seq_len: int, pad_id: int) -> Packed:
    """Pack (input_ids, labels) examples into rows of seq_len tokens by first-fit decreasing."""
    if seq_len < 1:
        raise ValueError(f"seq_len must be >= 1, got {seq_len}")
    lengths, n_truncated, keep = [], 0, []
    for k, (ids, labels) in enumerate(examples):
        if len(ids) != len(labels):
            raise ValueError(f"example {k}: {len(ids)} input_ids but {len(labels)} labels")
        if len(ids) == 0:
            continue
        n_truncated += len(ids) > seq_len
        keep.append(k)
        lengths.append(min(len(ids), seq_len))
    rows, n_rows = _first_fit_decreasing(lengths, seq_len)

    input_ids = np.full((n_rows, seq_len), pad_id, dtype=np.int64)
    out_labels = np.full((n_rows, seq_len), IGNORE_INDEX, dtype=np.int64)
    position_ids = np.zeros((n_rows, seq_len), dtype=np.int64)
    seq_ids = np.full((n_rows, seq_len), -1, dtype=np.int64)
    placement = np.full((len(examples), 2), -1, dtype=np.int64)
    cursor = [0] * n_rows
    count = [0] * n_rows
    # Fill rows in FFD placement order (longest first), the order the rows received them.
    for j in sorted(range(len(keep)), key=lambda m: (-lengths[m], m)):
        k, row, n = keep[j], rows[j], lengths[j]
        start = cursor[row]
        ids, labels = examples[k]
        input_ids[row, start:start + n] = ids[:n]
        out_labels[row, start:start + n] = labels[:n]
        out_labels[row, start] = IGNORE_INDEX
        position_ids[row, start:start + n] = np.arange(n)
        seq_ids[row, start:start + n] = count[row]
        placement[k] = (row, start)
        cursor[row] += n
        count[row] += 1
    for row in range(n_rows):
        tail = seq_len - cursor[row]
        position_ids[row, cursor[row]:] = np.arange(tail)
    total = n_rows * seq_len
    return Packed(input_ids, out_labels, position_ids, seq_ids, n_examples=len(keep), n_truncated=n_truncated,
                  fill=float(sum(lengths)) / total if total else 0.0, placement=placement)


def packed_attention_mask(seq_ids: torch.Tensor, dtype=torch.float32) -> torch.Tensor:
    """[N, 1, L, L] block-diagonal causal mask from seq_ids [N, L] (-1 = padding).

    token i may attend to j iff j <= i and seq_ids[i] == seq_ids[j] != -1; a padding token attends
    to itself only. dtype=torch.bool gives True = may attend (SDPA); a float dtype gives the
    additive form, 0 where allowed and finfo(dtype).min elsewhere (eager and SDPA).
    """
    seq_ids = torch.as_tensor(seq_ids)
    n, length = seq_ids.shape
    causal = torch.ones(length, length, dtype=torch.bool, device=seq_ids.device).tril()
    same = (seq_ids[:, :, None] == seq_ids[:, None, :]) & (seq_ids[:, :, None] != -1)
    allowed = same & causal
    allowed |= torch.eye(length, dtype=torch.bool, device=seq_ids.device)  # padding: itself only
    allowed = allowed[:, None]
    if dtype == torch.bool:
        return allowed
    mask = torch.zeros(allowed.shape, dtype=dtype, device=seq_ids.device)
    return mask.masked_fill_(~allowed, torch.finfo(dtype).min)


def _get(rows: Any, key: str) -> torch.Tensor | None:
    value = rows.get(key) if isinstance(rows, dict) else getattr(rows, key, None)
    return None if value is None else torch.as_tensor(value)


def model_inputs(packed_rows, attn_implementation: str, dtype: torch.dtype = torch.float32,
                 with_labels: bool = False) -> dict:
    """The keyword arguments for model(...) over packed rows.

    packed_rows: a Packed, or a dict/object with input_ids, position_ids, seq_ids (and labels)
    arrays [B, L] (a batch of rows). dtype: the model's dtype, for eager's additive mask.
    flash_attention_2 -> input_ids, position_ids flattened to [1, B*L] (varlen from position
    resets); sdpa -> + bool 4D mask; eager -> + additive float 4D mask; always use_cache=False.
    with_labels adds labels shaped like input_ids (so model(**inputs).loss works; no loss term
    crosses examples).
    """
    input_ids, position_ids = _get(packed_rows, "input_ids"), _get(packed_rows, "position_ids")
    out = {"input_ids": input_ids.long(), "position_ids": position_ids.long()}
    if with_labels:
        out["labels"] = _get(packed_rows, "labels").long()
    if attn_implementation.startswith("flash_attention") or attn_implementation.startswith("kernels-community/flash"):
        return {**{k: v.reshape(1, -1) for k, v in out.items()}, "use_cache": False}
    if attn_implementation in ("sdpa", "eager"):
        seq_ids = _get(packed_rows, "seq_ids")
        out["attention_mask"] = packed_attention_mask(seq_ids, torch.bool if attn_implementation == "sdpa" else dtype)
        return {**out, "use_cache": False}
    raise ValueError(f"attn_implementation {attn_implementation!r} is not supported for packed rows; "
                     "use flash_attention_2, sdpa or eager")
