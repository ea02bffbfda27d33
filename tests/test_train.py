"""pretrain / anneal: model building, optimizer groups, schedules, data order, and whole stage
runs on a tiny model in a scratch project (loadable HF model that generates; kill + resume ends
at the same loss; a changed fingerprint is refused; non-finite losses stop or are skipped)."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys

import pytest
import torch
import yaml

from lmbuild.train.checkpoint import load as load_checkpoint
from conftest import REPO, Project, assert_same_metrics, live_steps, sigkill_after_checkpoint, stage_env
from lmbuild.params import validate_section
from lmbuild.train.data import BlockOrder, TokenStream, rank_samples, unigram_loss, val_blocks
from lmbuild.lm.model import choose_attention
from lmbuild.train.model import build_model, count_params
from lmbuild.train.optim import param_groups
from lmbuild.train.schedule import lr_factor
from train_data import make_project_inputs

TINY_MODEL = {"hidden_size": 32, "num_layers": 2, "num_heads": 4, "intermediate_size": 64, "max_length": 64}
TRAIN = {"max_tokens": 6144, "seq_len": 32, "batch_size": 8, "micro_batch_size": 4, "precision": "fp32",
         "log_every": 2, "optim": {"lr": 0.01}, "schedule": {"warmup_steps": 3},
         "eval": {"every_steps": 8, "blocks_per_domain": 2}, "checkpoint": {"every_steps": 8}}
PARAMS = {"common": {"seed": 7},
          "pretrain": {**TRAIN, "model": TINY_MODEL},
          "anneal": {**TRAIN, "max_tokens": 2048, "schedule": {"kind": "linear", "warmup_steps": 0}}}


def m(**kw):
    return {**validate_section("pretrain", {})["model"], **TINY_MODEL, **kw}


# ---------------------------------------------------------------- units

@pytest.mark.parametrize("kind", ["llama", "olmo2"])
def test_build_model_param_count(kind):
    V, d, L, I = 100, 32, 2, 64
    model = build_model(m(type=kind), V, 0, 1, seed=0)
    layer = 4 * d * d + 3 * d * I + 2 * d + (2 * d if kind == "olmo2" else 0)  # olmo2: q_norm, k_norm
    assert count_params(model)["total"] == V * d + L * layer + d
    assert type(model).__name__ == {"llama": "LlamaForCausalLM", "olmo2": "Olmo2ForCausalLM"}[kind]
    again = build_model(m(type=kind), V, 0, 1, seed=0)
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), again.parameters()))


def test_gqa_and_untied():
    model = build_model(m(num_kv_heads=2, tie_embeddings=False), 100, 0, 1, seed=0)
    assert model.config.num_key_value_heads == 2
    assert model.lm_head.weight.data_ptr() != model.get_input_embeddings().weight.data_ptr()


def test_attention_auto_is_sdpa_on_cpu():
    assert choose_attention("auto", torch.device("cpu")) == "sdpa"
    assert choose_attention("eager", torch.device("cpu")) == "eager"


def test_no_weight_decay_on_embeddings_norms_biases():
    model = build_model(m(type="olmo2"), 100, 0, 1, seed=0)
    decay, no_decay = param_groups(model, 0.1)
    names = {id(p): n for n, p in model.named_parameters()}
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    nd = {names[id(p)] for p in no_decay["params"]}
    assert "model.embed_tokens.weight" in nd and all(p.ndim >= 2 for p in decay["params"])
    assert all("norm" in n or "embed" in n for n in nd)
    assert not any("norm" in names[id(p)] or "embed" in names[id(p)] for p in decay["params"])
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))


def test_schedules():
    T = 100
    f = lambda s, kind, **kw: lr_factor(s, T, kind, warmup=10, **kw)  # noqa: E731
    assert f(0, "cosine") == pytest.approx(0.1) and f(9, "cosine") == pytest.approx(1.0)
    assert f(10, "cosine") == pytest.approx(1.0)
    assert f(99, "cosine", min_ratio=0.1) == pytest.approx(0.1, abs=0.01)
    cos = [f(s, "cosine") for s in range(10, T)]
    assert all(a >= b for a, b in zip(cos, cos[1:]))
    assert f(50, "wsd", decay_fraction=0.2) == 1.0 and f(79, "wsd", decay_fraction=0.2) == 1.0
    assert f(99, "wsd", decay_fraction=0.2, min_ratio=0.0) == pytest.approx(0.0)
    assert f(89, "wsd", decay_fraction=0.2, min_ratio=0.0) == pytest.approx(0.5)
    lin = [lr_factor(s, T, "linear", 0, 0.0) for s in range(T)]
    assert lin[0] == pytest.approx(0.99) and lin[-1] == 0.0
    assert all(a - b == pytest.approx(0.01) for a, b in zip(lin, lin[1:]))


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("train_inputs")
    make_project_inputs(root, n_docs=300, vocab_size=300, shard_tokens=3000)
    return root


def test_data_order_is_seeded_resumable_and_spans_shards(inputs):
    stream = TokenStream(inputs / "data/tokens/pretrain")
    assert len(stream.arrays) > 1
    flat = torch.cat([torch.from_numpy(a.astype("int64")) for a in stream.arrays])
    assert torch.equal(torch.from_numpy(stream.read(2990, 30)), flat[2990:3020])
    a, b, c = (BlockOrder(stream.total, 32, s) for s in (1, 1, 2))
    ids = list(range(3 * a.n_blocks))
    order = [a.block(i) for i in ids]
    assert order == [b.block(i) for i in ids] and order != [c.block(i) for i in ids]
    assert sorted(order[:a.n_blocks]) == list(range(a.n_blocks))     # each epoch covers every block once
    assert order[:a.n_blocks] != order[a.n_blocks:2 * a.n_blocks]     # a new order each epoch
    late = BlockOrder(stream.total, 32, 1)                             # a resumed reader from sample 50
    assert [late.block(i) for i in ids[50:]] == order[50:]
    one = rank_samples(3, 8, 0, 1, 4)
    two = rank_samples(3, 8, 0, 2, 4) + rank_samples(3, 8, 1, 2, 4)
    assert one == two == [[24, 25, 26, 27], [28, 29, 30, 31]]


def test_val_blocks_and_unigram_baseline(inputs):
    blocks = val_blocks(inputs / "data/tokens/val", 32, 2)
    assert set(blocks) == {"code", "prose"} and all(b.shape[1] <= 32 for b in blocks.values())
    train = TokenStream(inputs / "data/tokens/pretrain")
    u = unigram_loss(train, blocks, 300)
    assert 0 < u < math.log(300)


# ---------------------------------------------------------------- stage runs

def make_project(tmp_path, inputs, params=PARAMS) -> Project:
    tmp_path.mkdir(parents=True, exist_ok=True)
    proj = Project(tmp_path)
    for sub in ("models/tokenizer", "data/tokens"):
        shutil.copytree(inputs / sub, tmp_path / sub)
    proj.write_params(params)
    return proj


def run(proj, stage, env=None, check=True):
    e = stage_env()
    e.update(env or {})
    p = subprocess.run([sys.executable, "-m", f"stages.{stage}"], cwd=proj.root, env=e, capture_output=True,
                       text=True, timeout=300)
    if check and p.returncode:
        raise AssertionError(f"{stage} failed ({p.returncode}):\n{p.stderr[-3000:]}")
    return p


@pytest.fixture(scope="module")
def trained(tmp_path_factory, inputs):
    proj = make_project(tmp_path_factory.mktemp("full"), inputs)
    run(proj, "pretrain")
    return proj


@pytest.mark.slow
def test_pretrain_writes_a_loadable_model_and_metrics(trained):
    from transformers import AutoModelForCausalLM, AutoTokenizer
    root = trained.root
    out = root / "models/pretrain"
    for f in ("config.json", "model.safetensors", "generation_config.json", "tokenizer.json"):
        assert (out / f).exists(), f
    model = AutoModelForCausalLM.from_pretrained(out)
    tok = AutoTokenizer.from_pretrained(out)
    gen = model.generate(**tok("The red cat", return_tensors="pt"), max_new_tokens=8, do_sample=False)
    assert gen.shape[1] > 3
    met = json.loads((root / "metrics/pretrain.json").read_text())
    for k in ("train_loss", "val_loss", "val_loss_domain.code", "val_loss_domain.prose", "unigram_val_loss",
              "tokens_seen", "tokens_per_s", "mfu", "wall_time_s", "nan_skipped_steps", "loss_spikes", "parameters"):
        assert k in met and met[k] is not None, k
    assert met["tokens_seen"] == 6144 and met["steps"] == 24
    assert met["val_loss"] < met["unigram_val_loss"]
    for name in ("train/loss.tsv", "val/loss.tsv", "val/loss_code.tsv", "train/lr.tsv", "train/grad_norm.tsv",
                 "perf/tokens_per_s.tsv", "perf/mfu.tsv", "tokens.tsv"):
        assert (root / "dvclive/pretrain/plots/metrics" / name).exists(), name
    assert json.loads((root / "checkpoints/pretrain/fingerprint.json").read_text())["id"]


@pytest.mark.slow
def test_kill_and_resume_reaches_the_same_loss(tmp_path, inputs, trained):
    proj = make_project(tmp_path, inputs)
    p = run(proj, "pretrain", env={"LMBUILD_STOP_AFTER_STEPS": "11"}, check=False)
    assert p.returncode == 3, p.stderr
    assert not (tmp_path / "models/pretrain").exists()
    assert load_checkpoint(tmp_path / "checkpoints/pretrain")["step"] == 11
    run(proj, "pretrain")
    full = json.loads((trained.root / "metrics/pretrain.json").read_text())
    resumed = json.loads((tmp_path / "metrics/pretrain.json").read_text())
    assert resumed["train_loss"] == pytest.approx(full["train_loss"], abs=1e-6)
    assert resumed["val_loss"] == pytest.approx(full["val_loss"], abs=1e-6)
    assert resumed["tokens_seen"] == full["tokens_seen"]

    # a checkpoint made under other params is never loaded: on_mismatch stop refuses, naming what
    # to do; restart (the default, what dvc repro needs) says so and trains from the start
    params = json.loads(json.dumps(PARAMS))
    params["pretrain"]["optim"]["lr"] = 0.02
    params["pretrain"]["checkpoint"] = {**params["pretrain"]["checkpoint"], "on_mismatch": "stop"}
    proj.write_params(params)
    p = run(proj, "pretrain", check=False)
    assert p.returncode == 2 and "delete checkpoints/pretrain" in p.stderr and "Traceback" not in p.stderr
    params["pretrain"]["checkpoint"]["on_mismatch"] = "restart"
    proj.write_params(params)
    p = run(proj, "pretrain", env={"LMBUILD_STOP_AFTER_STEPS": "2"}, check=False)
    assert p.returncode == 3 and "not loaded, pretrain starts over" in p.stderr, p.stderr
    assert load_checkpoint(tmp_path / "checkpoints/pretrain")["step"] == 2


@pytest.mark.slow
def test_sigkill_mid_run_resumes_to_the_same_loss(tmp_path, inputs, trained):
    """A real kill -9 at a random moment after the step-8 checkpoint: the rerun resumes from the
    checkpoint, ends at the uninterrupted run's loss, and the dvclive curves hold each step once."""
    proj = make_project(tmp_path, inputs)
    at = sigkill_after_checkpoint(tmp_path, "pretrain", min_step=8, seed=3)
    assert 8 <= at < 24 and not (tmp_path / "models/pretrain").exists()
    p = run(proj, "pretrain")
    full = json.loads((trained.root / "metrics/pretrain.json").read_text())
    resumed = json.loads((tmp_path / "metrics/pretrain.json").read_text())
    assert resumed["train_loss"] == pytest.approx(full["train_loss"], abs=1e-6), p.stderr
    assert resumed["val_loss"] == pytest.approx(full["val_loss"], abs=1e-6)
    rows = [line.split("\t") for line in
            (tmp_path / "dvclive/pretrain/plots/metrics/train/loss.tsv").read_text().splitlines()]
    steps = [int(r[rows[0].index("step")]) for r in rows[1:]]
    assert steps == sorted(set(steps)) and steps[-1] == 24, steps


