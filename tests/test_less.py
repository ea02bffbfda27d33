"""LESS data selection (lmbuild.posttrain.less): the random projection keeps inner products and is
fixed by its seed; the Adam feature is the next Adam update; the score sums lr-weighted mean
cosines over checkpoints and takes the max over subtasks; vmapped per-example gradients equal
single-example autograd; copies of the target examples rank first; bad `sft.select` params are
one line; and (slow) the sft stage trains on what LESS chose and says so in data/sft/."""

from __future__ import annotations

import json

import pytest
import torch

from lmbuild.params import ParamsError, validate_section
from lmbuild.posttrain.less import (RandomProjection, adam_feature, check_select, influence_scores, less_select,
                                    per_example_gradients, random_select, top_fraction, _lora_model)

TASKS = {"families": ["sort", "count"]}


def select_params(**kw):
    return validate_section("sft", {"sources": [{"name": "tasks", "type": "tasks"}], "select": kw})["select"]


# ---- projection ----------------------------------------------------------------------------

def test_projection_keeps_inner_products_and_is_fixed_by_its_seed():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(40, 9000, generator=g)
    x /= x.norm(dim=1, keepdim=True)
    x[1] = 0.8 * x[0] + 0.6 * x[1]  # one pair with a large inner product
    proj = RandomProjection(9000, 1024, seed=7)
    y = proj(x)
    exact, approx = x @ x.T, y @ y.T
    # JL: unit vectors' inner products move by about 1/sqrt(d) = 0.031; 5 sd over 1600 pairs
    assert (exact - approx).abs().max() < 0.16
    assert approx[0, 1] == pytest.approx(float(exact[0, 1]), abs=0.16) and exact[0, 1] > 0.75
    assert torch.equal(RandomProjection(9000, 1024, seed=7)(x), y)                 # same seed, same matrix
    assert torch.equal(RandomProjection(9000, 1024, seed=7, cache_bytes=0)(x), y)  # streamed = cached
    assert not torch.allclose(RandomProjection(9000, 1024, seed=8)(x), y)
    # entries are +-1/sqrt(d): the image of a basis vector is one row of R
    e = torch.zeros(1, 9000)
    e[0, 5000] = 1.0
    assert set(torch.unique(proj(e) * 32).tolist()) == {-1.0, 1.0}


# ---- Adam feature --------------------------------------------------------------------------

def test_adam_feature_by_hand_and_against_torch_adam():
    g = torch.tensor([0.5, -1.0])
    m, v = torch.tensor([0.1, 0.2]), torch.tensor([0.01, 0.04])
    out = adam_feature(g, m, v, step=1, beta1=0.9, beta2=0.99, eps=1e-8)
    # m' = (0.9*0.1 + 0.1*0.5, 0.9*0.2 - 0.1*1) / (1 - 0.9^2) = (0.736842, 0.421053)
    # v' = (0.99*0.01 + 0.01*0.25, 0.99*0.04 + 0.01*1) / (1 - 0.99^2) = (0.623116, 2.492462)
    # m' / sqrt(v') = (0.933448, 0.266699)
    assert out.tolist() == pytest.approx([0.933448, 0.266699], abs=1e-5)
    # the same as the step torch's Adam takes (per unit lr) when it sees g after one step
    p = torch.nn.Parameter(torch.tensor([1.0, 2.0]))
    opt = torch.optim.Adam([p], lr=0.1, betas=(0.9, 0.99), eps=1e-8)
    p.grad = torch.tensor([0.3, -0.2])
    opt.step()
    st = opt.state[p]
    feat = adam_feature(g, st["exp_avg"], st["exp_avg_sq"], int(st["step"]), 0.9, 0.99, 1e-8)
    before = p.detach().clone()
    p.grad = g.clone()
    opt.step()
    assert ((before - p.detach()) / 0.1).tolist() == pytest.approx(feat.tolist(), rel=1e-5)
    assert feat[0] > 0 > feat[1]  # descending: the update moves against the gradient's sign


# ---- score and selection -------------------------------------------------------------------

