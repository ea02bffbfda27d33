"""LESS: choose the SFT candidates whose gradients point where a target task's gradients point
(Xia, Malladi, Gururangan, Arora, Chen 2024, "LESS: Selecting Influential Data for Targeted
Instruction Tuning", arXiv:2402.04333), for `sft.select`.

The recipe, section by section of the paper:

1. Warm-up (§4.1): LoRA fine-tune the starting model on a random `warmup_fraction` of the
   candidates (paper: 5%) for `warmup_epochs` epochs (paper: 4), keeping the LoRA weights, the
   Adam moments and the mean learning rate of every epoch end (the checkpoints θ_1..θ_N).
2. Candidate features (§3, "Extension to Adam" and step 2): at each checkpoint, the gradient of a
   candidate's SFT loss w.r.t. the LoRA weights turned into the Adam update it would cause,
       m' = (β1 m + (1-β1) g) / (1-β1^t),  v' = (β2 v + (1-β2) g²) / (1-β2^t),  (t: Adam's next step)
       Γ(z, θ_i) = m' / (sqrt(v') + ε)
   with (m, v, t) the optimizer state at that checkpoint; then a seeded random projection to d
   dimensions (paper: Rademacher, the TRAK projector, d = 8192) and unit norm. The cosine matters,
   not the inner product: short sequences have larger gradient norms and would win on an inner
   product (§3 step 3 and their analysis of short examples).
3. Target features (§3 step 3): the plain gradient (SGD direction, no Adam preconditioning) of
   each of a few target-task examples, projected with the same matrix, unit norm.
4. Score (§3 step 3, the matching formula): for a candidate z and subtask j,
       Inf(z, D_j) = Σ_i η̄_i · mean_{z' in D_j} cos(Γ(z, θ_i), ∇ℓ(z'; θ_i))
   with η̄_i the mean learning rate of epoch i; the candidate's score is max_j Inf(z, D_j). Here a
   subtask is a task family; with one target family the max is over one value.
5. Selection (§4.1): the top `fraction` (paper: 5%) by score; sft then trains on them.

Per-example gradients run in batches with torch.func (functional_call + vmap + grad) over an
explicit 4D attention mask (transformers' own mask builder branches on the data, which vmap
cannot trace). Everything LoRA (peft) stays in this module: the sft model itself is trained
in full as before, only the chosen examples change.
"""

from __future__ import annotations

import os
import sys
import time
import warnings
from dataclasses import dataclass, field

import numpy as np
import torch

from ..lm.chat import IGNORE_INDEX
from ..params import ParamsError

# LoRA on the attention projections, as the paper's warm-up (§4.1, Appendix: q, k, v, o)
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj")
# rows of the projection matrix drawn per seeded chunk: fixed, so a seed gives the same matrix
# whatever the size of the gradients projected
_CHUNK = 4096


def check_select(sp: dict, tasks_params: dict) -> None:
    """Cross-section checks of `sft.select` a schema cannot say; one params.yaml line each."""
    problems = []
    if sp["method"] == "none":
        return
    if not 0 < sp["fraction"] <= 1:
        problems.append(f"params.yaml: sft.select.fraction: must be > 0 and <= 1, got {sp['fraction']}")
    if sp["method"] == "less":
        fam = sp["target_family"]
        if fam is None:
            problems.append("params.yaml: sft.select.target_family: the less method needs a target family "
                            f"(one of {', '.join(tasks_params['families'])}), got None")
        elif fam not in tasks_params["families"]:
            problems.append(f"params.yaml: sft.select.target_family: must be one of tasks.families "
                            f"({', '.join(tasks_params['families'])}), got {fam}")
        if not 0 < sp["warmup_fraction"] <= 1:
            problems.append(f"params.yaml: sft.select.warmup_fraction: must be > 0 and <= 1, "
                            f"got {sp['warmup_fraction']}")
    if problems:
        raise ParamsError(problems)


# ---- random projection ---------------------------------------------------------------------

