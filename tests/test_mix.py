"""mix: requested shares and budgets are met (or the shortfall is reported), repetition caps
hold, validation documents never reach a training mix, and selection is seeded and by id."""

from __future__ import annotations

import copy
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import tree_digest
from lmbuild.mix.selection import fill, order, pool_mask, uniform
from lmbuild.shards import doc_id

MIX = {
    "bytes_per_token": 4.0, "on_shortfall": "fail",
    "val": {"fraction": 0.1, "min_docs": 1, "max_docs": 50},
    "pretrain": {"token_budget": 20000, "domains": {
        "web": {"weight": 0.5, "select": {"method": "qurating", "rater": "q", "tau": 0.1}},
        "code": {"weight": 0.3, "max_epochs": 3},
        "books": {"weight": 0.2, "select": {"method": "threshold", "rater": "q", "threshold": 0.5}}}},
    "anneal": {"token_budget": 4000, "domains": {
        "web": {"weight": 0.7, "select": {"method": "top_fraction", "rater": "q", "fraction": 0.2}},
        "books": {"weight": 0.3, "max_epochs": 1}}},
}


def write_pool(root, n_per_domain=(200, 60, 40), seed=0):
    rng = np.random.default_rng(seed)
    for s, (domain, n) in enumerate(zip(("web", "code", "books"), n_per_domain)):
        ids = [doc_id(domain, str(i)) for i in range(n)]
        texts = ["w" * int(rng.integers(100, 400)) for _ in range(n)]
        table = pa.table({"id": ids, "text": texts, "source": [f"src_{domain}"] * n, "domain": [domain] * n,
                          "url": pa.nulls(n, pa.string()), "quality_q": pa.array(rng.random(n), pa.float32())})
        out = root / "data" / "rated" / f"src_{domain}"
        out.mkdir(parents=True, exist_ok=True)
        half = n // 2
        pq.write_table(table.slice(0, half), out / "a.parquet")
        pq.write_table(table.slice(half), out / "b.parquet")


def read_split(root, split):
    files = sorted((root / "data" / "mix" / split).glob("*/*.parquet"))
    return pa.concat_tables([pq.read_table(f) for f in files]) if files else None


@pytest.fixture
def mixed(project):
    write_pool(project.root)
    project.params["mix"] = copy.deepcopy(MIX)
    project.run("mix")
    return project


def test_shares_budgets_and_caps(mixed):
    m = json.loads((mixed.root / "metrics" / "mix.json").read_text())
    assert m["pretrain.tokens_est"] == pytest.approx(20000, rel=0.05)
    for d, share in (("web", 0.5), ("code", 0.3), ("books", 0.2)):
        assert m[f"pretrain.domains.{d}.achieved_share"] == pytest.approx(share, abs=0.03)
        assert m[f"pretrain.domains.{d}.requested_share"] == pytest.approx(share)
    pre = read_split(mixed.root, "pretrain")
    assert max(pre["repeat"].to_pylist()) + 1 <= 3  # code's cap
    assert m["pretrain.domains.code.max_repeats"] >= 2  # code had to be upsampled
    books = pre.filter(pa.compute.equal(pre["domain"], "books"))
    assert min(books["quality_q"].to_pylist()) >= 0.5  # threshold selection
    assert m["shortfalls"] == 0


def test_validation_never_in_training(mixed):
    val = set(read_split(mixed.root, "val")["id"].to_pylist())
    assert val
    for split in ("pretrain", "anneal"):
        assert not val & set(read_split(mixed.root, split)["id"].to_pylist())
    m = json.loads((mixed.root / "metrics" / "mix.json").read_text())
    assert m["val.train_overlap_documents"] == 0
    assert m["val.domains.web.documents"] == 20  # 10 % of 200


def test_anneal_takes_the_top_rated(mixed):
    ann = read_split(mixed.root, "anneal")
    web = ann.filter(pa.compute.equal(ann["domain"], "web"))
    pool = pa.concat_tables([pq.read_table(f) for f in (mixed.root / "data" / "rated" / "src_web").glob("*.parquet")])
    cutoff = np.quantile(pool["quality_q"].to_numpy(), 0.8) - 0.01
    assert min(web["quality_q"].to_pylist()) >= cutoff


