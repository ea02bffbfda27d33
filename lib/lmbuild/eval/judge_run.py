"""The judge stage's job: every chat stage's greedy answers to the held-out prompts, judged
pairwise against the baseline stage's answers (lmbuild.eval.judge), into one flat metrics file.

Held-out prompts: the tasks' held-out problems (lmbuild.lm.task_setup.heldout, common.seed) and
the prompts of the held-out conversations of sft's chat files (their `val_fraction`, the same
hash sft holds them out by: lmbuild.lm.chat_data.in_heldout); a conversation's prompt is
everything before its last assistant turn. One greedy answer per prompt per model.

Reference sets (`judge.references`, AlpacaEval-format files: lmbuild.eval.reference_sets): every
stage, the baseline included, answers each instruction and is judged against the reference
output (`<stage>.references.<set>.win_rate`, raw and length-controlled), and every other stage
against the baseline's answers to the same instructions (`<stage>.references.<set>.vs_baseline.*`).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from transformers import AutoTokenizer

from ..lm.chat import chat_ids, encode_prompt
from ..lm.chat_data import ChatDataError, in_heldout, read_conversations
from ..lm.generation import sample
from ..lm.model import load_model
from ..lm.task_setup import heldout
from ..params import ParamsError
from ..shards import atomic_write_text
from .judge import CausalLMJudge, RewardModelJudge, lc_win_rate, win_rate
from .reference_sets import read_reference_set


def heldout_prompts(params: dict, root: Path) -> list[dict]:
    """[{id, source, messages}] in a fixed order: task problems, then chat files' held-out prompts."""
    out = [{"id": ex.id, "source": f"tasks.{ex.family}", "messages": [{"role": "user", "content": ex.prompt}]}
           for ex in heldout(params["tasks"], params["common"]["seed"])]
    for src in params["sft"]["sources"]:
        if src["type"] != "file" or not src.get("path"):
            continue
        try:
            convs, _ = read_conversations(root / src["path"], src["format"])
        except ChatDataError as exc:
            raise ParamsError([f"sft.sources.{src['name']}: {exc}"]) from None
        for k, conv in enumerate(c for c in convs if in_heldout(c, src["val_fraction"])):
            last = max(i for i, m in enumerate(conv) if m["role"] == "assistant")
            out.append({"id": f"{src['name']}:{k}", "source": src["name"], "messages": conv[:last]})
    return out


def answers(model_dir: Path, prompts: list[dict], max_new_tokens: int, batch_size: int) -> list[str]:
    tok = AutoTokenizer.from_pretrained(model_dir)
    eos_ids, pad_id = chat_ids(tok)
    model = load_model(model_dir, "sdpa")
    if torch.cuda.is_available():
        model = model.cuda()
    outs = sample(model, [encode_prompt(tok, p["messages"]) for p in prompts], n=1, max_new_tokens=max_new_tokens,
                  greedy=True, batch_size=batch_size, eos_ids=eos_ids, pad_id=pad_id,
                  progress=f"judge: answers of {model_dir.name}")
    return [tok.decode(c, skip_special_tokens=True) for (c,) in outs]


def make_judge(jp: dict, root: Path):
    path = root / jp["path"] if jp["path"] else None
    if jp["type"] == "sequence_classification":
        return RewardModelJudge(path, "judge.path", batch_size=jp["batch_size"])
    if not path or not (path / "config.json").is_file():
        raise ParamsError([f"params.yaml: judge.path: a causal_lm judge needs a local model directory, "
                           f"got {jp['path']}"])
    return CausalLMJudge(path, batch_size=jp["batch_size"])


def judged(judge, msgs: list, model_answers: list[str], base_answers: list[str]) -> tuple[dict, list[float]]:
    """Win rates (raw and length-controlled) of `model_answers` over `base_answers`, and the preferences."""
    prefs = judge.preferences(msgs, model_answers, base_answers)
    lm, lb = [len(a) for a in model_answers], [len(b) for b in base_answers]
    return {**win_rate(prefs), **lc_win_rate(prefs, lm, lb), "mean_length": sum(lm) / len(lm),
            "baseline_mean_length": sum(lb) / len(lb), "prompts": len(prefs)}, prefs


def run(params: dict, *, root: Path = Path("."), out_items: Path) -> dict:
    jp = params["judge"]
    stages = [s for s in jp["stages"] if s != jp["baseline"]]
    everyone = [jp["baseline"], *stages]
    prompts = heldout_prompts(params, root)
    if not prompts:
        raise ParamsError(["params.yaml: judge: no held-out prompts (tasks.test_examples is 0 and no chat file)"])
    refs = {r["name"]: read_reference_set(root / r["path"], f"judge.references.{r['name']}")
            for r in jp["references"]}
    judge = make_judge(jp, root)  # a wrong judge or reference file stops the stage before any generation
    max_new = jp["max_new_tokens"] or params["tasks"]["max_new_tokens"]
    ref_msgs = {name: [[{"role": "user", "content": r["instruction"]}] for r in recs] for name, recs in refs.items()}
    # one model load per stage: the held-out prompts and every reference set's instructions together
    asked = prompts + [{"messages": m} for msgs in ref_msgs.values() for m in msgs]
    said_all = {s: answers(root / "models" / s, asked, max_new, jp["batch_size"]) for s in everyone}
    got = {s: a[:len(prompts)] for s, a in said_all.items()}
    base = got[jp["baseline"]]
    metrics: dict = {jp["baseline"]: {"mean_length": sum(map(len, base)) / len(base)}}
    items = []
    msgs = [p["messages"] for p in prompts]
    for s in stages:
        metrics[s], prefs = judged(judge, msgs, got[s], base)
        items += [{"stage": s, "id": p["id"], "source": p["source"], "preference": q, "answer": a, "baseline": b}
                  for p, q, a, b in zip(prompts, prefs, got[s], base)]
    start = len(prompts)
    for name, recs in refs.items():
        msgs = ref_msgs[name]
        said = {s: a[start:start + len(recs)] for s, a in said_all.items()}
        start += len(recs)
        reference = [r["output"] for r in recs]
        for s in everyone:
            row = metrics.setdefault(s, {}).setdefault("references", {})
            row[name], prefs = judged(judge, msgs, said[s], reference)
            items += [{"stage": s, "id": r["id"], "source": name, "against": "reference", "preference": q,
                       "answer": a, "baseline": r["output"]} for r, q, a in zip(recs, prefs, said[s])]
            if s != jp["baseline"]:
                row[name]["vs_baseline"], prefs = judged(judge, msgs, said[s], said[jp["baseline"]])
                items += [{"stage": s, "id": r["id"], "source": name, "against": jp["baseline"], "preference": q,
                           "answer": a, "baseline": b} for r, q, a, b in zip(recs, prefs, said[s], said[jp["baseline"]])]
    atomic_write_text(out_items, "".join(json.dumps(r, sort_keys=True, ensure_ascii=False) + "\n" for r in items))
    return metrics