class RandomProjection:
    """x -> x R with R an [n_in, dim] Rademacher matrix scaled by 1/sqrt(dim), drawn from `seed`.

    E[<xR, yR>] = <x, y>, and by Johnson-Lindenstrauss (Achlioptas 2003 for ±1 entries) the
    inner products of unit vectors are kept to about ±1/sqrt(dim). R is drawn in fixed chunks of
    rows, each from its own seeded generator, so it is the same for a seed on any machine and
    never has to be held whole: it is kept only when it fits in `cache_bytes`.
    """

    def __init__(self, n_in: int, dim: int, seed: int, cache_bytes: int = 1 << 28):
        self.n_in, self.dim, self.seed = n_in, dim, seed
        self._cache = [] if n_in * dim * 4 <= cache_bytes else None

    def _chunk(self, c: int) -> torch.Tensor:
        if self._cache is not None and c < len(self._cache):
            return self._cache[c]
        rows = min(_CHUNK, self.n_in - c * _CHUNK)
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + c)
        r = (torch.randint(0, 2, (rows, self.dim), generator=g, dtype=torch.int8) * 2 - 1).float()
        r /= self.dim ** 0.5
        if self._cache is not None:
            self._cache.append(r)
        return r

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.n_in:
            raise ValueError(f"projection of {self.n_in} inputs got {x.shape[-1]}")
        out = torch.zeros(*x.shape[:-1], self.dim)
        for c in range((self.n_in + _CHUNK - 1) // _CHUNK):
            out += x[..., c * _CHUNK:(c + 1) * _CHUNK].float() @ self._chunk(c)
        return out


# ---- Adam features and scores --------------------------------------------------------------

def adam_feature(grad: torch.Tensor, exp_avg: torch.Tensor, exp_avg_sq: torch.Tensor, step: int,
                 beta1: float, beta2: float, eps: float) -> torch.Tensor:
    """Γ = m'/(sqrt(v')+ε): the bias-corrected Adam update (per unit lr) that a gradient would
    cause from the moments (m, v) after `step` steps (LESS §3, "Extension to Adam"). The paper
    writes the bias correction as 1-β^t; the step Adam would take next is step t+1, whose
    correction is 1-β^(t+1), used here so that Γ is exactly torch's next Adam update / lr
    (a factor that is nearly 1 after a few steps). grad may carry a batch dim."""
    t = step + 1
    m = (beta1 * exp_avg + (1 - beta1) * grad) / (1 - beta1 ** t)
    v = (beta2 * exp_avg_sq + (1 - beta2) * grad * grad) / (1 - beta2 ** t)
    return m / (v.sqrt() + eps)


def _unit(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def influence_scores(train_feats: list[torch.Tensor], target_feats: list[torch.Tensor], lrs: list[float],
                     groups: list[int] | None = None) -> torch.Tensor:
    """LESS's score per candidate (§3 step 3): max over subtasks j of
    Σ_i lr_i · mean over the targets of subtask j of cos(train_i, target_i).

    train_feats[i]: [N, d] candidate features at checkpoint i; target_feats[i]: [M, d] target
    features there; groups: subtask of each target (None: one subtask)."""
    if not (len(train_feats) == len(target_feats) == len(lrs)) or not lrs:
        raise ValueError("one train feature block, target feature block and learning rate per checkpoint")
    m = target_feats[0].shape[0]
    g = torch.zeros(m, dtype=torch.long) if groups is None else torch.as_tensor(groups, dtype=torch.long)
    n_groups = int(g.max()) + 1
    # [M, J] averaging matrix: column j holds 1/|D_j| on the targets of subtask j
    avg = torch.zeros(m, n_groups)
    avg[torch.arange(m), g] = 1.0
    avg /= avg.sum(0, keepdim=True).clamp_min(1)
    total = torch.zeros(train_feats[0].shape[0], n_groups, dtype=torch.float64)
    for tr, tg, lr in zip(train_feats, target_feats, lrs):
        total += lr * ((_unit(tr) @ _unit(tg).T) @ avg).double()
    return total.max(dim=1).values


def top_fraction(scores, fraction: float) -> list[int]:
    """Indices of the best round(fraction x N) scores (at least one), ties to the earlier index,
    returned in input order."""
    s = np.asarray(scores, dtype=np.float64)
    k = max(1, int(round(fraction * len(s))))
    order = np.lexsort((np.arange(len(s)), -s))
    return sorted(order[:k].tolist())


# ---- the model side: LoRA warm-up and per-example gradients --------------------------------

def _pad(examples: list[tuple[list[int], list[int]]], pad_id: int):
    """Right-padded ids, labels, position ids and a 4D bool mask [B, 1, L, L] (causal, padding
    attends to itself only so no softmax row is empty)."""
    L = max(len(ids) for ids, _ in examples)
    B = len(examples)
    ids = torch.full((B, L), pad_id, dtype=torch.long)
    labels = torch.full((B, L), IGNORE_INDEX, dtype=torch.long)
    real = torch.zeros(B, L, dtype=torch.bool)
    for b, (i, lab) in enumerate(examples):
        ids[b, :len(i)] = torch.tensor(i)
        labels[b, :len(lab)] = torch.tensor(lab)
        real[b, :len(i)] = True
    causal = torch.tril(torch.ones(L, L, dtype=torch.bool))
    mask = (causal[None] & real[:, None, :] & real[:, :, None]) | torch.eye(L, dtype=torch.bool)[None]
    pos = torch.arange(L).expand(B, L)
    return ids, labels, pos, mask[:, None]


def _example_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The SFT loss of one example: mean next-token NLL over its assistant tokens."""
    t = labels[1:]
    valid = t != IGNORE_INDEX
    lp = torch.log_softmax(logits[:-1].float(), dim=-1)
    nll = -torch.gather(lp, -1, t.clamp(min=0)[:, None])[:, 0]
    return (nll * valid).sum() / valid.sum().clamp_min(1)


def _lora_model(init_model, rank: int, alpha: float, seed: int):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM
    torch.manual_seed(seed)  # LoRA's A matrices are drawn at wrapping
    base = AutoModelForCausalLM.from_pretrained(init_model, attn_implementation="sdpa", dtype=torch.float32)
    cfg = LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=0.0, target_modules=list(LORA_TARGETS))
    return get_peft_model(base, cfg)


def _lora_params(model) -> dict[str, torch.nn.Parameter]:
    return {n: p for n, p in model.named_parameters() if p.requires_grad}


def per_example_gradients(model, examples: list[tuple[list[int], list[int]]], pad_id: int) -> torch.Tensor:
    """[B, P]: each example's SFT-loss gradient w.r.t. the trainable (LoRA) parameters, flattened
    in named_parameters order, from one vmap over the batch."""
    from torch.func import functional_call, grad, vmap
    params = {n: p.detach() for n, p in _lora_params(model).items()}
    ids, labels, pos, mask = _pad(examples, pad_id)

    def loss(p, i, lab, po, ma):
        out = functional_call(model, p, (), {"input_ids": i[None], "position_ids": po[None],
                                             "attention_mask": ma[None], "use_cache": False})
        return _example_loss(out.logits[0], lab)

    was_training = model.training
    model.eval()
    with warnings.catch_warnings():
        # torch 2.13 has no vmap rule for CPU SDPA and loops over the batch inside it (still
        # faster than eager attention under vmap on the demo model: ~117 vs ~97 examples/s)
        warnings.filterwarnings("ignore", message="There is a performance drop")
        grads = vmap(grad(loss), in_dims=(None, 0, 0, 0, 0))(params, ids, labels, pos, mask)
    model.train(was_training)
    return torch.cat([grads[n].reshape(len(examples), -1) for n in params], dim=1)


@dataclass
class Checkpoint:
    """The warm-up's state at an epoch end: LoRA weights, Adam moments (flat, named_parameters
    order), Adam's step count and η̄, the epoch's mean learning rate."""
    lora: dict[str, torch.Tensor]
    exp_avg: torch.Tensor
    exp_avg_sq: torch.Tensor
    step: int
    lr: float


def warmup(model, examples: list[tuple[list[int], list[int]]], *, epochs: int, lr: float, batch_size: int,
           betas: tuple[float, float], eps: float, pad_id: int, seed: int) -> list[Checkpoint]:
    """LoRA-train `model` (a peft model) on `examples` with Adam, linear warm-up over the first
    3% of steps then linear decay to 0 (the paper's schedule, §4.1), one checkpoint per epoch."""
    params = _lora_params(model)
    opt = torch.optim.AdamW(params.values(), lr=lr, betas=betas, eps=eps, weight_decay=0.0)
    per_epoch = max(1, (len(examples) + batch_size - 1) // batch_size)
    total = per_epoch * epochs
    warm = max(1, round(0.03 * total))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / warm if s < warm else max(0.0, (total - s) / max(1, total - warm)))
    rng = np.random.default_rng(seed)
    out = []
    model.train()
    for _ in range(epochs):
        order = rng.permutation(len(examples))
        lrs = []
        for b in range(per_epoch):
            batch = [examples[i] for i in order[b * batch_size:(b + 1) * batch_size]]
            ids, labels, pos, mask = _pad(batch, pad_id)
            logits = model(input_ids=ids, position_ids=pos, attention_mask=mask, use_cache=False).logits
            # token-mean over the batch's assistant tokens, as the sft stage trains
            t = labels[:, 1:]
            loss = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.size(-1)).float(),
                                                     t.reshape(-1), ignore_index=IGNORE_INDEX)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            lrs.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
        st = [opt.state[p] for p in params.values()]
        out.append(Checkpoint(lora={n: p.detach().clone() for n, p in params.items()},
                              exp_avg=torch.cat([s["exp_avg"].reshape(-1) for s in st]),
                              exp_avg_sq=torch.cat([s["exp_avg_sq"].reshape(-1) for s in st]),
                              step=int(st[0]["step"]), lr=float(np.mean(lrs))))
    return out


