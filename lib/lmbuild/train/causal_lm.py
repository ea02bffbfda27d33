"""The pretrain and anneal job: a causal LM on fixed-length blocks of the token shards, with
validation loss per domain on fixed held-out blocks (trainer.py runs the loop)."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoTokenizer

import sys

from ..params import training_seed
from .checkpoint import CheckpointError
from .fim import FimTransform
from .long_context import LengthMix, doc_masked, extended_config, say as say_long_context
from .data import BlockOrder, DataError, TokenStream, rank_samples, unigram_loss, val_blocks
from .mixture_job import MixtureJob, check as check_mixture, open_pools
from ..eval.infill import infill_eval
from ..eval.long_context import passkey, position_loss
from ..lm.model import choose_attention, load_model
from ..lm.precision import precision_context
from ..tokenize.sentinels import fim_ids
from .model import ModelError, build_model
from .trainer import Job, Shard, Stopped, TrainError, metric_key
from .trainer import run as run_job


@torch.no_grad()
def evaluate(model, blocks: dict[str, torch.Tensor], device, batch: int, autocast, shard: Shard = Shard()) -> dict[str, float]:
    """Mean loss per domain (`loss_<domain>`) and overall (`loss`, token-weighted) on fixed val blocks.
    With several processes each takes its share of every domain's blocks and the sums are reduced."""
    was_training = model.training
    model.eval()
    sums = []
    for domain, x in blocks.items():
        x = shard.part(x)
        loss_sum, n_tok = 0.0, 0
        for i in range(0, len(x), batch):
            xb = x[i:i + batch].to(device)
            with autocast():
                logits = model(input_ids=xb).logits.float()
            loss = torch.nn.functional.cross_entropy(
                logits[:, :-1].reshape(-1, logits.size(-1)), xb[:, 1:].reshape(-1), reduction="sum")
            loss_sum += loss.item()
            n_tok += xb[:, 1:].numel()
        sums += [loss_sum, n_tok]
    sums = shard.sum(sums)
    out, tot_loss, tot_tok = {}, 0.0, 0
    for k, domain in enumerate(blocks):
        loss_sum, n_tok = sums[2 * k], sums[2 * k + 1]
        out[f"loss_{metric_key(domain)}"] = loss_sum / max(n_tok, 1)
        tot_loss, tot_tok = tot_loss + loss_sum, tot_tok + n_tok
    out["loss"] = tot_loss / max(tot_tok, 1)
    model.train(was_training)
    return out


def long_context_eval(model_dir: Path, attn: str, tok, val_dir: Path, cfg: dict, seed: int, device, autocast,
                      batch: int, blocks_per_domain: int) -> dict:
    """lmbuild/eval/long_context.py on the exported model, and its loss on short val blocks."""
    model = load_model(model_dir, attn).to(device)
    short = evaluate(model, val_blocks(val_dir, cfg["short_length"], blocks_per_domain), device, batch, autocast)
    out = {"short_length": cfg["short_length"], "short_loss": short["loss"],
           **position_loss(model, val_dir, max(cfg["lengths"]), cfg["buckets"], cfg["documents"], device, autocast)}
    if cfg["passkey_samples"]:
        out.update(passkey(model, tok, cfg["lengths"], cfg["passkey_depths"], cfg["passkey_samples"], seed, autocast))
    return out


