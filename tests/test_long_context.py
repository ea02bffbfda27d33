"""Long-context extension in anneal: RoPE settings and their limits, the long/short document mix,
document masking (a packed document sees exactly what it would see alone), the long-context
eval, and the stage end to end on a tiny model extended from 64 to 128 positions."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from lmbuild.params import ParamsError, validate_section
from lmbuild.train.long_context import LONG, LengthMix, doc_masked, extended_config, segments
from lmbuild.train.model import build_model
from test_train import PARAMS, TINY_MODEL, make_project, m, run
from train_data import make_tokenizer, synthetic_docs, write_split


@pytest.fixture(scope="module")
def long_inputs(tmp_path_factory):
    """Tokenizer and token splits in which a third of the documents are long (eight short ones
    joined), so that long pools and held-out documents of 128+ tokens exist."""
    root = tmp_path_factory.mktemp("long_inputs")
    docs = synthetic_docs(900)
    joined = [(d, " ".join(t for _, t in docs[i:i + 8])) for i, (d, _) in enumerate(docs[:480]) if i % 8 == 0]
    mixed = [x for pair in zip(joined, docs[480:540]) for x in pair] + docs[540:]
    tok = make_tokenizer([t for _, t in docs], root / "models/tokenizer", 300)
    write_split(tok, mixed[12:], root / "data/tokens/pretrain")
    write_split(tok, mixed[12:], root / "data/tokens/anneal")
    write_split(tok, mixed[:12], root / "data/tokens/val")
    return root


def lc(**kw):
    return {**validate_section("anneal", {})["long_context"], **kw}


def save_config(tmp_path, max_length=64):
    model = build_model(m(max_length=max_length), 100, 0, 1, seed=0)
    model.config.save_pretrained(tmp_path)
    return tmp_path


def test_rope_settings_set_the_supported_length_and_refuse_beyond_it(tmp_path):
    d = save_config(tmp_path)
    assert extended_config(d, lc(), 64, "anneal") is None
    c = extended_config(d, lc(rope_scaling={"type": "yarn", "factor": 4}), 256, "anneal")
    assert c.max_position_embeddings == 256
    assert c.rope_parameters["rope_type"] == "yarn" and c.rope_parameters["factor"] == 4.0
    assert c.rope_parameters["original_max_position_embeddings"] == 64
    c = extended_config(d, lc(rope_theta=40000, max_length=512), 512, "anneal")
    assert c.rope_parameters["rope_theta"] == 40000.0 and c.max_position_embeddings == 512
    with pytest.raises(ParamsError) as e:
        extended_config(d, lc(rope_scaling={"type": "linear", "factor": 2}), 256, "anneal")
    assert e.value.problems == ["params.yaml: anneal.seq_len: 256 exceeds the 128 positions the RoPE settings "
                                "support; set anneal.long_context.rope_scaling (factor >= 4) or rope_theta with "
                                "max_length >= 256"]
    with pytest.raises(ParamsError, match="max_length: 512 exceeds the 128 positions"):
        extended_config(d, lc(rope_scaling={"type": "linear", "factor": 2}, max_length=512), 128, "anneal")
    with pytest.raises(ParamsError, match="max_length: 128 exceeds the 64 positions"):
        extended_config(d, lc(max_length=128), 64, "anneal")


def test_segments_restart_positions_after_each_end_of_text():
    x = torch.tensor([[5, 6, 0, 7, 8, 0, 9], [0, 5, 6, 7, 0, 0, 8]])
    seq, pos = segments(x, eot=0)
    assert seq.tolist() == [[0, 0, 0, 1, 1, 1, 2], [0, 1, 1, 1, 1, 2, 3]]
    assert pos.tolist() == [[0, 1, 2, 0, 1, 2, 0], [0, 0, 1, 2, 3, 0, 0]]


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_with_document_masking_a_packed_document_sees_what_it_sees_alone(attn):
    model = build_model(m(), 50, 0, 1, seed=0, attn=attn).eval()
    a, b = [3, 4, 5, 6, 0], [7, 8, 9, 10, 11, 12]
    x = torch.tensor([a + b])
    batch = doc_masked({"input_ids": x, "labels": x}, eot=0, attn=attn)
    with torch.no_grad():
        packed = model(**{k: v for k, v in batch.items() if k != "labels"}).logits[0]
        alone = model(input_ids=torch.tensor([b])).logits[0]
        plain = model(input_ids=x).logits[0]
    assert torch.allclose(packed[len(a):], alone, atol=1e-5)
    assert not torch.allclose(plain[len(a):], alone, atol=1e-3)    # without the mask b sees a


def test_the_long_short_mix_draws_the_share_asked_and_has_no_state(long_inputs):
    split = long_inputs / "data/tokens/anneal"
    mix = LengthMix(split, 64, 0, 0.75, 128, "anneal")
    n = 400
    rows = mix.rows(list(range(n)))
    long_rows = {tuple(mix.pools.read(LONG, mix.pools.block_of(LONG, k)).tolist()) for k in range(n)}
    share = np.mean([tuple(r.tolist()) in long_rows for r in rows])
    assert abs(share - 0.75) < 0.02
    assert torch.equal(mix.rows([397, 398, 399]), rows[397:])          # a resumed run reads the same rows
    assert mix.metrics()["long_tokens"] > 0 and mix.metrics()["short_tokens"] > 0
    with pytest.raises(Exception, match="no long documents"):
        LengthMix(split, 64, 0, 0.5, 10**6, "anneal")


def test_anneal_extends_a_model_to_longer_context_and_reports_the_long_context_eval(tmp_path, long_inputs):
    params = json.loads(json.dumps(PARAMS))
    params["anneal"].update(seq_len=128, max_tokens=4096, doc_masking=True,
                            long_context={"rope_scaling": {"type": "linear", "factor": 2}, "long_share": 0.6,
                                          "long_min_tokens": 128},
                            long_eval={"lengths": [32, 128], "buckets": 2, "documents": 4, "short_length": 32,
                                       "passkey_samples": 2, "passkey_depths": [0.5]})
    assert TINY_MODEL["max_length"] == 64
    proj = make_project(tmp_path, long_inputs, params)
    run(proj, "pretrain")
    run(proj, "anneal")
    met = json.loads((tmp_path / "metrics/anneal.json").read_text())
    cfg = json.loads((tmp_path / "models/anneal/config.json").read_text())
    assert cfg["max_position_embeddings"] == 128 and cfg["rope_parameters"]["rope_type"] == "linear"
    assert met["long_context.doc_masking"] == 1 and met["long_context.long_share"] == 0.6
    assert met["long_eval.documents"] >= 2 and {"long_eval.loss_0_64", "long_eval.loss_64_128"} <= set(met)
    assert 0 <= met["long_eval.passkey"] <= 1 and "long_eval.passkey_128_d50" in met
    assert met["long_eval.short_loss"] > 0
    # the same seq_len without the extension is refused before training, naming the switch
    params["anneal"].pop("long_context")
    proj.write_params(params)
    p = run(proj, "anneal", check=False)
    assert p.returncode != 0 and "anneal.long_context" in p.stderr and "Traceback" not in p.stderr


class _Reader(torch.nn.Module):
    """A stand-in model whose greedy answer is the key stated in its prompt (or a wrong one):
    what a model that retrieves perfectly (or never) would write."""

    def __init__(self, tok, right: bool):
        super().__init__()
        self.tok, self.right, self.w = tok, right, torch.nn.Parameter(torch.zeros(1))

    def generate(self, input_ids, attention_mask, max_new_tokens, **kw):
        outs = []
        for row, mask in zip(input_ids, attention_mask):
            text = self.tok.decode(row[mask.bool()].tolist())
            key = text.split("The pass key is ")[1][:5] if self.right else "00000"
            new = self.tok.encode(" " + key, add_special_tokens=False)[:max_new_tokens]
            outs.append(torch.cat([row, torch.tensor(new + [kw["pad_token_id"]] * (max_new_tokens - len(new)))]))
        return torch.stack(outs)


def test_passkey_prompts_hide_the_key_at_the_asked_depth_and_the_scorer_reads_the_answer(long_inputs):
    from transformers import AutoTokenizer
    from lmbuild.eval.long_context import NEEDLE, passkey, passkey_prompts
    tok = AutoTokenizer.from_pretrained(long_inputs / "models/tokenizer")
    prompts, keys = passkey_prompts(tok, 200, 0.25, 4, seed=1)
    assert len(set(keys)) > 1 and all(len(k) == 5 for k in keys)
    for p, k in zip(prompts, keys):
        assert abs(len(p) - 200) <= 2
        text = tok.decode(p)
        at = text.index(NEEDLE.format(key=k).strip())
        assert 0.15 < at / len(text) < 0.35 and text.endswith("The pass key is")
    assert passkey_prompts(tok, 200, 0.25, 4, seed=1) == (prompts, keys)      # same keys for every model
    ctx = __import__("contextlib").nullcontext
    good = passkey(_Reader(tok, True), tok, [120, 200], [0.1, 0.9], 3, 0, ctx)
    bad = passkey(_Reader(tok, False), tok, [120, 200], [0.1, 0.9], 3, 0, ctx)
    assert good["passkey"] == 1.0 and good["passkey_200_d90"] == 1.0 and bad["passkey"] == 0.0
