"""Completion log-probs: token_logps against log_softmax + gather, completion_logps against a
naive per-sequence computation on a tiny random Llama, and padding invariance (left and right)."""

from __future__ import annotations

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from lmbuild.lm.logprobs import completion_logps, sequence_logps, token_logps


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=50, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                      pad_token_id=0, bos_token_id=1, eos_token_id=2)
    return LlamaForCausalLM(cfg).eval()


def test_token_logps_matches_log_softmax_gather_and_its_gradient():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(3, 5, 11, generator=g, dtype=torch.float64) * 4
    targets = torch.randint(0, 11, (3, 5), generator=g)
    targets[1, 2] = -100  # ignored position
    ref = torch.log_softmax(logits, -1).gather(-1, targets.clamp(min=0)[..., None]).squeeze(-1)
    ref = torch.where(targets >= 0, ref, torch.zeros_like(ref))
    for rows in (1, 4, None):  # chunks smaller than, not dividing, and larger than B*T = 15
        x = logits.clone().requires_grad_(True)
        out = token_logps(x, targets, chunk_rows=rows)
        assert out.dtype == torch.float32 and out.shape == (3, 5)
        assert torch.allclose(out.double(), ref, atol=1e-5)
        w = torch.randn(3, 5, generator=g, dtype=torch.float64)
        (out * w).sum().backward()
        y = logits.clone().requires_grad_(True)
        r = torch.log_softmax(y, -1).gather(-1, targets.clamp(min=0)[..., None]).squeeze(-1)
        (torch.where(targets >= 0, r, torch.zeros_like(r)) * w).sum().backward()
        assert torch.allclose(x.grad, y.grad, atol=1e-5)
        assert torch.all(x.grad[1, 2] == 0)


def test_token_logps_bf16_stays_bf16_and_is_accurate():
    g = torch.Generator().manual_seed(2)
    logits = (torch.randn(2, 4, 300, generator=g) * 3).to(torch.bfloat16).requires_grad_(True)
    targets = torch.randint(0, 300, (2, 4), generator=g)
    out = token_logps(logits, targets, chunk_rows=3)
    ref = torch.log_softmax(logits.detach().float(), -1).gather(-1, targets[..., None]).squeeze(-1)
    assert torch.allclose(out, ref, atol=1e-5)
    out.sum().backward()
    assert logits.grad.dtype == torch.bfloat16


def naive(model, ids: list[int], start: int) -> list[float]:
    """log p(ids[t] | ids[<t]) for t >= start, running the model on this one unpadded sequence."""
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits[0].double()
    lp = torch.log_softmax(logits, -1)
    return [lp[t - 1, ids[t]].item() for t in range(start, len(ids))]


# (prompt, completion) token ids of unequal lengths
SEQS = [([1, 5, 6, 7], [8, 9, 2]), ([1, 11], [12, 13, 14, 15, 2]), ([1, 20, 21, 22, 23], [24])]


def batch(padding: str):
    t = max(len(p) + len(c) for p, c in SEQS)
    ids, am, cm = [], [], []
    for p, c in SEQS:
        seq, pad = p + c, t - len(p) - len(c)
        comp = [0] * len(p) + [1] * len(c)
        if padding == "right":
            ids.append(seq + [0] * pad); am.append([1] * len(seq) + [0] * pad); cm.append(comp + [0] * pad)
        else:
            ids.append([0] * pad + seq); am.append([0] * pad + [1] * len(seq)); cm.append([0] * pad + comp)
    return torch.tensor(ids), torch.tensor(am), torch.tensor(cm)


@pytest.mark.parametrize("padding", ["right", "left"])
def test_completion_logps_equals_naive_per_sequence(model, padding):
    ids, am, cm = batch(padding)
    with torch.no_grad():
        out = completion_logps(model, ids, am, cm)
    assert out.shape == ids.shape and out.dtype == torch.float32
    assert torch.all(out[cm == 0] == 0)
    for i, (p, c) in enumerate(SEQS):
        got = out[i][cm[i].bool()].tolist()
        assert got == pytest.approx(naive(model, p + c, len(p)), abs=1e-5)
    total, count = sequence_logps(out, cm)
    assert count.tolist() == [len(c) for _, c in SEQS]
    assert total.tolist() == pytest.approx([sum(naive(model, p + c, len(p))) for p, c in SEQS], abs=1e-4)


def test_left_and_right_padding_agree_and_extra_padding_changes_nothing(model):
    with torch.no_grad():
        r_ids, r_am, r_cm = batch("right")
        l_ids, l_am, l_cm = batch("left")
        right = completion_logps(model, r_ids, r_am, r_cm)
        left = completion_logps(model, l_ids, l_am, l_cm)
        assert torch.allclose(right[r_cm.bool()], left[l_cm.bool()], atol=1e-5)
        # three more pad columns on the right
        pad = torch.zeros(3, 3, dtype=torch.long)
        more = completion_logps(model, torch.cat([r_ids, pad], 1), torch.cat([r_am, pad], 1), torch.cat([r_cm, pad], 1))
        assert torch.allclose(more[:, :r_ids.shape[1]], right, atol=1e-5)


def test_temperature_and_gradient(model):
    ids, am, cm = batch("right")
    with torch.no_grad():
        logits = model(input_ids=ids[:1, :7]).logits[0]
        hot = completion_logps(model, ids, am, cm, temperature=2.0)
    want = torch.log_softmax(logits / 2.0, -1)[3:6].gather(-1, ids[0, 4:7, None]).squeeze(-1)
    assert torch.allclose(hot[0, 4:7], want, atol=1e-5)
    model.zero_grad()
    completion_logps(model, ids, am, cm).sum().backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    model.zero_grad()


def test_completion_logps_errors(model):
    ids, am, cm = batch("right")
    bad = cm.clone(); bad[0, 0] = 1
    with pytest.raises(ValueError, match="position 0"):
        completion_logps(model, ids, am, bad)
    bad = cm.clone(); bad[2, -1] = 1  # sequence 2 is one token short: its last column is padding
    with pytest.raises(ValueError, match="padding"):
        completion_logps(model, ids, am, bad)
    assert torch.all(completion_logps(model, ids, am, torch.zeros_like(cm)) == 0)
