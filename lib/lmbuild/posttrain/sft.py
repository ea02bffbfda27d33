"""The sft job: the previous stage's model trained on the packed chat mixture (assistant tokens
only), with validation loss on held-out conversations and greedy accuracy on the held-out task
problems, run by the shared trainer (Accelerate, schedule, checkpoints, dvclive)."""

from __future__ import annotations

import json
import math
import time
from collections import Counter
from pathlib import Path

import torch

from ..lm.chat import chat_ids, encode_conversation
from ..lm.generation import GREEDY_FIELDS, paired_gains, task_accuracy, task_prompts
from ..lm.model import choose_attention
from ..lm.precision import precision_context
from ..lm.start_model import start_model, start_tokenizer, weights_id
from ..lm.task_setup import check_answer_room, difficulties, heldout, train_part
from ..params import training_seed
from ..shards import atomic_dir
from ..train.data import EpochOrder, rank_samples
from ..train.lora import maybe_lora
from ..train.trainer import Job
from ..tasks import generate
from ..tasks.example import derive_seed
from ..train.trainer import run as run_job
from .less import check_select, less_select, random_select
from .packing import model_inputs, pack
from .sft_data import SftData, task_messages, build


def packed_loss(model, batch):
    return model(**batch, use_cache=False).loss, {}


@torch.no_grad()
def val_loss(model, packed, attn: str, batch_size: int, device, autocast) -> float:
    """Mean loss over the assistant tokens of the packed validation rows."""
    total, count = 0.0, 0
    for i in range(0, len(packed.input_ids), batch_size):
        rows = {k: getattr(packed, k)[i:i + batch_size] for k in ("input_ids", "labels", "position_ids", "seq_ids")}
        inputs = model_inputs(rows, attn, with_labels=True)
        inputs.pop("use_cache")
        labels = inputs.pop("labels").to(device)
        with autocast():
            logits = model(**{k: v.to(device) for k, v in inputs.items()}, use_cache=False).logits.float()
        logits = logits.reshape(labels.shape[0], labels.shape[1], -1) if logits.dim() == 3 else logits
        shift = labels[:, 1:]
        loss = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.size(-1)), shift.reshape(-1),
                                                 ignore_index=-100, reduction="sum")
        total += loss.item()
        count += int((shift != -100).sum())
    return total / max(count, 1)


def select(p: dict, tp: dict, data: SftData, tok, init_model: Path, seed: int, pad_id: int
           ) -> tuple[SftData, list[dict], dict]:
    """`sft.select`: the chosen share of the candidates (`random`, or `less` for the target
    family; lmbuild.posttrain.less), one selection row per candidate and the selection metrics."""
    sp = p["select"]
    sel_seed = seed if sp["seed"] is None else sp["seed"]
    t0 = time.perf_counter()
    if sp["method"] == "random":
        sel = random_select(len(data.train), sp["fraction"], sel_seed)
    else:
        fam = sp["target_family"]
        # a few target examples from the family's train split (never the held-out test
        # problems), drawn from their own seed stream
        exs = generate(fam, "train", sp["target_examples"], derive_seed(sel_seed, "less-target") % 2 ** 31,
                       difficulties(tp)[fam], part=train_part(tp, "sft"))
        targets = [e for e in (encode_conversation(tok, task_messages(ex), p["seq_len"]) for ex in exs) if e]
        o = p["optim"]
        sel = less_select(sp, data.train, targets, init_model=init_model, pad_id=pad_id, lr=o["lr"],
                          betas=(o["beta1"], o["beta2"]), eps=o["eps"], seed=sel_seed)
    chosen = set(sel.indices)
    rows = [{"index": i, "source": r["source"], "family": f, "selected": i in chosen,
             **({"score": round(sel.scores[i], 6)} if sel.scores is not None else {})}
            for i, (r, f) in enumerate(zip(data.records, data.families))]
    keep = sel.indices
    out = SftData(train=[data.train[i] for i in keep], val=data.val, records=[data.records[i] for i in keep],
                  families=[data.families[i] for i in keep], rejects=data.rejects, per_source=data.per_source)
    by_source = Counter(r["source"] for r in out.records)
    by_family = Counter(f for f in out.families if f is not None)
    metrics = {"candidates": len(data.train), "selected": len(keep), **sel.metrics,
               "selected_by_source": {s: by_source.get(s, 0) for s in data.per_source},
               "selected_by_family": {f: by_family.get(f, 0) for f in tp["families"]},
               "seconds": time.perf_counter() - t0}
    return out, rows, metrics


