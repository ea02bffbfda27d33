"""sft, dpo_pairs, dpo and rlvr as stages on a tiny model in a scratch project: every model opens
with AutoModelForCausalLM and answers through the chat template; bad rows of a user chat file are
set aside with file:line; the pair file carries reference log-probs; every loss trains; a killed
sft resumes to the same loss; bad loss settings are one-line errors; rlvr runs dapo and rloo."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys

import pytest
import torch

from lmbuild.train.checkpoint import load as load_checkpoint
from conftest import Project, assert_same_metrics, live_steps, sigkill_after_checkpoint, stage_env
from train_data import save_foreign, synthetic_docs, tiny_chat_llama

pytestmark = pytest.mark.slow

TRAIN = {"precision": "fp32", "log_every": 2, "micro_batch_size": 8, "batch_size": 8}
PARAMS = {
    "common": {"seed": 3},
    "tasks": {"families": ["sort", "count"], "test_examples": 8, "max_new_tokens": 12},
    "sft": {**TRAIN, "sources": [{"name": "tasks", "type": "tasks", "count": 150},
                                 {"name": "chat", "type": "file", "path": "chat.jsonl", "count": 40, "val_fraction": 0.0}],
            "epochs": 4, "seq_len": 64, "optim": {"lr": 0.01}, "eval": {"every_steps": 4, "batch_size": 8},
            "checkpoint": {"every_steps": 4}},
    "dpo": {**TRAIN, "pairs": {"prompts_per_family": 24, "samples": 4, "max_len": 48, "val_fraction": 0.2,
                               "batch_size": 64},
            "loss": "dpo", "beta": 0.1, "epochs": 1, "optim": {"lr": 0.001},
            "eval": {"every_steps": 2, "batch_size": 8}, "checkpoint": {"every_steps": 2}},
    "rlvr": {**TRAIN, "steps": 3, "batch_size": 4, "micro_batch_size": 2, "group_size": 4, "prompts_per_family": 50,
             "optim": {"lr": 0.001}, "kl_coef": 0.05, "eval": {"every_steps": 3, "batch_size": 32},
             "checkpoint": {"every_steps": 3}},
}
CHAT = [
    {"messages": [{"role": "user", "content": "Say hi"}, {"role": "assistant", "content": "hi"}]},
    {"instruction": "Name a colour", "input": "", "output": "red"},
    "{not json",
    {"messages": [{"role": "user", "content": "no answer"}]},
]


def run(root, stage, env=None, check=True):
    e = stage_env()
    e.update(env or {})
    p = subprocess.run([sys.executable, "-m", f"stages.{stage}"], cwd=root, env=e, capture_output=True, text=True,
                       timeout=600)
    if check and p.returncode:
        raise AssertionError(f"{stage} failed ({p.returncode}):\n{p.stderr[-3000:]}")
    return p


def make_project(root, params=PARAMS) -> Project:
    root.mkdir(parents=True, exist_ok=True)
    proj = Project(root)
    proj.write_params(json.loads(json.dumps(params)))
    return proj


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A scratch project whose models/anneal is a tiny random Llama with the chat tokenizer."""
    root = tmp_path_factory.mktemp("post")
    tiny_chat_llama(root / "models/tokenizer", root / "models/anneal")
    lines = [json.dumps(r) if isinstance(r, dict) else r for r in CHAT]
    (root / "chat.jsonl").write_text("\n".join(lines * 10) + "\n")
    return root


@pytest.fixture(scope="module")
def chain(base):
    proj = make_project(base)
    for stage in ("sft", "dpo_pairs", "dpo", "rlvr"):
        run(base, stage)
    return proj


def chat_answer(path, question: str) -> str:
    from transformers import AutoModelForCausalLM, AutoTokenizer
    model = AutoModelForCausalLM.from_pretrained(path)
    tok = AutoTokenizer.from_pretrained(path)
    ids = tok.apply_chat_template([{"role": "user", "content": question}], add_generation_prompt=True,
                                  return_tensors="pt", return_dict=True)
    out = model.generate(**ids, max_new_tokens=8, do_sample=False)
    return tok.decode(out[0, ids["input_ids"].shape[1]:])


