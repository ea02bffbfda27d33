"""Decontamination: the eval sets' n-grams cut out of (or dropping) training documents, with the
same definition of overlap the contamination stage measures."""

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lmbuild.eval.contamination import overlap
from lmbuild.eval.decontam_run import check_sets, clean_shard
from lmbuild.eval.decontaminate import EvalIndex, cut_spans, decide, scan
from lmbuild.params import ParamsError

ITEM = ("the quick brown fox jumps over the lazy dog while the farmer sleeps soundly under "
        "an old oak tree")   # 19 tokens: checked with 13-grams
SHORT = "what is 6 + 2"       # 5 tokens: checked whole (min_tokens 4)


def index(**sets):
    return EvalIndex(sets or {"held": [ITEM], "tasks": [SHORT]}, n=13, min_tokens=4)


def test_mask_cuts_exactly_the_matching_span_and_keeps_the_rest():
    doc = "Intro line.\n" + ITEM.upper() + "\nThe code below is ours and stays."
    res = scan(index(), [doc])
    new, spans, cut = cut_spans(doc, res.covered[0], res.starts[0], res.ends[0])
    assert new == "Intro line.\n\nThe code below is ours and stays."   # case-insensitive match, cut whole
    assert (spans, cut) == (1, len(ITEM))
    assert list(res.doc_sets[0]) == [0]


def test_only_the_overlapping_part_of_a_partial_copy_is_cut():
    words = ITEM.split()
    doc = "Preface text here. " + " ".join(words[:14]) + " and then something else entirely."
    res = scan(index(), [doc])
    new, spans, cut = cut_spans(doc, res.covered[0], res.starts[0], res.ends[0])
    assert spans == 1 and cut == len(" ".join(words[:14]))   # 14 tokens: two 13-grams, one run
    assert new == "Preface text here.  and then something else entirely."


def test_no_match_below_the_ngram_size():
    doc = "Preface. " + " ".join(ITEM.split()[:12]) + " then other words follow here."
    res = scan(index(), [doc])
    assert not res.covered[0].any() and len(res.items) == 0


def test_short_items_are_matched_whole():
    res = scan(index(), ["Question: What is 6 + 2? Answer 8.", "what is 6 - 2"])
    assert list(res.doc_sets[0]) == [1] and len(res.doc_sets[1]) == 0   # punctuation is kept: - is not +


def test_ngrams_never_span_two_documents_of_a_batch():
    words = ITEM.split()
    docs = [" ".join(words[:8]), " ".join(words[8:]), "unrelated", ITEM]
    res = scan(index(), docs)
    assert [len(s) for s in res.doc_sets] == [0, 0, 0, 1]
    assert not res.covered[0].any() and not res.covered[1].any() and res.covered[3].all()


def test_spans_are_exact_where_lowercasing_changes_length():
    # U+0130 lowercases to two code points; spans come from the original text
    doc = "İİİ prefix " + ITEM + " İ suffix"
    res = scan(index(), [doc])
    new, _, _ = cut_spans(doc, res.covered[0], res.starts[0], res.ends[0])
    assert new == "İİİ prefix  İ suffix"


def test_modes_mask_drop_off_and_drop_above():
    idx = index()
    docs = ["Long preamble that is not in any eval set at all, many words here. " * 3 + ITEM, ITEM + " x", "clean"]
    res = scan(idx, docs)
    mask = decide(docs, res, "mask", 0.5)
    assert mask[0].text is not None and ITEM not in mask[0].text
    assert mask[1].text is None            # would lose > half its characters: dropped whole
    assert mask[2].text == "clean" and mask[2].spans == 0
    drop = decide(docs, res, "drop", 0.5)
    assert [d.text is None for d in drop] == [True, True, False]
    off = decide(docs, res, "off", 0.5)
    assert [d.text for d in off] == docs and len(off[0].sets) == 1


def test_items_hit_agree_with_the_contamination_measurement():
    rng = np.random.default_rng(0)
    vocab = [f"w{i}" for i in range(40)]
    items = [" ".join(rng.choice(vocab, size=int(rng.integers(3, 20)))) for _ in range(60)]
    docs = []
    for _ in range(30):
        parts = [" ".join(rng.choice(vocab, size=30))]
        if rng.random() < 0.5:
            parts.append(items[int(rng.integers(len(items)))])
        docs.append(" . ".join(parts))
    idx = EvalIndex({"a": items[:30], "b": items[30:]}, n=13, min_tokens=4)
    hit = np.bincount(idx.item_set[scan(idx, docs).items], minlength=2)
    measured = overlap({"a": items[:30], "b": items[30:]}, lambda: iter(docs), n=13, min_tokens=4)
    assert [measured["a"]["contaminated"], measured["b"]["contaminated"]] == hit.tolist()
    assert [measured["a"]["checked"], measured["b"]["checked"]] == idx.checked


def _shard(path, texts, repeat=None):
    n = len(texts)
    table = pa.table({"id": [f"d{i}" for i in range(n)], "text": texts, "source": ["s"] * n,
                      "domain": ["code"] * n, "url": [None] * n,
                      "repeat": pa.array(repeat or [0] * n, pa.int32())})
    path.parent.mkdir(parents=True)
    pq.write_table(table, path)


def test_clean_shard_writes_kept_and_removed_documents_with_counts(tmp_path):
    shard = tmp_path / "in" / "s" / "part.parquet"
    masked = "A header that everyone copies. " * 4 + ITEM
    _shard(shard, [masked, ITEM, "clean text", masked], repeat=[0, 0, 0, 1])   # row 3 repeats row 0
    task = {"shard": str(shard), "index": index(), "mode": "mask", "drop_above": 0.5,
            "out": str(tmp_path / "out"), "removed": str(tmp_path / "removed")}
    r = clean_shard(task)
    c = r["counts"]
    assert (c["rows"], c["documents"], c["documents_matched"], c["documents_masked"], c["documents_dropped"]) == \
        (4, 3, 2, 1, 1)
    assert c["chars_removed"] == len(ITEM) * 2 and c["sets"]["held"]["documents_matched"] == 2
    kept = pq.read_table(tmp_path / "out" / "part.parquet").to_pylist()
    assert [k["id"] for k in kept] == ["d0", "d2", "d3"] and kept[0]["text"] == kept[2]["text"]
    assert all(ITEM not in k["text"] for k in kept) and kept[1]["text"] == "clean text"
    gone = pq.read_table(tmp_path / "removed" / "part.parquet").to_pylist()
    assert [(g["id"], g["decontam_sets"]) for g in gone] == [("d1", "held")]
    assert len(r["before"]) == 1 and len(r["after"]) == 0
    # the same input gives the same bytes
    task2 = dict(task, out=str(tmp_path / "out2"), removed=str(tmp_path / "removed2"))
    clean_shard(task2)
    assert (tmp_path / "out" / "part.parquet").read_bytes() == (tmp_path / "out2" / "part.parquet").read_bytes()


def test_unknown_eval_set_is_a_params_error():
    assert check_sets({"sets": None}, ["a", "b"]) == ["a", "b"]
    with pytest.raises(ParamsError, match=r"decontaminate\.sets: 'c' not an eval set; the eval sets are a, b"):
        check_sets({"sets": ["a", "c"]}, ["a", "b"])
