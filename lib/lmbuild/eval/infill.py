"""Infilling eval for fill-in-the-middle models: single-line infilling on held-out code.

Tasks: from the held-out (val) split's documents of one domain (code by default), lines chosen by
a seeded generator, each with up to `context_chars` characters of the document before it (the
prefix) and after it (the suffix). A line is a natural unit of code infilling (the single-line
infilling benchmark of Bavarian et al. 2022, arXiv:2207.14255, section 5, hides one line of a
HumanEval solution the same way); lines under `min_line_chars` non-space characters are skipped.

Per task, on the same middle tokens:
- `fim_bpb`: bits per UTF-8 byte of the middle given `<|fim_prefix|> prefix <|fim_suffix|>
  suffix <|fim_middle|>` (PSM), what a FIM model offers an editor;
- `l2r_bpb`: the same middle given only the prefix, what a left-to-right model can do; the
  difference (`suffix_gain_bpb`) is what the suffix is worth to the model. A model never trained
  on FIM can gain too, where the suffix repeats what the line holds and works as more context
  (the synthetic code of the tests does); so the effect of FIM training is one model's gain
  against a plain model's on the same tasks, which benchmarks/fim_effect.py reports;
- `exact_match`: the greedy completion of the PSM prompt, cut at end-of-text, equals the line
  (compared with surrounding whitespace stripped).
Bits per byte are ratios of sums over tasks (total bits / total bytes), their standard errors
bootstrapped over tasks; exact match is a mean with its standard error. Tasks from one document
are not independent, so the errors are a little optimistic when a document gives several lines.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch

from ..lm.sampling import sample
from ..lm.logprobs import completion_logps, sequence_logps
from ..lm.padding import right_pad
from ..stats import paired_ratio, ratio_stderr, with_stderr
from ..tokenize.sentinels import fim_ids

LN2 = math.log(2.0)


def infill_tasks(tok, split_dir: Path | str, cfg: dict, seed: int) -> list[dict]:
    """[{prefix, middle, suffix}] from the split's documents of cfg['domain'], at most cfg['tasks']."""
    from ..train.data import TokenStream  # local: keeps this module importable without the training stack
    split_dir = Path(split_dir)
    stream = TokenStream(split_dir)
    index = pq.read_table(split_dir / "index.parquet", columns=["shard", "start", "length", "domain"]).to_pylist()
    docs = [r for r in index if r["domain"] == cfg["domain"]]
    rng = np.random.default_rng([seed, 0x1F111])
    candidates = []
    for d, r in enumerate(docs):
        ids = np.asarray(stream.arrays[r["shard"]][r["start"]:r["start"] + r["length"]], dtype=np.int64)
        text = tok.decode(ids[ids != stream.meta["eot_id"]].tolist())
        starts = [0] + [i + 1 for i, c in enumerate(text) if c == "\n"]
        for a, b in zip(starts, starts[1:]):  # line [a, b) with its newline; the last line has none
            if len(text[a:b].strip()) >= cfg["min_line_chars"] and a > 0:
                candidates.append((d, text, a, b))
    if not candidates:
        return []
    picks = rng.permutation(len(candidates))[:cfg["tasks"]]
    c = cfg["context_chars"]
    return [{"prefix": text[max(0, a - c):a], "middle": text[a:b], "suffix": text[b:b + c], "doc": d}
            for d, text, a, b in (candidates[i] for i in sorted(picks))]


@torch.no_grad()
def infill_eval(model, tok, split_dir: Path | str, cfg: dict, seed: int, device, autocast, max_len: int) -> dict:
    """The infilling metrics of `model` (see the module docstring); {} when the split has no tasks.
    Prefix and suffix are cut to tokens so that prompt and middle fit in `max_len` (the length the
    model trained at): the prefix loses its start, the suffix its end, half the room each."""
    ids = fim_ids(tok)
    tasks = infill_tasks(tok, split_dir, cfg, seed)
    if ids is None or not tasks:
        return {}
    enc = lambda t: tok.encode(t, add_special_tokens=False)  # noqa: E731
    eot = tok.convert_tokens_to_ids(tok.eos_token)
    psm, l2r, middles = [], [], []
    for t in tasks:
        mid = enc(t["middle"])[:max_len // 2]
        room = max(0, (max_len - len(mid) - 4) // 2)
        pre, suf = enc(t["prefix"])[-room:] if room else [], enc(t["suffix"])[:room]
        # after an end-of-text, as a rearranged document follows the one before it in training
        psm.append([eot, ids["prefix"]] + pre + [ids["suffix"]] + suf + [ids["middle"]])
        l2r.append([eot] + pre)
        middles.append(mid)
    model.eval()
    bits = {}
    for name, prompts in (("fim", psm), ("l2r", l2r)):
        out = []
        for i in range(0, len(tasks), cfg["batch_size"]):
            batch = right_pad(list(zip(prompts[i:i + cfg["batch_size"]], middles[i:i + cfg["batch_size"]])),
                              tok.pad_token_id)
            batch = {k: v.to(device) for k, v in batch.items()}
            with autocast():
                per = completion_logps(model, batch["input_ids"], batch["attention_mask"], batch["completion_mask"])
            out += (-sequence_logps(per, batch["completion_mask"])[0] / LN2).tolist()
        bits[name] = out
    nbytes = [len(tok.decode(m).encode()) for m in middles]
    with autocast():
        gens = sample(model, psm, max_new_tokens=max(len(m) for m in middles) + cfg["extra_new_tokens"],
                      greedy=True, seed=seed, batch_size=cfg["batch_size"], eos_ids=[eot], pad_id=tok.pad_token_id)
    exact = [float(tok.decode([x for x in g[0] if x != eot]).strip() == t["middle"].strip())
             for g, t in zip(gens, tasks)]
    gain, gain_se = paired_ratio(bits["fim"], bits["l2r"], nbytes)
    return {"tasks": len(tasks), "documents": len({t["doc"] for t in tasks}),
            "fim_bpb": sum(bits["fim"]) / sum(nbytes), "fim_bpb_stderr": ratio_stderr(bits["fim"], nbytes),
            "l2r_bpb": sum(bits["l2r"]) / sum(nbytes), "l2r_bpb_stderr": ratio_stderr(bits["l2r"], nbytes),
            # l2r - fim: bits per byte the suffix saves (paired over the same tasks)
            "suffix_gain_bpb": gain, "suffix_gain_bpb_stderr": gain_se,
            **with_stderr("exact_match", exact)}
