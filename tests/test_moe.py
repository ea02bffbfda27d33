"""Mixture-of-experts pretraining (lmbuild.train.moe): the three families build and run, active
parameters and the router losses match hand-computed values, bad routing requests are one
line, and a tiny MoE pretrain trains with its router terms logged."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import pytest
import torch

from lmbuild.train.model import ModelError, build_model, count_params
from lmbuild.train.moe import active_params, router_losses
from lmbuild.train.optim import OptimError, make_optimizer
from lmbuild.params import validate_section
from test_train import PARAMS, inputs, make_project, m, run  # noqa: F401 (inputs: the fixture)

MOE = {"num_experts": 4, "experts_per_token": 2, "expert_size": 16, "shared_expert_size": None,
       "router_aux_loss_coef": 0.01, "router_z_loss_coef": 0.001}


def moe_model(kind: str, **over):
    return build_model(m(type=kind, moe={**MOE, **over}), 300, 0, 1, seed=0)


@pytest.mark.parametrize("kind", ["olmoe", "qwen2_moe", "mixtral"])
def test_each_family_builds_routes_and_counts_its_active_parameters(kind):
    model = moe_model(kind)
    x = torch.randint(0, 300, (2, 16))
    out = model(input_ids=x, labels=x, output_router_logits=True)
    assert torch.isfinite(out.loss) and len(out.router_logits) == 2
    counts = count_params(model)
    # by hand: each layer's routed experts hold E x (3 x hidden x expert_size) weights (gate, up,
    # down); a token uses k of the E
    per_layer = MOE["num_experts"] * 3 * 32 * MOE["expert_size"]
    assert counts["active"] == counts["total"] - 2 * per_layer * (MOE["num_experts"] - MOE["experts_per_token"]) // MOE["num_experts"]
    assert counts["active_non_embedding"] == counts["active"] - counts["embedding"]


def test_a_shared_expert_is_always_active():
    plain, shared = moe_model("qwen2_moe"), moe_model("qwen2_moe", shared_expert_size=24)
    extra = sum(p.numel() for p in shared.parameters()) - sum(p.numel() for p in plain.parameters())
    assert extra > 0 and active_params(shared) - active_params(plain) == extra


def test_router_losses_match_their_definitions():
    # two layers of router logits over 4 experts for 3 tokens; every token's top-2 is experts 0 and 1
    r = torch.tensor([[4.0, 3.0, 0.0, 0.0], [5.0, 2.0, 1.0, 0.0], [3.0, 2.5, -1.0, 0.0]])
    out = SimpleNamespace(router_logits=(r, r * 0.5), loss=torch.tensor(2.0), aux_loss=torch.tensor(1.1))
    model = SimpleNamespace(config=SimpleNamespace(num_experts=4, num_experts_per_tok=2))
    loss, extras = router_losses(out, model, z_coef=0.001)
    z = sum(sum(math.log(sum(math.exp(v) for v in row)) ** 2 for row in layer.tolist()) / 3 for layer in (r, r * 0.5)) / 2
    assert extras["router_z_loss"].item() == pytest.approx(z, rel=1e-5)
    assert loss.item() == pytest.approx(2.0 + 0.001 * z, rel=1e-6)
    # half of the slots go to expert 0 and half to expert 1: the heaviest holds 2x its fair share
    assert extras["expert_load_max"].item() == pytest.approx(2.0)
    assert extras["router_aux_loss"].item() == pytest.approx(1.1)


def test_bad_routing_requests_are_one_line():
    with pytest.raises(ModelError, match="experts_per_token .5. must be at most pretrain.model.moe.num_experts .4."):
        moe_model("olmoe", experts_per_token=5)
    with pytest.raises(ModelError, match="olmoe has no shared expert"):
        moe_model("olmoe", shared_expert_size=16)
    # Muon takes 2-D matrices; the stacked experts are 3-D
    optim = validate_section("pretrain", {"optim": {"lr": 0.01, "weight_decay": 0.0, "name": "muon"}})["optim"]
    with pytest.raises(OptimError, match="shape"):
        make_optimizer(moe_model("olmoe"), optim)



@pytest.mark.slow
def test_a_tiny_moe_pretrains_with_its_router_terms_logged(tmp_path, inputs):
    params = json.loads(json.dumps(PARAMS))
    params["pretrain"]["model"] = {**params["pretrain"]["model"], "type": "olmoe", "moe": MOE}
    proj = make_project(tmp_path, inputs, params)
    run(proj, "pretrain")
    met = json.loads((tmp_path / "metrics/pretrain.json").read_text())
    assert met["val_loss"] < met["unigram_val_loss"]
    assert met["parameters_active"] < met["parameters"]
    for name in ("router_z_loss", "router_aux_loss", "expert_load_max"):
        assert (tmp_path / "dvclive/pretrain/plots/metrics/train" / f"{name}.tsv").is_file(), name
