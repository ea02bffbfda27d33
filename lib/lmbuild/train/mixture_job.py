"""pretrain's `mixture` section turned into what the trainer runs: batches drawn from the pool
split's per-domain pools (mixture.py) with fixed, scheduled, DoReMi or dynamic weights.

kind      weights over training
fixed     `weights` (or `weights_file`, e.g. a study's weights.json) throughout
schedule  piecewise constant: `schedule: [{at: 0.0, weights: ...}, {at: 0.5, weights: ...}]`,
          `at` a fraction of the run's steps
doremi    Group DRO against a reference model (Xie et al. 2023): domains start uniform (the
          paper's proxy sampling), the weights follow domain_weights.doremi_update every step
          and the loss is the weighted per-domain loss; the average weights are the result
dynamic   dynamic batch loading (Xia et al. 2024): starts at `weights`, updated at every
          validation (pretrain.eval.every_steps) from the per-domain val losses against
          `reference_losses` (or a file of them, e.g. a reference model's metrics)
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from ..params import ParamsError
from .data import DataError
from .domain_weights import doremi_update, dynamic_update, excess_loss, group_weighted_loss
from .mixture import DomainPools, MixtureSampler, planned_epochs

WEIGHT_TOLERANCE = 1e-6


def _read_weights(path: str, key: str) -> dict[str, float]:
    p = Path(path)
    if not p.is_file():
        raise ParamsError([f"params.yaml: pretrain.mixture.{key}: {path} not found (run the study that writes it)"])
    data = json.loads(p.read_text())
    data = data.get("weights", data)
    # a flat metrics file: take its val_loss_domain.<domain> entries
    flat = {k.split(".", 1)[1]: v for k, v in data.items() if k.startswith("val_loss_domain.")}
    return {k: float(v) for k, v in (flat or data).items() if isinstance(v, (int, float))}


def _check_weights(w: dict[str, float], where: str, pools: DomainPools) -> list[str]:
    problems = []
    unknown = sorted(set(w) - set(pools.domains))
    if unknown:
        problems.append(f"params.yaml: pretrain.mixture.{where}: {', '.join(map(repr, unknown))} not a domain of "
                        f"the pool ({', '.join(pools.domains)})")
    if any(v < 0 for v in w.values()):
        problems.append(f"params.yaml: pretrain.mixture.{where}: weights must be >= 0, got {w}")
    if abs(sum(w.values()) - 1.0) > WEIGHT_TOLERANCE:
        problems.append(f"params.yaml: pretrain.mixture.{where}: weights must sum to 1, got {sum(w.values()):.6f}")
    return problems


def start_weights(cfg: dict, pools: DomainPools) -> tuple[dict[str, float], str]:
    """The weights a run starts from, and where they came from (said in the log)."""
    if cfg["kind"] == "doremi":
        return {d: 1.0 / len(pools.domains) for d in pools.domains}, "uniform (DoReMi's proxy)"
    if cfg["kind"] == "schedule":
        return dict(cfg["schedule"][0]["weights"]), "schedule[0]"
    if cfg.get("weights_file"):
        return _read_weights(cfg["weights_file"], "weights_file"), cfg["weights_file"]
    if cfg.get("weights"):
        return dict(cfg["weights"]), "pretrain.mixture.weights"
    total = sum(pools.tokens.values())
    return {d: pools.tokens[d] / total for d in pools.domains}, "the pool's token shares (no weights given)"


def check(cfg: dict, pools: DomainPools, total_rows: int) -> None:
    """Every problem with the mixture params, as one ParamsError, before any training."""
    problems = []
    w0, _ = start_weights(cfg, pools)
    phases = [(0.0, w0)]
    if cfg["kind"] == "schedule":
        ats = [ph["at"] for ph in cfg["schedule"]]
        if ats[0] != 0.0 or ats != sorted(ats):
            problems.append(f"params.yaml: pretrain.mixture.schedule: `at` must start at 0.0 and increase, got {ats}")
        phases = [(ph["at"], ph["weights"]) for ph in cfg["schedule"]]
    for k, (_, w) in enumerate(phases):
        problems += _check_weights(w, f"schedule[{k}].weights" if cfg["kind"] == "schedule" else "weights", pools)
    if cfg["kind"] in ("fixed", "schedule") and not problems:
        ends = [a for a, _ in phases[1:]] + [1.0]
        epochs = {d: 0.0 for d in pools.domains}
        for (a, w), b in zip(phases, ends):
            for d, e in planned_epochs(pools, w, int(total_rows * (b - a))).items():
                epochs[d] += e
        for d, e in sorted(epochs.items()):
            if e > cfg["max_epochs"]:
                problems.append(f"params.yaml: pretrain.mixture: domain {d!r} would be read {e:.2f} times "
                                f"(its pool holds {pools.n_blocks[d]} blocks), more than max_epochs "
                                f"{cfg['max_epochs']}; lower its weight or the token budget")
    if cfg["kind"] == "doremi" and not cfg.get("reference_model"):
        problems.append("params.yaml: pretrain.mixture.reference_model: doremi needs the reference model "
                        "(an HF directory trained on the reference mixture)")
    if cfg["kind"] == "dynamic":
        ref = reference_losses(cfg)
        if ref is None:
            problems.append("params.yaml: pretrain.mixture: dynamic needs reference_losses or reference_file")
        elif set(ref) != set(pools.domains):
            problems.append(f"params.yaml: pretrain.mixture: reference losses name {sorted(ref)}, the pool's "
                            f"domains are {pools.domains}")
    if problems:
        raise ParamsError(problems)


def reference_losses(cfg: dict) -> dict[str, float] | None:
    if cfg.get("reference_losses"):
        return dict(cfg["reference_losses"])
    if cfg.get("reference_file"):
        return _read_weights(cfg["reference_file"], "reference_file")
    return None


class MixtureJob:
    """The sampler plus what a mixture kind adds to the trainer: batches, loss, hooks, state."""

    def __init__(self, cfg: dict, pools: DomainPools, batch_size: int, total_steps: int, seed: int,
                 device: torch.device, attn: str | None = None):
        self.cfg, self.kind, self.total_steps = cfg, cfg["kind"], total_steps
        w0, self.source = start_weights(cfg, pools)
        self.sampler = MixtureSampler(pools, w0, batch_size, seed)
        self.domains = pools.domains
        self.ref_model = None
        self._pending: list[torch.Tensor] | None = None
        if self.kind == "doremi":
            from ..lm.model import load_model
            self.ref_model = load_model(Path(cfg["reference_model"]), attn).to(device).eval()
            for prm in self.ref_model.parameters():
                prm.requires_grad_(False)
        self.ref = reference_losses(cfg) if self.kind == "dynamic" else None

    # --- the trainer's hooks ---
    def batches(self, step: int, rank: int, world: int, micro: int) -> list[dict]:
        if self.kind == "schedule":
            frac = step / max(self.total_steps, 1)
            current = [ph for ph in self.cfg["schedule"] if ph["at"] <= frac][-1]
            self.sampler.set_weights(current["weights"])
        x, doms = self.sampler.batch(step)
        per = len(x) // world
        x, doms = x[rank * per:(rank + 1) * per], torch.from_numpy(doms[rank * per:(rank + 1) * per])
        out = []
        for i in range(0, per, micro):
            b = {"input_ids": x[i:i + micro], "labels": x[i:i + micro]}
            if self.kind == "doremi":
                b["domain"] = doms[i:i + micro]
            out.append(b)
        self._micro_left = len(out)
        return out

    def loss(self, model, batch: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """DoReMi's proxy loss. With one micro-batch per process per step the weights are updated
        from this batch first, as in the paper's Algorithm 1; with gradient accumulation the excess
        losses of the step's micro-batches are summed and update the weights for the next step."""
        x, dom = batch["input_ids"], batch["domain"].to(batch["input_ids"].device)
        logits = model(input_ids=x).logits.float()
        tok = torch.nn.functional.cross_entropy(logits[:, :-1].transpose(1, 2), x[:, 1:], reduction="none")
        with torch.no_grad():
            ref_logits = self.ref_model(input_ids=x).logits.float()
            ref_tok = torch.nn.functional.cross_entropy(ref_logits[:, :-1].transpose(1, 2), x[:, 1:], reduction="none")
        mask = torch.ones_like(tok)
        sums, counts = excess_loss(tok, ref_tok, mask, dom, len(self.domains))
        self._pending = [sums, counts] if self._pending is None else [self._pending[0] + sums, self._pending[1] + counts]
        self._micro_left -= 1
        if self._micro_left == 0:
            s, c = self._pending
            if torch.distributed.is_available() and torch.distributed.is_initialized():
                torch.distributed.all_reduce(s)
                torch.distributed.all_reduce(c)
            self.sampler.set_weights(doremi_update(self.sampler.weights, s.cpu().numpy(), c.cpu().numpy(),
                                                   self.cfg["eta"], self.cfg["smoothing"]))
            self._pending = None
        alpha = torch.as_tensor(self.sampler.weights, dtype=torch.float32, device=tok.device)
        loss = group_weighted_loss(tok, mask, dom, alpha)
        with torch.no_grad():
            plain = (tok * mask).sum() / mask.sum()
        return loss, {"lm_loss": plain}

    def after_eval(self, last_eval: dict[str, float]) -> None:
        """Dynamic batch loading: new weights from this validation's per-domain losses."""
        if self.kind != "dynamic":
            return
        losses = np.array([last_eval[f"loss_{d}"] for d in self.domains])
        ref = np.array([self.ref[d] for d in self.domains])
        self.sampler.set_weights(dynamic_update(self.sampler.weights, losses, ref))

    def state_dict(self) -> dict:
        return self.sampler.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.sampler.load_state_dict(state)

    def log_values(self) -> dict[str, float]:
        return {f"mixture/{d}": float(w) for d, w in zip(self.domains, self.sampler.weights)}

    def metrics(self) -> dict:
        return {"average_weights": self.sampler.average_weights(),
                "final_weights": dict(zip(self.domains, map(float, self.sampler.weights))),
                "epochs": self.sampler.epochs()}


def open_pools(tokens_dir: Path, split: str, seq_len: int, seed: int) -> DomainPools:
    d = Path(tokens_dir) / split
    if not (d / "meta.json").exists():
        raise DataError(f"{d}: missing; pretrain.mixture reads the {split} split (set mix.pool: true and "
                        f"run `dvc repro tokenize`)")
    return DomainPools(d, seq_len, seed)