# anneal with room to kill it mid-run: 16 steps (4096 tokens / (8 x 32)), a checkpoint every 4
ANNEAL_KILL = {**PARAMS, "anneal": {**PARAMS["anneal"], "max_tokens": 4096, "checkpoint": {"every_steps": 4}}}


@pytest.mark.slow
def test_sigkill_mid_anneal_resumes_to_the_same_loss(tmp_path, trained):
    """kill -9 of anneal at a random moment after its step-4 checkpoint: the rerun resumes from
    the checkpoint and ends where an uninterrupted anneal with the same params ends."""
    roots = {}
    for name in ("full", "killed"):
        roots[name] = tmp_path / name
        shutil.copytree(trained.root, roots[name], symlinks=True,
                        ignore=shutil.ignore_patterns("checkpoints", "dvclive"))
        Project(roots[name]).write_params(ANNEAL_KILL)
    run(Project(roots["full"]), "anneal")
    root = roots["killed"]
    at = sigkill_after_checkpoint(root, "anneal", min_step=4, seed=5)
    assert 4 <= at < 16 and not (root / "models/anneal").exists(), at
    assert not (root / "metrics/anneal.json").exists()
    p = run(Project(root), "anneal")
    full = json.loads((roots["full"] / "metrics/anneal.json").read_text())
    resumed = json.loads((root / "metrics/anneal.json").read_text())
    assert full["steps"] == 16 and full["tokens_seen"] == 4096
    assert_same_metrics(full, resumed, ("train_loss", "val_loss", "val_loss_domain.code", "val_loss_domain.prose"))
    assert load_checkpoint(root / "checkpoints/anneal")["step"] == 16, p.stderr
    steps = live_steps(root, "anneal")
    assert steps == sorted(set(steps)) and steps[-1] == 16, steps


