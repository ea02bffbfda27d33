"""The reward_model job: a Bradley-Terry reward model trained on the dpo_pairs preference pairs.

The model is the SFT model with its LM head replaced by a new one-output score head
(AutoModelForSequenceClassification, num_labels=1, reading the last non-pad token), trained by
the shared trainer on the pairs' train split to minimise

    -log sigma(r(x, y_chosen) - r(x, y_rejected))

(Bradley & Terry 1952; Ouyang et al. 2022, arXiv:2203.02155, eq. 1), optionally plus
center_coef x (r_chosen + r_rejected)^2, the auxiliary loss that keeps rewards centred on zero
(Eisenstein et al. 2023, arXiv:2312.09244, their 0.01; off by default). The pairs' token ids are
those `lmbuild.lm.reward.score` builds from text, so the exported model scores a (prompt,
completion) as it was trained to. Held-out metrics: pair accuracy (r_chosen > r_rejected) and
mean margin with standard errors over pairs, and the expected calibration error of
sigma(margin) as the probability that the pair is ordered as the model says.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from ..lm.chat import chat_ids
from ..lm.model import choose_attention
from ..lm.padding import right_pad
from ..lm.reward import accuracy_by_family, score_ids
from ..params import training_seed
from ..stats import mean_stderr
from ..train.data import EpochOrder, rank_samples
from ..train.trainer import Job
from ..train.trainer import run as run_job

PAIR_FILE = "pairs.jsonl"
CALIBRATION_BINS = 10


def bt_loss(r_chosen: torch.Tensor, r_rejected: torch.Tensor, center_coef: float = 0.0) -> torch.Tensor:
    """Mean Bradley-Terry negative log-likelihood of the chosen answer winning, -log sigma(r_c - r_r)
    = softplus(r_r - r_c), plus center_coef x mean (r_c + r_r)^2 (Eisenstein et al. 2023)."""
    loss = F.softplus(r_rejected - r_chosen).mean()
    if center_coef:
        loss = loss + center_coef * (r_chosen + r_rejected).pow(2).mean()
    return loss


def calibration_error(margins: list[float], bins: int = CALIBRATION_BINS) -> float:
    """Expected calibration error of the model's pair ordering: the confidence of a pair is
    sigma(|margin|) (the BT probability of the order the model predicts), correct when margin > 0;
    ECE = sum over equal-width confidence bins of (share of pairs) x |accuracy - mean confidence|
    (Guo et al. 2017, arXiv:1706.04599). A tie (margin 0) counts as half right at confidence 0.5."""
    if not margins:
        return float("nan")
    m = torch.tensor(margins, dtype=torch.float64)
    conf = torch.sigmoid(m.abs())
    right = torch.where(m > 0, 1.0, torch.where(m < 0, 0.0, 0.5)).double()
    # confidences lie in [0.5, 1]: bins over that range
    idx = ((conf - 0.5) * 2 * bins).long().clamp(0, bins - 1)
    ece = 0.0
    for b in range(bins):
        sel = idx == b
        if sel.any():
            ece += float(sel.double().mean()) * abs(float(right[sel].mean()) - float(conf[sel].mean()))
    return ece


def pair_batch(rows: list[dict], pad_id: int) -> dict[str, torch.Tensor]:
    """The chosen sequences, then the rejected ones, right-padded with the pad id the model pools by."""
    t = right_pad([(r["prompt_ids"], r["chosen_ids"]) for r in rows]
                  + [(r["prompt_ids"], r["rejected_ids"]) for r in rows], pad_id)
    return {"input_ids": t["input_ids"], "attention_mask": t["attention_mask"]}


def load_score_model(init_model: Path, pad_id: int, attn: str):
    """The causal LM at init_model as a one-label sequence classifier: the transformer layers from
    the checkpoint, a new score head; config.pad_token_id set so the last real token is scored."""
    model = AutoModelForSequenceClassification.from_pretrained(init_model, num_labels=1, dtype=torch.float32,
                                                               attn_implementation=attn)
    model.config.pad_token_id = pad_id
    return model


def run(params: dict, *, init_model: Path, pairs_dir: Path, out_model: Path, ckpt_dir: Path, live_dir: Path) -> dict:
    p, seed = params["reward_model"], training_seed(params, "reward_model")
    rows = [json.loads(line) for line in (pairs_dir / PAIR_FILE).read_text().splitlines()]
    train = [r for r in rows if r["split"] == "train"]
    val = [r for r in rows if r["split"] == "val"]
    if not train:
        raise ValueError(f"{pairs_dir / PAIR_FILE}: no training pairs (run dpo_pairs, or add pair files)")
    tok = AutoTokenizer.from_pretrained(init_model)
    eos_ids, pad_id = chat_ids(tok)
    device = torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    torch.manual_seed(seed)  # the new score head's initialisation
    model = load_score_model(init_model, pad_id, choose_attention(p["attn_implementation"], device))
    order = EpochOrder(len(train), seed)

    def batches(step, rank, world, micro):
        return [pair_batch([train[order.index(i)] for i in ids], pad_id)
                for ids in rank_samples(step, p["batch_size"], rank, world, micro)]

    def loss_fn(m, batch):
        r = m(**batch).logits[:, 0].float()
        n = r.shape[0] // 2
        rc, rr = r[:n], r[n:]
        return bt_loss(rc, rr, p["center_coef"]), {
            "accuracy": (rc > rr).float().mean().detach(), "margin": (rc - rr).mean().detach(),
            "reward_mean": r.mean().detach()}

    def evaluate(m, dev, autocast, shard):
        if not val:
            return {}
        with autocast():
            r = score_ids(m, [(x["prompt_ids"], x["chosen_ids"]) for x in val]
                          + [(x["prompt_ids"], x["rejected_ids"]) for x in val], p["eval"]["batch_size"])
        rc, rr = r[:len(val)], r[len(val):]
        margins = (rc - rr).tolist()
        right = [1.0 if d > 0 else 0.5 if d == 0 else 0.0 for d in margins]
        return {"loss": float(bt_loss(rc, rr)), "accuracy": sum(right) / len(right),
                "accuracy_stderr": mean_stderr(right), "margin": sum(margins) / len(margins),
                "margin_stderr": mean_stderr(margins), "calibration_error": calibration_error(margins),
                "reward_mean": float(r.mean()), "reward_sd": float(r.std()) if r.numel() > 1 else float("nan"),
                # per task family (pairs from dpo_pairs carry one; pairs from files may not)
                **accuracy_by_family("accuracy", right, val)}

    total_steps = max(1, math.ceil(p["epochs"] * len(train) / p["batch_size"]))
    width = max(len(r["prompt_ids"]) + max(len(r["chosen_ids"]), len(r["rejected_ids"])) for r in train)
    job = Job(stage="reward_model", params=p, seed=seed, model=model, batches=batches, total_steps=total_steps,
              samples_per_epoch=len(train), seq_len=width, evaluate=evaluate,
              fingerprint_inputs={"init_model": init_model / "model.safetensors", "pairs": pairs_dir / PAIR_FILE},
              tokenizer_dir=init_model, out_model=out_model, ckpt_dir=ckpt_dir, live_dir=live_dir,
              eos_ids=eos_ids, pad_id=pad_id, loss_fn=loss_fn, code_dirs=[Path(__file__).parent],
              log_params={"center_coef": p["center_coef"], "pairs": len(train)})
    m = run_job(job)
    ev = m.pop("eval")
    m.pop("train_loss_ema", None)
    return {"train_loss": m.pop("train_loss"), "train": m.pop("train"), **ev,
            "pairs_train": len(train), "pairs_val": len(val), **m}
