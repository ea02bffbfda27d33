"""The eval library: log-likelihood scoring, bits per byte, multiple-choice files and accuracy,
the eval sets built from held-out data, and n-gram contamination."""

from __future__ import annotations

import json
import math
import random
from types import SimpleNamespace

import pytest
import torch

from lmbuild.eval.bpb import bits_per_byte, windows
from lmbuild.eval.contamination import overlap
from lmbuild.eval.eval_sets import cloze_items, near_misses, preference_rows, task_choice_items
from lmbuild.eval.loglik import continuation_logps
from lmbuild.eval.multiple_choice import Item, TaskFileError, evaluate, read_items
from lmbuild.tasks import generate, score

V = 16


class Uniform(torch.nn.Module):
    """Every next token has probability 1/V."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))

    def forward(self, input_ids, attention_mask=None, position_ids=None, use_cache=False):
        return SimpleNamespace(logits=torch.zeros(*input_ids.shape, V) + self.w)


class Favours(Uniform):
    """Logit 5 on token `fav` at every position: log p(fav) ~ -0.1, any other token ~ -5.1."""

    def __init__(self, fav: int):
        super().__init__()
        self.fav = fav

    def forward(self, input_ids, attention_mask=None, position_ids=None, use_cache=False):
        logits = torch.zeros(*input_ids.shape, V)
        logits[..., self.fav] = 5.0
        return SimpleNamespace(logits=logits)


class ByteTok:
    """One token per character (ids = code point mod V, 0 reserved)."""

    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": [1 + ord(c) % (V - 1) for c in text]}


def test_continuation_logps_sums_only_the_continuation_and_keeps_input_order():
    pairs = [([0, 3, 4], [5, 6]), ([0], [7, 8, 9, 10]), ([0, 1, 2, 3, 4, 5], [6])]
    out = continuation_logps(Uniform(), pairs, pad_id=0, batch_size=2, max_len=32)
    assert [n for _, n in out] == [2, 4, 1]
    for (lp, n) in out:
        assert lp == pytest.approx(-n * math.log(V), abs=1e-5)
    # contexts longer than max_len lose tokens from the left; the continuation stays whole
    (lp, n), = continuation_logps(Uniform(), [(list(range(1, 15)), [3, 3, 3])], pad_id=0, batch_size=1, max_len=5)
    assert n == 3


def test_bits_per_byte_of_a_uniform_model_is_log2_vocab_per_byte():
    docs = [("prose", "hello world, " * 30), ("code", "def f(x):\n    return x\n" * 7)]
    res = bits_per_byte(Uniform(), ByteTok(), docs, seq_len=16, batch_size=4, bos_id=0, pad_id=0)
    for domain, text in docs:
        # one token per character here, so bits per byte = log2(V) per token / (bytes per token = 1)
        assert res[domain]["bpb"] == pytest.approx(math.log2(V), rel=1e-5)
        assert res[domain]["tokens"] == len(text)
    assert res["all"]["bytes"] == sum(len(t) for _, t in docs)
    # every document has the same bits per byte: resampling documents cannot move the ratio
    assert res["all"]["bpb_stderr"] == pytest.approx(0.0, abs=1e-9) and res["all"]["documents"] == 2


def test_bits_per_byte_stderr_is_a_bootstrap_over_documents():
    # a model that favours "z": documents of z's are cheap, others dear, so the ratio varies with
    # which documents are drawn; its bootstrap error shrinks like 1/sqrt(documents)
    model, tok = Favours(ByteTok()("z")["input_ids"][0]), ByteTok()
    few = [("d", "zzzz zzzz"), ("d", "abcd abcd")] * 4
    many = few * 16
    se_few = bits_per_byte(model, tok, few, seq_len=16, batch_size=8, bos_id=0, pad_id=0)["d"]["bpb_stderr"]
    se_many = bits_per_byte(model, tok, many, seq_len=16, batch_size=64, bos_id=0, pad_id=0)["d"]["bpb_stderr"]
    assert se_few > 0 and se_many == pytest.approx(se_few / 4, rel=0.25)


def test_windows_score_every_token_exactly_once():
    ids = list(range(1, 38))
    ws = windows(ids, bos_id=0, seq_len=10)
    assert [t for _, cont in ws for t in cont] == ids
    assert ws[0][0] == [0] and all(len(ctx) == 1 for ctx, _ in ws)
    assert all(ws[i + 1][0] == [ws[i][1][-1]] for i in range(len(ws) - 1))


def test_read_items_names_file_and_line(tmp_path):
    good = tmp_path / "t.jsonl"
    good.write_text(json.dumps({"query": "Q", "choices": ["a", "b"], "gold": 1}) + "\n"
                    + json.dumps({"query": "Q", "choices": ["a", "b"], "gold": 0, "delimiter": "\n"}) + "\n\n")
    assert read_items(good) == [Item("Q", ("a", "b"), 1, "1", " "), Item("Q", ("a", "b"), 0, "2", "\n")]
    for row, why in [("{bad", "not JSON"), ('{"query": "Q", "choices": [" a"], "gold": 0}', "at least 2"),
                     ('{"query": "Q", "choices": [" a", " b"], "gold": 2}', "gold"),
                     ('{"choices": [" a", " b"], "gold": 0}', "query")]:
        bad = tmp_path / "bad.jsonl"
        bad.write_text(json.dumps({"query": "Q", "choices": [" a", " b"], "gold": 0}) + "\n" + row + "\n")
        with pytest.raises(TaskFileError, match=rf"bad.jsonl:2: .*{why}"):
            read_items(bad)


def test_multiple_choice_acc_and_length_normalised_acc():
    tok = ByteTok()
    fav_char = "z"
    fav = tok(fav_char)["input_ids"][0]
    model = Favours(fav)
    items = [Item("q", ("abc", "zzz", "ab"), 1), Item("q", ("zz", "a"), 0), Item("q", ("b", "zzzzzz"), 1),
             # (the space shares z's id here) raw sums: " q" -5.2 beats " qzzzzzzzz" -6.0; per
             # character of the choice, the delimiter not counted as in lm-eval: -5.2 / 1 loses to -6.0 / 9
             Item("q", ("q", "qzzzzzzzz"), 1)]
    res, rows = evaluate(model, items, encode_pair=lambda c, x: ([0] + tok(c)["input_ids"], tok(x)["input_ids"]),
                         pad_id=0, batch_size=3, max_len=64)
    assert res["items"] == 4 and res["chance"] == pytest.approx((1 / 3 + 3 / 2) / 4)
    assert res["acc"] == pytest.approx(3 / 4)
    assert res["acc_norm"] == pytest.approx(1.0)
    # sd(1, 1, 1, 0; ddof=1) / sqrt(4), as lm-eval's acc_stderr
    assert res["acc_stderr"] == pytest.approx(0.5 / 2) and res["acc_norm_stderr"] == 0.0
    assert [r["pred"] for r in rows] == [1, 0, 1, 0] and [r["correct_norm"] for r in rows] == [1.0] * 4
    log_z = math.log(math.exp(5) + V - 1)
    assert rows[3]["loglik"] == pytest.approx([5 - 2 * log_z, 9 * 5 - 10 * log_z], abs=1e-4)


def test_near_misses_are_wrong_distinct_and_formatted_like_the_answer():
    rng = random.Random(0)
    for family in ("arithmetic", "word_problems", "sort", "reverse", "count"):
        for ex in generate(family, "test", 10, seed=3):
            wrong = near_misses(ex, 3, rng)
            assert wrong and len(set(wrong)) == len(wrong)
            for w in wrong:
                s = score(ex, f"Answer: {w}")
                assert s.format == 1.0 and s.correct == 0.0, (ex, w)


def test_task_choice_and_preference_sets_are_deterministic_and_correct():
    exs = [ex for f in ("arithmetic", "sort", "count") for ex in generate(f, "test", 10, seed=1)]
    a, b = task_choice_items(exs, choices=4, seed=5), task_choice_items(exs, choices=4, seed=5)
    assert a == b and len(a) == len(exs)
    by_id = {ex.id: ex for ex in exs}
    for it in a:
        ex = by_id[it.id]
        assert it.query == f"{ex.prompt}\nAnswer:" and it.choices[it.gold] == ex.answer and it.delimiter == " "
        assert sum(score(ex, "Answer: " + c).correct for c in it.choices) == 1
    golds = {it.gold for it in a}
    assert len(golds) > 1  # the gold position is shuffled
    for row in preference_rows(exs, seed=5):
        ex = by_id[row["id"]]
        assert score(ex, row["chosen"]).correct == 1.0 and score(ex, row["rejected"]).correct == 0.0


def test_cloze_distractors_come_from_other_documents_of_the_domain():
    words = lambda k, n: " ".join(f"w{k}_{i}" for i in range(n))  # noqa: E731
    docs = [{"id": f"d{k}", "domain": "prose", "text": words(k, 60)} for k in range(5)]
    docs.append({"id": "c0", "domain": "code", "text": words(9, 60)})  # alone in its domain: no task
    sets = cloze_items(docs, per_domain=100, per_doc=2, context_words=10, continuation_words=3, choices=4, seed=0)
    assert set(sets) == {"cloze_prose"}
    items = sets["cloze_prose"]
    assert len(items) == 10
    for it in items:
        doc = it.id.split("-")[0]
        gold = it.choices[it.gold]
        assert not gold.startswith(" ") and it.delimiter == " " and len(gold.split()) == 3 and gold.split()[0].startswith(f"w{doc[1:]}_")
        q = it.query.split()
        assert len(q) == 10 and int(gold.split()[0].split("_")[1]) == int(q[-1].split("_")[1]) + 1
        for k, c in enumerate(it.choices):
            if k != it.gold:
                assert not c.split()[0].startswith(f"w{doc[1:]}_")
    assert sets == cloze_items(docs, per_domain=100, per_doc=2, context_words=10, continuation_words=3,
                               choices=4, seed=0)


def test_contamination_finds_planted_overlap_only():
    training = ["the river rises in the northern hills and flows south through seven old market towns to the sea",
                "Compute: 6 + 2", "unrelated text about something else entirely"]
    eval_sets = {
        "docs": ["the northern hills and flows south through seven old market towns to the sea before dawn",  # 14 shared
                 "the northern hills and flows north through seven old market towns to the sea before dawn",  # 1 changed
                 "a completely new sentence with no shared run of thirteen tokens at all ok"],
        "tasks": ["Compute: 6 + 2", "Compute: 6 - 2", "Hi"],   # short items are checked whole; "Hi" is too short
    }
    res = overlap(eval_sets, lambda: iter(training), n=13, min_tokens=4)
    assert res["docs"] == {"items": 3, "checked": 3, "contaminated": 1, "overlap_rate": pytest.approx(1 / 3)}
    assert res["tasks"] == {"items": 3, "checked": 2, "contaminated": 1, "overlap_rate": 0.5}
    # more training text without the planted n-gram changes nothing
    res2 = overlap(eval_sets, lambda: iter(training[1:] * 50), n=13, min_tokens=4)
    assert res2["docs"]["contaminated"] == 0 and res2["tasks"]["contaminated"] == 1
