"""The training loop under Hugging Face Accelerate, shared by every training stage (pretrain and
anneal through lmbuild.train.causal_lm, which the studies' proxies run too; sft, dpo,
reward_model, and rlvr with each of its algorithms, PPO included: lmbuild.posttrain): the same
code runs on a CPU, one GPU, or `accelerate launch` / `torchrun` with several processes.

A stage describes its run as a `Job`: the model, a function giving each process its
micro-batches for an optimizer step, a loss (the model's LM loss unless the job brings its own,
as every post-training job does: sft's packed loss, dpo's preference loss, the reward model's
Bradley-Terry loss, rlvr's policy-gradient and PPO losses), an evaluation, and the inputs that
make up the checkpoint fingerprint. The loop does the rest: learning-rate schedule, gradient
accumulation, clipping, non-finite loss handling, loss-spike counting, dvclive logging,
fingerprinted checkpoints and resume, export.

One optimizer step consumes `batch_size` samples (the global batch), split evenly over
processes and into micro-batches of `micro_batch_size`. Every process computes the same
learning rate from the step number and reads its own slice of the seeded sample order, so a
killed run resumes from its last checkpoint and ends at the same loss.

Test hooks (environment, not params, so they do not change the fingerprint):
  LMBUILD_STOP_AFTER_STEPS=N   checkpoint and exit (code 3) after optimizer step N
  LMBUILD_FAULT_NAN_STEPS=3,5  make the loss non-finite at these steps (to test nan handling)
  LMBUILD_STEP_DELAY_S=0.2     sleep after every step (gives a kill test time to hit mid-run)
  LMBUILD_NO_PROGRESS=1        no progress bar
"""

from __future__ import annotations

import contextlib
import gc
import math
import os
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState, DistributedType, GradientState

from . import checkpoint as ckpt
from .export import export_model
from .flops import flops_per_token, peak_flops
from . import numerics
from .model import count_params
from .moe import is_moe, router_losses
from .optim import make_optimizer
from .schedule import lr_factor


class TrainError(Exception):
    """The run cannot go on (non-finite loss, bad batch geometry); the message says why."""


class Stopped(Exception):
    """LMBUILD_STOP_AFTER_STEPS was reached (a simulated kill, checkpoint written)."""


Batch = dict[str, torch.Tensor]


