"""The CORE score (lmbuild.eval.core) on a small bundle written here, against figures computed by
hand: a stub model whose next-token distribution is the same at every position makes each
choice's mean loss a known number."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch

from lmbuild.eval.core import CoreError, centred, core_score, prompts, read_bundle, score_task

V = 128
BOS = 0


class Unigram(torch.nn.Module):
    """logit(t) = -0.1 t at every position, except token 1, the likeliest: loss(t) = 0.1 t + log Z."""

    def __init__(self):
        super().__init__()
        self.logits = torch.nn.Parameter(-0.1 * torch.arange(V, dtype=torch.float32), requires_grad=False)
        with torch.no_grad():
            self.logits[1] = 1.0

    def forward(self, input_ids, attention_mask=None, **_):
        return SimpleNamespace(logits=self.logits.expand(*input_ids.shape, V).clone())


def encode(text: str) -> list[int]:
    return [BOS] + [ord(c) % V for c in text]


def write_bundle(root, tasks, baselines, data):
    (root / "eval_data").mkdir(parents=True)
    import yaml
    (root / "core.yaml").write_text(yaml.safe_dump({"icl_tasks": tasks}))
    (root / "eval_meta_data.csv").write_text("Eval Task,Random baseline\n"
                                             + "".join(f"{k},{v}\n" for k, v in baselines.items()))
    for uri, items in data.items():
        (root / "eval_data" / uri).write_text("".join(json.dumps(i) + "\n" for i in items))


@pytest.fixture
def bundle(tmp_path):
    tasks = [{"label": "mc", "icl_task_type": "multiple_choice", "dataset_uri": "mc.jsonl", "num_fewshot": [0]},
             {"label": "lm", "icl_task_type": "language_modeling", "dataset_uri": "lm.jsonl", "num_fewshot": [0],
              "continuation_delimiter": ""}]
    data = {"mc.jsonl": [{"query": "Q:", "choices": ["a", "zz"], "gold": 0},    # "a" has the lower loss: right
                         {"query": "Q:", "choices": ["a", "zz"], "gold": 1}],   # wrong
            "lm.jsonl": [{"context": "x ", "continuation": "\x01\x01"},         # the argmax token twice: right
                         {"context": "x", "continuation": "ab"}]}              # wrong
    write_bundle(tmp_path, tasks, {"mc": 25.0, "lm": 0.0}, data)
    return tmp_path


def test_core_on_a_small_bundle_matches_the_hand_computed_figures(bundle):
    model = Unigram()
    tasks = {t.label: t for t in read_bundle(bundle)}
    mc, rows = score_task(model, encode, tasks["mc"], pad_id=BOS, max_len=64, batch_size=4)
    assert [r["pred"] for r in rows] == [0, 0]
    # mean losses: "a" = 9.7 + log Z against "zz" = 12.2 + log Z, whatever log Z is
    assert rows[0]["mean_loss"][1] - rows[0]["mean_loss"][0] == pytest.approx(12.2 - 9.7, abs=1e-4)
    assert mc["accuracy"] == 0.5 and mc["centred"] == pytest.approx((0.5 - 0.25) / 0.75)
    lm, rows = score_task(model, encode, tasks["lm"], pad_id=BOS, max_len=64, batch_size=4)
    assert [r["correct"] for r in rows] == [1.0, 0.0] and lm["centred"] == 0.5
    score = core_score({"mc": mc, "lm": lm})
    assert score["core"] == pytest.approx(((0.5 - 0.25) / 0.75 + 0.5) / 2) and score["tasks"] == 2


def test_prompts_are_written_as_the_bundle_defines_them():
    shot = {"query": "2+2=", "choices": ["3", "4"], "gold": 1}
    assert prompts("multiple_choice", {"query": "1+1=", "choices": ["2", "5"], "gold": 0}, [shot], " ") == [
        "2+2= 4\n\n1+1= 2", "2+2= 4\n\n1+1= 5"]
    assert prompts("schema", {"context_options": ["A cat", "A dog"], "continuation": "barks", "gold": 1}, [], " ") == [
        "A cat barks", "A dog barks"]
    assert prompts("language_modeling", {"context": "The sky is ", "continuation": "blue"}, [], " ") == [
        "The sky is", "The sky is blue"]  # the context trimmed, then the delimiter
    assert centred(0.25, 0.25) == 0.0 and centred(1.0, 0.5) == 1.0 and centred(0.0, 0.5) == -1.0


def test_a_broken_bundle_is_one_line_naming_the_file(bundle):
    (bundle / "eval_data" / "lm.jsonl").unlink()
    with pytest.raises(CoreError, match="lm.jsonl: missing"):
        read_bundle(bundle)
    with pytest.raises(CoreError, match="core.yaml: missing"):
        read_bundle(bundle / "nowhere")
    (bundle / "eval_meta_data.csv").write_text("Eval Task,Random baseline\nmc,25\n")
    with pytest.raises(CoreError, match="no random baseline for task 'lm'"):
        read_bundle(bundle)