def test_deterministic_across_workers_and_sharding(mixed, tmp_path):
    first = tree_digest(mixed.root / "data" / "mix")
    mixed.params["common"]["workers"] = 1
    mixed.write_params()
    mixed.run("mix")
    assert tree_digest(mixed.root / "data" / "mix") == first
    # the same documents split into shards differently are selected the same way
    pre = set(zip(read_split(mixed.root, "pretrain")["id"].to_pylist(), read_split(mixed.root, "pretrain")["repeat"].to_pylist()))
    for f in (mixed.root / "data" / "rated").glob("*/b.parquet"):
        t = pq.read_table(f)
        f.unlink()
        pq.write_table(t.slice(0, 5), f.with_name("b1.parquet"))
        pq.write_table(t.slice(5), f.with_name("b2.parquet"))
    mixed.run("mix")
    again = set(zip(read_split(mixed.root, "pretrain")["id"].to_pylist(), read_split(mixed.root, "pretrain")["repeat"].to_pylist()))
    assert again == pre


def test_shortfall_fails_with_one_line_or_proceeds(project):
    write_pool(project.root, n_per_domain=(200, 10, 40))
    params = copy.deepcopy(MIX)
    params["pretrain"]["domains"]["code"]["max_epochs"] = 1
    project.params["mix"] = params
    proc = project.run("mix", check=False)
    assert proc.returncode == 2
    lines = [l for l in proc.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and "pretrain domain 'code' asks for 6,000 tokens" in lines[0]
    assert "max_epochs" in lines[0] and "on_shortfall" in lines[0]
    assert not (project.root / "data" / "mix").exists()
    params["on_shortfall"] = "proceed"
    project.write_params()
    proc = project.run("mix")
    assert "pretrain domain 'code'" in proc.stderr
    m = json.loads((project.root / "metrics" / "mix.json").read_text())
    assert m["shortfalls"] == 1 and m["pretrain.domains.code.capped"] == 1
    assert m["pretrain.domains.code.achieved_share"] < 0.3


def test_unknown_domain_and_missing_rater_are_named(project):
    write_pool(project.root)
    params = copy.deepcopy(MIX)
    params["pretrain"]["domains"]["poetry"] = {"weight": 1}
    params["anneal"]["domains"]["web"]["select"]["rater"] = "nope"
    project.params["mix"] = params
    proc = project.run("mix", check=False)
    assert proc.returncode == 2
    assert "quality_nope" in proc.stderr


def test_fill_whole_epochs_then_partial_in_order():
    tokens = np.array([10.0, 20.0, 30.0, 40.0])
    eligible = np.array([True, True, False, True])
    draw = np.array([2, 0, 1])  # order within the eligible documents: doc 3, doc 0, doc 1
    f = fill(tokens, eligible, draw, target=150.0, max_epochs=5)
    # pool = 70 tokens: two whole epochs (140), then doc 3 (40 > the 10 left) in draw order
    assert f.repeats.tolist() == [2, 2, 0, 3]
    assert not f.capped and f.achieved == 180.0
    capped = fill(tokens, eligible, draw, target=150.0, max_epochs=1)
    assert capped.capped and capped.repeats.tolist() == [1, 1, 0, 1]


def test_qurating_temperature_limits():
    rng = np.random.default_rng(1)
    scores = rng.random(1000)
    u = uniform([str(i) for i in range(1000)], 7, "t")
    cold = order(scores, u, {"method": "qurating", "tau": 1e-6})
    assert set(cold[:100]) == set(np.argsort(-scores)[:100])  # tau -> 0: top-k
    hot = order(scores, u, {"method": "qurating", "tau": 1e6})
    assert abs(scores[hot[:300]].mean() - 0.5) < 0.05  # tau -> inf: uniform
    warm = order(scores, u, {"method": "qurating", "tau": 0.2})
    assert 0.6 < scores[warm[:300]].mean() < scores[cold[:300]].mean()


def test_uniform_is_seeded_by_id_not_order():
    ids = [f"doc{i}" for i in range(50)]
    a = uniform(ids, 3, "x")
    b = uniform(ids[::-1], 3, "x")[::-1]
    assert np.array_equal(a, b) and not np.array_equal(a, uniform(ids, 4, "x"))
    assert ((a >= 0) & (a < 1)).all()


def test_top_fraction_mask():
    mask = pool_mask(4, np.array([0.1, 0.9, 0.5, 0.7]), {"method": "top_fraction", "fraction": 0.5})
    assert mask.tolist() == [False, True, False, True]