@pytest.mark.slow
def test_anneal_starts_from_pretrain_and_decays_to_zero(tmp_path, trained):
    shutil.copytree(trained.root, tmp_path / "p", symlinks=True)
    proj = Project(tmp_path / "p")
    run(proj, "anneal")
    root = proj.root
    from transformers import AutoModelForCausalLM
    AutoModelForCausalLM.from_pretrained(root / "models/anneal")
    met = json.loads((root / "metrics/anneal.json").read_text())
    pre = json.loads((root / "metrics/pretrain.json").read_text())
    assert met["tokens_seen"] == 2048 and met["val_loss"] < met["unigram_val_loss"]
    assert met["val_loss"] < pre["val_loss"] + 0.5
    lrs = [float(line.split("\t")[-1]) for line in
           (root / "dvclive/anneal/plots/metrics/train/lr.tsv").read_text().splitlines()[1:]]
    assert lrs[0] == pytest.approx(0.01 * (1 - 2 / 8)) and lrs[-1] == 0.0


@pytest.mark.slow
@pytest.mark.parametrize("policy", ["stop", "skip"])
def test_non_finite_loss(tmp_path, inputs, policy):
    params = json.loads(json.dumps(PARAMS))
    params["pretrain"].update(max_tokens=1024, nan={"policy": policy})
    proj = make_project(tmp_path, inputs, params)
    p = run(proj, "pretrain", env={"LMBUILD_FAULT_NAN_STEPS": "2"}, check=False)
    if policy == "stop":
        assert p.returncode == 2 and "step 2" in p.stderr and "Traceback" not in p.stderr, p.stderr
    else:
        assert p.returncode == 0, p.stderr
        met = json.loads((tmp_path / "metrics/pretrain.json").read_text())
        assert met["nan_skipped_steps"] == 1 and math.isfinite(met["val_loss"])


