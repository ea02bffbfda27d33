"""The reward model: the Bradley-Terry loss on hand-computed values and its gradient signs, the
calibration error by hand, the shared scorer's encoding and head checks, rlvr's reward mix; and
(slow) the reward_model stage on the tiny chain of test_posttrain (sft, dpo_pairs) and on an easy
synthetic preference set."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
import torch

from lmbuild.params import ParamsError
from lmbuild.posttrain.reward_model import bt_loss, calibration_error


def test_bt_loss_by_hand():
    rc, rr = torch.tensor([2.0, 0.0]), torch.tensor([1.0, 0.0])
    # -log sigma(1) = log(1 + e^-1) = 0.31326; -log sigma(0) = log 2 = 0.69315
    assert float(bt_loss(rc, rr)) == pytest.approx((math.log1p(math.exp(-1)) + math.log(2)) / 2, abs=1e-6)
    # centring: + 0.01 x mean((2 + 1)^2, 0^2) = 0.01 x 4.5
    assert float(bt_loss(rc, rr, 0.01)) == pytest.approx((0.313262 + 0.693147) / 2 + 0.045, abs=1e-5)


def test_bt_gradient_raises_chosen_and_lowers_rejected():
    rc = torch.tensor([0.5, -1.0], requires_grad=True)
    rr = torch.tensor([0.0, 1.0], requires_grad=True)
    bt_loss(rc, rr).backward()
    # d/d r_c of softplus(r_r - r_c) = -sigma(r_r - r_c) / n: descent raises r_chosen
    assert rc.grad.tolist() == pytest.approx([-torch.sigmoid(torch.tensor(-0.5)).item() / 2,
                                              -torch.sigmoid(torch.tensor(2.0)).item() / 2], abs=1e-6)
    assert (rc.grad < 0).all() and (rr.grad > 0).all()
    assert (rc.grad + rr.grad).abs().max() < 1e-7  # only the difference matters (BT is shift-invariant)


def test_pair_accuracy_by_family():
    from lmbuild.lm.reward import accuracy_by_family
    rows = [{"family": "sort"}, {"family": "count"}, {"family": "sort"}, {}, {"family": "count"}]
    out = accuracy_by_family("acc", [1, 0, 1, 1, 0], rows)
    assert list(out) == ["acc_count", "acc_count_stderr", "acc_sort", "acc_sort_stderr"]   # a pair without one: no group
    assert out["acc_count"] == 0.0 and out["acc_sort"] == 1.0 and out["acc_sort_stderr"] == 0.0


def test_calibration_error_by_hand():
    # margins +-log(3): confidence sigma(log 3) = 0.75 in one bin; 3 of 4 right -> ECE 0
    ln3 = math.log(3)
    assert calibration_error([ln3, ln3, ln3, -ln3]) == pytest.approx(0.0, abs=1e-9)
    # all right at 0.75: |1 - 0.75| = 0.25
    assert calibration_error([ln3] * 4) == pytest.approx(0.25, abs=1e-9)


def test_reward_model_scorer_rejects_a_causal_lm(tmp_path):
    """A path whose model is not a one-label sequence classifier is a one-line params error."""
    from lmbuild.lm.reward import load_reward_model
    from lmbuild.train.export import export_model
    from lmbuild.train.model import build_model
    from lmbuild.params import validate_section
    from train_data import make_tokenizer, synthetic_docs
    tok = make_tokenizer([t for _, t in synthetic_docs(50)], tmp_path / "tok", 300)
    m = {**validate_section("pretrain", {})["model"], "hidden_size": 16, "num_layers": 1, "num_heads": 2,
         "intermediate_size": 32, "max_length": 64}
    eot, pad = tok.convert_tokens_to_ids("<|endoftext|>"), tok.convert_tokens_to_ids("<|pad|>")
    export_model(build_model(m, len(tok), eot, pad, 0), tmp_path / "tok", tmp_path / "lm", [eot], pad)
    with pytest.raises(ParamsError) as exc:
        load_reward_model(tmp_path / "lm", "rlvr.reward.reward_model_path")
    (line,) = exc.value.problems
    assert line.startswith("params.yaml: rlvr.reward.reward_model_path: must be a sequence-classification model")
    with pytest.raises(ParamsError, match="dpo.pairs.scorer.path: a reward model needs a local model directory"):
        load_reward_model(None, "dpo.pairs.scorer.path")


def test_reward_mix_standardises_the_reward_model_over_the_round(monkeypatch):
    """rlvr's reward: verifier x task reward + reward_model x the z-scored RM score of the round."""
    from lmbuild.posttrain import rewards
    from lmbuild.tasks import Example
    monkeypatch.setattr(rewards, "load_reward_model", lambda path, what: ("rm", "tok"))
    monkeypatch.setattr(rewards, "score", lambda rm, tok, prompts, texts, **kw: [1.0, 3.0, 5.0, 7.0])
    ex = Example(id="x", family="sort", prompt="Sort: 2 1", answer="1 2", solution="Answer: 1 2")
    tp = {"format_weight": 0.0}
    mix = rewards.RewardMix({"verifier": 1.0, "reward_model": 0.5, "reward_model_path": "m"}, tp, 64, 8)
    mixed, ver = mix.round([ex, ex], [["Answer: 1 2", "no"], ["Answer: 2 1", "Answer: 1 2"]])
    assert ver == [[1.0, 0.0], [0.0, 1.0]]
    # scores 1, 3, 5, 7: mean 4, sd (ddof=1) sqrt(20/3) = 2.582 -> z = -1.162, -0.387, 0.387, 1.162
    z = [(s - 4) / math.sqrt(20 / 3) for s in (1, 3, 5, 7)]
    assert mixed == [pytest.approx([1 + 0.5 * z[0], 0.5 * z[1]]), pytest.approx([0.5 * z[2], 1 + 0.5 * z[3]])]
    with pytest.raises(ParamsError, match="rlvr.reward.reward_model_path: a reward_model weight of 0.5 needs"):
        rewards.RewardMix({"verifier": 1.0, "reward_model": 0.5, "reward_model_path": None}, tp, 64, 8)
    off = rewards.RewardMix({"verifier": 1.0, "reward_model": 0.0, "reward_model_path": None}, tp, 64, 8)
    assert off.round([ex], [["Answer: 1 2", "x"]])[0] == [[1.0, 0.0]]


