"""Training-time mixtures: per-domain pools, the low-discrepancy row assignment, resumable state,
and the DoReMi / dynamic-batch-loading weight updates on hand-computed inputs."""

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from lmbuild.train.data import DataError
from lmbuild.train.domain_weights import doremi_update, dynamic_update, excess_loss, group_weighted_loss
from lmbuild.train.mixture import DomainPools, MixtureSampler, planned_epochs, row_domains


def write_split(root, docs):
    """docs: list of (domain, tokens, repeat); one shard, eot 0 after each document."""
    root.mkdir(parents=True)
    flat, rows, pos = [], [], 0
    for i, (domain, toks, rep) in enumerate(docs):
        seq = list(toks) + [0]
        flat += seq
        rows.append({"shard": 0, "start": pos, "length": len(seq), "id": f"d{i}", "source": domain,
                     "domain": domain, "repeat": rep})
        pos += len(seq)
    np.asarray(flat, np.uint16).tofile(root / "tokens-00000.bin")
    pq.write_table(pa.Table.from_pylist(rows, schema=pa.schema([
        ("shard", pa.int32()), ("start", pa.int64()), ("length", pa.int32()), ("id", pa.string()),
        ("source", pa.string()), ("domain", pa.string()), ("repeat", pa.int32())])), root / "index.parquet")
    (root / "meta.json").write_text(json.dumps({"dtype": "<u2", "shards": ["tokens-00000.bin"], "eot_id": 0,
                                                "vocab_size": 1000, "tokens": len(flat)}))


@pytest.fixture
def pools(tmp_path):
    # domain a: tokens 100.., b: 200.., c: 300..; a's second document has an epoch copy (repeat 1)
    docs = [("a", range(100, 107), 0), ("b", range(200, 231), 0), ("a", range(107, 116), 0),
            ("a", range(107, 116), 1), ("c", range(300, 316), 0)]
    write_split(tmp_path / "pool", docs)
    return DomainPools(tmp_path / "pool", seq_len=4, seed=3)


def test_pools_hold_each_domains_documents_once_and_blocks_stay_inside_a_domain(pools):
    assert pools.domains == ["a", "b", "c"]
    assert pools.tokens == {"a": 8 + 10, "b": 32, "c": 17}   # documents with their eot; the copy left out
    assert pools.n_blocks == {"a": 4, "b": 8, "c": 4}
    a = np.concatenate([pools.read("a", b) for b in range(4)])
    assert a.tolist() == [*range(100, 107), 0, *range(107, 115)]   # crosses a document boundary, not a domain
    assert all(((pools.read("b", b) >= 200) | (pools.read("b", b) == 0)).all() for b in range(8))
    # one epoch of draws visits every block once, in a seeded order
    assert sorted(pools.block_of("b", k) for k in range(8)) == list(range(8))
    assert [pools.block_of("b", k) for k in range(8)] != list(range(8))


def test_row_assignment_matches_the_weights_closely_and_is_world_size_free():
    w = np.array([0.5, 0.3, 0.2])
    doms = row_domains(0, 1000, w, seed=1)
    counts = np.bincount(doms, minlength=3)
    assert np.abs(counts - 1000 * w).max() <= 3   # low discrepancy: iid draws would be off by ~15
    for n in (10, 37, 100):  # every prefix is close too
        assert np.abs(np.bincount(doms[:n], minlength=3) - n * w).max() <= 2
    # rows are named by their global number: any split into pieces gives the same domains
    assert np.array_equal(np.concatenate([row_domains(0, 400, w, 1), row_domains(400, 600, w, 1)]), doms)
    assert np.bincount(row_domains(0, 100, np.array([0.0, 1.0, 0.0]), 1), minlength=3).tolist() == [0, 100, 0]