def lm_loss(model, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Mean next-token loss over the labelled tokens (labels -100 are ignored); a
    mixture-of-experts model adds its router losses (lmbuild.train.moe)."""
    inner = getattr(model, "module", model)
    if not is_moe(inner):
        return model(**batch).loss, {}
    out = model(**batch, output_router_logits=True)
    return router_losses(out, inner, getattr(inner.config, "router_z_loss_coef", 0.0))


def metric_key(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]+", "_", name)


@dataclass
class Job:
    stage: str
    params: dict                    # the stage's validated params section
    seed: int
    model: torch.nn.Module          # fp32, freshly built or loaded from the previous stage
    batches: Callable[[int, int, int, int], list[Batch]]   # (step, rank, world, micro) -> micro-batches
    total_steps: int
    samples_per_epoch: int
    seq_len: int                    # for the FLOPs estimate
    evaluate: Callable              # (model, device, autocast, Shard) -> {name: value}, logged as val/<name>
    # pretrain/anneal split their val blocks over processes with the Shard; the post-training
    # evaluators (a few hundred held-out prompts, some generated) run whole on every process
    fingerprint_inputs: dict[str, Path]
    tokenizer_dir: Path
    out_model: Path
    ckpt_dir: Path
    live_dir: Path
    eos_ids: list[int]
    pad_id: int
    loss_fn: Callable = lm_loss     # (model, batch) -> (loss, {name: detached scalar}) logged as train/<name>
    log_params: dict = field(default_factory=dict)
    code_dirs: list[Path] = field(default_factory=list)  # packages besides lmbuild.train whose code the run uses
    # optional: an object with state_dict()/load_state_dict() (checkpointed with the run),
    # after_eval(values) (called after every validation) and log_values() (logged at log steps);
    # pretrain's training-time mixture (mixture_job.MixtureJob) is one
    hooks: Any = None
    # optional: the module to export, from the trained one (LoRA: the base with the adapters
    # merged, lmbuild.train.lora.merged); None exports the trained model itself
    export: Callable[[torch.nn.Module], torch.nn.Module] | None = None
    # optional: a tokenizer object to save with the model instead of tokenizer_dir's files (a start
    # model whose tokenizer got lmbuild's chat template, lmbuild.lm.start_model)
    tokenizer: Any = None


def _prune_live(live_dir: Path, last_step: int) -> None:
    """Drop dvclive rows logged after the checkpoint being resumed (a kill loses them anyway),
    so the curves have each step once."""
    for tsv in sorted((live_dir / "plots" / "metrics").rglob("*.tsv")):
        lines = tsv.read_text().splitlines()
        if not lines:
            continue
        col = lines[0].split("\t").index("step") if "step" in lines[0].split("\t") else None
        if col is None:
            continue
        keep = [lines[0]] + [ln for ln in lines[1:] if int(ln.split("\t")[col]) <= last_step]
        tsv.write_text("\n".join(keep) + "\n")


def _tokens(batch: Batch) -> int:
    return sum(v.numel() for k, v in batch.items() if k.endswith("input_ids"))


@dataclass
class Shard:
    """This process's share of an evaluation: `part(items)` is its slice (items rank, rank + world,
    ...) and `sum(values)` adds a list of floats over all processes, so an evaluation over many
    held-out blocks costs 1/world per process and every process gets the same totals."""
    rank: int = 0
    world: int = 1
    accelerator: Accelerator | None = None

    def part(self, items):
        return items[self.rank::self.world]

    def sum(self, values: list[float]) -> list[float]:
        if self.world == 1 or self.accelerator is None:
            return list(values)
        t = torch.tensor(values, dtype=torch.float64, device=self.accelerator.device)
        return self.accelerator.reduce(t, "sum").tolist()


def _open_live(job: Job, st: dict, resumed: bool, info: dict):
    """dvclive for the main process, resumed in place when the checkpoint is (its rows after the
    checkpoint pruned first); the run's facts logged as params."""
    from dvclive import Live
    from scmrepo.exceptions import SCMError
    if resumed and job.live_dir.exists():
        _prune_live(job.live_dir, st["step"])
    try:
        live = Live(str(job.live_dir), resume=resumed and job.live_dir.exists(), save_dvc_exp=False, dvcyaml=None)
    except SCMError as exc:
        raise TrainError(f"{job.stage}: dvclive cannot read the git repository ({exc}); "
                         f"commit once (git add -A && git commit) before running training stages") from None
    live.log_params({"stage": job.stage, "resumed_from_step": st["step"], **info, **job.log_params})
    return live


def _log(live, step: int, tokens: int, values: dict[str, float]) -> None:
    live.step = step
    live.log_metric("tokens", tokens)
    for k, v in values.items():
        live.log_metric(k, v if math.isfinite(v) else -1.0)


def _accept_step(p: dict, stage: str, st: dict, step: int, loss_val: float, gn: float, optimizer) -> None:
    """Apply or refuse the step's gradients. A non-finite loss or gradient norm stops the run
    (nan.policy stop) or is skipped, up to nan.max_skipped times; a finite loss above spike.ratio x
    its running mean (after warmup) counts as a spike, which is logged, not acted on."""
    if not (math.isfinite(loss_val) and math.isfinite(gn)):
        if p["nan"]["policy"] == "stop":
            raise TrainError(f"{stage}: non-finite loss or gradient at step {step + 1} (loss {loss_val}, grad "
                             f"norm {gn}); lower {stage}.optim.lr, raise warmup, or set {stage}.nan.policy: skip")
        st["skipped"] += 1
        optimizer.zero_grad(set_to_none=True)
        if st["skipped"] > p["nan"]["max_skipped"]:
            raise TrainError(f"{stage}: {st['skipped']} non-finite steps (last at step {step + 1}) exceed "
                             f"{stage}.nan.max_skipped ({p['nan']['max_skipped']}); lower the lr")
        return
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    ema, beta = st["loss_ema"], p["spike"]["beta"]
    if ema is not None and ema > 0 and step >= p["schedule"]["warmup_steps"] and loss_val > p["spike"]["ratio"] * ema:
        st["spikes"] += 1
    st["loss_ema"] = loss_val if ema is None else beta * ema + (1 - beta) * loss_val
    st["last_loss"] = loss_val


