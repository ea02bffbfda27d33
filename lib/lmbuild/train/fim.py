"""Fill-in-the-middle training for pretrain and anneal (Bavarian et al. 2022, "Efficient Training
of Language Models to Fill in the Middle", arXiv:2207.14255).

With probability `fim.rate` a document is cut at two uniformly random points into prefix, middle
and suffix and moved to one of two orders, marked by the sentinels of lmbuild/tokenize/sentinels.py:

    PSM:  <|fim_prefix|> prefix <|fim_suffix|> suffix <|fim_middle|> middle <|endoftext|>
    SPM:  <|fim_prefix|> <|fim_suffix|> suffix <|fim_middle|> prefix middle <|endoftext|>

SPM is the paper's variant that keeps prefix and middle adjacent (its appendix D); `spm_rate` of
the moved documents take it (the paper trains jointly, half and half). The model still learns
next-token prediction on every position, so it is scored on ordinary left-to-right text as
before; the paper finds rates up to 0.9 leave that score unchanged ("FIM for free"), which the
demo measures rather than assumes (benchmarks/fim_effect.py).

Where: at training time, on each block after it is read ("context-level" FIM in the paper's
terms, section 4.4): a block is split at its end-of-text tokens into document pieces, each
piece is moved or kept, and the rearranged block is cut back to seq_len (the three sentinels
make it longer). When character-level cutting shortens a piece, the block is padded at its end
and the padding carries no loss. `level: char` cuts the decoded text at character positions
(the paper's recommendation: the model learns to finish a word or token cut in two) and
re-encodes the three parts; `level: token` cuts between tokens (cheaper, no re-encoding).

The random choices for a block come from a generator seeded by (seed, step, the block's
tokens), so a resumed run and any number of processes rearrange the same blocks the same way.
"""

from __future__ import annotations

import zlib

import numpy as np
import torch

from ..params import ParamsError
from ..tokenize.sentinels import FIM_TOKENS, fim_ids

IGNORE = -100  # label of padding: the loss skips it (lmbuild/train/trainer.lm_loss)


class FimTransform:
    """Rearrange the documents of training blocks for fill-in-the-middle."""

    def __init__(self, cfg: dict, tokenizer, eot_id: int, pad_id: int, seed: int, stage: str):
        ids = fim_ids(tokenizer)
        if ids is None:
            raise ParamsError([f"params.yaml: {stage}.fim.rate: {cfg['rate']} needs the sentinel tokens "
                               f"{', '.join(FIM_TOKENS)} in models/tokenizer; set tokenize.fim_tokens: true "
                               f"(it adds them to a trained or an adopted tokenizer) and rerun tokenize"])
        self.rate, self.spm_rate, self.level = float(cfg["rate"]), float(cfg["spm_rate"]), cfg["level"]
        self.pre, self.mid, self.suf = ids["prefix"], ids["middle"], ids["suffix"]
        self.eot, self.pad, self.seed = eot_id, pad_id, seed
        self.tok = tokenizer
        self.moved = self.pieces = 0  # counters for the metrics

    def _split(self, body: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """prefix, middle, suffix token arrays from two sorted uniform cut points."""
        if self.level == "token":
            a, b = np.sort(rng.integers(0, len(body) + 1, size=2))
            return body[:a], body[a:b], body[b:]
        text = self.tok.decode(body.tolist())
        a, b = np.sort(rng.integers(0, len(text) + 1, size=2))
        enc = [np.asarray(self.tok.encode(t, add_special_tokens=False), dtype=np.int64) if t else
               np.zeros(0, np.int64) for t in (text[:a], text[a:b], text[b:])]
        return enc[0], enc[1], enc[2]

    def row(self, block: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """(input ids, labels) of one block, same length as the block."""
        n = len(block)
        ends = np.flatnonzero(block == self.eot) + 1
        parts = []
        for piece in np.split(block, ends):
            if len(piece) == 0:
                continue
            tail = piece[-1:] if piece[-1] == self.eot else piece[:0]
            body = piece[:len(piece) - len(tail)]
            self.pieces += 1
            if len(body) < 2 or rng.random() >= self.rate:
                parts.append(piece)
                continue
            self.moved += 1
            prefix, middle, suffix = self._split(body, rng)
            if rng.random() < self.spm_rate:
                parts += [np.array([self.pre, self.suf]), suffix, np.array([self.mid]), prefix, middle, tail]
            else:
                parts += [np.array([self.pre]), prefix, np.array([self.suf]), suffix, np.array([self.mid]), middle, tail]
        out = np.concatenate(parts).astype(np.int64)[:n]
        labels = out.copy()
        if len(out) < n:  # character-level re-encoding came out shorter: pad, no loss on the padding
            pad = n - len(out)
            out = np.concatenate([out, np.full(pad, self.pad, np.int64)])
            labels = np.concatenate([labels, np.full(pad, IGNORE, np.int64)])
        return out, labels

    def batch(self, x: torch.Tensor, step: int) -> dict[str, torch.Tensor]:
        """A training micro-batch {input_ids, labels} with the blocks of `x` rearranged."""
        if self.rate <= 0:
            return {"input_ids": x, "labels": x}
        rows, labels = [], []
        for block in x.numpy():
            rng = np.random.default_rng([self.seed, step, zlib.crc32(block.astype(np.int64).tobytes())])
            r, lab = self.row(block.astype(np.int64), rng)
            rows.append(r)
            labels.append(lab)
        return {"input_ids": torch.from_numpy(np.stack(rows)), "labels": torch.from_numpy(np.stack(labels))}

    def metrics(self) -> dict:
        return {"rate": self.rate, "documents_seen": self.pieces, "documents_moved": self.moved,
                "moved_share": self.moved / self.pieces if self.pieces else 0.0}