# --- the stages on the tiny chain of test_posttrain (slow) ---------------------------------------

from test_posttrain import PARAMS, base, make_project, run  # noqa: E402,F401  (base: the module fixture)

RM = {"precision": "fp32", "log_every": 2, "micro_batch_size": 8, "batch_size": 8, "epochs": 2,
      "optim": {"lr": 0.003}, "eval": {"every_steps": 4, "batch_size": 32}, "checkpoint": {"every_steps": 4}}
JUDGE = {"stages": ["sft", "dpo"], "baseline": "sft", "batch_size": 32}


def chain_params(**over):
    params = json.loads(json.dumps(PARAMS))
    params.update(reward_model=RM, judge=JUDGE)
    params.update(over)
    return params


@pytest.fixture(scope="module")
def rm_chain(base):
    """sft, dpo_pairs (on-policy, verifier-scored), reward_model, dpo and judge on the tiny model."""
    proj = make_project(base, chain_params())
    for stage in ("sft", "dpo_pairs", "reward_model", "dpo", "judge"):
        run(base, stage)
    return proj


@pytest.mark.slow
def test_reward_model_stage_exports_a_sequence_classifier(rm_chain):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from lmbuild.lm.reward import load_reward_model, score, score_ids
    root = rm_chain.root
    path = root / "models/reward_model"
    model = AutoModelForSequenceClassification.from_pretrained(path)
    tok = AutoTokenizer.from_pretrained(path)
    assert model.config.num_labels == 1 and model.config.pad_token_id == tok.convert_tokens_to_ids("<|pad|>")
    assert not (path / "generation_config.json").exists()
    met = json.loads((root / "metrics/reward_model.json").read_text())
    for key in ("accuracy", "accuracy_stderr", "margin", "margin_stderr", "calibration_error", "train.accuracy",
                "pairs_train", "pairs_val", "steps"):
        assert key in met, key
    assert 0 <= met["accuracy"] <= 1 and met["accuracy_stderr"] > 0
    pairs = [json.loads(x) for x in (root / "data/dpo/pairs.jsonl").read_text().splitlines()]
    families = {r["family"] for r in pairs if r["split"] == "val"}
    assert families and all(0 <= met[f"accuracy_{f}"] <= 1 for f in families)   # per task family
    # score() on text equals the training encoding on the pair file's ids (one encoding everywhere)
    rm, rm_tok = load_reward_model(path, "judge.path")
    rows = [json.loads(x) for x in (root / "data/dpo/pairs.jsonl").read_text().splitlines()][:4]
    by_text = score(rm, rm_tok, [r["prompt"] for r in rows], [r["chosen"] for r in rows], max_len=48)
    by_ids = score_ids(rm, [(r["prompt_ids"], r["chosen_ids"]) for r in rows]).tolist()
    assert by_text == pytest.approx(by_ids, abs=1e-5)