def test_score_sums_lr_weighted_mean_cosines_over_checkpoints():
    train = [torch.tensor([[1.0, 0.0], [0.0, 2.0]]), torch.tensor([[1.0, 1.0], [-1.0, 0.0]])]
    target = [torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.tensor([[3.0, 0.0], [1.0, 0.0]])]
    s = influence_scores(train, target, [1.0, 0.5])
    # z1: 1.0 * mean(1, 0) + 0.5 * mean(0.7071, 0.7071) = 0.853553
    # z2: 1.0 * mean(0, 1) + 0.5 * mean(-1, -1) = 0.0 (the norm of (0, 2) does not count)
    assert s.tolist() == pytest.approx([0.853553, 0.0], abs=1e-6)
    # two subtasks (one target each): the max over subtasks, after the sum over checkpoints
    s = influence_scores(train, target, [1.0, 0.5], groups=[0, 1])
    # z1: j0 = 1 + 0.5*0.7071 = 1.353553, j1 = 0 + 0.5*0.7071 = 0.353553 -> 1.353553
    # z2: j0 = 0 + 0.5*(-1) = -0.5,        j1 = 1 + 0.5*(-1) = 0.5       -> 0.5
    assert s.tolist() == pytest.approx([1.353553, 0.5], abs=1e-6)


def test_top_fraction_and_random_select():
    assert top_fraction([0.1, 0.9, 0.5, 0.9, -1.0], 0.4) == [1, 3]
    assert top_fraction([0.2, 0.2, 0.2], 0.5) == [0, 1]    # round(1.5) = 2, ties to the earlier index
    assert top_fraction([0.3, 0.1], 0.01) == [0]           # at least one
    a, b = random_select(100, 0.05, seed=3), random_select(100, 0.05, seed=3)
    assert a.indices == b.indices and len(a.indices) == 5 and a.indices == sorted(a.indices)
    assert random_select(100, 0.05, seed=4).indices != a.indices


# ---- the model side ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny random Llama with the chat tokenizer, and sort and count demonstrations."""
    from lmbuild.lm.chat import chat_ids, encode_conversation
    from lmbuild.tasks import generate
    from train_data import tiny_chat_llama
    root = tmp_path_factory.mktemp("less")
    tok = tiny_chat_llama(root / "tok", root / "model", n_docs=200)

    def enc(exs):
        return [encode_conversation(tok, [{"role": "user", "content": e.prompt},
                                          {"role": "assistant", "content": e.solution}], 128) for e in exs]
    return {"model": root / "model", "pad": chat_ids(tok)[1], "sort": enc(generate("sort", "train", 8, 1)),
            "count": enc(generate("count", "train", 8, 2))}


def test_vmapped_gradients_equal_single_example_autograd(tiny):
    model = _lora_model(tiny["model"], 4, 16, seed=0)
    with torch.no_grad():  # LoRA's B starts at zero: move it so every LoRA weight has a gradient
        for n, p in model.named_parameters():
            if p.requires_grad:
                p.normal_(0, 0.1)
    batch = tiny["sort"][:2] + tiny["count"][:2]  # different lengths: padding must not leak
    g = per_example_gradients(model, batch, tiny["pad"])
    params = [p for p in model.parameters() if p.requires_grad]
    for k, (ids, labels) in enumerate(batch):
        loss = model(input_ids=torch.tensor([ids]), labels=torch.tensor([labels]), use_cache=False).loss
        ref = torch.cat([x.reshape(-1) for x in torch.autograd.grad(loss, params)])
        assert torch.allclose(g[k], ref, atol=1e-5, rtol=1e-4), k
    assert g.shape == (4, sum(p.numel() for p in params))


def test_copies_of_the_targets_rank_first(tiny):
    targets = tiny["sort"][:4]
    candidates = []
    for k in range(4):  # half the pool: copies of the targets, between other tasks' examples
        candidates += [tiny["count"][k], targets[k], tiny["count"][k + 4]]
    candidates += targets[:2]
    sp = select_params(method="less", fraction=6 / 14, target_family="sort", warmup_fraction=0.5,
                       warmup_epochs=2, projection_dim=256, lora_rank=4, batch_size=4, lr=0.01)
    sel = less_select(sp, candidates, targets, init_model=tiny["model"], pad_id=tiny["pad"], lr=0.01,
                      betas=(0.9, 0.95), eps=1e-8, seed=0)
    copies = [1, 4, 7, 10, 12, 13]
    assert sel.indices == copies, sel.scores
    assert min(sel.scores[i] for i in copies) > max(s for i, s in enumerate(sel.scores) if i not in copies)
    assert sel.metrics["checkpoints"] == 2 and sel.metrics["warmup_examples"] == 7


