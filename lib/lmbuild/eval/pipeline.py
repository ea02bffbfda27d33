"""The work of the eval_sets and contamination stages (the per-model eval is model_eval.py).

eval_sets: writes data/eval_sets/ from the held-out documents and the tasks' test split.
contamination: 13-gram overlap of every eval set with the training data of every model stage:
    pretrain: data/decontam/pretrain   anneal: data/decontam/anneal (the mixes as tokenize encodes
    them, after the decontaminate stage)   sft: data/sft/train.jsonl
    dpo: the train split of data/dpo/pairs.jsonl   rlvr: its prompt pool (tasks train split)
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from ..params import training_seed
from ..lm.task_setup import heldout, training_examples
from ..shards import atomic_dir
from .contamination import overlap
from .data import SETS, dpo_texts, heldout_docs, mc_tasks, mix_texts, preference_sets, read_docs, sft_texts
from .eval_sets import cloze_items, preference_rows, task_choice_items
from .multiple_choice import write_items


def build_sets(params: dict, val_root: Path, out: Path = SETS) -> dict:
    s, tp, seed = params["eval"]["sets"], params["tasks"], params["common"]["seed"]
    docs = read_docs(val_root)
    cloze = cloze_items(docs, per_domain=s["cloze"]["per_domain"], per_doc=s["cloze"]["per_doc"],
                        context_words=s["cloze"]["context_words"],
                        continuation_words=s["cloze"]["continuation_words"], choices=s["cloze"]["choices"], seed=seed)
    tests = heldout(tp, seed)
    tasks = {**cloze, "task_choice": task_choice_items(tests, choices=s["task_choice"]["choices"], seed=seed)}
    prefs = preference_rows(tests, seed=seed)
    with atomic_dir(out) as tmp:
        (tmp / "mc").mkdir()
        for name, items in tasks.items():
            write_items(tmp / "mc" / f"{name}.jsonl", items)
        (tmp / "preferences.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in prefs),
                                               encoding="utf-8")
        counts = {"mc": {k: len(v) for k, v in tasks.items()}, "preferences": len(prefs),
                  "heldout_documents": len(docs)}
        (tmp / "manifest.json").write_text(json.dumps(counts, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return counts


def eval_set_texts(params: dict, val_root: Path) -> dict[str, list[str]]:
    """The text of every eval item, per set: what a model sees (query + gold answer)."""
    tp, seed = params["tasks"], params["common"]["seed"]
    sets = {"heldout_docs": [d["text"] for d in heldout_docs(val_root, params["eval"]["bpb"])],
            "tasks": [ex.prompt for ex in heldout(tp, seed)]}
    for name, items in mc_tasks().items():
        sets[f"mc_{name}"] = [it.query + it.delimiter + it.choices[it.gold] for it in items]
    for name, pairs in preference_sets().items():
        sets[name] = ["\n".join(m["content"] for m in p["prompt"]) + "\n" + p["chosen"] for p in pairs]
    return sets


def training_sources(params: dict, root: Path = Path(".")) -> dict:
    """stage -> callable yielding that stage's training texts (stages whose data is missing are
    left out, so a partial pipeline can still be checked)."""
    tp, seed = params["tasks"], params["common"]["seed"]
    out = {}
    for split in ("pretrain", "anneal"):
        if (root / "data/decontam" / split).is_dir():
            out[split] = lambda split=split: mix_texts(root / "data/decontam" / split)
    if (root / "data/sft/train.jsonl").is_file():
        out["sft"] = lambda: sft_texts(root / "data/sft/train.jsonl")
    if (root / "data/dpo/pairs.jsonl").is_file():
        out["dpo"] = lambda: dpo_texts(root / "data/dpo/pairs.jsonl")
    rl_seed = training_seed(params, "rlvr")
    out["rlvr"] = lambda: (ex.prompt for ex in training_examples(tp, params["rlvr"]["prompts_per_family"], rl_seed, "rlvr"))
    return out


def contamination(params: dict, val_root: Path) -> dict:
    c = params["eval"]["contamination"]
    sets = eval_set_texts(params, val_root)
    out = {}
    for stage, texts in training_sources(params).items():
        t0 = time.perf_counter()
        out[stage] = overlap(sets, texts, n=c["ngram"], min_tokens=c["min_tokens"])
        dirty = sum(v["contaminated"] for v in out[stage].values())
        print(f"contamination {stage}: {dirty} contaminated eval items ({time.perf_counter() - t0:.1f} s)",
              file=sys.stderr)
    return out
