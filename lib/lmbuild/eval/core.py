"""The CORE score (DCLM, Li et al. 2024, arXiv:2406.11794; reported by nanochat): in-context
learning tasks scored by log-likelihood, each task's accuracy centred on its chance level, the
centred accuracies averaged.

It reads DCLM's eval bundle from a local directory (`eval.core.bundle`; nothing is downloaded):

    core.yaml             icl_tasks: [{label, icl_task_type, dataset_uri, num_fewshot: [n],
                                       continuation_delimiter (default " ")}, ...]
    eval_meta_data.csv    columns "Eval Task" (the label) and "Random baseline" (chance, in percent)
    eval_data/<uri>       one JSON object per line

Three task types, scored as DCLM's harness does:

- multiple_choice {query, choices, gold}: prompt "<query><delim><choice>"; the choice whose own
  tokens (after the prefix all choices share) have the lowest mean loss is the answer;
- schema {context_options, continuation, gold}: "<context><delim><continuation>" for each context;
  the lowest mean loss over the continuation (the suffix all options share) is the answer;
- language_modeling {context, continuation}: right when greedy decoding reproduces every token of
  the continuation after "<context stripped><delim>".

Few-shot examples are other items of the task, drawn with random.Random(1234 + item index), each
written as its full right answer and followed by a blank line, before the item. Every sequence
starts with the model's BOS (<|endoftext|> for lmbuild's models).

centred accuracy = (accuracy - chance) / (1 - chance); CORE = the mean over the bundle's tasks
(DCLM §3.4 / appendix: chance levels from the bundle's metadata). A tiny model scores near zero
or below (a centred accuracy can be negative).
"""

from __future__ import annotations

import csv
import json
import random
from dataclasses import dataclass
from pathlib import Path

import torch

from ..stats import with_stderr
from .loglik import continuation_logps

TYPES = ("multiple_choice", "schema", "language_modeling")


class CoreError(Exception):
    """A bundle that cannot be read as DCLM's: one line naming the file and what is wrong."""


@dataclass(frozen=True)
class CoreTask:
    label: str
    kind: str           # one of TYPES
    data: Path
    num_fewshot: int
    delimiter: str
    chance: float       # the random baseline as a fraction


def read_bundle(bundle: Path) -> list[CoreTask]:
    """The tasks of a local eval bundle, every file checked before any model is loaded."""
    import yaml
    config, meta = bundle / "core.yaml", bundle / "eval_meta_data.csv"
    for f in (config, meta):
        if not f.is_file():
            raise CoreError(f"{f}: missing; eval.core.bundle must be a local copy of DCLM's eval bundle "
                            "(core.yaml, eval_meta_data.csv, eval_data/)")
    with meta.open(encoding="utf-8", newline="") as fh:
        chance = {row["Eval Task"]: float(row["Random baseline"]) / 100.0 for row in csv.DictReader(fh)}
    tasks = []
    for t in (yaml.safe_load(config.read_text(encoding="utf-8")) or {}).get("icl_tasks", []):
        label, kind = t.get("label"), t.get("icl_task_type")
        if kind not in TYPES:
            raise CoreError(f"{config}: task {label}: icl_task_type {kind!r} is not one of {', '.join(TYPES)}")
        if label not in chance:
            raise CoreError(f"{meta}: no random baseline for task {label!r}")
        shots = t.get("num_fewshot", [0])
        data = bundle / "eval_data" / t["dataset_uri"]
        if not data.is_file():
            raise CoreError(f"{data}: missing (task {label})")
        tasks.append(CoreTask(label, kind, data, int(shots[0] if isinstance(shots, list) else shots),
                              t.get("continuation_delimiter", " "), chance[label]))
    if not tasks:
        raise CoreError(f"{config}: no icl_tasks")
    return tasks


def centred(accuracy: float, chance: float) -> float:
    return (accuracy - chance) / (1.0 - chance)


def fewshot(items: list[dict], index: int, n: int) -> list[dict]:
    if n <= 0:
        return []
    others = [i for i in range(len(items)) if i != index]
    return [items[i] for i in random.Random(1234 + index).sample(others, min(n, len(others)))]