# ---- params --------------------------------------------------------------------------------

@pytest.mark.parametrize("select, line", [
    ({"method": "less", "target_family": "arithmetic"},
     "params.yaml: sft.select.target_family: must be one of tasks.families (sort, count), got arithmetic"),
    ({"method": "less"},
     "params.yaml: sft.select.target_family: the less method needs a target family (one of sort, count), got None"),
    ({"method": "random", "fraction": 0.0}, "params.yaml: sft.select.fraction: must be > 0 and <= 1, got 0.0"),
])
def test_bad_select_params_are_one_line(select, line):
    with pytest.raises(ParamsError) as exc:
        check_select(select_params(**select), TASKS)
    assert exc.value.problems == [line]


def test_select_schema_errors_name_the_key():
    with pytest.raises(ParamsError) as exc:
        select_params(method="lesss")
    assert exc.value.problems == ["params.yaml: sft.select.method: must be one of ['none', 'random', 'less'], "
                                  "got 'lesss'"], exc.value.problems
    with pytest.raises(ParamsError) as exc:
        select_params(method="less", projection=12)
    assert len(exc.value.problems) == 1 and "sft.select.projection" in exc.value.problems[0]
    assert select_params()["method"] == "none"  # the default changes nothing
    check_select(select_params(target_family="nope"), TASKS)  # none: target_family is not read


# ---- the sft stage (slow) ------------------------------------------------------------------

@pytest.mark.slow
def test_sft_stage_trains_on_the_less_selection(tmp_path):
    from test_posttrain import CHAT, PARAMS, make_project, run
    from train_data import tiny_chat_llama
    params = json.loads(json.dumps(PARAMS))
    params["sft"].update(epochs=1, eval={"every_steps": 100, "batch_size": 8}, checkpoint={"every_steps": 100},
                         select={"method": "less", "fraction": 0.2, "target_family": "sort",
                                 "target_examples": 4, "warmup_epochs": 2, "projection_dim": 256,
                                 "lora_rank": 4, "batch_size": 8, "gradient_batch_size": 32})
    root = tmp_path / "p"  # the tiny model and chat file of test_posttrain's chain
    root.mkdir()
    tiny_chat_llama(root / "models/tokenizer", root / "models/anneal")
    lines = [json.dumps(r) if isinstance(r, dict) else r for r in CHAT]
    (root / "chat.jsonl").write_text("\n".join(lines * 10) + "\n")
    make_project(root, params)
    run(root, "sft")
    rows = [json.loads(x) for x in (root / "data/sft/selection.jsonl").read_text().splitlines()]
    assert len(rows) == 340 and [r["index"] for r in rows] == list(range(340))
    chosen = [r for r in rows if r["selected"]]
    assert len(chosen) == 68  # round(0.2 x 340)
    trained = [json.loads(x) for x in (root / "data/sft/train.jsonl").read_text().splitlines()]
    assert len(trained) == 68
    met = json.loads((root / "metrics/sft.json").read_text())
    assert met["select.candidates"] == 340 and met["select.selected"] == 68 and met["examples"] == 68
    assert met["select.selected_by_source.tasks"] + met["select.selected_by_source.chat"] == 68
    assert met["select.selected_by_family.sort"] == sum(r["family"] == "sort" for r in chosen)
    # the selected candidates are the best-scored ones
    assert min(r["score"] for r in chosen) >= max(r["score"] for r in rows if not r["selected"])
    # and LESS prefers the target family over the other one
    assert met["select.selected_by_family.sort"] > met["select.selected_by_family.count"], met
    assert met["select.seconds"] > 0 and met["select.gradients_per_s"] > 0