@pytest.mark.parametrize("stage", ["sft", "dpo", "rlvr"])
def test_every_stage_writes_a_chat_model(chain, stage):
    root = chain.root
    assert chat_answer(root / "models" / stage, "Sort: 3 1 2")  # generates through the chat template
    gen = json.loads((root / "models" / stage / "generation_config.json").read_text())
    assert set(gen["eos_token_id"]) == {3, 0}  # <|im_end|> and <|endoftext|>
    # no length: it would override a harness's per-task max_gen_toks
    assert "max_new_tokens" not in gen and "max_length" not in gen
    met = json.loads((root / "metrics" / f"{stage}.json").read_text())
    for key in ("task_accuracy", "task_accuracy_stderr", "task_accuracy_sort", "task_accuracy_count",
                "start.task_accuracy", "task_accuracy_gain", "task_accuracy_gain_stderr", "tokens_per_s",
                "numerics.torch_version", "numerics.bf16", "numerics.cpu_avx512f"):
        assert key in met, key
    # the paired gain is end - start over the same held-out items
    assert met["task_accuracy_gain"] == pytest.approx(met["task_accuracy"] - met["start.task_accuracy"])


def test_sft_mixture_and_rejects(chain):
    root = chain.root
    met = json.loads((root / "metrics/sft.json").read_text())
    assert met["sources.tasks.examples"] == 300 and met["sources.chat.examples"] == 40
    rejected = [json.loads(line) for line in (root / "data/sft/rejected.jsonl").read_text().splitlines()]
    reasons = {(r["location"].split(":")[-1], r["reason"]) for r in rejected}
    # the file's format is the first row's (messages): the Alpaca row is rejected, not guessed
    assert {("2", "missing_field:messages"), ("3", "malformed_json"), ("4", "no_assistant_turn")} <= reasons, reasons
    assert met["rejected"] == len(rejected) == 30
    records = [json.loads(line) for line in (root / "data/sft/train.jsonl").read_text().splitlines()]
    assert {r["source"] for r in records} == {"tasks", "chat"} and len(records) == 340
    assert met["val_loss"] < 10 and 0 < met["packing_fill"] <= 1


def test_dpo_pairs_carry_reference_logps(chain):
    rows = [json.loads(line) for line in (chain.root / "data/dpo/pairs.jsonl").read_text().splitlines()]
    assert rows and {"train"} <= {r["split"] for r in rows}
    for r in rows:
        assert r["chosen_score"] > r["rejected_score"]
        assert r["ref_chosen"] < 0 and r["ref_rejected"] < 0 and r["ref_kl"] < 0
        assert r["prompt_ids"] and r["chosen_ids"] and r["rejected_ids"]
    met = json.loads((chain.root / "metrics/dpo.json").read_text())
    assert 0 <= met["train.reward_accuracy"] <= 1 and "val.reward_margin" in met
    for fam in {r["family"] for r in rows if r["split"] == "val"}:   # held-out reward accuracy per task family
        assert 0 <= met[f"val.reward_accuracy_{fam}"] <= 1


def test_every_loss_trains_on_the_cached_pairs(chain, tmp_path, monkeypatch):
    """Each loss runs through the dpo job on the same cached pairs (in-process: one import)."""
    from lmbuild.params import validate_section as validate
    from lmbuild.posttrain.dpo import run as run_dpo
    from lmbuild.posttrain.preference_losses import LOSSES
    monkeypatch.setenv("LMBUILD_NO_PROGRESS", "1")
    root = chain.root
    for loss in LOSSES:
        params = json.loads(json.dumps(PARAMS))
        params["dpo"].update(loss=loss, beta=None, epochs=0.3, eval={"every_steps": 100, "batch_size": 8})
        params = {"common": params["common"], "tasks": validate("tasks", params["tasks"]),
                  "dpo": validate("dpo", params["dpo"])}
        met = run_dpo(params, init_model=root / "models/sft", pairs_dir=root / "data/dpo",
                      out_model=tmp_path / loss / "model", ckpt_dir=tmp_path / loss / "ckpt",
                      live_dir=tmp_path / loss / "live", rounds_dir=tmp_path / loss / "rounds")
        assert met["steps"] >= 1 and met["train_loss"] == met["train_loss"], loss  # finite
        assert 0 <= met["val"]["reward_accuracy"] <= 1, loss