def run(stage: str, params: dict, *, tokens_dir: Path, train_split: str, tokenizer_dir: Path,
        out_model: Path, ckpt_dir: Path, live_dir: Path, init_model: Path | None = None) -> dict:
    """Train one stage end to end; return the metrics tree (the caller writes it)."""
    p, seed = params[stage], training_seed(params, stage)
    L = p["seq_len"]
    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    train = TokenStream(tokens_dir / train_split)
    meta = train.meta
    eot, pad = int(meta["eot_id"]), int(meta.get("pad_id") if meta.get("pad_id") is not None else meta["eot_id"])
    vocab = max(len(tok), int(meta["vocab_size"]))
    order = BlockOrder(train.total, L, seed)
    val = val_blocks(tokens_dir / "val", L, p["eval"]["blocks_per_domain"])

    # long-context keys exist in anneal's params only (specs/fragments/long_context.yaml)
    lc, doc_masking = p.get("long_context") or {}, bool(p.get("doc_masking"))
    if lc and not any(lc[k] is not None for k in ("rope_theta", "rope_scaling", "max_length", "long_share")):
        lc = {}
    lengths = LengthMix(tokens_dir / train_split, L, seed, lc["long_share"], lc["long_min_tokens"] or L, stage) \
        if lc and lc["long_share"] is not None else None
    fim_cfg = p["fim"]
    fim = FimTransform(fim_cfg, tok, eot, pad, seed, stage) if fim_cfg["rate"] > 0 else None
    if fim is not None and (p.get("mixture") or {}).get("kind") == "doremi":
        raise TrainError(f"params.yaml: {stage}.fim.rate: fill-in-the-middle cannot be combined with "
                         f"{stage}.mixture.kind: doremi (its loss ignores the labels that mask FIM's padding); "
                         f"set one of them off")

    device = torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    attn = choose_attention(p.get("attn_implementation", "auto"), device)
    if init_model is None:
        model = build_model(p["model"], vocab, eot, pad, seed, attn)
    else:
        config = extended_config(init_model, lc, L, stage) if lc else None
        if lc:
            say_long_context(stage, config, lc, doc_masking)
        model = load_model(init_model, attn, config)
        if model.get_input_embeddings().weight.shape[0] < vocab:
            raise ModelError(f"{init_model}: vocab {model.get_input_embeddings().weight.shape[0]} is smaller than "
                             f"the tokenizer's {vocab}; rerun pretrain with this tokenizer")
    if L > model.config.max_position_embeddings:
        raise TrainError(f"params.yaml: {stage}.seq_len ({L}) exceeds the model's max length "
                         f"({model.config.max_position_embeddings})" + (
                             "; extend it with anneal.long_context (rope_theta with max_length, or rope_scaling)"
                             if stage == "anneal" else ""))

    def batches(step, rank, world, micro):
        out = []
        for ids in rank_samples(step, p["batch_size"], rank, world, micro):
            x = lengths.rows(ids) if lengths is not None else order.batch(train, ids)
            out.append({"input_ids": x, "labels": x})
        return out

    total_steps = max(1, p["max_tokens"] // (p["batch_size"] * L))
    inputs = {f"data/tokens/{train_split}": tokens_dir / train_split, "data/tokens/val": tokens_dir / "val",
              "models/tokenizer": tokenizer_dir}
    if init_model is not None:
        inputs[str(init_model)] = init_model / "model.safetensors"
    mix_cfg = p.get("mixture") or {"kind": "none"}
    mixture = None
    samples_per_epoch = order.n_blocks
    if mix_cfg["kind"] != "none":
        pools = open_pools(tokens_dir, mix_cfg["split"], L, seed)
        check_mixture(mix_cfg, pools, total_steps * p["batch_size"])
        mixture = MixtureJob(mix_cfg, pools, p["batch_size"], total_steps, seed, device, attn)
        print(f"{stage}: {mix_cfg['kind']} mixture over the {mix_cfg['split']} split's domains "
              f"({', '.join(pools.domains)}), starting from {mixture.source}", file=sys.stderr)
        inputs = {k: v for k, v in inputs.items() if not k.startswith(f"data/tokens/{train_split}")}
        inputs[f"data/tokens/{mix_cfg['split']}"] = tokens_dir / mix_cfg["split"]
        for key in ("weights_file", "reference_file"):
            if mix_cfg.get(key):
                inputs[mix_cfg[key]] = Path(mix_cfg[key])
        if mix_cfg.get("reference_model"):
            inputs[mix_cfg["reference_model"]] = Path(mix_cfg["reference_model"]) / "model.safetensors"
        samples_per_epoch = sum(pools.n_blocks.values())
    def read(step, rank, world, micro):
        out = (mixture.batches if mixture else batches)(step, rank, world, micro)
        if fim is not None:
            out = [fim.batch(b["input_ids"], step) for b in out]
        if doc_masking:
            out = [doc_masked(b, eot, attn) for b in out]
        return out

    job = Job(stage=stage, params=p, seed=seed, model=model, batches=read,
              total_steps=total_steps, samples_per_epoch=samples_per_epoch,
              seq_len=L, evaluate=lambda m, dev, ac, shard: evaluate(m, val, dev, p["eval"]["batch_size"], ac, shard),
              fingerprint_inputs=inputs, tokenizer_dir=tokenizer_dir, out_model=out_model, ckpt_dir=ckpt_dir,
              live_dir=live_dir, eos_ids=[eot], pad_id=pad)
    if mixture is not None:
        job.hooks = mixture
        if mixture.kind == "doremi":
            job.loss_fn = mixture.loss
    m = run_job(job)
    ev = m.pop("eval")
    m.pop("train")
    out = {"train_loss": m.pop("train_loss"), "train_loss_ema": m.pop("train_loss_ema"),
           "val_loss": ev["loss"],
           "val_loss_domain": {k[len("loss_"):]: v for k, v in ev.items() if k != "loss"},
           "unigram_val_loss": unigram_loss(train, val, vocab), **m}
    if mixture is not None:
        out["mixture"] = mixture.metrics()
    if fim is not None:
        out["fim"] = fim.metrics()
    if lengths is not None:
        out["long_context"] = lengths.metrics()
    if lc or doc_masking:
        out["long_context"] = {**out.get("long_context", {}), "doc_masking": int(doc_masking),
                               "max_position_embeddings": model.config.max_position_embeddings,
                               "rope_theta": model.config.rope_parameters.get("rope_theta"),
                               "rope_factor": model.config.rope_parameters.get("factor", 1.0)}
    long_eval = p.get("long_eval") or {}
    if long_eval.get("lengths"):
        out["long_eval"] = long_context_eval(out_model, attn, tok, tokens_dir / "val", long_eval, seed, device,
                                             lambda: precision_context(p["precision"], device),
                                             p["eval"]["batch_size"], p["eval"]["blocks_per_domain"])
    if fim_ids(tok) is not None and fim_cfg["eval"]["tasks"] > 0:
        # the exported model, scored under the precision it trained in
        out["infill"] = infill_eval(load_model(out_model, attn).to(device), tok, tokens_dir / "val", fim_cfg["eval"],
                                    seed, device, lambda: precision_context(p["precision"], device), L)
    return out


__all__ = ["run", "TrainError", "Stopped", "DataError", "ModelError", "CheckpointError"]
