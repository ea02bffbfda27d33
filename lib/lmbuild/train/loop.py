"""The training loop, under Hugging Face Accelerate: the same code runs on a CPU, one GPU, or
`accelerate launch` / `torchrun` with several processes (DDP).

One optimizer step consumes `batch_size` blocks of `seq_len` tokens (the global batch), split
evenly over processes and into micro-batches of `micro_batch_size` (gradient accumulation).
Every process computes the same learning rate from the step number, reads its own slice of the
seeded block order, and the loop saves model, optimizer, step and loop counters in a
fingerprinted checkpoint, so a killed run resumes where it left off and ends at the same loss.

Test hooks (environment, not params, so they do not change the fingerprint):
  LMBUILD_STOP_AFTER_STEPS=N   checkpoint and exit (code 3) after optimizer step N, as a kill would
  LMBUILD_FAULT_NAN_STEPS=3,5  make the loss non-finite at these steps (to test nan handling)
  LMBUILD_NO_PROGRESS=1        no progress bar
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import sys
import time
from pathlib import Path

import torch
from accelerate import Accelerator
from transformers import AutoTokenizer

from . import checkpoint as ckpt
from .data import BlockOrder, DataError, TokenStream, rank_samples, unigram_loss, val_blocks
from .export import export_model
from .flops import flops_per_token, peak_flops
from .model import ModelError, build_model, choose_attention, count_params, load_model
from .optim import make_optimizer
from .schedule import lr_factor


class TrainError(Exception):
    """The run cannot go on (non-finite loss, bad batch geometry); the message says why."""


class Stopped(Exception):
    """LMBUILD_STOP_AFTER_STEPS was reached (a simulated kill, checkpoint written)."""


def _key(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]+", "_", name)


@torch.no_grad()
def evaluate(model, blocks: dict[str, torch.Tensor], device, batch: int, autocast) -> dict[str, float]:
    """Mean loss per domain and overall (token-weighted) on the fixed val blocks."""
    was_training = model.training
    model.eval()
    out, tot_loss, tot_tok = {}, 0.0, 0
    for domain, x in blocks.items():
        loss_sum, n_tok = 0.0, 0
        for i in range(0, len(x), batch):
            xb = x[i:i + batch].to(device)
            with autocast():
                logits = model(input_ids=xb).logits.float()
            loss = torch.nn.functional.cross_entropy(
                logits[:, :-1].reshape(-1, logits.size(-1)), xb[:, 1:].reshape(-1), reduction="sum")
            loss_sum += loss.item()
            n_tok += xb[:, 1:].numel()
        out[domain] = loss_sum / max(n_tok, 1)
        tot_loss, tot_tok = tot_loss + loss_sum, tot_tok + n_tok
    out["_overall"] = tot_loss / max(tot_tok, 1)
    model.train(was_training)
    return out


def run(stage: str, params: dict, *, tokens_dir: Path, train_split: str, tokenizer_dir: Path,
        out_model: Path, ckpt_dir: Path, live_dir: Path, init_model: Path | None = None) -> dict:
    """Train one stage end to end; return the metrics tree (the caller writes it)."""
    p, seed = params[stage], params["common"]["seed"]
    # cpu=True on a machine without an accelerator, so torchrun / accelerate launch use gloo DDP
    accelerator = Accelerator(mixed_precision="bf16" if p["precision"] == "bf16" else "no",
                              cpu=not torch.accelerator.is_available())
    rank, world, main = accelerator.process_index, accelerator.num_processes, accelerator.is_main_process
    device = accelerator.device
    B, micro, L = p["batch_size"], p["micro_batch_size"], p["seq_len"]
    if B % (world * micro):
        raise TrainError(f"params.yaml: {stage}.batch_size ({B}) must be a multiple of "
                         f"micro_batch_size ({micro}) x processes ({world})")
    accum = B // (world * micro)

    # ---- data and tokenizer
    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    train = TokenStream(tokens_dir / train_split)
    meta = train.meta
    eot, pad = int(meta["eot_id"]), int(meta.get("pad_id") if meta.get("pad_id") is not None else meta["eot_id"])
    vocab = max(len(tok), int(meta["vocab_size"]))
    order = BlockOrder(train.total, L, seed)
    val = val_blocks(tokens_dir / "val", L, p["eval"]["blocks_per_domain"])
    total_steps = max(1, p["max_tokens"] // (B * L))

    # ---- model (fresh from params, or the previous stage's model)
    attn = choose_attention(p.get("attn_implementation", "auto"), device)
    if init_model is None:
        model = build_model(p["model"], vocab, eot, pad, seed, attn)
    else:
        model = load_model(init_model, attn)
        if model.get_input_embeddings().weight.shape[0] < vocab:
            raise ModelError(f"{init_model}: vocab {model.get_input_embeddings().weight.shape[0]} is smaller than "
                             f"the tokenizer's {vocab}; rerun pretrain with this tokenizer")
    max_len = model.config.max_position_embeddings
    if L > max_len:
        raise TrainError(f"params.yaml: {stage}.seq_len ({L}) exceeds the model's max length ({max_len})")
    model.config.use_cache = False
    optimizer = make_optimizer(model, p["optim"])

    # ---- resume
    fp_params = {"common.seed": seed, stage: p}
    inputs = {f"data/tokens/{train_split}": tokens_dir / train_split, "data/tokens/val": tokens_dir / "val",
              "models/tokenizer": tokenizer_dir}
    if init_model is not None:
        inputs[str(init_model)] = init_model / "model.safetensors"
    fp = ckpt.fingerprint(fp_params, inputs)
    st = {"step": 0, "samples": 0, "tokens": 0, "skipped": 0, "spikes": 0, "loss_ema": None,
          "last_loss": None, "train_time": 0.0}
    resumed = ckpt.check_fingerprint(ckpt_dir, fp, stage)
    if resumed:
        saved = ckpt.load(ckpt_dir)
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        ckpt.set_rng_state(saved["rng"])
        st.update({k: saved[k] for k in st if k in saved})
    raw_model = model
    if p["compile"]:
        model = torch.compile(model)
    model, optimizer = accelerator.prepare(model, optimizer)
    model.train()

    # ---- throughput accounting
    counts = count_params(raw_model)
    cfg = raw_model.config
    # matmul parameters: the layers plus the output head (counted once more when tied)
    matmul = counts["non_embedding"] + (counts["embedding"] if cfg.tie_word_embeddings else 0)
    fpt = flops_per_token(matmul, cfg.num_hidden_layers, cfg.hidden_size, L)
    peak, peak_src = peak_flops(device, torch.bfloat16 if p["precision"] == "bf16" else torch.float32,
                                p["peak_tflops"])

    live = None
    if main:
        from dvclive import Live
        live = Live(str(live_dir), resume=resumed and live_dir.exists(), save_dvc_exp=False, dvcyaml=None)
        live.log_params({"stage": stage, "total_steps": total_steps, "world_size": world, "accum": accum,
                         "params_total": counts["total"], "resumed_from_step": st["step"]})

    stop_after = int(os.environ.get("LMBUILD_STOP_AFTER_STEPS", "0") or 0)
    fault = {int(s) for s in os.environ.get("LMBUILD_FAULT_NAN_STEPS", "").split(",") if s.strip()}
    from tqdm import tqdm
    bar = tqdm(total=total_steps, initial=st["step"], desc=stage, unit="step", file=sys.stderr,
               disable=not main or bool(os.environ.get("LMBUILD_NO_PROGRESS")), dynamic_ncols=True)
    o, sch = p["optim"], p["schedule"]
    warmup = sch["warmup_steps"]
    last_eval: dict[str, float] = {}
    window_t, window_tok = time.perf_counter(), 0

    def save():
        accelerator.wait_for_everyone()
        if main:
            ckpt.save(ckpt_dir, fp, raw_model, optimizer.optimizer if hasattr(optimizer, "optimizer") else optimizer,
                      dict(st))
        accelerator.wait_for_everyone()

    while st["step"] < total_steps:
        step = st["step"]
        t0 = time.perf_counter()
        lr = o["lr"] * lr_factor(step, total_steps, sch["kind"], warmup, sch["min_lr_ratio"], sch["decay_fraction"])
        for g in optimizer.param_groups:
            g["lr"] = lr
        loss_sum = torch.zeros((), device=device)
        batches = rank_samples(step, B, rank, world, micro)
        for k, ids in enumerate(batches):
            x = order.batch(train, ids).to(device)
            sync = contextlib.nullcontext() if k == len(batches) - 1 else accelerator.no_sync(model)
            with sync, accelerator.autocast():
                loss = model(input_ids=x, labels=x).loss
                if step + 1 in fault:
                    loss = loss * float("nan")
                accelerator.backward(loss / accum)
            loss_sum += loss.detach().float() / accum
        loss_val = accelerator.reduce(loss_sum, "mean").item()
        grad_norm = accelerator.clip_grad_norm_(model.parameters(), o["grad_clip"]) if o["grad_clip"] > 0 else None
        gn = float(grad_norm) if grad_norm is not None else float("nan")
        finite = math.isfinite(loss_val) and (grad_norm is None or math.isfinite(gn))
        if not finite:
            if p["nan"]["policy"] == "stop":
                bar.close()
                raise TrainError(f"{stage}: non-finite loss or gradient at step {step + 1} (loss {loss_val}, grad "
                                 f"norm {gn}); lower {stage}.optim.lr, raise warmup, or set {stage}.nan.policy: skip")
            st["skipped"] += 1
            optimizer.zero_grad(set_to_none=True)
            if st["skipped"] > p["nan"]["max_skipped"]:
                raise TrainError(f"{stage}: {st['skipped']} non-finite steps (last at step {step + 1}) exceed "
                                 f"{stage}.nan.max_skipped ({p['nan']['max_skipped']}); lower the lr")
        else:
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            ema = st["loss_ema"]
            if ema is not None and step >= warmup and loss_val > p["spike"]["ratio"] * ema:
                st["spikes"] += 1
            st["loss_ema"] = loss_val if ema is None else p["spike"]["beta"] * ema + (1 - p["spike"]["beta"]) * loss_val
            st["last_loss"] = loss_val
        st["step"] += 1
        st["samples"] += B
        st["tokens"] += B * L
        dt = time.perf_counter() - t0
        st["train_time"] += dt
        window_tok += B * L
        bar.update(1)

        done = st["step"] == total_steps
        if st["step"] % p["log_every"] == 0 or done:
            now = time.perf_counter()
            tps = window_tok / max(now - window_t, 1e-9)
            window_t, window_tok = now, 0
            mfu = tps * fpt / peak
            bar.set_postfix(loss=f"{loss_val:.3f}", tok_s=f"{tps:,.0f}")
            if live:
                live.step = st["step"]
                live.log_metric("tokens", st["tokens"])
                live.log_metric("train/loss", loss_val if math.isfinite(loss_val) else -1.0)
                live.log_metric("train/lr", lr)
                live.log_metric("train/grad_norm", gn if math.isfinite(gn) else -1.0)
                live.log_metric("perf/tokens_per_s", tps)
                live.log_metric("perf/mfu", mfu)
                live.log_metric("train/spikes", st["spikes"])
                live.log_metric("train/skipped", st["skipped"])
        if st["step"] % p["eval"]["every_steps"] == 0 or done:
            last_eval = evaluate(raw_model, val, device, p["eval"]["batch_size"], accelerator.autocast)
            if live:
                live.step = st["step"]
                live.log_metric("tokens", st["tokens"])
                live.log_metric("val/loss", last_eval["_overall"])
                for d, v in last_eval.items():
                    if d != "_overall":
                        live.log_metric(f"val/loss_{_key(d)}", v)
        if live and (st["step"] % p["log_every"] == 0 or st["step"] % p["eval"]["every_steps"] == 0 or done):
            live.next_step()
        if st["step"] % p["checkpoint"]["every_steps"] == 0 or done or st["step"] == stop_after:
            save()
        if st["step"] == stop_after and not done:
            bar.close()
            if live:
                live.end()
            raise Stopped(f"{stage}: stopped after step {stop_after} (LMBUILD_STOP_AFTER_STEPS); checkpoint in {ckpt_dir}")
    bar.close()

    if not last_eval:  # resumed a finished run
        last_eval = evaluate(raw_model, val, device, p["eval"]["batch_size"], accelerator.autocast)
    accelerator.wait_for_everyone()
    if main:
        export_model(raw_model, tokenizer_dir, out_model, eot, pad)
        if live:
            live.end()
    tps = st["tokens"] / max(st["train_time"], 1e-9)
    val_metrics = {_key(d): v for d, v in last_eval.items() if d != "_overall"}
    return {
        "train_loss": st["last_loss"] if st["last_loss"] is not None else float("nan"),
        "train_loss_ema": st["loss_ema"] if st["loss_ema"] is not None else float("nan"),
        "val_loss": last_eval["_overall"],
        "val_loss_domain": val_metrics,
        "unigram_val_loss": unigram_loss(train, val, vocab),
        "tokens_seen": st["tokens"],
        "steps": st["step"],
        "epochs": st["samples"] / order.n_blocks,
        "tokens_per_s": tps,
        "mfu": tps * fpt / peak,
        "peak_tflops": peak / 1e12,
        "flops_per_token": fpt,
        "wall_time_s": st["train_time"],
        "nan_skipped_steps": st["skipped"],
        "loss_spikes": st["spikes"],
        "parameters": counts["total"],
        "parameters_non_embedding": counts["non_embedding"],
        "world_size": world,
    }


__all__ = ["run", "TrainError", "Stopped", "DataError", "ModelError"]
