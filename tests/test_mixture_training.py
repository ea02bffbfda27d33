"""pretrain with a training-time mixture: fixed weights reach their shares, a killed run resumes to
the same loss (the sampler's counters are checkpointed), dynamic batch loading and DoReMi move the
weights, and bad mixture params stop the stage before any training."""

from __future__ import annotations

import copy
import json
import shutil

import pytest

from conftest import run_stage_in_process
from test_train import PARAMS, make_project, run
from train_data import make_project_inputs

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("mixture_inputs")
    make_project_inputs(root, n_docs=300, vocab_size=300, shard_tokens=3000)
    # the pool split the mix stage writes: here the pretrain documents (prose 2/3, code 1/3)
    shutil.copytree(root / "data/tokens/pretrain", root / "data/tokens/pool")
    return root


def with_mixture(**mixture) -> dict:
    params = copy.deepcopy(PARAMS)
    params["pretrain"]["mixture"] = mixture
    return params


def metrics(proj) -> dict:
    return json.loads((proj.root / "metrics/pretrain.json").read_text())


def test_fixed_weights_are_what_training_reads(tmp_path, inputs):
    proj = make_project(tmp_path, inputs, with_mixture(kind="fixed", weights={"code": 0.75, "prose": 0.25}))
    p = run(proj, "pretrain")
    assert "fixed mixture over the pool split's domains (code, prose), starting from pretrain.mixture.weights" in p.stderr
    m = metrics(proj)
    assert m["mixture.average_weights.code"] == pytest.approx(0.75)
    assert m["mixture.final_weights.prose"] == pytest.approx(0.25)
    # 24 steps x 8 rows: 144 code rows, 48 prose rows, over each pool's blocks
    assert m["mixture.epochs.code"] > 2 * m["mixture.epochs.prose"]
    assert (proj.root / "dvclive/pretrain/plots/metrics/mixture/code.tsv").exists()


def test_killed_mixture_run_resumes_to_the_same_loss(tmp_path, inputs):
    params = with_mixture(kind="schedule", schedule=[{"at": 0.0, "weights": {"code": 0.2, "prose": 0.8}},
                                                     {"at": 0.5, "weights": {"code": 0.6, "prose": 0.4}}])
    whole = make_project(tmp_path / "whole", inputs, params)
    run(whole, "pretrain")
    cut = make_project(tmp_path / "cut", inputs, params)
    p = run(cut, "pretrain", env={"LMBUILD_STOP_AFTER_STEPS": "16"}, check=False)
    assert p.returncode == 3, p.stderr[-2000:]
    run(cut, "pretrain")
    a, b = metrics(whole), metrics(cut)
    assert b["train_loss"] == pytest.approx(a["train_loss"], abs=1e-6)
    assert b["mixture.average_weights.code"] == pytest.approx(a["mixture.average_weights.code"]) == \
        pytest.approx(0.4)
    assert weight_curve(cut) == weight_curve(whole)   # the weights logged over training, each step once


def weight_curve(proj) -> list[tuple[str, str]]:
    rows = [r.split("\t") for r in
            (proj.root / "dvclive/pretrain/plots/metrics/mixture/code.tsv").read_text().splitlines()]
    step, value = rows[0].index("step"), rows[0].index("code")
    return [(r[step], r[value]) for r in rows[1:]]


def test_dynamic_batch_loading_raises_the_domain_that_trails_its_reference(tmp_path, inputs):
    # code's reference is far below anything this model reaches, prose's far above: only code
    # has an excess, so its weight grows at every validation (every 8 steps)
    params = with_mixture(kind="dynamic", weights={"code": 0.5, "prose": 0.5},
                          reference_losses={"code": 0.1, "prose": 50.0})
    proj = make_project(tmp_path, inputs, params)
    run(proj, "pretrain")
    m = metrics(proj)
    assert m["mixture.final_weights.code"] > 0.9 and m["mixture.average_weights.code"] > 0.5


def test_doremi_weights_come_from_the_excess_over_a_reference(tmp_path, inputs):
    ref = make_project(tmp_path / "ref", inputs)
    run(ref, "pretrain")
    params = with_mixture(kind="doremi", reference_model=str(ref.root / "models/pretrain"))
    params["pretrain"]["max_tokens"] = 2048
    proj = make_project(tmp_path / "proxy", inputs, params)
    p = run(proj, "pretrain")
    assert "starting from uniform (DoReMi's proxy)" in p.stderr
    m = metrics(proj)
    avg = [m["mixture.average_weights.code"], m["mixture.average_weights.prose"]]
    assert sum(avg) == pytest.approx(1.0) and avg != pytest.approx([0.5, 0.5], abs=1e-3)
    assert "train/lm_loss" in json.dumps(sorted(str(x) for x in (proj.root / "dvclive/pretrain").rglob("*.tsv")))


@pytest.mark.parametrize("mixture, message", [
    ({"kind": "fixed", "weights": {"code": 0.5, "prose": 0.4}}, "pretrain.mixture.weights: weights must sum to 1, got 0.900000"),
    ({"kind": "fixed", "weights": {"code": 0.5, "web": 0.5}}, "pretrain.mixture.weights: 'web' not a domain of the pool (code, prose)"),
    ({"kind": "fixed", "weights": {"code": 1.0}, "max_epochs": 0.5}, "domain 'code' would be read 0.94 times"),
    ({"kind": "dynamic", "weights": {"code": 0.5, "prose": 0.5}}, "dynamic needs reference_losses or reference_file"),
    ({"kind": "doremi"}, "pretrain.mixture.reference_model: doremi needs the reference model"),
    ({"kind": "fixed", "weights_file": "studies/none/weights.json"}, "studies/none/weights.json not found"),
])
def test_bad_mixture_params_stop_before_training(tmp_path, inputs, mixture, message):
    proj = make_project(tmp_path, inputs, with_mixture(**mixture))
    # pretrain's main() in this process: the same checks, exit status and stderr as the command
    # line (whose exit on bad params tests/test_params.py runs), without a start-up per case
    p = run_stage_in_process(proj.root, "pretrain")
    assert p.returncode == 2 and message in p.stderr and "Traceback" not in p.stderr, p.stderr[-2000:]
    assert not (proj.root / "checkpoints/pretrain").exists()
