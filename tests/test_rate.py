"""The rate stage: shared text preparation, each rater kind on synthetic corpora where the right
answer is known, and the stage in a scratch project (outputs, metrics, byte-identical reruns
across worker counts, one-line errors for bad params and too little training data)."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from scipy.stats import spearmanr

from conftest import Project, tree_digest
from lmbuild.params import ParamsError, validate_section
from lmbuild.rate import bradley_terry, config, hf_classifier, run, text

# ------------------------------------------------------------------ synthetic corpora

GOOD = ("the history of science shows how careful observation and measurement lead to theories that "
        "explain natural phenomena such as light heat motion and the structure of matter while later "
        "experiments refine earlier models and reveal their limits in physics chemistry biology").split()
BAD = ("click here now to win free prizes lol omg best cheap deals buy today subscribe follow like "
       "share amazing crazy viral hot offer limited discount promo winner unbelievable").split()
SCHEMA = pa.schema([("id", pa.string()), ("text", pa.string()), ("source", pa.string()), ("domain", pa.string()),
                    ("url", pa.string()), ("language", pa.string()), ("language_score", pa.float32()),
                    ("dup_cluster_size", pa.int32())])


def doc(rng: np.random.Generator, quality: float, n_words: int = 60) -> str:
    """Words from GOOD with probability `quality`, else from BAD; sentences and lines."""
    good = rng.random(n_words) < quality
    words = np.where(good, rng.choice(GOOD, n_words), rng.choice(BAD, n_words))
    sentences = [" ".join(words[i:i + 12]).capitalize() + "." for i in range(0, n_words, 12)]
    return "\n".join(sentences)


def write_shard(path: Path, source: str, texts: list[str], start: int = 0) -> list[str]:
    ids = [f"{source}-{start + i:05d}" for i in range(len(texts))]
    n = len(texts)
    table = pa.table({"id": ids, "text": texts, "source": [source] * n, "domain": ["web"] * n,
                      "url": [None if i % 3 else f"https://example.org/{source}/{i}" for i in range(n)],
                      "language": ["en"] * n, "language_score": pa.array(np.linspace(0.7, 1, n), pa.float32()),
                      "dup_cluster_size": pa.array(np.arange(n) % 3 + 1, pa.int32())}, schema=SCHEMA)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path, row_group_size=50)
    return ids


def make_pool(root: Path, seed: int = 0) -> dict[str, float]:
    """data/dedup with a reference source (good), a web source over two shards (half good-like,
    half spam) and a forum source (spam, one empty document). Returns the hidden quality per id."""
    rng = np.random.default_rng(seed)
    quality = {}
    parts = [("ref", "x.parquet", [0.95] * 80), ("web", "a.parquet", list(rng.random(90))),
             ("web", "b.parquet", list(rng.random(70))), ("forum", "x.parquet", [0.05] * 60)]
    start = {}
    for source, name, qs in parts:
        texts = [doc(rng, q) for q in qs]
        if source == "forum":
            texts[7] = "  \n "
        ids = write_shard(root / "data" / "dedup" / source / name, source, texts, start.get(source, 0))
        start[source] = start.get(source, 0) + len(texts)
        quality.update(zip(ids, qs))
    return quality


def write_judgments(path: Path, quality: dict[str, float], n: int = 1500, seed: int = 1) -> None:
    """Judgments between random pairs: P(b better) = sigmoid(4 (q_b - q_a)); plus three naming an
    unknown id and two invalid lines."""
    rng = np.random.default_rng(seed)
    ids = sorted(quality)
    lines = []
    for _ in range(n):
        a, b = rng.choice(len(ids), 2, replace=False)
        p = 1 / (1 + np.exp(-4 * (quality[ids[b]] - quality[ids[a]])))
        lines.append(json.dumps({"doc_a": ids[a], "doc_b": ids[b], "p_b_better": round(float(p), 4)}))
    lines += [json.dumps({"doc_a": "nope", "doc_b": ids[0], "p_b_better": 0.9})] * 3
    lines += ["not json", json.dumps({"doc_a": ids[0], "doc_b": ids[1], "p_b_better": 3})]
    path.write_text("\n".join(lines) + "\n")


FASTTEXT = {"name": "ft", "kind": "fasttext", "positive_sources": ["ref"], "epochs": 25, "lr": 0.5, "dim": 16,
            "bucket": 5000, "heldout_fraction": 0.2, "lowercase": True, "split_punctuation": True}
BT = {"name": "bt", "kind": "bradley_terry", "judgments": "judgments.jsonl", "min_df": 1}


def stage_params(*raters: dict, workers: int = 2) -> dict:
    return {"common": {"seed": 1234, "workers": workers, "executor": "local"},
            "rate": {"batch_rows": 64, "histogram_bins": 10, "raters": [copy.deepcopy(r) for r in raters]}}


def normalised(params: dict) -> dict:
    return {"common": validate_section("common", params["common"]), "rate": validate_section("rate", params["rate"])}


def rate_in_process(root: Path, params: dict, monkeypatch) -> tuple[dict, list[dict]]:
    monkeypatch.chdir(root)
    monkeypatch.setenv("LMBUILD_NO_PROGRESS", "1")
    metrics, rows, _ = run.rate_corpus(normalised(params), Path("data/dedup"), Path("data/rated"),
                                       Path("models/raters"))
    return metrics, rows


def rated_scores(root: Path, rater: str) -> dict[str, float]:
    table = pa.concat_tables(pq.read_table(p) for p in sorted((root / "data" / "rated").glob("*/*.parquet")))
    return dict(zip(table["id"].to_pylist(), table[f"quality_{rater}"].to_pylist()))


# ------------------------------------------------------------------ text preparation

@pytest.mark.parametrize("lowercase", [False, True])
@pytest.mark.parametrize("split", [False, True])
def test_prepare_matches_the_python_reference(lowercase, split):
    texts = ["Hello,\n\tWorld!  (again)", "", "   ", "a\u2028b\x0bc\x1cd\u00a0e", "Ünïcödé Straße. x-y_z",
             "line one\r\nline two", "__label__hq spam", "x" * 50 + " tail", None]
    got = text.prepare(pa.array(texts, pa.string()), 40, lowercase, split).to_pylist()
    for t, g in zip(texts, got):
        s = (t or "")[:40]
        s = s.lower() if lowercase else s
        s = re.sub(text.PUNCT, r" \g<0> ", s) if split else s
        assert g == " ".join(s.split()), t
    assert list(text.is_empty(pa.array(got))) == [g == "" for g in got]
    assert list(text.is_blank(pa.array(texts))) == [not (t or "").strip() for t in texts]


# ------------------------------------------------------------------ fasttext

def test_fasttext_separates_planted_documents_and_is_reproducible(tmp_path, monkeypatch):
    quality = make_pool(tmp_path)
    rater = dict(FASTTEXT, max_negatives=80)  # balanced classes, as in DCLM: chance is 0.5
    metrics, _ = rate_in_process(tmp_path, stage_params(rater), monkeypatch)
    ft = metrics["raters"]["ft"]
    assert ft["train_positives"] + ft["heldout_positives"] == 80 and ft["heldout_negatives"] == 16
    assert ft["pool_negatives"] == 220 and ft["train_negatives"] == 64  # exactly max_negatives sampled
    # the negatives include the planted good web documents, so held-out accuracy cannot be 1
    assert ft["heldout_accuracy"] >= 0.8 and ft["heldout_auc"] >= 0.85
    # planted good documents of the negative sources score above the spam ones
    scores = rated_scores(tmp_path, "ft")
    web = [i for i in scores if i.startswith("web")]
    good = [scores[i] for i in web if quality[i] > 0.8]
    bad = [scores[i] for i in web if quality[i] < 0.2]
    assert np.median(good) > 0.5 > np.median(bad)
    assert spearmanr([scores[i] for i in web], [quality[i] for i in web])[0] > 0.6
    assert scores["forum-00007"] == 0.0  # no words: empty_score, 0.0 by default

    # a second training from the same sample gives the same model file, byte for byte
    model = tmp_path / "models" / "raters" / "ft" / "model.bin"
    first = model.read_bytes()
    info = json.loads((model.parent / "rater.json").read_text())
    assert info["trained_on"]["positive_sources"] == ["ref"] and info["fasttext"]["thread"] == 1
    rate_in_process(tmp_path, stage_params(rater), monkeypatch)
    assert model.read_bytes() == first


def test_fasttext_positives_from_files(tmp_path, monkeypatch):
    make_pool(tmp_path)
    rng = np.random.default_rng(5)
    (tmp_path / "refs").mkdir()
    for i in range(15):
        (tmp_path / "refs" / f"{i}.txt").write_text(doc(rng, 0.95))
    lines = [json.dumps({"body": doc(rng, 0.95)}) for _ in range(20)] + ["{bad json", json.dumps({"text": "x"})]
    (tmp_path / "refs" / "more.jsonl").write_text("\n".join(lines) + "\n")
    rater = dict(FASTTEXT, positive_sources=[], positive_files=["refs/*.txt", "refs/*.jsonl"], text_field="body")
    metrics, _ = rate_in_process(tmp_path, stage_params(rater), monkeypatch)
    ft = metrics["raters"]["ft"]
    assert ft["file_positives"] == 35 and ft["file_records_invalid"] == 2
    assert ft["pool_positives"] == 0 and ft["pool_negatives"] == 300
    assert ft["heldout_accuracy"] > 0.5


def test_a_second_run_in_the_same_process_scores_with_the_new_model(tmp_path, monkeypatch):
    make_pool(tmp_path)
    params = stage_params(dict(FASTTEXT, max_negatives=80), workers=1)  # in-process: caches live on
    rate_in_process(tmp_path, params, monkeypatch)
    assert np.mean([v for k, v in rated_scores(tmp_path, "ft").items() if k.startswith("forum")]) < 0.2
    # same params, new data: the reference source now holds spam, so spam is "high quality"
    rng = np.random.default_rng(9)
    write_shard(tmp_path / "data" / "dedup" / "ref" / "x.parquet", "ref", [doc(rng, 0.05) for _ in range(80)])
    rate_in_process(tmp_path, params, monkeypatch)
    assert np.mean([v for k, v in rated_scores(tmp_path, "ft").items() if k.startswith("forum")]) > 0.4


# ------------------------------------------------------------------ Bradley-Terry

def test_bradley_terry_fit_recovers_a_known_order():
    rng = np.random.default_rng(0)
    truth = rng.normal(0, 1.5, 60)
    a = rng.integers(0, 60, 3000)
    b = (a + rng.integers(1, 60, 3000)) % 60
    p = 1 / (1 + np.exp(-(truth[b] - truth[a])))
    ratings = bradley_terry.fit_ratings(a, b, p, 60, l2=0.01)
    assert spearmanr(ratings, truth)[0] > 0.97
    assert abs(np.std(ratings) / np.std(truth) - 1) < 0.15  # soft labels: the scale is recovered too
    # hard labels where one document wins everything stay finite thanks to the prior
    r = bradley_terry.fit_ratings(np.zeros(20, int), np.ones(20, int), np.ones(20), 2, l2=0.01)
    assert np.all(np.isfinite(r)) and r[1] > r[0]


def test_bradley_terry_rater_predicts_quality_from_text(tmp_path, monkeypatch):
    quality = make_pool(tmp_path)
    write_judgments(tmp_path / "judgments.jsonl", quality, n=1200)
    metrics, _ = rate_in_process(tmp_path, stage_params(BT), monkeypatch)
    bt = metrics["raters"]["bt"]
    assert bt["judgments_unknown_ids"] == 3 and bt["judgments_invalid"] == 2
    assert bt["train_judgments"] + bt["heldout_judgments"] == 1200
    assert bt["heldout_agreement"] > 0.75 and bt["heldout_agreement_fitted"] > 0.75
    scores = rated_scores(tmp_path, "bt")
    ids = sorted(scores)
    assert spearmanr([scores[i] for i in ids], [quality[i] for i in ids])[0] > 0.8
    fitted = pq.read_table(tmp_path / "models" / "raters" / "bt" / bradley_terry.RATINGS_FILE)
    assert fitted.num_rows == bt["documents_fitted"]
    info = json.loads((tmp_path / "models" / "raters" / "bt" / "rater.json").read_text())
    assert scores["forum-00007"] == pytest.approx(info["empty_score"])  # no words: lowest training score


# ------------------------------------------------------------------ Hugging Face classifier

@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    """A word-level tokenizer and two tiny BERT classifiers (2 labels; 1 regression output)."""
    torch = pytest.importorskip("torch")
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import BertConfig, BertForSequenceClassification, PreTrainedTokenizerFast

    root = tmp_path_factory.mktemp("hf")
    vocab = {t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", *dict.fromkeys(GOOD + BAD)])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]",
                                                       special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]",
                                   cls_token="[CLS]", sep_token="[SEP]")
    out = {}
    for name, labels in (("labels", {0: "low", 1: "high"}), ("regression", {0: "score"})):
        torch.manual_seed(0)
        cfg = BertConfig(vocab_size=len(vocab), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=32, max_position_embeddings=64, num_labels=len(labels),
                         id2label=labels, label2id={v: k for k, v in labels.items()})
        model = BertForSequenceClassification(cfg)
        with torch.no_grad():
            for p in model.parameters():
                p.normal_(0, 0.5)
        model.save_pretrained(root / name)
        fast.save_pretrained(root / name)
        out[name] = root / name
    return out


def _by_hand(model_dir: Path, texts: list[str], label: str | None, max_length: int) -> np.ndarray:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    out = []
    with torch.no_grad():
        for t in texts:  # one at a time: no padding at all
            logits = model(**tok(t, truncation=True, max_length=max_length, return_tensors="pt")).logits[0]
            out.append(float(logits[0]) if label is None else float(torch.softmax(logits, -1)[model.config.label2id[label]]))
    return np.array(out)


@pytest.mark.parametrize("kind,label", [("labels", "high"), ("regression", None)])
def test_hf_classifier_scores_equal_running_the_model_by_hand(tiny_models, kind, label):
    rng = np.random.default_rng(3)
    texts = [doc(rng, q, n_words=int(n)) for q, n in zip(rng.random(23), rng.integers(3, 80, 23))] + ["", "  "]
    rater = config._validate_rater(0, {"name": "edu", "kind": "hf_classifier", "model": str(tiny_models[kind]),
                                       "label": label, "max_length": 32, "batch_size": 4},
                                   config.load_spec("rate")[1], "params.yaml")[0]
    scores, blank = hf_classifier.Scorer(rater, "unused").score(pa.array(texts))
    assert scores.dtype == np.float32 and list(blank) == [False] * 23 + [True, True]
    np.testing.assert_allclose(scores, _by_hand(tiny_models[kind], texts, label, 32), atol=2e-5)
    assert np.ptp(scores[:23]) > 1e-3  # the model really looks at the text
    assert config._check_hf(rater, "x") == []
    wrong = dict(rater, label="nope" if label else None)
    if kind == "labels":
        assert "must be one of the model's labels" in config._check_hf(dict(rater, label="nope"), "x")[0]
        assert "name the label to score" in config._check_hf(dict(rater, label=None), "x")[0]
    else:
        assert config._check_hf(wrong, "x") == []


# ------------------------------------------------------------------ the stage

def stage_digest(root: Path) -> dict[str, bytes]:
    out = {}
    for rel in ("data/rated", "models/raters"):
        out.update({f"{rel}/{k}": v for k, v in tree_digest(root / rel).items()})
    for rel in ("metrics/rate.json", "plots/rate_scores.csv"):
        out[rel] = (root / rel).read_bytes()
    return out


def scratch(root: Path, params: dict) -> Project:
    quality = make_pool(root)
    write_judgments(root / "judgments.jsonl", quality, n=400)
    project = Project(root)
    project.write_params(params)
    return project


def test_stage_outputs_and_byte_identical_reruns(tmp_path):
    sampled = dict(FASTTEXT, max_negatives=100)  # 100 of 220: the sampling rate is below 1
    project = scratch(tmp_path / "a", stage_params(sampled, BT, workers=2))
    proc = project.run("rate")
    assert re.search(r"rate: scored 300 documents with 2 rater\(s\) in .* docs/s", proc.stderr), proc.stderr
    first = stage_digest(project.root)

    # every input column and row passes through, in order, with one float32 column per rater
    for path in sorted((project.root / "data" / "dedup").glob("*/*.parquet")):
        src = pq.read_table(path)
        out = pq.read_table(project.root / "data" / "rated" / path.parent.name / path.name)
        assert out.schema.names == SCHEMA.names + ["quality_ft", "quality_bt"]
        assert out.schema.field("quality_ft").type == pa.float32()
        assert out.select(SCHEMA.names).equals(src)
    assert sorted(p.name for p in (project.root / "models" / "raters" / "ft").iterdir()) == ["model.bin", "rater.json"]
    assert sorted(p.name for p in (project.root / "models" / "raters" / "bt").iterdir()) == [
        "features.parquet", "rater.json", "ratings.parquet"]

    metrics = json.loads(first["metrics/rate.json"])
    for key in ("raters.ft.heldout_accuracy", "raters.ft.train_positives", "raters.ft.train_negatives",
                "raters.bt.heldout_agreement", "raters.bt.train_judgments", "raters.bt.judgments_unknown_ids",
                "raters.ft.sources.web.mean", "raters.ft.sources.web.p10", "raters.ft.sources.web.p50",
                "raters.ft.sources.web.p90", "raters.bt.sources.forum.p90", "raters.bt.score.mean", "documents"):
        assert isinstance(metrics[key], (int, float)), key
    assert metrics["documents"] == 300 and metrics["raters.ft.sources.forum.empty_documents"] == 1
    assert metrics["raters.ft.sources.ref.p50"] > metrics["raters.ft.sources.forum.p50"]
    plot = first["plots/rate_scores.csv"].decode().splitlines()
    assert plot[0] == "rater,source,bin_low,bin_high,documents"
    assert len(plot) == 1 + 2 * 3 * 10
    web_ft = [r.split(",") for r in plot[1:] if r.startswith("ft,web,")]
    assert sum(int(r[4]) for r in web_ft) == 160 and web_ft[0][2:4] == ["0.0", "0.1"]

    assert not list(project.root.glob("data/.*.tmp")) and not list(project.root.glob("models/.*.tmp"))
    project.run("rate")
    assert stage_digest(project.root) == first
    assert metrics["raters.ft.train_negatives"] + metrics["raters.ft.heldout_negatives"] == 100
    project.write_params(stage_params(sampled, BT, workers=1))
    project.run("rate")
    assert stage_digest(project.root) == first


BAD_PARAMS = [
    ("unknown kind", lambda r: r[0].update(kind="kenlm"), "rate.raters[0].kind: must be one of"),
    ("per-kind range", lambda r: r[0].update(epochs=0), "rate.raters[0].epochs: must be >= 1, got 0"),
    ("per-kind type", lambda r: r[1].update(l2="lots"), "rate.raters[1].l2: must be of type number"),
    ("key of another kind", lambda r: r[1].update(epochs=3), "rate.raters[1].epochs: unknown key (typo?)"),
    ("duplicate names", lambda r: r[1].update(name="ft"), "rate.raters[1].name: must be unique"),
    ("missing judgments", lambda r: r[1].update(judgments="nope.jsonl"), "rate.raters[1].judgments: no file"),
    ("unknown source", lambda r: r[0].update(positive_sources=["reff"]),
     "rate.raters[0].positive_sources: no source 'reff'"),
    ("no positives", lambda r: r[0].update(positive_sources=[]), "rate.raters[0].positive_sources: a fasttext rater"),
    ("too few positives", lambda r: r[0].update(min_positives=500), "rate.raters[0].min_positives: rater 'ft' found 80"),
    ("too few judgments", lambda r: r[1].update(min_judgments=5000), "rate.raters[1].min_judgments: rater 'bt' has"),
    ("missing model", lambda r: r.append({"name": "edu", "kind": "hf_classifier", "model": "no/such/dir"}),
     "rate.raters[2].model: no Hugging Face model directory"),
]


@pytest.mark.parametrize("what,mutate,expected", BAD_PARAMS, ids=[b[0] for b in BAD_PARAMS])
def test_bad_params_stop_the_stage_with_one_line(tmp_path, what, mutate, expected):
    params = stage_params(FASTTEXT, BT)
    mutate(params["rate"]["raters"])
    project = scratch(tmp_path, params)
    proc = project.run("rate", check=False)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    problems = [line for line in lines if line.startswith("params.yaml: ")]
    assert len(problems) == 1 and expected in problems[0], proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (project.root / "data" / "rated").exists() and not (project.root / "metrics").exists()
    assert not (project.root / "models").exists() and not list(project.root.glob("data/.*.tmp"))


def test_spec_has_a_numeric_top_level_key_and_rejects_unknown_kinds():
    assert validate_section("rate", {"raters": [{"name": "a", "kind": "fasttext"}]})["batch_rows"] == 2048
    with pytest.raises(ParamsError) as exc:
        validate_section("rate", {"batch_rows": 0, "raters": [{"name": "A b", "kind": "nope"}]})
    text_ = str(exc.value)
    assert "rate.batch_rows: must be >= 1, got 0" in text_
    assert "rate.raters[0].kind: must be one of" in text_ and "rate.raters[0].name: must match" in text_


def test_every_kind_fills_its_defaults(tmp_path):
    (tmp_path / "j.jsonl").write_text("")
    params = {"common": {"seed": 7}, "rate": {"raters": [
        {"name": "a", "kind": "fasttext", "positive_sources": ["x"]},
        {"name": "b", "kind": "bradley_terry", "judgments": str(tmp_path / "j.jsonl")}]}}
    a, b = config.check_raters(params)
    assert a["epochs"] == 5 and a["word_ngrams"] == 2 and a["seed"] == 7 and a["empty_score"] is None
    assert b["l2"] == 0.01 and b["ngrams"] == 2 and b["seed"] == 7


@pytest.mark.slow
def test_stage_with_every_kind_is_byte_identical_across_worker_counts(tmp_path, tiny_models):
    hf = {"name": "edu", "kind": "hf_classifier", "model": str(tiny_models["labels"]), "label": "high",
          "max_length": 32, "batch_size": 8}
    project = scratch(tmp_path, stage_params(FASTTEXT, BT, hf, workers=2))
    project.run("rate")
    first = stage_digest(project.root)
    info = json.loads(first["models/raters/edu/rater.json"])
    assert "model.safetensors" in info["files_sha256"]
    project.write_params(stage_params(FASTTEXT, BT, hf, workers=1))
    project.run("rate")
    assert stage_digest(project.root) == first
    out = pq.read_table(project.root / "data" / "rated" / "web" / "a.parquet")
    assert out.schema.names[-3:] == ["quality_ft", "quality_bt", "quality_edu"]