def test_bad_batch_geometry_is_one_line(tmp_path, inputs):
    params = json.loads(json.dumps(PARAMS))
    params["pretrain"]["micro_batch_size"] = 3
    proj = make_project(tmp_path, inputs, params)
    p = run(proj, "pretrain", check=False)
    assert p.returncode == 2 and "pretrain.batch_size (8) must be a multiple" in p.stderr, p.stderr


def test_specs_accept_params_yaml_sections():
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    for stage in ("pretrain", "anneal"):
        validate_section(stage, params.get(stage, {}))


@pytest.mark.slow
def test_two_process_gloo_ddp_matches_one_process(tmp_path, inputs):
    """torchrun with 2 CPU processes (gloo DDP), same global batch: same losses within 1e-4. The
    validation blocks are split over the two processes and reduced, and the synchronised GC is on."""
    import socket
    params = json.loads(json.dumps(PARAMS))
    params["pretrain"].update(max_tokens=2048, optim={"lr": 0.01}, gc_every_steps=2)
    one = make_project(tmp_path / "one", inputs, params)
    run(one, "pretrain")
    two = make_project(tmp_path / "two", inputs, params)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    p = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr",
                        "127.0.0.1", "--master_port", str(port), "-m", "stages.pretrain"], cwd=two.root,
                       env=stage_env(), capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    a = json.loads((one.root / "metrics/pretrain.json").read_text())
    b = json.loads((two.root / "metrics/pretrain.json").read_text())
    assert a["world_size"] == 1 and b["world_size"] == 2
    for k in ("train_loss", "val_loss", "val_loss_domain.code", "val_loss_domain.prose"):
        assert b[k] == pytest.approx(a[k], rel=1e-4, abs=1e-4), k
    assert a["train_loss"] < 5.0  # it learned something, so the comparison means something


@pytest.mark.slow
def test_jobs_of_either_precision_run_one_after_another_in_one_process(tmp_path, inputs, monkeypatch):
    """A study or a test session runs training jobs in one process: a bf16 job then an fp32 job
    each get their own precision (Accelerate's process-wide state is started afresh per job)."""
    from lmbuild.train.causal_lm import run as run_causal_lm
    monkeypatch.setenv("LMBUILD_NO_PROGRESS", "1")
    got = {}
    for precision in ("bf16", "fp32"):
        params = json.loads(json.dumps(PARAMS))
        params["pretrain"].update(max_tokens=512, precision=precision)
        params = {"common": params["common"], "pretrain": validate_section("pretrain", params["pretrain"])}
        out = tmp_path / precision
        met = run_causal_lm("pretrain", params, tokens_dir=inputs / "data/tokens", train_split="pretrain",
                            tokenizer_dir=inputs / "models/tokenizer", out_model=out / "model",
                            ckpt_dir=out / "ckpt", live_dir=out / "live")
        got[precision] = met["numerics"]["bf16"]
    assert got == {"bf16": 1, "fp32": 0}