@pytest.mark.slow
def test_dpo_pairs_scores_with_the_reward_model_and_rejects_a_causal_lm(rm_chain, tmp_path):
    import shutil
    root = tmp_path / "p"
    shutil.copytree(rm_chain.root, root, symlinks=True, ignore=shutil.ignore_patterns("checkpoints", "dvclive"))
    params = chain_params()
    params["dpo"]["pairs"].update(prompts_per_family=6, scorer={"type": "reward_model", "path": "models/dpo"})
    make_project(root, params)
    p = run(root, "dpo_pairs", check=False)
    assert p.returncode == 2 and "Traceback" not in p.stderr, p.stderr
    assert "params.yaml: dpo.pairs.scorer.path: must be a sequence-classification model" in p.stderr
    params["dpo"]["pairs"]["scorer"]["path"] = "models/reward_model"
    make_project(root, params)
    run(root, "dpo_pairs")
    rows = [json.loads(x) for x in (root / "data/dpo/pairs.jsonl").read_text().splitlines()]
    # scores are the reward model's (not 0/1 verifier rewards)
    assert rows and all(r["chosen_score"] > r["rejected_score"] for r in rows)
    assert any(r["chosen_score"] not in (0.0, 1.0) for r in rows)


@pytest.mark.slow
def test_judge_stage_writes_win_rates(rm_chain):
    root = rm_chain.root
    met = json.loads((root / "metrics/judge.json").read_text())
    for key in ("win_rate", "win_rate_stderr", "lc_win_rate", "lc_win_rate_stderr", "mean_length",
                "baseline_mean_length", "prompts"):
        assert f"dpo.{key}" in met, key
    assert "sft.mean_length" in met and "sft.win_rate" not in met  # the baseline is not judged against itself
    items = [json.loads(x) for x in (root / "data/judge/judgements.jsonl").read_text().splitlines()]
    assert len(items) == met["dpo.prompts"] == 16  # 8 held-out problems x 2 families (the chat file: none held out)
    prefs = [r["preference"] for r in items]
    assert met["dpo.win_rate"] == pytest.approx(sum(prefs) / len(prefs))
    assert all(r["preference"] == 0.5 for r in items if r["answer"] == r["baseline"])
    assert 0 <= met["dpo.lc_win_rate"] <= 1


@pytest.mark.slow
def test_judge_scores_every_stage_against_alpaca_eval_references(rm_chain, tmp_path):
    import shutil
    root = tmp_path / "proj"
    shutil.copytree(rm_chain.root, root, symlinks=True)
    refs = [{"instruction": "Sort: 3 1 2", "output": "Answer: 1 2 3", "generator": "by hand", "dataset": "demo"},
            {"instruction": "Count a in: a b a", "output": "Answer: 2", "generator": "by hand", "dataset": "demo"},
            {"instruction": "Sort: 9 4", "output": "Answer: 4 9", "generator": "by hand", "dataset": "demo"}]
    (root / "refs.json").write_text(json.dumps(refs))
    make_project(root, chain_params(judge={**JUDGE, "references": [{"name": "mine", "path": "refs.json"}]}))
    run(root, "judge")
    met = json.loads((root / "metrics/judge.json").read_text())
    for s in ("sft", "dpo"):  # the baseline too is judged against the references
        assert met[f"{s}.references.mine.prompts"] == 3
        assert 0 <= met[f"{s}.references.mine.win_rate"] <= 1 and met[f"{s}.references.mine.win_rate_stderr"] >= 0
        assert 0 <= met[f"{s}.references.mine.lc_win_rate"] <= 1
    assert "dpo.references.mine.vs_baseline.win_rate" in met and "sft.references.mine.vs_baseline.win_rate" not in met
    assert met["dpo.win_rate"] == pytest.approx(json.loads((rm_chain.root / "metrics/judge.json").read_text())["dpo.win_rate"])
    items = [json.loads(x) for x in (root / "data/judge/judgements.jsonl").read_text().splitlines()]
    against = [r for r in items if r.get("against") == "reference"]
    assert len(against) == 6 and {r["baseline"] for r in against} == {r["output"] for r in refs}
    # a malformed reference file stops the stage before any generation, in one line
    (root / "refs.json").write_text(json.dumps([{"instruction": "Sort: 1 2"}]))
    p = run(root, "judge", check=False)
    assert p.returncode != 0 and "Traceback" not in p.stderr
    assert "judge.references.mine" in p.stderr and "record 0" in p.stderr and "output" in p.stderr