class _Window:
    """What accumulates between two log points: tokens and wall time (for tokens/s) and the
    loss function's extra scalars (averaged over the window's steps)."""

    def __init__(self):
        self.t, self.tokens, self.extras, self.steps = time.perf_counter(), 0, {}, 0

    def add(self, tokens: int, extras: dict[str, torch.Tensor]) -> None:
        self.tokens += tokens
        self.steps += 1
        for name, v in extras.items():
            self.extras[name] = self.extras.get(name, 0.0) + v

    def close(self, accelerator) -> tuple[float, dict[str, float]]:
        now = time.perf_counter()
        tps = self.tokens / max(now - self.t, 1e-9)
        extras = {n: accelerator.reduce(v, "mean").item() / max(self.steps, 1) for n, v in self.extras.items()}
        self.__init__()
        return tps, extras


def _forward_backward(job: Job, model, accelerator, batches: list[Batch], accum: int, nan_now: bool):
    """One optimizer step's micro-batches: gradients accumulated (synchronised across processes
    on the last only), the loss averaged over the step; returns (loss, extras, tokens)."""
    device = accelerator.device
    loss_sum = torch.zeros((), device=device)
    extras_sum: dict[str, torch.Tensor] = {}
    tokens = 0
    for k, batch in enumerate(batches):
        batch = {key: v.to(device) if torch.is_tensor(v) else v for key, v in batch.items()}  # flags pass as they are
        tokens += _tokens(batch)
        sync = contextlib.nullcontext() if k == len(batches) - 1 else accelerator.no_sync(model)
        with sync, accelerator.autocast():
            loss, extras = job.loss_fn(model, batch)
            if nan_now:
                loss = loss * float("nan")
            accelerator.backward(loss / accum)
        loss_sum += loss.detach().float() / accum
        for name, v in extras.items():
            extras_sum[name] = extras_sum.get(name, 0.0) + v.detach().float() / accum
    return loss_sum, extras_sum, tokens


def _accelerator(precision: str) -> Accelerator:
    """The job's Accelerator. Accelerate keeps one process-wide state and refuses a second
    Accelerator with another mixed precision; a process that runs jobs one after another
    (a study, a test session) starts each job from a fresh state. A launched process
    (several processes, one job each) keeps its state as Accelerate set it up."""
    mixed = "bf16" if precision == "bf16" else "no"
    state = AcceleratorState._shared_state
    if state and state.get("distributed_type") == DistributedType.NO:
        AcceleratorState._reset_state()
        GradientState._reset_state()
    return Accelerator(mixed_precision=mixed, cpu=not torch.accelerator.is_available())