# ---- the whole selection -------------------------------------------------------------------

@dataclass
class Selection:
    indices: list[int]                         # chosen candidates, in input order
    scores: list[float] | None                 # per candidate (less), None for random
    metrics: dict = field(default_factory=dict)


def _features(model, ckpt: Checkpoint, examples, pad_id: int, proj: RandomProjection, batch_size: int, *,
              adam: tuple[float, float, float] | None, bar=None) -> torch.Tensor:
    with torch.no_grad():
        for n, p in _lora_params(model).items():
            p.copy_(ckpt.lora[n])
    out = []
    for s in range(0, len(examples), batch_size):
        g = per_example_gradients(model, examples[s:s + batch_size], pad_id)
        if adam is not None:
            g = adam_feature(g, ckpt.exp_avg, ckpt.exp_avg_sq, ckpt.step, *adam)
        out.append(_unit(proj(g)))
        if bar is not None:
            bar.update(len(g))
    return torch.cat(out)


def less_select(sp: dict, candidates: list[tuple[list[int], list[int]]], targets: list[tuple[list[int], list[int]]],
                *, init_model, pad_id: int, lr: float, betas: tuple[float, float], eps: float, seed: int,
                target_groups: list[int] | None = None) -> Selection:
    """Warm-up, features, scores and the top `sp['fraction']` of `candidates` for the target
    examples `targets` (encoded like the candidates)."""
    from tqdm import tqdm
    t0 = time.perf_counter()
    n = len(candidates)
    rng = np.random.default_rng([seed, 0x1E55])
    n_warm = max(1, int(round(sp["warmup_fraction"] * n)))
    warm = [candidates[i] for i in sorted(rng.permutation(n)[:n_warm].tolist())]
    model = _lora_model(init_model, sp["lora_rank"], sp["lora_alpha"] or 4 * sp["lora_rank"], seed)
    ckpts = warmup(model, warm, epochs=sp["warmup_epochs"], lr=sp["lr"] if sp["lr"] is not None else lr,
                   batch_size=sp["batch_size"], betas=betas, eps=eps, pad_id=pad_id, seed=seed)
    t1 = time.perf_counter()
    n_params = sum(p.numel() for p in _lora_params(model).values())
    proj = RandomProjection(n_params, sp["projection_dim"], seed)
    bar = tqdm(total=len(ckpts) * (n + len(targets)), desc="sft.select: LESS gradient features", unit="ex",
               file=sys.stderr, dynamic_ncols=True, disable=os.environ.get("LMBUILD_NO_PROGRESS") == "1")
    train_feats, target_feats = [], []
    for ck in ckpts:
        train_feats.append(_features(model, ck, candidates, pad_id, proj, sp["gradient_batch_size"],
                                     adam=(betas[0], betas[1], eps), bar=bar))
        target_feats.append(_features(model, ck, targets, pad_id, proj, sp["gradient_batch_size"], adam=None,
                                      bar=bar))
    bar.close()
    t2 = time.perf_counter()
    scores = influence_scores(train_feats, target_feats, [c.lr for c in ckpts], target_groups)
    idx = top_fraction(scores.numpy(), sp["fraction"])
    return Selection(idx, scores.tolist(), {
        "warmup_examples": n_warm, "lora_params": n_params, "checkpoints": len(ckpts),
        "warmup_seconds": t1 - t0, "gradient_seconds": t2 - t1,
        "gradients_per_s": len(ckpts) * (n + len(targets)) / max(t2 - t1, 1e-9)})


def random_select(n: int, fraction: float, seed: int) -> Selection:
    """The baseline: a seeded random `fraction` of the n candidates."""
    k = max(1, int(round(fraction * n)))
    rng = np.random.default_rng([seed, 0x5E1])
    return Selection(sorted(rng.permutation(n)[:k].tolist()), None)