def test_iterative_dpo_samples_each_round_from_the_latest_model(chain, tmp_path, monkeypatch):
    """dpo.rounds 2: round 2's pairs are new on-policy pairs whose cached reference log-probs are
    round 1's model's (the latest), kept as an output; metrics report every round."""
    from lmbuild.lm.logprobs import completion_logps, sequence_logps
    from lmbuild.lm.model import load_model
    from lmbuild.params import validate_section as validate
    from lmbuild.posttrain.dpo import run as run_dpo
    from lmbuild.posttrain.pairs import pair_tensors
    monkeypatch.setenv("LMBUILD_NO_PROGRESS", "1")
    root = chain.root
    params = json.loads(json.dumps(PARAMS))
    params["dpo"].update(rounds=2, eval={"every_steps": 100, "batch_size": 8})
    params = {"common": params["common"], "tasks": validate("tasks", params["tasks"]),
              "dpo": validate("dpo", params["dpo"])}
    met = run_dpo(params, init_model=root / "models/sft", pairs_dir=root / "data/dpo", out_model=tmp_path / "model",
                  ckpt_dir=tmp_path / "ckpt", live_dir=tmp_path / "live", rounds_dir=tmp_path / "rounds")
    assert sorted(met["rounds"]) == ["1", "2"] and met["rounds"]["2"]["pairs_train"] >= 1
    rows = [json.loads(x) for x in (tmp_path / "rounds/round_2/pairs.jsonl").read_text().splitlines()]
    first = [json.loads(x) for x in (root / "data/dpo/pairs.jsonl").read_text().splitlines()]
    assert [r["chosen"] for r in rows] != [r["chosen"] for r in first]
    round1 = load_model(tmp_path / "ckpt/round_1/model").eval()
    t = pair_tensors(rows[:4], 0, kl=False)
    with torch.no_grad():
        sums, _ = sequence_logps(completion_logps(round1, t["input_ids"], t["attention_mask"], t["completion_mask"]),
                                 t["completion_mask"])
    assert torch.allclose(sums[:len(rows[:4])], torch.tensor([r["ref_chosen"] for r in rows[:4]]), atol=1e-3)
    assert json.loads((tmp_path / "rounds/rounds.json").read_text())["rounds"] == 2
    assert not (tmp_path / "rounds.partial").exists()


def test_ppo_trains_policy_and_value_and_exports_the_policy(chain, tmp_path, monkeypatch):
    """rlvr.algorithm ppo on the tiny chain: policy and value losses and the KL penalty are
    logged, and models/rlvr is a plain causal LM without the value head."""
    from transformers import AutoModelForCausalLM
    from safetensors import safe_open
    from lmbuild.params import validate_section as validate
    from lmbuild.posttrain import ppo_job
    monkeypatch.setenv("LMBUILD_NO_PROGRESS", "1")
    root = chain.root
    params = json.loads(json.dumps(PARAMS))
    params["rlvr"].update(algorithm="ppo", steps=4, updates_per_batch=2, checkpoint={"every_steps": 8}, log_every=1,
                          eval={"every_steps": 8, "batch_size": 32, "samples": 1}, optim={"lr": 0.003})
    params = {"common": params["common"], "tasks": validate("tasks", params["tasks"]),
              "rlvr": validate("rlvr", params["rlvr"])}
    met = ppo_job.run(params, init_model=root / "models/dpo", out_model=tmp_path / "model", ckpt_dir=tmp_path / "ckpt",
                      live_dir=tmp_path / "live", scorer=ppo_job.make_scorer(params)[0])
    assert met["steps"] == 8 and math.isfinite(met["final_loss"])
    for key in ("policy_loss", "value_loss", "explained_variance", "clip_fraction", "kl_penalty"):
        assert key in met["train"], key
    AutoModelForCausalLM.from_pretrained(tmp_path / "model")
    with safe_open(str(tmp_path / "model/model.safetensors"), "pt") as f:
        assert not any(k.startswith(("value.", "policy.")) or "score" in k for k in f.keys())