def prompts(kind: str, item: dict, shots: list[dict], delim: str) -> list[str]:
    """The texts to score for one item: one per choice (multiple_choice), one per context option
    (schema), or the prompt without and with the continuation (language_modeling)."""
    if kind == "multiple_choice":
        head = "".join(f"{s['query']}{delim}{s['choices'][s['gold']]}\n\n" for s in shots)
        return [f"{head}{item['query']}{delim}{c}" for c in item["choices"]]
    if kind == "schema":
        head = "".join(f"{s['context_options'][s['gold']]}{delim}{s['continuation']}\n\n" for s in shots)
        return [f"{head}{c}{delim}{item['continuation']}" for c in item["context_options"]]
    head = "".join(f"{s['context'].strip()}{delim}{s['continuation']}\n\n" for s in shots)
    without = f"{head}{item['context'].strip()}{delim}"
    return [without.strip(), without + item["continuation"]]


def _shared(seqs: list[list[int]], from_end: bool) -> int:
    """Length of the prefix (or suffix) every sequence shares."""
    n = min(len(s) for s in seqs)
    for i in range(n):
        k = -1 - i if from_end else i
        if any(s[k] != seqs[0][k] for s in seqs):
            return i
    return n


@torch.no_grad()
def _greedy_matches(model, ids: list[int], start: int) -> bool:
    """Whether argmax decoding from ids[:start] reproduces ids[start:] token by token."""
    device = next(model.parameters()).device
    logits = model(torch.tensor([ids], device=device)).logits[0]
    return bool((logits[start - 1:len(ids) - 1].argmax(-1).cpu() == torch.tensor(ids[start:])).all())


def score_task(model, encode, task: CoreTask, *, pad_id: int, max_len: int, batch_size: int,
               max_items: int | None = None) -> tuple[dict[str, float], list[dict]]:
    """Accuracy (with its standard error), centred accuracy and one row per item for one task;
    `encode(text)` gives the token ids with the BOS in front."""
    items = [json.loads(line) for line in task.data.read_text(encoding="utf-8").splitlines() if line.strip()]
    order = list(range(len(items)))
    if max_items is not None and max_items < len(items):
        random.Random(1337).shuffle(order)  # a subset drawn across the file, not its first lines
        order = sorted(order[:max_items])
    rows, pairs, spans = [], [], []
    for i in order:
        texts = prompts(task.kind, items[i], fewshot(items, i, task.num_fewshot), task.delimiter)
        seqs = [encode(t) for t in texts]
        if task.kind == "language_modeling":
            without, with_ = seqs
            if with_[:len(without)] != without or len(with_) == len(without):
                raise CoreError(f"{task.data}: item {i}: the prompt's tokens are not a prefix of the prompt "
                                "with its continuation")
            rows.append({"task": task.label, "index": i, "correct": float(_greedy_matches(model, with_, len(without)))})
            continue
        cut = _shared(seqs, from_end=task.kind == "schema")
        if task.kind == "multiple_choice":   # the choices' own tokens after the shared prefix
            cut = min(cut, min(len(s) for s in seqs) - 1)
            parts = [(s[:cut], s[cut:]) for s in seqs]
        else:                                # the shared continuation after each context
            cut = min(cut, min(len(s) for s in seqs) - 1)
            parts = [(s[:len(s) - cut], s[len(s) - cut:]) for s in seqs]
        spans.append((len(rows), len(pairs), len(parts), items[i]["gold"]))
        pairs += parts
        rows.append({"task": task.label, "index": i})
    scored = continuation_logps(model, pairs, pad_id=pad_id, batch_size=batch_size, max_len=max_len) if pairs else []
    for row, start, n, gold in spans:
        mean_loss = [-s / t for s, t in scored[start:start + n]]
        pred = min(range(n), key=lambda k: mean_loss[k])
        rows[row].update(pred=pred, gold=gold, mean_loss=mean_loss, correct=float(pred == gold))
    acc = with_stderr("accuracy", [r["correct"] for r in rows])
    summary = {**acc, "centred": centred(acc["accuracy"], task.chance),
               # centring is linear: the standard error scales by 1 / (1 - chance)
               "centred_stderr": acc["accuracy_stderr"] / (1.0 - task.chance),
               "chance": task.chance, "items": float(len(rows)), "num_fewshot": float(task.num_fewshot)}
    return summary, rows


def core_score(per_task: dict[str, dict[str, float]]) -> dict[str, float]:
    """CORE: the mean centred accuracy over tasks, with its standard error (the tasks' items are
    disjoint, so their errors add in quadrature)."""
    c = [v["centred"] for v in per_task.values()]
    se = [v["centred_stderr"] for v in per_task.values()]
    return {"core": sum(c) / len(c), "core_stderr": sum(e * e for e in se) ** 0.5 / len(se), "tasks": float(len(c))}
