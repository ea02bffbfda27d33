"""`hf_classifier` rater: a local Hugging Face sequence-classification model.

For a model directory a user has (e.g. an educational-value classifier in the style of
FineWeb-Edu, Penedo et al. 2024): AutoTokenizer + AutoModelForSequenceClassification, batched
inference under torch.no_grad with truncation to `max_length` tokens. The score is the
regression output (`label: null`, a model with one output) or the probability of the named label
(softmax over the labels; sigmoid for `multi_label_classification` models).

Texts go to the tokenizer as they are (first `max_chars` characters). Within a record batch the
documents are sorted by token count before being cut into `batch_size` batches, so padding is
short; the batches depend only on the record batch, and torch runs with a fixed number of
threads, so the scores do not depend on the number of workers. Nothing is trained: the rater's
directory under models/raters records the model path and the SHA-256 of its files.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .text import is_blank

_MODELS: dict[tuple, tuple] = {}


def prepare_context(rater: dict, census: dict[str, int]) -> None:
    return None


def worker_context(context) -> None:
    return None


Collector = None  # nothing to sample from the pool


def gather(rater: dict, context, results: list[dict]) -> None:
    return None


def problems(index: int, rater: dict, data, source: str = "params.yaml") -> list[str]:
    return []


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def train(rater: dict, data, model_dir: Path) -> dict:
    """Record which model scores (nothing to train)."""
    model_dir.mkdir(parents=True, exist_ok=True)
    root = Path(rater["model"])
    files = {p.relative_to(root).as_posix(): _sha256(p) for p in sorted(root.rglob("*")) if p.is_file()}
    info = {"name": rater["name"], "kind": "hf_classifier", "model": rater["model"], "files_sha256": files,
            "score": "regression output" if rater["label"] is None else f"probability of label {rater['label']!r}",
            **{k: rater[k] for k in ("label", "max_length", "max_chars", "batch_size")}}
    (model_dir / "rater.json").write_text(json.dumps(info, indent=1, sort_keys=True) + "\n")
    return {}


def load_model(rater: dict, fingerprint: str = ""):
    """(tokenizer, model, device) for a rater, loaded once per process and model version
    (`fingerprint`: the files' hashes from rater.json)."""
    key = (rater["model"], rater["device"], rater["threads"], fingerprint)
    if key not in _MODELS:
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()
        torch.set_num_threads(rater["threads"])
        tokenizer = AutoTokenizer.from_pretrained(rater["model"])
        model = AutoModelForSequenceClassification.from_pretrained(rater["model"]).to(rater["device"]).eval()
        _MODELS[key] = (tokenizer, model, torch.device(rater["device"]))
    return _MODELS[key]


def outputs_to_scores(logits, config, label: str | None) -> np.ndarray:
    """Regression output or the probability of `label`, from a batch of logits."""
    import torch

    logits = logits.float()
    if label is None:
        return logits[:, 0].cpu().numpy()
    label_id = {v: int(k) for k, v in config.id2label.items()}[label]
    if config.problem_type == "multi_label_classification":
        probs = torch.sigmoid(logits)
    else:
        probs = torch.softmax(logits, dim=-1)
    return probs[:, label_id].cpu().numpy()


class Scorer:
    def __init__(self, rater: dict, model_dir: Path | str):
        self.rater = rater
        info_path = Path(model_dir) / "rater.json"
        fingerprint = info_path.read_text() if info_path.is_file() else ""
        self.tokenizer, self.model, self.device = load_model(rater, fingerprint)

    def score(self, texts: pa.Array) -> tuple[np.ndarray, np.ndarray]:
        import torch

        if isinstance(texts, pa.ChunkedArray):
            texts = texts.combine_chunks()
        blank = is_blank(texts)
        heads = pc.utf8_slice_codeunits(pc.fill_null(texts, ""), 0, self.rater["max_chars"]).to_pylist()
        scores = np.zeros(len(heads), dtype=np.float32)
        if not heads:
            return scores, blank
        enc = self.tokenizer(heads, truncation=True, max_length=self.rater["max_length"])
        lengths = np.array([len(ids) for ids in enc["input_ids"]])
        order = np.argsort(-lengths, kind="stable")
        size = self.rater["batch_size"]
        with torch.no_grad():
            for start in range(0, len(order), size):
                idx = order[start:start + size]
                features = {k: [enc[k][i] for i in idx] for k in enc.keys()}
                batch = self.tokenizer.pad(features, return_tensors="pt").to(self.device)
                logits = self.model(**batch).logits
                scores[idx] = outputs_to_scores(logits, self.model.config, self.rater["label"])
        if self.rater["empty_score"] is not None:
            scores[blank] = np.float32(self.rater["empty_score"])
        return scores, blank