def test_bad_loss_settings_are_one_line(chain, tmp_path):
    shutil.copytree(chain.root, tmp_path / "p", symlinks=True)
    params = json.loads(json.dumps(PARAMS))
    params["dpo"].update(loss="orpo", beta=0.2)
    make_project(tmp_path / "p", params)
    p = run(tmp_path / "p", "dpo", check=False)
    assert p.returncode == 2 and "params.yaml: dpo.beta: the orpo loss has no beta" in p.stderr, p.stderr
    assert "Traceback" not in p.stderr


def test_killed_sft_resumes_to_the_same_loss(chain, tmp_path):
    root = tmp_path / "p"
    shutil.copytree(chain.root, root, symlinks=True, ignore=shutil.ignore_patterns("checkpoints", "dvclive"))
    shutil.rmtree(root / "models/sft")
    at = sigkill_after_checkpoint(root, "sft", min_step=4, seed=1)
    assert at >= 4 and not (root / "models/sft").exists()
    run(root, "sft")
    full = json.loads((chain.root / "metrics/sft.json").read_text())
    resumed = json.loads((root / "metrics/sft.json").read_text())
    assert resumed["train_loss"] == pytest.approx(full["train_loss"], abs=1e-6)
    assert resumed["val_loss"] == pytest.approx(full["val_loss"], abs=1e-6)
    assert load_checkpoint(root / "checkpoints/sft")["step"] == full["steps"]


def copy_chain(chain, root, stage: str, params: dict) -> None:
    """The chain's project without checkpoints, curves, the stage's model and metrics, with params."""
    shutil.copytree(chain.root, root, symlinks=True, ignore=shutil.ignore_patterns("checkpoints", "dvclive"))
    shutil.rmtree(root / "models" / stage)
    (root / "metrics" / f"{stage}.json").unlink()
    make_project(root, params)


def kill_resume_and_compare(chain, tmp_path, stage: str, params: dict, min_step: int, total: int,
                            keys: tuple[str, ...], seed: int) -> None:
    """An uninterrupted run and a run killed (-9) after its checkpoint reached min_step, then
    rerun, on copies of the chain with the same params: same metrics, each curve step once."""
    full_root, root = tmp_path / "full", tmp_path / "killed"
    for r in (full_root, root):
        copy_chain(chain, r, stage, params)
    run(full_root, stage)
    full = json.loads((full_root / "metrics" / f"{stage}.json").read_text())
    assert full["steps"] == total, full["steps"]
    at = sigkill_after_checkpoint(root, stage, min_step=min_step, seed=seed)
    assert min_step <= at < total and not (root / "models" / stage).exists(), at
    p = run(root, stage)
    resumed = json.loads((root / "metrics" / f"{stage}.json").read_text())
    assert_same_metrics(full, resumed, keys)
    assert load_checkpoint(root / "checkpoints" / stage)["step"] == total, p.stderr
    steps = live_steps(root, stage)
    assert steps == sorted(set(steps)) and steps[-1] == total, steps


def test_killed_dpo_resumes_to_the_same_metrics(chain, tmp_path):
    """The chain's dpo (1 epoch of 14 pairs: 2 steps, checkpointed at the end) has no step to kill
    in: 6 epochs (11 steps) with a checkpoint every 2, killed after the step-4 checkpoint, against
    an uninterrupted run with those params."""
    params = json.loads(json.dumps(PARAMS))
    params["dpo"].update(epochs=6, eval={"every_steps": 6, "batch_size": 8})
    pairs = json.loads((chain.root / "metrics/dpo.json").read_text())["pairs_train"]
    total = math.ceil(6 * pairs / params["dpo"]["batch_size"])
    assert total >= 10, (pairs, total)
    kill_resume_and_compare(chain, tmp_path, "dpo", params, min_step=4, total=total, seed=2,
                            keys=("train_loss", "val.loss", "val.reward_accuracy", "val.reward_margin",
                                  "task_accuracy"))


