"""Checkpoints hold no pickle: tensors go to safetensors and the rest to JSON, a round trip gives
back the model, the optimizer, the RNG streams and the loop state exactly, and a pickled state
file (the format of earlier versions, or a tampered one from a shared cache) is refused with one
line without being opened, so its payload never runs."""

from __future__ import annotations

import json
import pickle
import random

import numpy as np
import pytest
import torch

from lmbuild.train import checkpoint as ck


def _model_and_optimizer(seed: int = 0):
    torch.manual_seed(seed)
    m = torch.nn.Sequential(torch.nn.Embedding(10, 4), torch.nn.Linear(4, 10))
    m[1].weight = m[0].weight  # tied weights share storage, which safetensors alone refuses
    opt = torch.optim.AdamW(m.parameters(), lr=1e-3, betas=(0.9, 0.95))
    m(torch.tensor([1, 2])).sum().backward()
    opt.step()
    return m, opt


def test_round_trip_restores_model_optimizer_rng_and_state(tmp_path):
    m, opt = _model_and_optimizer()
    state = {"step": 3, "loss_ema": None, "train_time": 1.5,
             "hooks": {"positions": np.arange(5, dtype=np.int64), "pair": (1, 2.5), "by_id": {7: "x"}}}
    ck.save(tmp_path, {"id": "f"}, m, opt, state)
    assert sorted(p.name for p in (tmp_path / "latest").iterdir()) == ["state.json", "tensors.safetensors"]
    expected = (torch.rand(3), np.random.rand(), random.random())   # drawn from the saved RNG states
    back = ck.load(tmp_path)
    ck.set_rng_state(back["rng"])
    assert torch.equal(torch.rand(3), expected[0])
    assert np.random.rand() == expected[1] and random.random() == expected[2]
    m2, _ = _model_and_optimizer(seed=1)
    m2.load_state_dict(back["model"])
    assert all(torch.equal(a, b) for a, b in zip(m.state_dict().values(), m2.state_dict().values()))
    opt2 = torch.optim.AdamW(m2.parameters(), lr=1.0)
    opt2.load_state_dict(back["optimizer"])
    s1, s2 = opt.state_dict(), opt2.state_dict()
    assert s1["param_groups"] == s2["param_groups"]
    for k in s1["state"]:
        for name, v in s1["state"][k].items():
            assert torch.equal(v, s2["state"][k][name]), (k, name)
    assert back["step"] == 3 and back["loss_ema"] is None and back["hooks"]["pair"] == (1, 2.5)
    assert back["hooks"]["by_id"] == {7: "x"} and back["hooks"]["positions"].tolist() == [0, 1, 2, 3, 4]


class _Payload:
    """Unpickling this runs `open(marker, "w")`: what a tampered checkpoint would do."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_pickled_state_file_is_refused_and_never_run(tmp_path):
    marker = tmp_path / "ran"
    latest = tmp_path / "ckpt" / "latest"
    latest.mkdir(parents=True)
    (latest / "state.pt").write_bytes(pickle.dumps({"step": 1, "x": _Payload(marker)}))
    (tmp_path / "ckpt" / "fingerprint.json").write_text(json.dumps({"id": "f"}))
    with pytest.raises(ck.CheckpointError) as exc:
        ck.check_fingerprint(tmp_path / "ckpt", {"id": "f", "params": "p", "inputs": {}}, "sft")
    assert "never loaded" in str(exc.value) and "\n" not in str(exc.value)
    with pytest.raises(ck.CheckpointError):
        ck.load(tmp_path / "ckpt")
    assert not marker.exists()
    pickle.loads((latest / "state.pt").read_bytes())  # the payload is live: loading it would have run it
    assert marker.exists()


def test_state_that_only_pickle_could_hold_is_refused_at_save(tmp_path):
    m, opt = _model_and_optimizer()
    with pytest.raises(TypeError, match="cannot be saved without pickle"):
        ck.save(tmp_path, {"id": "f"}, m, opt, {"hooks": {"fn": object()}})