def easy_pairs(tok, n: int, seed: int) -> list[dict]:
    """Sort problems: chosen = the correct solution, rejected = random letters of about its length;
    every 5th pair held out."""
    import random
    from lmbuild.posttrain.pairs import encode_pair
    from lmbuild.tasks import generate, validate_difficulty
    rng = random.Random(seed)
    rows = []
    for i, ex in enumerate(generate("sort", "train", n, seed, validate_difficulty("sort", None))):
        garbage = " ".join("".join(rng.choice("qwxzjkv") for _ in range(rng.randint(2, 4)))
                           for _ in range(len(ex.solution.split())))
        rec = {"prompt": [{"role": "user", "content": ex.prompt}], "chosen": ex.solution, "rejected": garbage,
               "split": "val" if i % 5 == 0 else "train"}
        rows.append({**rec, **encode_pair(tok, rec, 64)})
    return rows


def train_easy(init_model, tmp_path, seed: int) -> dict:
    from transformers import AutoTokenizer
    from lmbuild.params import validate_section
    from lmbuild.posttrain.reward_model import run as run_rm
    pairs = tmp_path / f"pairs{seed}"
    pairs.mkdir()
    rows = easy_pairs(AutoTokenizer.from_pretrained(init_model), 200, seed)
    (pairs / "pairs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    params = {"common": {"seed": seed}, "reward_model": validate_section("reward_model", {
        **RM, "epochs": 3, "batch_size": 16, "micro_batch_size": 16, "eval": {"every_steps": 100, "batch_size": 64}})}
    return run_rm(params, init_model=init_model, pairs_dir=pairs, out_model=tmp_path / f"rm{seed}",
                  ckpt_dir=tmp_path / f"ck{seed}", live_dir=tmp_path / f"live{seed}")


@pytest.mark.slow
def test_easy_preferences_are_learned(base, tmp_path, monkeypatch):
    """Correct answers against garbage, from the random tiny model (models/anneal): 30 steps.
    Held-out accuracy (40 pairs) measured when this test was written: 1.000 for seeds 0, 1 and 2
    (margin ~3.6, ECE ~0.027); threshold 0.9."""
    monkeypatch.setenv("LMBUILD_NO_PROGRESS", "1")
    met = train_easy(base / "models/anneal", tmp_path, seed=0)
    assert met["pairs_val"] == 40 and met["steps"] == 30
    assert met["accuracy"] >= 0.9, met["accuracy"]
    assert met["margin"] > 0 and met["accuracy_stderr"] < 0.1


@pytest.mark.slow
def test_methods_study_runs_and_ranks_against_sft(rm_chain, tmp_path):
    """studies/dvc.yaml's methods study on the tiny chain: the baseline evaluation, a dpo method
    over two seeds (one models/sft start, its own model and metrics per run), and the fit's table
    against sft with the shared figures (held-out reward, judged win rate)."""
    import shutil
    shutil.copytree(rm_chain.root, tmp_path / "p", symlinks=True)
    root = tmp_path / "p"
    params = chain_params(studies={"methods": {"seeds": [1, 2], "dpo": {"dpo": {"epochs": 0.5}}, "rlvr": {}}})
    make_project(root, params)
    for args in (["baseline"], ["dpo", "1"], ["dpo", "2"], ["fit"]):
        _study(root, args)
    base = json.loads((root / "studies/methods/baseline.json").read_text())
    assert base["win_rate"] == 0.5 and "heldout_reward" in base
    one = json.loads((root / "studies/methods/runs/dpo-1/metrics.json").read_text())
    assert one["method"] == "dpo" and one["seed"] == 1 and 0 <= one["win_rate"] <= 1
    assert one["start_task_accuracy"] == json.loads((root / "metrics/sft.json").read_text())["task_accuracy"]
    assert (root / "studies/methods/runs/dpo-1/model/model.safetensors").is_file()
    assert not (root / "studies/methods/runs/dpo-1.ckpt").exists()
    met = json.loads((root / "metrics/study_methods.json").read_text())
    assert met["task_accuracy.sft.runs"] == 2 and met["task_accuracy.dpo.runs"] == 2
    assert "win_rate.dpo.diff_stderr" in met and "heldout_reward.sft.mean" in met
    assert "| dpo | 2 |" in (root / "studies/methods/report.md").read_text()


def _study(root, args):
    import subprocess
    import sys
    from conftest import stage_env
    p = subprocess.run([sys.executable, "-m", "stages.study_method", *args], cwd=root, env=stage_env(),
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