def test_killed_rlvr_resumes_to_the_same_metrics(chain, tmp_path):
    """rlvr resumes at a sampling round and samples what the uninterrupted run sampled: 8 rounds
    with a checkpoint every 2 (PARAMS have 3 with one at the end), killed after the step-2 one
    (six slowed steps left, so the kill lands before the end on a fast machine too);
    held-out eval (greedy and 2 samples per problem) only at the start and the end."""
    params = json.loads(json.dumps(PARAMS))
    params["rlvr"].update(steps=8, checkpoint={"every_steps": 2}, eval={"every_steps": 8, "batch_size": 32,
                                                                        "samples": 2})
    kill_resume_and_compare(chain, tmp_path, "rlvr", params, min_step=2, total=8, seed=4,
                            keys=("final_loss", "task_accuracy", "sampled_accuracy", "sampled_reward",
                                  "train.reward", "train.kl"))


@pytest.mark.parametrize("algorithm", ["dapo", "rloo"])
def test_rlvr_algorithms_run_and_report_their_settings(chain, tmp_path, algorithm):
    """rlvr with another member of the policy-gradient family on the chain's dpo model: the
    metrics name the resolved algorithm and its settings, and every number is finite. dapo has no
    KL (the chain's kl_coef is dropped) and logs its dynamic sampling; rloo keeps the KL."""
    params = json.loads(json.dumps(PARAMS))
    params["rlvr"]["algorithm"] = algorithm
    if algorithm == "dapo":
        del params["rlvr"]["kl_coef"]
    copy_chain(chain, tmp_path / "p", "rlvr", params)
    run(tmp_path / "p", "rlvr")
    met = json.loads((tmp_path / "p/metrics/rlvr.json").read_text())
    assert met[f"algorithm_settings.algorithm.{algorithm}"] == 1
    assert all(v is not None and math.isfinite(v) for v in met.values()), met
    assert met["steps"] == 3
    if algorithm == "dapo":
        assert (met["algorithm_settings.clip_low"], met["algorithm_settings.clip_high"]) == (0.2, 0.28)
        assert met["algorithm_settings.overlong_cache"] == 2 and met["algorithm_settings.kl_coef"] == 0
        assert 0 <= met["train.refills"] <= 4 and met["train.groups_skipped"] >= 0
        assert met["train.overlong_penalty"] <= 0
    else:
        assert met["algorithm_settings.kl_coef"] == 0.05 and met["train.kl"] >= 0


def test_rlvr_refuses_a_setting_the_algorithm_lacks(chain, tmp_path):
    params = json.loads(json.dumps(PARAMS))
    params["rlvr"].update(algorithm="grpo", overlong_cache=3)
    copy_chain(chain, tmp_path / "p", "rlvr", params)
    p = run(tmp_path / "p", "rlvr", check=False)
    assert p.returncode == 2 and "params.yaml: rlvr.overlong_cache: the grpo algorithm has no overlong" in p.stderr
    assert "Traceback" not in p.stderr and not (tmp_path / "p/models/rlvr").exists()


def test_killed_dapo_resumes_to_the_same_metrics(chain, tmp_path):
    """DAPO's refills draw prompts and seeds fixed by the round, so a run killed after a checkpoint
    and rerun samples what the uninterrupted run sampled (the grpo resume test's setup)."""
    params = json.loads(json.dumps(PARAMS))
    del params["rlvr"]["kl_coef"]
    params["rlvr"].update(algorithm="dapo", max_refills=2, steps=8, checkpoint={"every_steps": 2},
                          eval={"every_steps": 8, "batch_size": 32, "samples": 2})
    kill_resume_and_compare(chain, tmp_path, "rlvr", params, min_step=2, total=8, seed=5,
                            keys=("final_loss", "task_accuracy", "sampled_reward", "train.reward",
                                  "train.refills", "train.groups_skipped", "train.overlong_penalty"))
    # the refill path ran: some round dropped constant groups and drew more prompts
    rows = [line.split("\t") for line in
            (tmp_path / "full/dvclive/rlvr/plots/metrics/train/refills.tsv").read_text().splitlines()]
    assert sum(float(r[rows[0].index("refills")]) for r in rows[1:]) > 0, rows
def scratch(base, root, params) -> Project:
    """A project holding only the base's models/anneal and chat file, with these params."""
    (root / "models").mkdir(parents=True)
    shutil.copytree(base / "models/anneal", root / "models/anneal")
    shutil.copy(base / "chat.jsonl", root / "chat.jsonl")
    return make_project(root, params)


