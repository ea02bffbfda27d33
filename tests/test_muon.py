"""optim.name: muon (lmbuild.train.optim): Muon on the hidden matrices and AdamW on the rest, an
orthogonalised update, learning (and not when its sign is flipped), and a pretrain stage that
trains, checkpoints and resumes with it."""

from __future__ import annotations

import json

import pytest
import torch

from lmbuild.params import ParamsError, validate_section
from lmbuild.train.model import build_model
from lmbuild.train.optim import MuonAdamW, OptimError, make_optimizer, muon_split
from test_train import PARAMS, TINY_MODEL, inputs, make_project, m, run  # noqa: F401 (inputs: the fixture)

OPTIM = validate_section("pretrain", {"optim": {"lr": 0.01, "weight_decay": 0.0, "name": "muon"}})["optim"]


def test_muon_takes_the_hidden_matrices_and_adamw_the_rest():
    model = build_model(m(), 300, 0, 1, seed=0)
    hidden, rest = muon_split(model)
    names = {id(p): n for n, p in model.named_parameters()}
    assert sorted(names[id(p)].split(".")[-2] for p in hidden) == sorted(
        ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"] * TINY_MODEL["num_layers"])
    rest_names = [n for n, _ in rest]
    assert "model.embed_tokens.weight" in rest_names and all(p.ndim == 1 or "embed" in n for n, p in rest)
    opt = make_optimizer(model, OPTIM)
    assert isinstance(opt, MuonAdamW)
    assert [g["lr_scale"] for g in opt.param_groups] == [pytest.approx(0.02 / 0.01), 1.0, 1.0][:len(opt.param_groups)]


def test_a_muon_step_is_an_orthogonalised_matrix():
    # from rest, one step moves W by lr x (an approximately orthogonal matrix): the Newton-Schulz
    # quintic pushes every singular value of the momentum into a band around 1
    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.zeros(32, 32))
    # a gradient with singular values from 1 down to 0.01 (condition number 100)
    u, _ = torch.linalg.qr(torch.randn(32, 32))
    v, _ = torch.linalg.qr(torch.randn(32, 32))
    g = u @ torch.diag(torch.logspace(0, -2, 32)) @ v.T
    w.grad = g.clone()
    torch.optim.Muon([w], lr=0.1, weight_decay=0.0).step()
    s_update = torch.linalg.svdvals(w.detach() / 0.1)
    s_grad = torch.linalg.svdvals(g)
    assert s_grad.max() / s_grad.min() > 99
    assert s_update.min() > 0.5 and s_update.max() < 1.5


def _fit(sign: float) -> tuple[float, float]:
    torch.manual_seed(1)
    x, w_true = torch.randn(256, 16), torch.randn(16, 16)
    y = x @ w_true
    model = torch.nn.Linear(16, 16, bias=False)
    opt = torch.optim.Muon(model.parameters(), lr=0.05, weight_decay=0.0)
    first = float(((model(x) - y) ** 2).mean().detach())
    for _ in range(60):
        opt.zero_grad()
        loss = ((model(x) - y) ** 2).mean()
        (sign * loss).backward()
        opt.step()
    return first, float(((model(x) - y) ** 2).mean().detach())


def test_muon_learns_and_its_sign_flipped_update_does_not():
    first, last = _fit(+1.0)
    assert last < 0.3 * first
    first, last = _fit(-1.0)   # ascending the loss
    assert last > first


def test_bad_optimizer_requests_are_one_line():
    with pytest.raises(ParamsError, match="optim"):
        validate_section("pretrain", {"optim": {"name": "lion"}})

    class Stacked(torch.nn.Module):  # a 3-D expert tensor: Muon takes matrices
        def __init__(self):
            super().__init__()
            self.emb = torch.nn.Embedding(10, 4)
            self.experts = torch.nn.Parameter(torch.zeros(2, 4, 4))

        def get_input_embeddings(self):
            return self.emb

    with pytest.raises(OptimError, match="experts has shape"):
        make_optimizer(Stacked(), OPTIM)



@pytest.mark.slow
def test_pretrain_with_muon_learns_and_resumes_to_the_same_loss(tmp_path, inputs):
    params = json.loads(json.dumps(PARAMS))
    params["pretrain"]["optim"] = {"lr": 0.01, "name": "muon", "muon": {"lr": 0.02}}
    full = make_project(tmp_path / "full", inputs, params)
    run(full, "pretrain")
    met = json.loads((full.root / "metrics/pretrain.json").read_text())
    assert met["val_loss"] < met["unigram_val_loss"]
    part = make_project(tmp_path / "part", inputs, params)
    assert run(part, "pretrain", env={"LMBUILD_STOP_AFTER_STEPS": "11"}, check=False).returncode == 3
    run(part, "pretrain")
    resumed = json.loads((part.root / "metrics/pretrain.json").read_text())
    assert resumed["val_loss"] == pytest.approx(met["val_loss"], abs=1e-6)
    assert resumed["train_loss"] == pytest.approx(met["train_loss"], abs=1e-6)
