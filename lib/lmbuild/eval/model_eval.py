"""One model stage evaluated the way every other is: bits per byte on the held-out mix per
domain, greedy accuracy on the held-out verifiable tasks (per family and per difficulty level),
sampled pass@k on them for chat stages, the multiple-choice tasks, preference accuracy on
held-out pairs, and greedy generations for fixed prompts.

Chat stages (eval.chat_stages) get the task problems, preference prompts and fixed prompts
through the chat template; base models get them as raw text ("<prompt>\\nAnswer:"). Bits per
byte and the multiple-choice tasks are scored on raw text for every stage, as
lm-evaluation-harness does by default, so those numbers compare across all five stages.

Every number comes with its standard error (lmbuild.stats), and the per-item results are written
beside the metrics, so two models scored on the same items compare paired (lmbuild.compare):
    items/tasks.jsonl        {id, family, level, correct, format, answer} per held-out problem
    items/pass_k.jsonl       {id, family, level, samples, correct, ...} per held-out problem (chat stages)
    items/bpb.jsonl          {id, domain, bits, bytes, tokens} per held-out document
    items/mc.jsonl           {task, id, gold, loglik per choice, pred, pred_norm, correct, correct_norm}
    items/preferences.jsonl  {set, index, chosen, rejected, chosen_tokens, rejected_tokens, correct, correct_per_token}
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

import torch
from transformers import AutoTokenizer

from ..lm.chat import chat_ids, encode_completion, encode_prompt
from ..lm.generation import accuracy_summary, by_level, pass_k_summary, sample, task_accuracy, task_sampled
from ..lm.model import choose_attention, load_model
from ..lm.precision import precision_context
from ..lm.task_setup import heldout
from ..shards import atomic_dir
from ..stats import with_stderr
from ..tokenize.chat_template import EOT
from .bpb import document_bits, summarize_bits
from .data import heldout_docs, mc_tasks, preference_sets
from .loglik import continuation_logps, lm_eval_pair
from .multiple_choice import evaluate as evaluate_mc


class RawText:
    """Encodes prompts for a base model: <|endoftext|> then the text (as documents start in training)."""

    def __init__(self, tok) -> None:
        self.tok, self.bos = tok, tok.convert_tokens_to_ids(EOT)

    def ids(self, text: str) -> list[int]:
        return self.tok(text, add_special_tokens=False)["input_ids"]

    def context(self, text: str) -> list[int]:
        return [self.bos] + self.ids(text)


def _log(stage: str, what: str, t0: float) -> None:
    print(f"eval {stage}: {what} ({time.perf_counter() - t0:.1f} s)", file=sys.stderr)


def raw_task_accuracy(model, raw: RawText, examples, *, max_new_tokens: int, batch_size: int,
                      pad_id: int, items: list | None = None) -> dict[str, float]:
    """Greedy accuracy of a base model prompted with "<prompt>\\nAnswer:"; the first line it writes
    is its answer."""
    prompts = [raw.context(f"{ex.prompt}\nAnswer:") for ex in examples]
    outs = sample(model, prompts, n=1, max_new_tokens=max_new_tokens, greedy=True, batch_size=batch_size,
                  eos_ids=[raw.bos], pad_id=pad_id)
    return accuracy_summary(examples, ["Answer:" + raw.tok.decode(c, skip_special_tokens=True).split("\n")[0]
                                       for (c,) in outs], items=items)


def preference_accuracy(model, pairs: list[dict], *, tok, raw: RawText, chat: bool, pad_id: int,
                        batch_size: int, max_len: int) -> tuple[dict[str, float], list[dict]]:
    """Share of pairs whose chosen completion has the higher summed log-prob (and per token),
    the mean margin, each with its standard error over pairs; and the per-pair rows."""
    seqs = []
    for p in pairs:
        if chat:
            ctx = encode_prompt(tok, p["prompt"])
            seqs += [(ctx, encode_completion(tok, p["chosen"])), (ctx, encode_completion(tok, p["rejected"]))]
        else:
            ctx = raw.context("\n".join(m["content"] for m in p["prompt"]) + "\n")
            seqs += [(ctx, raw.ids(p["chosen"])), (ctx, raw.ids(p["rejected"]))]
    s = continuation_logps(model, seqs, pad_id=pad_id, batch_size=batch_size, max_len=max_len,
                           desc="preference pairs")
    rows = []
    for i in range(0, len(s), 2):
        (c, nc), (r, nr) = s[i], s[i + 1]
        rows.append({"index": i // 2, "chosen": c, "rejected": r, "chosen_tokens": nc, "rejected_tokens": nr,
                     "correct": float(c > r), "correct_per_token": float(c / nc > r / nr)})
    summary = {**with_stderr("accuracy", [x["correct"] for x in rows]),
               **with_stderr("accuracy_per_token", [x["correct_per_token"] for x in rows]),
               **with_stderr("margin", [x["chosen"] - x["rejected"] for x in rows]), "pairs": len(rows)}
    return summary, rows


def generations(model, tok, raw: RawText, prompts: list[str], *, chat: bool, max_new_tokens: int,
                eos_ids: list[int], pad_id: int) -> list[dict]:
    ids = [encode_prompt(tok, [{"role": "user", "content": p}]) if chat else raw.context(p) for p in prompts]
    outs = sample(model, ids, n=1, max_new_tokens=max_new_tokens, greedy=True, batch_size=len(ids) or 1,
                  eos_ids=eos_ids if chat else [raw.bos], pad_id=pad_id)
    return [{"prompt": p, "completion": tok.decode(c, skip_special_tokens=True), "chat": chat}
            for p, (c,) in zip(prompts, outs)]


def evaluate_stage(params: dict, stage: str, model_dir: Path, out_dir: Path, val_root: Path) -> dict:
    """Evaluate models/<stage>; writes out_dir/metrics.json and out_dir/generations.jsonl."""
    e, tp, seed = params["eval"], params["tasks"], params["common"]["seed"]
    chat = stage in e["chat_stages"]
    device = torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    if not (model_dir / "config.json").is_file():
        raise FileNotFoundError(f"{model_dir}: no model; run `dvc repro {stage}` first")
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = load_model(model_dir, choose_attention(e["attn_implementation"], device)).to(device).eval()
    raw = RawText(tok)
    eos, pad_id = chat_ids(tok)
    bs, max_len = e["batch_size"], e["seq_len"] + 1
    metrics: dict = {"chat": chat}
    items: dict[str, list[dict]] = {"tasks": [], "bpb": [], "mc": [], "preferences": [], "pass_k": []}
    t0 = time.perf_counter()
    with torch.no_grad(), precision_context(e["precision"], device):
        docs = heldout_docs(val_root, e["bpb"])
        items["bpb"] = document_bits(model, tok, docs, seq_len=e["seq_len"], batch_size=bs, bos_id=raw.bos,
                                     pad_id=pad_id, desc=f"eval {stage}: bits per byte")
        per_domain = summarize_bits(items["bpb"])
        metrics["bpb"] = {k: v for d, s in per_domain.items() for k, v in
                          ((d, s["bpb"]), (f"{d}_stderr", s["bpb_stderr"]))}
        _log(stage, f"bits per byte {metrics['bpb'].get('all', float('nan')):.3f} on {len(docs)} held-out documents", t0)

        tests = heldout(tp, seed)
        if chat:
            metrics.update(task_accuracy(model, tok, tests, max_new_tokens=tp["max_new_tokens"],
                                         batch_size=e["generation_batch_size"], eos_ids=eos, pad_id=pad_id,
                                         items=items["tasks"]))
        else:
            metrics.update(raw_task_accuracy(model, raw, tests, max_new_tokens=tp["max_new_tokens"],
                                             batch_size=e["generation_batch_size"], pad_id=pad_id, items=items["tasks"]))
        metrics["task_level"] = by_level(items["tasks"], "correct")
        _log(stage, f"task accuracy {metrics['task_accuracy']:.3f} on {len(tests)} held-out problems", t0)
        if chat:
            pk = e["pass_k"]
            task_sampled(model, tok, tests, n=pk["samples"], temperature=pk["temperature"], seed=seed,
                         format_weight=tp["format_weight"], max_new_tokens=tp["max_new_tokens"],
                         batch_size=e["generation_batch_size"], eos_ids=eos, pad_id=pad_id, items=items["pass_k"])
            metrics["pass_k"] = pass_k_summary(items["pass_k"])
            n = pk["samples"]
            _log(stage, f"pass@1 {metrics['pass_k']['pass@1']:.3f}, pass@{n} {metrics['pass_k'][f'pass@{n}']:.3f} "
                        f"({n} samples at temperature {pk['temperature']:g})", t0)

        metrics["mc"] = {}

        def encode_pair(context: str, continuation: str):
            return lm_eval_pair(tok, context, continuation, prefix_id=raw.bos, add_bos=e["mc_bos"])

        for name, task_items in mc_tasks().items():
            metrics["mc"][name], rows = evaluate_mc(model, task_items, encode_pair=encode_pair, pad_id=pad_id,
                                                    batch_size=bs, max_len=max_len, desc=f"eval {stage}: {name}")
            items["mc"] += [{"task": name, **r} for r in rows]
        if metrics["mc"]:
            accs = [v["acc_norm"] for v in metrics["mc"].values()]
            metrics["mc_acc_norm_mean"] = sum(accs) / len(accs)
            # the tasks' items are disjoint, so their errors add in quadrature
            ses = [v["acc_norm_stderr"] for v in metrics["mc"].values()]
            metrics["mc_acc_norm_mean_stderr"] = math.sqrt(sum(e * e for e in ses)) / len(ses)
            _log(stage, f"{len(accs)} multiple-choice tasks, mean acc_norm {metrics['mc_acc_norm_mean']:.3f}", t0)

        metrics["preference"] = {}
        for name, pairs in preference_sets().items():
            if pairs:
                metrics["preference"][name], rows = preference_accuracy(
                    model, pairs, tok=tok, raw=raw, chat=chat, pad_id=pad_id, batch_size=bs, max_len=max_len)
                items["preferences"] += [{"set": name, **r} for r in rows]
        gens = generations(model, tok, raw, e["prompts"], chat=chat, max_new_tokens=e["max_new_tokens"],
                           eos_ids=eos, pad_id=pad_id)
    _log(stage, "done", t0)
    with atomic_dir(out_dir) as tmp:
        (tmp / "generations.jsonl").write_text("".join(json.dumps(g, ensure_ascii=False) + "\n" for g in gens),
                                              encoding="utf-8")
        (tmp / "metrics.json").write_text(json.dumps(metrics, indent=1, sort_keys=True) + "\n", encoding="utf-8")
        (tmp / "items").mkdir()
        for name, rows in items.items():
            (tmp / "items" / f"{name}.jsonl").write_text(
                "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in rows), encoding="utf-8")
    return metrics