@pytest.fixture(scope="module")
def foreign_sft(base, tmp_path_factory):
    """sft started from a tiny Qwen2 whose byte-level tokenizer has its own </s> / <pad> and no chat
    template (sft.init_model: models/qwen)."""
    root = tmp_path_factory.mktemp("foreign")
    texts = [t for _, t in synthetic_docs(300)]
    save_foreign(root / "models/qwen", texts=texts, vocab_size=512)
    shutil.copy(base / "chat.jsonl", root / "chat.jsonl")
    params = json.loads(json.dumps(PARAMS))
    params["sft"].update(init_model="models/qwen", epochs=2)
    make_project(root, params)
    return root, run(root, "sft")


def test_sft_starts_from_a_model_of_another_family(foreign_sft):
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from lmbuild.tokenize.chat_template import CHAT_TEMPLATE
    root, proc = foreign_sft
    assert "lmbuild's ChatML chat template set" in proc.stderr and "added 2 token(s)" in proc.stderr
    met = json.loads((root / "metrics/sft.json").read_text())
    assert met["start_model.template_added"] == 1 and met["start_model.tokens_added"] == 2
    model = AutoModelForCausalLM.from_pretrained(root / "models/sft")
    tok = AutoTokenizer.from_pretrained(root / "models/sft")
    start = AutoModelForCausalLM.from_pretrained(root / "models/qwen")
    assert type(model).__name__ == "Qwen2ForCausalLM" and tok.chat_template == CHAT_TEMPLATE
    # the vocabulary grew by the two turn tokens (from the tokenizer as loaded from models/qwen)
    assert len(tok) == met["start_model.vocab_after"] == met["start_model.vocab_before"] + 2
    assert model.get_input_embeddings().weight.shape[0] == len(tok) > start.get_input_embeddings().weight.shape[0]
    gen = json.loads((root / "models/sft/generation_config.json").read_text())
    assert gen["eos_token_id"] == [tok.convert_tokens_to_ids("<|im_end|>"), tok.convert_tokens_to_ids("</s>")]
    assert gen["pad_token_id"] == tok.convert_tokens_to_ids("<pad>")
    assert chat_answer(root / "models/sft", "Sort: 3 1 2")  # answers through the template
    assert met["train_loss"] < math.log(len(tok))  # it learnt something from uniform


LORA = {"enabled": True, "r": 4, "alpha": 8}
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")  # the default


@pytest.fixture(scope="module")
def lora_sft(base, tmp_path_factory):
    root = tmp_path_factory.mktemp("lora")
    params = json.loads(json.dumps(PARAMS))
    params["sft"]["lora"] = LORA
    scratch(base, root, params)
    run(root, "sft")
    return root


def test_lora_sft_trains_only_the_adapters_and_exports_merged(lora_sft):
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM
    root = lora_sft
    start = load_file(root / "models/anneal/model.safetensors")
    out = load_file(root / "models/sft/model.safetensors")
    assert set(out) == set(start)  # a plain HF model: no lora_A / lora_B / base_layer keys
    adapted = {k for k in start if k.split(".")[-2] in LORA_TARGETS}
    changed = {k for k in start if not torch.equal(start[k], out[k])}
    assert adapted and changed == adapted  # embeddings and norms untouched, every adapted weight merged
    # in the checkpoint (before the merge) the base weights are the start model's
    state = load_checkpoint(root / "checkpoints/sft")["model"]
    for k in adapted:
        assert torch.equal(state["base_model.model." + k.replace(".weight", ".base_layer.weight")], start[k]), k
    assert all(state[k].abs().sum() > 0 for k in state if "lora_B" in k)  # B started at zero, trained
    model = AutoModelForCausalLM.from_pretrained(root / "models/sft")
    expected = sum(4 * (m.in_features + m.out_features) for n, m in model.named_modules()
                   if isinstance(m, torch.nn.Linear) and n.rsplit(".", 1)[-1] in LORA_TARGETS)
    met = json.loads((root / "metrics/sft.json").read_text())
    assert met["parameters_trainable"] == expected < met["parameters"]
    assert chat_answer(root / "models/sft", "Sort: 3 1 2")


def test_full_sft_trains_every_parameter(chain):
    met = json.loads((chain.root / "metrics/sft.json").read_text())
    assert met["parameters_trainable"] == met["parameters"]


