"""packing: first-fit decreasing is deterministic, never splits an example, counts truncation;
the block-diagonal mask keeps packed examples apart: with a tiny random Llama under sdpa and eager,
each example's logits inside a packed row equal its logits alone, and changing one example's
tokens leaves the others' logits unchanged."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from lmbuild.lm.chat import encode_conversation
from lmbuild.posttrain.packing import Packed, model_inputs, pack, packed_attention_mask
from train_data import make_tokenizer, synthetic_docs


def random_examples(n, lo, hi, seed=0):
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        ids = [rng.randrange(4, 300) for _ in range(rng.randint(lo, hi))]
        labels = [i if rng.random() < 0.5 else -100 for i in ids]
        out.append((ids, labels))
    return out


def test_pack_layout_is_deterministic_and_keeps_examples_whole():
    examples = random_examples(60, 1, 40) + [([], [])]
    a, b = pack(examples, 64, pad_id=1), pack(list(examples), 64, pad_id=1)
    for field in ("input_ids", "labels", "position_ids", "seq_ids", "placement"):
        assert np.array_equal(getattr(a, field), getattr(b, field))
        assert getattr(a, field).dtype == np.int64
    assert a.n_examples == 60 and a.n_truncated == 0 and tuple(a.placement[60]) == (-1, -1)
    assert a.input_ids.shape[1] == 64
    total = sum(len(ids) for ids, _ in examples)
    assert a.fill == pytest.approx(total / a.input_ids.size) and a.fill > 0.9  # FFD packs tightly
    for k, (ids, labels) in enumerate(examples[:60]):
        row, start = a.placement[k]
        span = slice(start, start + len(ids))
        assert a.input_ids[row, span].tolist() == ids  # whole, in one row
        assert a.labels[row, span].tolist() == [-100] + labels[1:]  # first label blanked: never crosses examples
        assert a.position_ids[row, span].tolist() == list(range(len(ids)))
        assert len(set(a.seq_ids[row, span].tolist())) == 1 and a.seq_ids[row, start] >= 0
        assert (a.seq_ids[row] == a.seq_ids[row, start]).sum() == len(ids)  # nothing else shares its id
    pad = a.seq_ids == -1
    assert (a.input_ids[pad] == 1).all() and (a.labels[pad] == -100).all()
    assert pad.sum() == a.input_ids.size - total
    # seq_ids count 0, 1, 2... along each row; padding only at the end
    for row in a.seq_ids:
        real = row[row >= 0]
        assert (np.diff(real) >= 0).all() and real[0] == 0 and (row[len(real):] == -1).all()


def test_pack_truncates_long_examples_and_counts_them():
    examples = [([5] * 10, [5] * 10), ([6] * 3, [6] * 3), ([7] * 8, [7] * 8)]
    p = pack(examples, 8, pad_id=0)
    assert p.n_truncated == 1 and p.n_examples == 3
    row, start = p.placement[0]
    assert p.input_ids[row, start:start + 8].tolist() == [5] * 8
    assert p.input_ids.shape == (3, 8)  # 8 + 8 + 3: no row can take two of them
    empty = pack([], 8, pad_id=0)
    assert empty.input_ids.shape == (0, 8) and empty.fill == 0.0


def test_packed_attention_mask_values():
    seq_ids = torch.tensor([[0, 0, 1, 1, 1, -1, -1]])
    allowed = packed_attention_mask(seq_ids, torch.bool)
    assert allowed.shape == (1, 1, 7, 7)
    expected = torch.tensor([
        [1, 0, 0, 0, 0, 0, 0],
        [1, 1, 0, 0, 0, 0, 0],
        [0, 0, 1, 0, 0, 0, 0],
        [0, 0, 1, 1, 0, 0, 0],
        [0, 0, 1, 1, 1, 0, 0],
        [0, 0, 0, 0, 0, 1, 0],
        [0, 0, 0, 0, 0, 0, 1]], dtype=torch.bool)
    assert torch.equal(allowed[0, 0], expected)
    additive = packed_attention_mask(seq_ids, torch.bfloat16)
    assert additive.dtype == torch.bfloat16
    assert torch.equal(additive[0, 0] == 0, expected)
    assert (additive[0, 0][~expected] == torch.finfo(torch.bfloat16).min).all()


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    return make_tokenizer([t for _, t in synthetic_docs(120)], tmp_path_factory.mktemp("tok"), 400)


@pytest.fixture(scope="module")
def model(tok):
    from transformers import LlamaConfig, LlamaForCausalLM
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=256,
                      pad_token_id=tok.pad_token_id, bos_token_id=0, eos_token_id=0)
    m = LlamaForCausalLM(cfg).eval()
    # from_config's init is small; widen the weights so that a leak would show far above atol
    with torch.no_grad():
        for p in m.parameters():
            p.mul_(4.0) if p.dim() > 1 else None
    return m


def chat_examples(tok, n=5):
    docs = [t for _, t in synthetic_docs(3 * n, seed=3)]
    examples = []
    for k in range(n):
        msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": docs[3 * k][:60]},
                {"role": "assistant", "content": docs[3 * k + 1][:40 + 15 * k]}]
        examples.append(encode_conversation(tok, msgs, max_len=200))
    return examples


def run(model, impl, inputs):
    model.config._attn_implementation = impl
    try:
        with torch.no_grad():
            return model(**inputs).logits
    finally:
        model.config._attn_implementation = "sdpa"


@pytest.mark.parametrize("impl", ["sdpa", "eager"])
def test_packed_logits_equal_alone_and_no_leakage(tok, model, impl):
    examples = chat_examples(tok)
    lengths = [len(ids) for ids, _ in examples]
    packed = pack(examples, seq_len=sum(lengths) + 7, pad_id=tok.pad_token_id)  # one row, with padding
    assert packed.input_ids.shape[0] == 1 and (packed.seq_ids == -1).sum() == 7
    logits = run(model, impl, model_inputs(packed, impl))
    assert torch.isfinite(logits).all()
    for k, (ids, _) in enumerate(examples):
        _, start = packed.placement[k]
        alone = run(model, impl, {"input_ids": torch.tensor([ids])})[0]
        assert torch.allclose(logits[0, start:start + len(ids)], alone, atol=1e-5), k

    # Changing the tokens of the example placed first changes its own logits and nobody else's.
    k0 = int(np.flatnonzero(packed.placement[:, 1] == 0)[0])
    changed = list(examples)
    changed[k0] = (list(reversed(examples[k0][0])), examples[k0][1])
    packed2 = pack(changed, seq_len=sum(lengths) + 7, pad_id=tok.pad_token_id)
    assert np.array_equal(packed2.placement, packed.placement)
    logits2 = run(model, impl, model_inputs(packed2, impl))
    own = torch.as_tensor(packed.seq_ids[0] == 0)
    assert not torch.allclose(logits2[0, own], logits[0, own], atol=1e-3)
    assert torch.allclose(logits2[0, ~own], logits[0, ~own], atol=1e-5)

    # Without the mask the later examples would see the change: the test can catch a leak.
    leaky2 = run(model, impl, {"input_ids": torch.as_tensor(packed2.input_ids)})
    leaky1 = run(model, impl, {"input_ids": torch.as_tensor(packed.input_ids)})
    later = torch.as_tensor(packed.seq_ids[0] > 0)
    assert later.sum() > 0 and not torch.allclose(leaky2[0, later], leaky1[0, later], atol=1e-3)

    # transformers 5.23 infers the same blocks from position_ids alone, but only without a KV cache:
    # with the default use_cache=True it silently leaks (why model_inputs passes the mask).
    real = torch.as_tensor(packed.seq_ids[0] >= 0)
    pos_only = {"input_ids": torch.as_tensor(packed.input_ids), "position_ids": torch.as_tensor(packed.position_ids)}
    assert torch.allclose(run(model, impl, {**pos_only, "use_cache": False})[0, real], logits[0, real], atol=1e-5)
    assert not torch.allclose(run(model, impl, pos_only)[0, real], logits[0, real], atol=1e-3)


def test_packed_loss_is_the_sum_of_example_losses(tok, model):
    examples = chat_examples(tok, 4)
    packed = pack(examples, seq_len=256, pad_id=tok.pad_token_id)
    inputs = model_inputs(packed, "sdpa", with_labels=True)
    with torch.no_grad():
        out = model(**{k: v for k, v in inputs.items() if k != "labels"})
        nll = torch.nn.functional.cross_entropy(out.logits[:, :-1].flatten(0, 1), inputs["labels"][:, 1:].flatten(),
                                                reduction="sum")
        alone = 0.0
        for ids, labels in examples:
            lg = model(input_ids=torch.tensor([ids])).logits[0, :-1]
            alone += torch.nn.functional.cross_entropy(lg, torch.tensor(labels[1:]), reduction="sum").item()
        n_targets = int((inputs["labels"][:, 1:] != -100).sum())
        hf_loss = model(**inputs).loss.item()  # transformers' own shifted loss on the packed row
    assert nll.item() == pytest.approx(alone, rel=1e-5)
    assert hf_loss * n_targets == pytest.approx(alone, rel=1e-5)
    assert n_targets == sum(sum(lab != -100 for lab in labels[1:]) for _, labels in examples)


def test_model_inputs_shapes():
    p = pack(random_examples(20, 3, 30, seed=1), 48, pad_id=1)
    fa = model_inputs(p, "flash_attention_2", with_labels=True)
    assert set(fa) == {"input_ids", "position_ids", "labels", "use_cache"} and fa["use_cache"] is False
    assert fa["input_ids"].shape == fa["position_ids"].shape == fa["labels"].shape == (1, p.input_ids.size)
    starts = int((fa["position_ids"] == 0).sum())  # varlen boundaries: each example, plus each padding tail
    assert starts == p.n_examples + int(((p.seq_ids == -1).any(axis=1)).sum())
    sd = model_inputs({"input_ids": p.input_ids[:2], "position_ids": p.position_ids[:2], "seq_ids": p.seq_ids[:2]},
                      "sdpa")
    assert sd["attention_mask"].shape == (2, 1, 48, 48) and sd["attention_mask"].dtype == torch.bool
    ea = model_inputs(p, "eager", dtype=torch.bfloat16)
    assert ea["attention_mask"].dtype == torch.bfloat16 and ea["input_ids"].dtype == torch.int64
    with pytest.raises(ValueError, match="flex_attention"):
        model_inputs(p, "flex_attention")
    assert isinstance(p, Packed)