def test_sampler_batches_weights_state_and_resume(pools):
    s = MixtureSampler(pools, {"a": 0.5, "b": 0.25, "c": 0.25}, batch_size=8, seed=3)
    x0, d0 = s.batch(0)
    assert x0.shape == (8, 4) and np.bincount(d0, minlength=3).tolist() == [4, 2, 2]
    s.batch(1)
    saved = s.state_dict()
    s.set_weights({"a": 0.0, "b": 1.0, "c": 0.0})
    x2, d2 = s.batch(2)
    assert (d2 == 1).all()
    # a sampler restored from the state after step 1 draws the same step 2
    r = MixtureSampler(pools, {"a": 0.5, "b": 0.25, "c": 0.25}, batch_size=8, seed=3)
    r.load_state_dict(saved)
    r.set_weights({"a": 0.0, "b": 1.0, "c": 0.0})
    assert torch.equal(r.batch(2)[0], x2)
    assert s.average_weights() == pytest.approx({"a": 1 / 3, "b": 0.5, "c": 1 / 6})
    with pytest.raises(RuntimeError, match="steps run in order"):
        s.batch(5)


def test_bad_weights_and_epoch_plan(pools):
    with pytest.raises(DataError, match=r"'web', not a domain of the pool \(a, b, c\)"):
        MixtureSampler(pools, {"a": 1.0, "web": 1.0}, batch_size=4, seed=0)
    assert planned_epochs(pools, {"a": 1.0, "b": 1.0}, total_rows=16) == {"a": 2.0, "b": 1.0, "c": 0.0}


def test_doremi_update_by_hand():
    alpha = np.array([0.5, 0.25, 0.25])
    # domain 0: excess 2.0 over 4 tokens (0.5/token); domain 1: 0; domain 2 absent
    new = doremi_update(alpha, np.array([2.0, 0.0, 0.0]), np.array([4.0, 3.0, 0.0]), eta=1.0, smoothing=1e-3)
    raw = alpha * np.exp([0.5, 0.0, 0.0])
    expected = 0.999 * raw / raw.sum() + 1e-3 / 3
    assert new == pytest.approx(expected) and new.sum() == pytest.approx(1.0)
    assert new[0] > alpha[0] and new[1] == pytest.approx(new[2])


def test_excess_loss_clips_per_token_and_sums_per_domain():
    proxy = torch.tensor([[2.0, 1.0, 3.0], [1.0, 1.0, 1.0]])
    ref = torch.tensor([[1.0, 2.0, 1.0], [0.5, 0.5, 0.5]])
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    sums, counts = excess_loss(proxy, ref, mask, torch.tensor([1, 0]), 3)
    assert sums.tolist() == [1.5, 1.0, 0.0]   # row 0: max(1,0) + max(-1,0), the masked 2.0 left out
    assert counts.tolist() == [3.0, 2.0, 0.0]


def test_group_weighted_loss_and_its_gradient():
    tok = torch.tensor([[1.0, 3.0], [2.0, 2.0], [4.0, 0.0]], requires_grad=True)
    mask = torch.tensor([[1.0, 1.0], [1.0, 1.0], [1.0, 0.0]])
    loss = group_weighted_loss(tok, mask, torch.tensor([0, 0, 1]), torch.tensor([0.25, 0.75, 0.5]))
    assert loss.item() == pytest.approx(0.25 * (8 / 4) + 0.75 * 4.0)   # domain 2 absent
    loss.backward()
    assert tok.grad.tolist() == [[0.0625, 0.0625], [0.0625, 0.0625], [0.75, 0.0]]


def test_dynamic_update_by_hand():
    w = np.array([0.5, 0.3, 0.2])
    new = dynamic_update(w, losses=np.array([3.0, 2.0, 4.5]), reference=np.array([2.5, 2.5, 4.0]))
    logits = np.log(w) + np.array([0.5, 0.0, 0.5])
    assert new == pytest.approx(np.exp(logits) / np.exp(logits).sum())
    assert new[1] < w[1] and dynamic_update(w, np.ones(3), np.full(3, 2.0)) == pytest.approx(w)