def run(job: Job) -> dict:
    """Train to job.total_steps (resuming a matching checkpoint), export the model; return metrics."""
    p, stage = job.params, job.stage
    accelerator = _accelerator(p["precision"])
    rank, world, main = accelerator.process_index, accelerator.num_processes, accelerator.is_main_process
    device = accelerator.device
    if os.environ.get("ACCELERATE_USE_FSDP", "").lower() == "true" and accelerator.distributed_type.name != "FSDP" and main:
        # Accelerate (1.16) enables FSDP only on GPU-like devices; on CPU processes it runs DDP
        print(f"{stage}: FSDP was asked for (ACCELERATE_USE_FSDP) but Accelerate runs "
              f"{accelerator.distributed_type.name} on {device.type}: every process holds the whole model",
              file=sys.stderr)
    B, micro = p["batch_size"], p["micro_batch_size"]
    if B % (world * micro):
        raise TrainError(f"params.yaml: {stage}.batch_size ({B}) must be a multiple of "
                         f"micro_batch_size ({micro}) x processes ({world})")
    accum = B // (world * micro)
    total_steps = job.total_steps
    model = job.model
    model.config.use_cache = False
    optimizer = make_optimizer(model, p["optim"])

    fp = ckpt.fingerprint({"common.seed": job.seed, stage: p}, job.fingerprint_inputs,
                          ckpt.code_digest([Path(__file__).parent, *job.code_dirs]))
    st = {"step": 0, "samples": 0, "tokens": 0, "skipped": 0, "spikes": 0, "loss_ema": None,
          "last_loss": None, "train_time": 0.0}
    resumed = ckpt.check_fingerprint(job.ckpt_dir, fp, stage, p["checkpoint"]["on_mismatch"])
    if resumed:
        saved = ckpt.load(job.ckpt_dir)
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        ckpt.set_rng_state(saved["rng"])
        st.update({k: saved[k] for k in st if k in saved})
        if job.hooks is not None and "hooks" in saved:
            job.hooks.load_state_dict(saved["hooks"])
    raw_model = model
    if p.get("compile"):
        model = torch.compile(model)
    model, optimizer = accelerator.prepare(model, optimizer)
    model.train()
    shard = Shard(rank, world, accelerator)

    counts = count_params(raw_model)
    trainable = sum(q.numel() for q in raw_model.parameters() if q.requires_grad)  # LoRA: the adapters only
    cfg = raw_model.config
    # matmul parameters: the layers plus the output head (counted once more when tied); of a
    # mixture-of-experts model, the active ones (the experts a token is not routed to do no work)
    matmul = counts.get("active_non_embedding", counts["non_embedding"]) + (
        counts["embedding"] if cfg.tie_word_embeddings else 0)
    fpt = flops_per_token(matmul, cfg.num_hidden_layers, cfg.hidden_size, job.seq_len)
    peak, _ = peak_flops(device, torch.bfloat16 if p["precision"] == "bf16" else torch.float32,
                         p.get("peak_tflops"))

    live = _open_live(job, st, resumed, {
        "total_steps": total_steps, "world_size": world, "accum": accum, "params_total": counts["total"],
        "params_trainable": trainable,
        "numerics": numerics.describe(device, p["precision"])}) if main else None

    stop_after = int(os.environ.get("LMBUILD_STOP_AFTER_STEPS", "0") or 0)
    delay = float(os.environ.get("LMBUILD_STEP_DELAY_S", "0") or 0)
    fault = {int(s) for s in os.environ.get("LMBUILD_FAULT_NAN_STEPS", "").split(",") if s.strip()}
    from tqdm import tqdm
    bar = tqdm(total=total_steps, initial=st["step"], desc=stage, unit="step", file=sys.stderr,
               disable=not main or bool(os.environ.get("LMBUILD_NO_PROGRESS")), dynamic_ncols=True)
    o, sch = p["optim"], p["schedule"]
    # Garbage collection at the same steps on every process: Python's automatic GC starts at
    # different moments on different ranks and the others wait for the slowest at the next
    # collective (OLMo's trainer, `gen1_gc_interval`, collects generation 1 every N steps).
    gc_every = p.get("gc_every_steps")
    if gc_every:
        gc.disable()
    last_eval: dict[str, float] = {}
    window = _Window()
    last_extras: dict[str, float] = {}
    loss_val, gn = float("nan"), float("nan")

    def save():
        accelerator.wait_for_everyone()
        if main:
            state = dict(st, hooks=job.hooks.state_dict()) if job.hooks is not None else dict(st)
            ckpt.save(job.ckpt_dir, fp, raw_model,
                      optimizer.optimizer if hasattr(optimizer, "optimizer") else optimizer, state)
        accelerator.wait_for_everyone()

    try:
        while st["step"] < total_steps:
            step = st["step"]
            t0 = time.perf_counter()
            lr = o["lr"] * lr_factor(step, total_steps, sch["kind"], sch["warmup_steps"], sch["min_lr_ratio"],
                                     sch["decay_fraction"])
            for g in optimizer.param_groups:  # Muon's group runs at its own multiple of the schedule
                g["lr"] = lr * g.get("lr_scale", 1.0)
            loss_sum, extras, step_tokens = _forward_backward(job, model, accelerator, job.batches(step, rank, world, micro),
                                                              accum, step + 1 in fault)
            loss_val = accelerator.reduce(loss_sum, "mean").item()
            grad_norm = accelerator.clip_grad_norm_(model.parameters(), o["grad_clip"]) if o["grad_clip"] > 0 else None
            gn = float(grad_norm) if grad_norm is not None else float("nan")
            _accept_step(p, stage, st, step, loss_val, gn if grad_norm is not None else 0.0, optimizer)
            st["step"] += 1
            st["samples"] += B
            st["tokens"] += step_tokens * world
            st["train_time"] += time.perf_counter() - t0
            if delay:
                time.sleep(delay)
            window.add(step_tokens * world, extras)
            bar.update(1)
            if gc_every and st["step"] % gc_every == 0:
                gc.collect(1)

            done = st["step"] == total_steps
            logged = False
            if st["step"] % p["log_every"] == 0 or done:
                tps, last_extras = window.close(accelerator)
                bar.set_postfix(loss=f"{loss_val:.3f}", tok_s=f"{tps:,.0f}")
                if live:
                    _log(live, st["step"], st["tokens"], {
                        "train/loss": loss_val, "train/lr": lr, "train/grad_norm": gn, "perf/tokens_per_s": tps,
                        "perf/mfu": tps * fpt / peak, "train/spikes": st["spikes"], "train/skipped": st["skipped"],
                        **{f"train/{n}": v for n, v in last_extras.items()},
                        **(job.hooks.log_values() if job.hooks is not None else {})})
                logged = True
            if st["step"] % p["eval"]["every_steps"] == 0 or done:
                last_eval = job.evaluate(raw_model, device, accelerator.autocast, shard)
                if job.hooks is not None:
                    job.hooks.after_eval(last_eval)
                if live:
                    _log(live, st["step"], st["tokens"], {f"val/{metric_key(n)}": v for n, v in last_eval.items()})
                logged = True
            if live and logged:
                live.next_step()
            if st["step"] % p["checkpoint"]["every_steps"] == 0 or done or st["step"] == stop_after:
                save()
            if st["step"] == stop_after and not done:
                if live:
                    live.end()
                raise Stopped(f"{stage}: stopped after step {stop_after} (LMBUILD_STOP_AFTER_STEPS); "
                              f"checkpoint in {job.ckpt_dir}")
    finally:
        bar.close()
        if gc_every:
            gc.enable()

    if not last_eval:  # resumed a finished run
        last_eval = job.evaluate(raw_model, device, accelerator.autocast, shard)
    accelerator.wait_for_everyone()
    if main:
        export_model(job.export(raw_model) if job.export else raw_model, job.tokenizer_dir, job.out_model,
                     job.eos_ids, job.pad_id, tokenizer=job.tokenizer)
        if live:
            live.end()
    tps = st["tokens"] / max(st["train_time"], 1e-9)
    return {
        "train_loss": st["last_loss"] if st["last_loss"] is not None else float("nan"),
        "train_loss_ema": st["loss_ema"] if st["loss_ema"] is not None else float("nan"),
        "train": last_extras,
        "eval": last_eval,
        "tokens_seen": st["tokens"],
        "steps": st["step"],
        "epochs": st["samples"] / max(job.samples_per_epoch, 1),
        "tokens_per_s": tps,
        "mfu": tps * fpt / peak,
        "peak_tflops": peak / 1e12,
        "flops_per_token": fpt,
        "wall_time_s": st["train_time"],
        "nan_skipped_steps": st["skipped"],
        "loss_spikes": st["spikes"],
        "parameters": counts["total"],
        "parameters_non_embedding": counts["non_embedding"],
        **({"parameters_active": counts["active"]} if "active" in counts else {}),
        "parameters_trainable": trainable,
        "world_size": world,
        "numerics": numerics.numbers(device, p["precision"]),
    }
