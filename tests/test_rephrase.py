"""The rephrase stage: its styles and prompts, the seeded sample (held-out documents never
rewritten), the copy rate, the refusal of a model that cannot generate, an end-to-end rewrite by
a tiny chat model and a tiny base model of another family (shards, lineage, byte-identical on a
rerun), and its output entering the filter beside data/raw as a source of its own."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lmbuild.filter.run import filter_corpus
from lmbuild.params import validate_section
from lmbuild.rephrase.run import LINEAGE_SCHEMA, RephraseError, check_model, copy_rate, rephrase, sample_documents
from lmbuild.rephrase.styles import STYLES, StyleError, prompts_for, render
from lmbuild.shards import DOC_SCHEMA, ShardWriter, doc_id
from train_data import save_foreign, tiny_chat_llama

PROSE = ("The river runs through the old town and past the mill. Farmers bring their grain to the market "
         "every week, and the bridge was rebuilt after the flood of the last century. ")
ARTICLE = ("The river runs through the old town and past the mill, where farmers have brought their grain for "
           "three hundred years.\nA stone bridge crosses it near the market square; it was rebuilt after the great "
           "flood of 1890 and widened again in 1962.\nThe town council meets in the hall beside the church, and its "
           "records go back to the charter granted by the duke.\nToday most of the mills are museums, and visitors "
           "come in summer to walk the path along the water to the lake.\nIn winter the market sells cheese, bread "
           "and wool from the valley farms, as it always has.\n")


def write_docs(root, source, docs, domain="encyclopedic", ids=None):
    ids = ids or [doc_id(source, str(i)) for i in range(len(docs))]
    rows = [{"id": i, "text": t, "source": source, "domain": domain, "url": None} for i, t in zip(ids, docs)]
    with ShardWriter(root / source, "part", DOC_SCHEMA) as w:
        w.write(pa.Table.from_pylist(rows, schema=DOC_SCHEMA))
    return ids


def test_styles_render_in_both_formats_and_bad_styles_are_named(tmp_path):
    tok = tiny_chat_llama(tmp_path / "tok", tmp_path / "m")
    t = prompts_for(["wiki", "mine"], {"mine": "Say it again: {text}"})
    assert t["wiki"] == STYLES["wiki"] and t["mine"] == "Say it again: {text}"
    plain = tok.decode(render(tok, t["mine"], "a b", "plain"))
    chat = tok.decode(render(tok, t["mine"], "a b", "chat"))
    assert plain == "Say it again: a b\n\nRewritten:\n"
    assert "<|im_start|>user" in chat and "Say it again: a b" in chat and chat.rstrip().endswith("assistant")
    with pytest.raises(StyleError) as e:
        prompts_for(["wiki", "poem"], {"bad": "no slot"})
    assert "rephrase.styles: 'poem' has no prompt" in str(e.value) and "rephrase.prompts.bad" in str(e.value)


def test_the_sample_is_seeded_by_id_whatever_the_shards_and_never_holds_held_out_documents(tmp_path):
    docs = [f"document {i} " + PROSE for i in range(40)]
    ids = write_docs(tmp_path / "a", "wiki", docs)
    write_docs(tmp_path / "a", "news", ["news " + PROSE] * 5, domain="news")
    write_docs(tmp_path / "b", "wiki", docs[:17], ids=ids[:17])      # the same documents in two shards
    write_docs(tmp_path / "b", "wiki_more", docs[17:], ids=ids[17:])
    held = set(ids[:10])
    one = sample_documents(tmp_path / "a", ["encyclopedic"], 12, seed=3, exclude=held)
    two = sample_documents(tmp_path / "b", ["encyclopedic"], 12, seed=3, exclude=held)
    assert [d["text"] for d in one] == [d["text"] for d in two] and len(one) == 12
    assert not {d["id"] for d in one} & held and all(d["domain"] == "encyclopedic" for d in one)
    other = sample_documents(tmp_path / "a", ["encyclopedic"], 12, seed=4, exclude=held)
    assert {d["id"] for d in other} != {d["id"] for d in one}
    assert len(sample_documents(tmp_path / "a", ["encyclopedic", "news"], 100, seed=3, exclude=held)) == 35


def test_copy_rate_counts_the_output_ngrams_found_in_the_parent():
    assert copy_rate(PROSE, PROSE) == 1.0
    assert copy_rate("one two three four five six seven eight nine", PROSE) == 0.0
    half = " ".join(PROSE.split()[:12]) + " " + " ".join(f"w{i}" for i in range(12))
    assert 0.1 < copy_rate(half, PROSE) < 0.5
    assert copy_rate("too short", PROSE) is None


def test_a_model_that_cannot_generate_is_refused_naming_the_key(tmp_path):
    from transformers import LlamaConfig, LlamaForSequenceClassification
    with pytest.raises(RephraseError, match="rephrase.model: .* has no config.json"):
        check_model(tmp_path)
    cfg = LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                      num_attention_heads=2, num_labels=1, pad_token_id=0)
    LlamaForSequenceClassification(cfg).save_pretrained(tmp_path / "rm")
    with pytest.raises(RephraseError, match="LlamaForSequenceClassification\\), not a causal LM"):
        check_model(tmp_path / "rm")


def stage_params(model, **kw):
    return {"common": validate_section("common", {"seed": 5}),
            "rephrase": validate_section("rephrase", {"model": str(model), "documents": 6, "chunk_tokens": 16,
                                                      "max_chunks": 2, "max_new_tokens": 12, "batch_size": 4, **kw})}


@pytest.mark.parametrize("family", ["llama_chat", "qwen2_plain"])
def test_a_tiny_model_rewrites_the_sample_into_shards_with_their_lineage(tmp_path, family):
    if family == "llama_chat":
        tiny_chat_llama(tmp_path / "tok", tmp_path / "model")
    else:
        save_foreign(tmp_path / "model", texts=[PROSE])
    ids = write_docs(tmp_path / "dedup", "wiki", [f"entry {i}. " + PROSE * 2 for i in range(9)])
    write_docs(tmp_path / "val", "wiki", ["held out"] * 2, ids=ids[:2])   # the first two are held out
    # short wordings of the two styles: the tiny tokenizer spends a token per few characters
    p = stage_params(tmp_path / "model", prompts={"wiki": "As an encyclopedia: {text}", "qa": "As questions: {text}"})
    m = rephrase(p, tmp_path / "dedup", tmp_path / "val", tmp_path / "out")
    assert m["documents"] == 6 and m["held_out_excluded"] == 2 and m["generated_tokens"] > 0
    for style in ("wiki", "qa"):
        t = pq.read_table(tmp_path / "out" / f"rephrase_{style}" / "part-0000.parquet")
        assert t.schema == LINEAGE_SCHEMA and t.num_rows == 6
        rows = t.to_pylist()
        assert {r["source"] for r in rows} == {f"rephrase_{style}"} and {r["domain"] for r in rows} == {"rephrased"}
        assert {r["parent_id"] for r in rows} <= set(ids[2:]) and {r["style"] for r in rows} == {style}
        assert 0 <= m["styles"][style]["copy_rate"] <= 1 and m["styles"][style]["documents"] == 6
    lineage = json.loads((tmp_path / "out" / "lineage.json").read_text())
    assert lineage["model"]["model_type"] == ("llama" if family == "llama_chat" else "qwen2")
    assert lineage["format"] == ("chat" if family == "llama_chat" else "plain")   # auto: by the chat template
    assert len(lineage["model"]["weights_sha256"]) == 64 and set(lineage["prompts"]) == {"wiki", "qa"}
    first = {f.name: f.read_bytes() for f in (tmp_path / "out").rglob("*") if f.is_file()}
    rephrase(p, tmp_path / "dedup", tmp_path / "val", tmp_path / "out")
    assert first == {f.name: f.read_bytes() for f in (tmp_path / "out").rglob("*") if f.is_file()}


def test_a_chunk_the_model_cannot_hold_is_refused_before_any_work(tmp_path):
    tiny_chat_llama(tmp_path / "tok", tmp_path / "model")   # 128 positions
    write_docs(tmp_path / "dedup", "wiki", [PROSE])
    with pytest.raises(RephraseError, match="rephrase.chunk_tokens: 100 \\+ max_new_tokens 64 .* > the model's 128"):
        rephrase(stage_params(tmp_path / "model", chunk_tokens=100, max_new_tokens=64), tmp_path / "dedup",
                 tmp_path / "val", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_the_filter_reads_the_rewrites_beside_the_raw_sources_as_sources_of_their_own(tmp_path):
    write_docs(tmp_path / "raw", "wiki", [ARTICLE] * 3)
    write_docs(tmp_path / "syn", "rephrase_wiki", [ARTICLE, "x"], domain="rephrased")
    p = {"common": validate_section("common", {}),
         "filter": validate_section("filter", {"rules": {"langid": {"enabled": False}}})}
    tree, _ = filter_corpus(p, [tmp_path / "raw", tmp_path / "syn"], tmp_path / "kept", tmp_path / "rej")
    assert tree["sources"]["rephrase_wiki"]["documents_in"] == 2
    assert tree["sources"]["rephrase_wiki"]["documents_kept"] == 1    # the one-word rewrite is filtered out
    assert (tmp_path / "kept" / "rephrase_wiki").is_dir() and tree["sources"]["wiki"]["documents_in"] == 3
    write_docs(tmp_path / "syn", "wiki", [ARTICLE])
    with pytest.raises(FileNotFoundError, match="source\\(s\\) wiki appear in more than one"):
        filter_corpus(p, [tmp_path / "raw", tmp_path / "syn"], tmp_path / "kept", tmp_path / "rej")
