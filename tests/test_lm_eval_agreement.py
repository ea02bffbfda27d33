"""lmbuild's multiple-choice scorer against lm-evaluation-harness itself: the same tiny model and
the same local JSONL task, scored by both, must give the same per-choice log-likelihoods (within
1e-4) and the same acc / acc_norm on every item. This is what makes docs/eval-and-report.md's
"exactly as lm-evaluation-harness 0.4 scores" true, and it fails the day either side changes its
conventions (BOS, how a context/continuation pair is tokenized, what acc_norm divides by)."""

from __future__ import annotations

import json
import math
import os
import random

import pytest
import torch

lm_eval = pytest.importorskip("lm_eval")

from lmbuild.eval.loglik import lm_eval_pair  # noqa: E402
from lmbuild.eval.multiple_choice import evaluate, read_items  # noqa: E402
from lmbuild.tokenize.chat_template import EOT  # noqa: E402
from lmbuild.train.model import build_model  # noqa: E402
from train_data import make_tokenizer, synthetic_docs  # noqa: E402

TASK_YAML = """task: lmbuild_agreement
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: multiple_choice
doc_to_text: "{{{{query}}}}"
doc_to_choice: "{{{{choices}}}}"
doc_to_target: gold
target_delimiter: " "
metric_list:
  - metric: acc
  - metric: acc_norm
"""


def _items(n: int, seed: int) -> list[dict]:
    """Queries ending in words, spaces or newlines and choices of different lengths (the cases
    where tokenizing a pair jointly or apart, and normalising with or without the delimiter,
    disagree)."""
    rng = random.Random(seed)
    words = "the cat dog sat on a mat river house walked to in morning evening old red blue".split()
    out = []
    for i in range(n):
        query = " ".join(rng.choice(words) for _ in range(rng.randint(3, 12)))
        query += rng.choice(["", " ", ":", "\n"])
        choices = [" ".join(rng.choice(words) for _ in range(rng.randint(1, 4))) for _ in range(rng.randint(2, 4))]
        out.append({"id": str(i), "query": query, "choices": choices, "gold": rng.randrange(len(choices))})
    return out


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("lm_eval_model")
    tok = make_tokenizer([t for _, t in synthetic_docs(300)], root, vocab_size=400)
    m = {"type": "llama", "hidden_size": 32, "num_layers": 2, "num_heads": 2, "num_kv_heads": None,
         "intermediate_size": 64, "max_length": 256, "tie_embeddings": True, "rope_theta": 10000.0,
         "init_std": 0.2, "qk_norm": False}
    eot = tok.convert_tokens_to_ids(EOT)
    model = build_model(m, len(tok), eot, tok.pad_token_id, seed=0, attn="eager")
    model.save_pretrained(root)
    return root


def test_per_choice_loglikelihoods_and_accuracies_match_lm_eval(model_dir, tmp_path, monkeypatch):
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager
    from transformers import AutoModelForCausalLM, AutoTokenizer

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf_cache"))
    rows = _items(40, seed=3)
    data = tmp_path / "task.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    tasks_dir = tmp_path / "tasks"
    tasks_dir.mkdir()
    (tasks_dir / "agreement.yaml").write_text(TASK_YAML.format(data=data))

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    lm = HFLM(pretrained=model, tokenizer=tok, batch_size=8, device="cpu")
    res = simple_evaluate(model=lm, tasks=["lmbuild_agreement"], task_manager=TaskManager(include_path=str(tasks_dir)),
                          log_samples=True, num_fewshot=0)
    samples = sorted(res["samples"]["lmbuild_agreement"], key=lambda s: s["doc_id"])
    theirs = [[float(r[0]) for r in s["filtered_resps"]] for s in samples]

    items = read_items(data)
    bos = tok.convert_tokens_to_ids(EOT)
    summary, ours = evaluate(model, items, encode_pair=lambda c, x: lm_eval_pair(tok, c, x, prefix_id=bos),
                             pad_id=tok.pad_token_id, batch_size=8, max_len=257)
    assert len(ours) == len(theirs) == len(rows)
    worst = max(abs(a - b) for r, t in zip(ours, theirs) for a, b in zip(r["loglik"], t))
    assert worst < 1e-4, f"per-choice log-likelihoods differ by up to {worst}"
    for r, s in zip(ours, samples):
        assert r["correct"] == s["acc"] and r["correct_norm"] == s["acc_norm"], (r, s)
    metrics = res["results"]["lmbuild_agreement"]
    assert summary["acc"] == pytest.approx(metrics["acc,none"])
    assert summary["acc_norm"] == pytest.approx(metrics["acc_norm,none"])
    assert summary["acc_stderr"] == pytest.approx(metrics["acc_stderr,none"])
    # the old convention (<|endoftext|> before every context) scores differently: the test can fail
    _, with_bos = evaluate(model, items, encode_pair=lambda c, x: lm_eval_pair(tok, c, x, prefix_id=bos, add_bos=True),
                           pad_id=tok.pad_token_id, batch_size=8, max_len=257)
    assert max(abs(a - b) for r, t in zip(with_bos, theirs) for a, b in zip(r["loglik"], t)) > 1e-3
    assert math.isfinite(worst) and os.environ.get("HF_DATASETS_OFFLINE") == "1"