def test_killed_lora_sft_resumes_to_the_same_model(lora_sft, tmp_path):
    from safetensors.torch import load_file
    root = tmp_path / "p"
    shutil.copytree(lora_sft, root, symlinks=True, ignore=shutil.ignore_patterns("checkpoints", "dvclive"))
    shutil.rmtree(root / "models/sft")
    at = sigkill_after_checkpoint(root, "sft", min_step=4, seed=1)
    assert at >= 4 and not (root / "models/sft").exists()
    run(root, "sft")
    full = json.loads((lora_sft / "metrics/sft.json").read_text())
    resumed = json.loads((root / "metrics/sft.json").read_text())
    assert_same_metrics(full, resumed, ("train_loss", "val_loss", "task_accuracy", "parameters_trainable"))
    a, b = load_file(lora_sft / "models/sft/model.safetensors"), load_file(root / "models/sft/model.safetensors")
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


def test_lora_dpo_exports_a_merged_model(chain, tmp_path, monkeypatch):
    """dpo with dpo.lora on the chain's cached pairs (in-process): adapters only train, the export
    has the start model's keys and differs from it only in the adapted projections."""
    from safetensors.torch import load_file
    from lmbuild.params import validate_section as validate
    from lmbuild.posttrain.dpo import run as run_dpo
    monkeypatch.setenv("LMBUILD_NO_PROGRESS", "1")
    root = chain.root
    params = json.loads(json.dumps(PARAMS))
    params["dpo"].update(lora={**LORA, "target_modules": ["q_proj", "v_proj"]},
                         eval={"every_steps": 100, "batch_size": 8})
    params = {"common": params["common"], "tasks": validate("tasks", params["tasks"]),
              "dpo": validate("dpo", params["dpo"])}
    met = run_dpo(params, init_model=root / "models/sft", pairs_dir=root / "data/dpo", out_model=tmp_path / "model",
                  ckpt_dir=tmp_path / "ckpt", live_dir=tmp_path / "live", rounds_dir=tmp_path / "rounds")
    start, out = load_file(root / "models/sft/model.safetensors"), load_file(tmp_path / "model/model.safetensors")
    assert set(out) == set(start)
    changed = {k for k in start if not torch.equal(start[k], out[k])}
    assert changed == {k for k in start if k.split(".")[-2] in ("q_proj", "v_proj")}
    assert 0 < met["parameters_trainable"] < met["parameters"]


@pytest.fixture(scope="module")
def moe_chain(base, tmp_path_factory):
    """sft, dpo_pairs and dpo from a tiny OLMoE (4 experts, top-2) as models/anneal."""
    root = tmp_path_factory.mktemp("moe_post")
    moe = {"num_experts": 4, "experts_per_token": 2, "expert_size": 16, "shared_expert_size": None,
           "router_aux_loss_coef": 0.01, "router_z_loss_coef": 0.001}
    tiny_chat_llama(root / "models/tokenizer", root / "models/anneal", model={"type": "olmoe", "moe": moe})
    shutil.copy(base / "chat.jsonl", root / "chat.jsonl")
    make_project(root)
    for stage in ("sft", "dpo_pairs", "dpo"):
        run(root, stage)
    return root


def test_post_training_runs_unchanged_on_a_mixture_of_experts_model(moe_chain):
    # an MoE from pretrain is a plain HF model: the post-training stages take it as they take a dense one
    from transformers import AutoModelForCausalLM, AutoTokenizer
    for stage in ("sft", "dpo"):
        model = AutoModelForCausalLM.from_pretrained(moe_chain / "models" / stage)
        assert type(model).__name__ == "OlmoeForCausalLM" and model.config.num_experts == 4
        assert chat_answer(moe_chain / "models" / stage, "Sort: 3 1 2")
    sft = json.loads((moe_chain / "metrics/sft.json").read_text())
    vocab = len(AutoTokenizer.from_pretrained(moe_chain / "models/sft"))
    assert sft["val_loss"] < math.log(vocab)    # it learnt from uniform
    dpo = json.loads((moe_chain / "metrics/dpo.json").read_text())
    assert "train.reward_accuracy" in dpo and math.isfinite(dpo["train_loss"])