def run(params: dict, *, init_model: Path, out_model: Path, data_out: Path, ckpt_dir: Path, live_dir: Path,
        root: Path = Path(".")) -> dict:
    p, tp = params["sft"], params["tasks"]
    # the training seed draws the demonstrations and their order; the held-out problems stay
    # those of common.seed, so runs with different training seeds are scored on the same items
    seed, eval_seed = training_seed(params, "sft"), params["common"]["seed"]
    L = p["seq_len"]
    check_select(p["select"], tp)
    # any causal-LM directory (sft.init_model): its tokenizer gets lmbuild's chat template if it lacks one
    tok, start_info = start_tokenizer(init_model, "sft.init_model")
    eos_ids, pad_id = chat_ids(tok)
    tests = heldout(tp, eval_seed)
    check_answer_room(tp, tok, tests)  # before any work
    data = build(p["sources"], tp, tok, L, seed, root, heldout_seed=eval_seed)
    if not data.train:
        raise ValueError("sft: no training examples; check sft.sources")
    selection, select_metrics = None, {}
    if p["select"]["method"] != "none":
        data, selection, select_metrics = select(p, tp, data, tok, init_model, seed, pad_id)
    train, val = pack(data.train, L, pad_id), pack(data.val, L, pad_id)
    with atomic_dir(data_out) as tmp:
        with open(tmp / "train.jsonl", "w") as f:
            for rec in data.records:
                f.write(json.dumps(rec, sort_keys=True, ensure_ascii=False) + "\n")
        with open(tmp / "rejected.jsonl", "w") as f:
            for rec in data.rejects:
                f.write(json.dumps(rec, sort_keys=True, ensure_ascii=False) + "\n")
        if selection is not None:  # every candidate, its score (less) and whether it was kept
            with open(tmp / "selection.jsonl", "w") as f:
                for rec in selection:
                    f.write(json.dumps(rec, sort_keys=True, ensure_ascii=False) + "\n")

    device = torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    attn = choose_attention(p["attn_implementation"], device)
    model = start_model(init_model, tok, start_info, attn)
    if L > model.config.max_position_embeddings:
        raise ValueError(f"params.yaml: sft.seq_len ({L}) exceeds the model's max length "
                         f"({model.config.max_position_embeddings})")
    prompts = task_prompts(tok, tests)
    gen_batch = 4 * p["eval"]["batch_size"]

    start_items: list[dict] = []
    end_items: list[dict] = []  # the latest evaluation's per-item results: the end of training

    def accuracy(m, items=end_items):
        return task_accuracy(m, tok, tests, max_new_tokens=tp["max_new_tokens"], batch_size=gen_batch,
                             eos_ids=eos_ids, pad_id=pad_id, prompts=prompts, items=items)

    with precision_context(p["precision"], device):  # as the trained model is measured
        start = accuracy(model, start_items)
    model, export = maybe_lora(model, p, "sft", seed)  # LoRA: adapters train, the export is merged
    order = EpochOrder(len(train.input_ids), seed)

    def batches(step, rank, world, micro):
        out = []
        for ids in rank_samples(step, p["batch_size"], rank, world, micro):
            idx = [order.index(i) for i in ids]
            rows = {k: getattr(train, k)[idx] for k in ("input_ids", "labels", "position_ids", "seq_ids")}
            inputs = model_inputs(rows, attn, with_labels=True)
            inputs.pop("use_cache")
            out.append(inputs)
        return out

    def evaluate(m, dev, autocast, shard):
        return {"loss": val_loss(m, val, attn, p["eval"]["batch_size"], dev, autocast) if len(val.input_ids)
                else float("nan"), **accuracy(m)}

    total_steps = max(1, math.ceil(p["epochs"] * len(train.input_ids) / p["batch_size"]))
    job = Job(stage="sft", params=p, seed=seed, model=model, batches=batches, total_steps=total_steps,
              samples_per_epoch=len(train.input_ids), seq_len=L, evaluate=evaluate,
              fingerprint_inputs={"init_model": weights_id(init_model), "sft_data": data_out / "train.jsonl"},
              tokenizer_dir=init_model, tokenizer=tok, export=export, out_model=out_model, ckpt_dir=ckpt_dir,
              live_dir=live_dir,
              eos_ids=eos_ids, pad_id=pad_id, loss_fn=packed_loss, code_dirs=[Path(__file__).parent],
              log_params={"rows": len(train.input_ids), "examples": len(data.train)})
    m = run_job(job)
    ev = m.pop("eval")
    m.pop("train")
    return {
        "train_loss": m.pop("train_loss"), "train_loss_ema": m.pop("train_loss_ema"),
        "val_loss": ev["loss"],
        **{k: v for k, v in ev.items() if k != "loss"},
        "start": start, **paired_gains(start_items, end_items, GREEDY_FIELDS),
        "examples": len(data.train), "val_examples": len(data.val), "rejected": len(data.rejects),
        "packed_rows": len(train.input_ids), "packing_fill": train.fill, "truncated_examples": train.n_truncated,
        "sources": data.per_source, "start_model": start_info, **({"select": select_metrics} if select_metrics else {}),
        **m,
    }
