"""Fill-in-the-middle: the rearrangement of training blocks (PSM and SPM, token and character
cuts), the sentinels in the tokenizer, the refusal without them, and a tiny pretrain with FIM
whose infilling eval shows the model using the suffix where a plain model cannot."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from transformers import AutoTokenizer

from lmbuild.params import ParamsError, validate_section
from lmbuild.tokenize.sentinels import FIM_MIDDLE, FIM_PREFIX, FIM_SUFFIX, FIM_TOKENS, fim_ids
from lmbuild.train.fim import IGNORE, FimTransform
from test_train import PARAMS, inputs, make_project, run  # noqa: F401 (inputs: the fixture)


def with_sentinels(src, dst):
    """The test tokenizer of `src` saved to `dst` with the three sentinels added."""
    tok = AutoTokenizer.from_pretrained(src)
    tok.add_tokens(FIM_TOKENS, special_tokens=True)
    tok.save_pretrained(dst)
    return AutoTokenizer.from_pretrained(dst)


@pytest.fixture(scope="module")
def tok(inputs, tmp_path_factory):
    return with_sentinels(inputs / "models/tokenizer", tmp_path_factory.mktemp("fimtok"))


def cfg(**kw):
    return {**validate_section("pretrain", {})["fim"], "rate": 1.0, **kw}


def transform(tok, **kw):
    return FimTransform(cfg(**kw), tok, tok.eos_token_id, tok.pad_token_id, seed=3, stage="pretrain")


def undo(row: np.ndarray, ids: dict, eot: int) -> list[np.ndarray]:
    """The documents of a rearranged block put back in order (what the sentinels make recoverable)."""
    docs = []
    for piece in np.split(row, np.flatnonzero(row == eot) + 1):
        body = piece[piece != eot]
        if len(body) == 0:
            continue
        if body[0] != ids["prefix"]:
            docs.append(body)
            continue
        if not (body == ids["middle"]).any():  # cut short by the block's length
            continue
        m = int(np.flatnonzero(body == ids["middle"])[0])
        if body[1] == ids["suffix"]:       # SPM: PRE SUF suffix MID prefix+middle
            docs.append(np.concatenate([body[m + 1:], body[2:m]]))
        else:                               # PSM: PRE prefix SUF suffix MID middle
            s = int(np.flatnonzero(body == ids["suffix"])[0])
            docs.append(np.concatenate([body[1:s], body[m + 1:], body[s + 1:m]]))
    return docs


@pytest.mark.parametrize("spm", [0.0, 1.0])
def test_token_level_fim_moves_every_document_and_loses_nothing_but_the_cut_tail(tok, spm):
    eot, ids = tok.eos_token_id, fim_ids(tok)
    rng = np.random.default_rng(0)
    docs = [rng.integers(10, 200, size=n) for n in (20, 7, 30)]
    block = np.concatenate([np.append(d, eot) for d in docs])
    n = len(block)
    f = transform(tok, level="token", spm_rate=spm)
    out = f.batch(torch.from_numpy(block[None]), step=5)
    row, labels = out["input_ids"][0].numpy(), out["labels"][0].numpy()
    assert len(row) == n and np.array_equal(row, labels)                 # cut back to the block's length
    assert (row == ids["prefix"]).sum() == 3 and (row == ids["middle"]).sum() >= 2
    if spm:
        assert row[1] == ids["suffix"]                                      # PRE SUF suffix MID prefix middle
    back = undo(row, ids, eot)
    assert [d.tolist() for d in back[:2]] == [d.tolist() for d in docs[:2]]   # whole documents round-trip
    assert f.metrics()["moved_share"] == 1.0


def test_rate_zero_is_the_plain_batch_and_choices_are_seeded_by_step_and_block(tok):
    x = torch.randint(10, 200, (2, 40))
    plain = transform(tok, rate=0.0).batch(x, step=0)
    assert plain["input_ids"] is x and plain["labels"] is x
    f = transform(tok, level="token", rate=0.5)
    a, b = f.batch(x, 1), f.batch(x, 1)
    assert torch.equal(a["input_ids"], b["input_ids"])
    assert any(not torch.equal(a["input_ids"], f.batch(x, s)["input_ids"]) for s in range(2, 12))
    # a block's rearrangement depends on its own tokens, not on the rows beside it (any world size)
    single = f.batch(x[1:], 1)
    assert torch.equal(single["input_ids"][0], a["input_ids"][1])


def test_character_level_cuts_re_encode_the_text_and_pad_without_loss(tok):
    text = "def add(x, y):\n    x = x + y * 2\n    return x\n"
    body = tok.encode(text, add_special_tokens=False)
    block = np.array(body + [tok.eos_token_id] + body[:5], dtype=np.int64)
    f = transform(tok, level="char", spm_rate=0.0)
    for step in range(20):
        out = f.batch(torch.from_numpy(block[None]), step)
        row, labels = out["input_ids"][0].numpy(), out["labels"][0].numpy()
        assert len(row) == len(block)
        keep = labels != IGNORE
        assert (row[~keep] == tok.pad_token_id).all() and not (labels[keep] == IGNORE).any()
        first = row[:np.flatnonzero(row == tok.eos_token_id)[0]] if (row == tok.eos_token_id).any() else row
        pieces = tok.decode(first.tolist(), skip_special_tokens=False)
        pre, rest = pieces[len(FIM_PREFIX):].split(FIM_SUFFIX, 1)
        suf, mid = rest.split(FIM_MIDDLE, 1)
        if (row == tok.eos_token_id).any():
            assert pre + mid + suf == text                                   # characters, not tokens, were cut


def test_fim_without_sentinels_is_refused_naming_the_tokenizer_switch(inputs):
    plain = AutoTokenizer.from_pretrained(inputs / "models/tokenizer")
    assert fim_ids(plain) is None
    with pytest.raises(ParamsError, match="tokenize.fim_tokens: true"):
        FimTransform(cfg(rate=0.5), plain, plain.eos_token_id, plain.pad_token_id, 0, "pretrain")


def test_the_tokenize_switch_adds_sentinels_after_the_merges():
    from lmbuild.tokenize.sentinels import add_fim_tokens
    from lmbuild.tokenize.train_bpe import train
    texts = ["def f(x):\n    return x + 1\n"] * 50 + ["the cat sat on the mat"] * 50
    plain, fim = train(texts, 300, 2, "cl100k"), train(texts, 300, 2, "cl100k")
    assert add_fim_tokens(fim) == FIM_TOKENS and add_fim_tokens(fim) == []
    n = plain.get_vocab_size()
    assert [fim.token_to_id(t) for t in FIM_TOKENS] == [n, n + 1, n + 2]
    assert {k: v for k, v in fim.get_vocab().items() if k not in FIM_TOKENS} == plain.get_vocab()
    assert fim.encode("<|fim_prefix|>x").ids[0] == n


@pytest.mark.parametrize("level", ["char", "token"])
def test_a_tiny_pretrain_with_fim_trains_and_scores_infilling(tmp_path, inputs, level):
    """The stage end to end: half the documents rearranged, loss below the unigram baseline on
    plain held-out text, the infilling eval in the metrics. (Whether FIM pays is measured on the
    demo by benchmarks/fim_effect.py: a model this small does not learn to use the suffix.)"""
    params = json.loads(json.dumps(PARAMS))
    params["pretrain"]["fim"] = {"rate": 0.5, "level": level, "eval": {"tasks": 16, "context_chars": 60,
                                                                        "min_line_chars": 4}}
    proj = make_project(tmp_path, inputs, params)
    with_sentinels(proj.root / "models/tokenizer", proj.root / "models/tokenizer")
    run(proj, "pretrain")
    met = json.loads((proj.root / "metrics/pretrain.json").read_text())
    assert met["val_loss"] < met["unigram_val_loss"]
    assert 0.3 < met["fim.moved_share"] < 0.7
    assert met["infill.tasks"] == 16 and 0 <= met["infill.exact_match"] <= 1
    assert met["infill.fim_bpb"] > 0 and met["infill.l2r_bpb"] > 0 and met["infill.fim_bpb_stderr"] > 0
    assert met["infill.suffix_gain_bpb"] == pytest.approx(met["infill.l2r_bpb"] - met["infill.fim_bpb"])


def test_a_model_without_sentinels_gets_no_infilling_eval_and_fim_stops_before_training(tmp_path, inputs):
    proj = make_project(tmp_path, inputs, PARAMS)
    run(proj, "pretrain")
    assert not any(k.startswith(("infill.", "fim.")) for k in json.loads((tmp_path / "metrics/pretrain.json").read_text()))
    params = json.loads(json.dumps(PARAMS))
    params["pretrain"]["fim"] = {"rate": 0.5}
    proj.write_params(params)
    p = run(proj, "pretrain", check=False)
    assert p.returncode != 0 and "tokenize.fim_tokens: true" in p.stderr and "Traceback" not in p.stderr
