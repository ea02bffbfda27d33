"""The dedup stage: exact keys under each normalisation switch, keeper choice, clusters through
transitive pairs, a stage run on planted duplicates in a scratch project (outputs, metrics,
byte-identical reruns and worker counts), and one-line errors for bad params."""

from __future__ import annotations

import copy
import csv
import io
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import Project, tree_digest
from lmbuild.dedup import lsh
from lmbuild.dedup.clusters import Components, choose_keepers
from lmbuild.dedup.config import resolve
from lmbuild.dedup.exact import exact_keys
from lmbuild.dedup.normalize import DEFAULTS, normalize
from lmbuild.dedup.words import split_and_hash
from lmbuild.filter.run import KEPT_SCHEMA
from lmbuild.params import ParamsError, validate_section


def keys(texts: list[str], **switches) -> list[tuple[int, int]]:
    cfg = {**DEFAULTS, **switches}
    norm = normalize(pa.array(texts, pa.string()), cfg, collapse_whitespace=False)
    hi, lo = exact_keys(norm, split_and_hash(norm, 0), cfg["collapse_whitespace"], 0)
    return list(zip(hi.tolist(), lo.tolist()))


def groups(texts: list[str], **switches) -> list[set[str]]:
    """Texts grouped by exact key, as sets, for readable assertions."""
    out: dict = {}
    for text, key in zip(texts, keys(texts, **switches)):
        out.setdefault(key, set()).add(text)
    return sorted(out.values(), key=lambda g: sorted(g))


# ---------------------------------------------------------------- exact keys and normalisation

VARIANTS = ["hello world", "Hello, World!", "HELLO   WORLD", "hello\u00a0world\n", "hello-world"]


def test_default_normalisation_merges_case_punctuation_and_whitespace():
    assert groups(VARIANTS) == [{"hello world", "Hello, World!", "HELLO   WORLD", "hello\u00a0world\n"},
                                {"hello-world"}]  # the hyphen goes: "helloworld" is one word


def test_each_switch_can_be_turned_off():
    assert {"HELLO   WORLD"} in groups(VARIANTS, lowercase=False)
    assert {"Hello, World!"} in groups(VARIANTS, strip_punctuation=False)
    ws = groups(VARIANTS, collapse_whitespace=False)
    assert {"HELLO   WORLD"} in ws and {"hello\u00a0world\n"} in ws
    assert {"hello world", "Hello, World!"} in ws


def test_unicode_form():
    texts = ["caf\u00e9 \ufb01ne", "cafe\u0301 fine"]  # composed é + ligature; e + combining accent
    assert len(groups(texts)) == 2
    assert len(groups(texts, unicode_form="NFKC")) == 1


def test_word_based_key_equals_hashing_the_collapsed_text():
    rng = np.random.default_rng(4)
    pieces = ["a", "b", "A.", " ", "  ", "\t", "\n", "\u3000", "b!"]
    texts = ["".join(rng.choice(pieces, size=int(rng.integers(0, 8)))) for _ in range(400)]
    collapsed = normalize(pa.array(texts), DEFAULTS).to_pylist()
    by_key = keys(texts)
    for i in range(len(texts)):
        for j in range(i + 1, len(texts)):
            if collapsed[i] and collapsed[j]:
                assert (by_key[i] == by_key[j]) == (collapsed[i] == collapsed[j]), (texts[i], texts[j])


# ---------------------------------------------------------------- clusters and keepers

def test_keeper_priority_then_length_then_id():
    root = np.zeros(4, np.int64)
    length = np.array([10, 50, 50, 5])
    id_rank = np.array([3, 2, 1, 0])
    assert choose_keepers(root, np.zeros(4, np.int64), length, id_rank).tolist() == [2] * 4  # longest, then id
    assert choose_keepers(root, np.array([1, 1, 1, 0]), length, id_rank).tolist() == [3] * 4  # priority first
    two = choose_keepers(np.array([0, 0, 2, 2]), np.zeros(4, np.int64), np.array([1, 2, 3, 3]), np.array([0, 1, 3, 2]))
    assert two.tolist() == [1, 1, 3, 3]


def test_transitive_pairs_make_one_cluster():
    comps = Components(7)
    comps.merge(np.array([1]), np.array([0]))  # A~B (say, band 0)
    comps.merge(np.array([2]), np.array([1]))  # B~C (band 1)
    comps.merge(np.array([6]), np.array([5]))
    comps.merge(np.array([5, 4]), np.array([3, 5]))
    assert comps.root.tolist() == [0, 0, 0, 3, 3, 3, 3]
    comps.merge(np.array([6]), np.array([2]))  # joins the two clusters
    assert comps.root.tolist() == [0] * 7 and comps.sizes().tolist() == [7] * 7


def test_transitive_pairs_through_band_buckets():
    # A and B share band 0's key, B and C band 1's; A and C share no band
    keys = np.array([[1, 1, 7, 9], [2, 3, 3, 8]], np.uint64)
    comps = Components(4)
    for band in keys:
        u, v, _ = lsh.bucket_edges(*lsh.sort_band(band, np.arange(4)))
        comps.merge(u, v)
    assert comps.root.tolist() == [0, 0, 0, 3]


# ---------------------------------------------------------------- the stage in a scratch project

def vocabulary(rng: np.random.Generator, size: int = 4000) -> np.ndarray:
    letters = list("abcdefghijklmnopqrstuvwxyz")
    return np.array(["".join(rng.choice(letters, size=int(rng.integers(3, 9)))) for _ in range(size)])


def build_corpus(root: Path) -> dict:
    """Filtered shards of two sources with planted duplicates; returns the planted texts."""
    rng = np.random.default_rng(7)
    vocab = vocabulary(rng)

    def doc(words: int = 150) -> str:
        return " ".join(vocab[rng.integers(0, len(vocab), size=words)]).capitalize() + "."

    base = doc(300)
    words = base.split()
    near = " ".join(words[:150] + ["changed"] + words[151:])  # one word differs: J ~ 0.97
    planted = {
        "cross_exact_web": base.upper().replace(" ", " , "),  # longer, same normalised text
        "cross_exact_books": base,
        "near_a": near,
        "short_a": "Thanks for reading!",
        "short_b": "thanks for reading",
    }
    web0 = [doc() for _ in range(60)] + [planted["cross_exact_web"], "", "!!!", "   ", "Hello", planted["short_a"]]
    web1 = [doc() for _ in range(60)] + [planted["near_a"], "", "!!!"]
    books = [doc() for _ in range(40)] + [planted["cross_exact_books"], planted["short_b"], "Hello"]
    for source, name, texts in (("web", "part-00000-0000", web0), ("web", "part-00001-0000", web1),
                                ("books", "part-00000-0000", books), ("web", "part-00002-0000", [])):
        rows = [{"id": f"{source}-{name[5:10]}-{i:04d}", "text": t, "source": source, "domain": "test",
                 "url": None, "language": "en", "language_score": 0.9} for i, t in enumerate(texts)]
        path = root / "data" / "filtered" / source / f"{name}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pylist(rows, schema=KEPT_SCHEMA), path, compression="zstd")
    return planted


OUTPUTS = ("data/dedup", "data/dedup_removed", "metrics/dedup.json", "plots/dedup_cluster_sizes.csv",
           "reports/dedup_clusters.md")


def outputs(root: Path) -> dict[str, bytes]:
    out = {}
    for rel in OUTPUTS:
        p = root / rel
        if p.is_dir():
            out.update({f"{rel}/{k}": v for k, v in tree_digest(p).items()})
        else:
            out[rel] = p.read_bytes()
    return out


def dedup_project(root: Path, workers: int = 2, executor: str = "local") -> Project:
    project = Project(root)
    project.params["common"].update(workers=workers, executor=executor)
    project.params["dedup"] = {"source_priority": ["books"], "batch_rows": 16}
    project.write_params()
    return project


def run_dedup(project: Project) -> dict[str, bytes]:
    project.run("dedup")
    return outputs(project.root)


@pytest.fixture(scope="module")
def stage_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("dedup")
    planted = build_corpus(root)
    project = dedup_project(root)
    return root, planted, run_dedup(project), project


def read(root: Path, rel: str) -> list[dict]:
    return pq.read_table(root / rel).to_pylist()


def test_stage_outputs_mirror_the_input_shards(stage_run):
    root, _, files, _ = stage_run
    inputs = sorted(p.relative_to(root / "data/filtered") for p in (root / "data/filtered").rglob("*.parquet"))
    kept = sorted(p.relative_to(root / "data/dedup") for p in (root / "data/dedup").rglob("*.parquet"))
    assert kept == inputs  # one kept shard per input shard, same names (an empty one too)
    assert not list(root.glob("data/.*")) and not list((root / "data/dedup").glob(".*"))  # no working files left
    for rel in inputs:
        source = read(root, f"data/filtered/{rel}")
        kept_rows = read(root, f"data/dedup/{rel}")
        removed_path = root / "data/dedup_removed" / rel
        removed_rows = read(root, f"data/dedup_removed/{rel}") if removed_path.exists() else []
        ids = [r["id"] for r in source]
        assert sorted(r["id"] for r in kept_rows + removed_rows) == sorted(ids)
        assert [r["id"] for r in kept_rows] == [i for i in ids if i in {r["id"] for r in kept_rows}]  # same order
        assert all(r["dup_cluster_size"] >= 1 for r in kept_rows)
        assert all(r["dup_kind"] in ("exact", "near") and r["duplicate_of"] for r in removed_rows)
    schema = pq.read_schema(root / "data/dedup/web/part-00000-0000.parquet")
    assert schema.names == KEPT_SCHEMA.names + ["dup_cluster_size"]
    assert schema.field("dup_cluster_size").type == pa.int32()
    removed_schema = pq.read_schema(root / "data/dedup_removed/web/part-00000-0000.parquet")
    assert removed_schema.names == KEPT_SCHEMA.names + ["duplicate_of", "dup_kind"]


def test_planted_duplicates_are_found(stage_run):
    root, planted, _, _ = stage_run
    kept = {r["text"]: r for p in (root / "data/dedup").rglob("*.parquet") for r in pq.read_table(p).to_pylist()}
    removed = {r["text"]: r for p in (root / "data/dedup_removed").rglob("*.parquet")
               for r in pq.read_table(p).to_pylist()}
    # cross-source exact duplicate: books wins by source_priority although the web copy is longer
    keeper = kept[planted["cross_exact_books"]]
    assert removed[planted["cross_exact_web"]]["duplicate_of"] == keeper["id"]
    assert removed[planted["cross_exact_web"]]["dup_kind"] == "exact"
    # the one-word-changed copy is a near duplicate of the same cluster (transitively or directly)
    assert removed[planted["near_a"]]["dup_kind"] == "near"
    assert removed[planted["near_a"]]["duplicate_of"] == keeper["id"]
    assert keeper["dup_cluster_size"] == 3
    # shorter than n words: the whole text is the shingle; normalisation makes these exact
    assert removed[planted["short_a"]]["dup_kind"] == "exact"
    assert removed["Hello"]["source"] == "web" and kept["Hello"]["source"] == "books"
    # documents with no word after normalisation are never duplicates of each other
    assert "" not in removed and "!!!" not in removed and "   " not in removed
    empties = [r for p in (root / "data/dedup").rglob("*.parquet") for r in pq.read_table(p).to_pylist()
               if not r["text"].strip("! ")]
    assert len(empties) == 5 and all(r["dup_cluster_size"] == 1 for r in empties)


def test_metrics_plot_and_report(stage_run):
    root, _, files, _ = stage_run
    m = json.loads(files["metrics/dedup.json"])
    for key in ("documents_in", "documents_kept", "exact_duplicate_rate", "near_duplicate_rate", "clusters",
                "largest_cluster", "cross_source_duplicates", "lsh.candidate_pairs", "lsh.bands", "lsh.rows",
                "sources.web.exact_duplicate_rate", "sources.books.near_duplicate_rate", "documents_without_words"):
        assert isinstance(m[key], (int, float)), key
    assert m["documents_in"] == 66 + 63 + 43
    assert m["exact_duplicates"] == 3 and m["near_duplicates"] == 1
    assert m["documents_kept"] == m["documents_in"] - 4 and m["cross_source_duplicates"] == 4
    assert m["largest_cluster"] == 3 and m["documents_without_words"] == 5
    rows = list(csv.DictReader(io.StringIO(files["plots/dedup_cluster_sizes.csv"].decode())))
    assert rows[0].keys() == {"size", "clusters"}
    assert sum(int(r["size"]) * int(r["clusters"]) for r in rows) == m["documents_in"]
    report = files["reports/dedup_clusters.md"].decode()
    assert "# Duplicate clusters" in report and "**kept**" in report and "removed, exact" in report


def test_reruns_and_worker_counts_give_identical_bytes(stage_run, tmp_path):
    _, _, first, project = stage_run
    assert run_dedup(project) == first  # same directory, second run over the first one's outputs
    build_corpus(tmp_path)
    assert run_dedup(dedup_project(tmp_path, workers=1)) == first


@pytest.mark.slow
def test_dask_executor_gives_the_same_bytes(stage_run, tmp_path):
    pytest.importorskip("distributed")
    _, _, first, _ = stage_run
    build_corpus(tmp_path)
    assert run_dedup(dedup_project(tmp_path, executor="dask")) == first


# ---------------------------------------------------------------- params

def resolved(**dedup):
    return resolve({"common": validate_section("common", {}), "dedup": validate_section("dedup", dedup)})


def test_empty_section_gets_the_defaults():
    cfg = resolved()
    assert (cfg.ngram, cfg.bands, cfg.rows, cfg.num_perm, cfg.seed) == (5, 20, 12, 240, 1234)
    assert cfg.exact and cfg.near and cfg.normalize == DEFAULTS


def test_threshold_derives_bands_and_rows():
    cfg = resolved(minhash={"threshold": 0.8, "bands": None, "rows": None})
    assert cfg.bands * cfg.rows <= 240 and abs(lsh.threshold(cfg.bands, cfg.rows) - 0.8) < 0.06


@pytest.mark.parametrize("dedup,expected", [
    ({"minhash": {"bands": 20, "rows": 13}},
     "dedup.minhash.num_perm: must equal bands x rows = 20 x 13 = 260, got 240"),
    ({"minhash": {"threshold": 0.8}}, "dedup.minhash.threshold: derives bands and rows, so set both to null"),
    ({"minhash": {"bands": None}}, "dedup.minhash: needs bands and rows, or a threshold"),
    ({"source_priority": ["a", "b", "a"]}, "dedup.source_priority: must not repeat a source, got ['a']"),
])
def test_cross_key_problems_are_one_line_each(dedup, expected):
    with pytest.raises(ParamsError) as exc:
        resolved(**dedup)
    assert len(exc.value.problems) == 1 and expected in exc.value.problems[0]


def test_bad_params_stop_the_stage_before_any_work(tmp_path):
    project = Project(tmp_path)
    params = copy.deepcopy(project.params)
    params["dedup"] = {"batch_rows": 0, "minhash": {"ngram": "five", "typo": 1}}
    project.write_params(params)
    proc = project.run("dedup", check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    for line in ("params.yaml: dedup.batch_rows: must be >= 1, got 0",
                 "params.yaml: dedup.minhash.ngram: must be of type integer",
                 "params.yaml: dedup.minhash.typo: unknown key"):
        assert line in proc.stderr
    params["dedup"] = {"minhash": {"rows": 13}}
    project.write_params(params)
    proc = project.run("dedup", check=False)
    assert proc.returncode == 2 and "params.yaml: dedup.minhash.num_perm: must equal bands x rows" in proc.stderr
    assert not (tmp_path / "data").exists() and not (tmp_path / "metrics").exists()


@pytest.mark.parametrize("exact,near,removed", [(True, False, 3), (False, True, 4), (False, False, 0)])
def test_exact_and_near_can_be_switched_off(tmp_path, exact, near, removed):
    from lmbuild.dedup.run import dedup_corpus

    build_corpus(tmp_path)
    # paragraph dedup off: with exact off, it would cut the cross-source exact copy (one paragraph)
    cfg = resolved(exact={"enabled": exact}, minhash={"enabled": near}, source_priority=["books"],
                   paragraphs={"enabled": False})
    metrics, _, _ = dedup_corpus(cfg, {"workers": 1}, tmp_path / "data/filtered", tmp_path / "kept",
                                 tmp_path / "removed")
    assert metrics["documents_removed"] == removed
    assert metrics["near_duplicates"] == (1 if near else 0)


def test_empty_shards_give_empty_outputs(tmp_path):
    from lmbuild.dedup.run import dedup_corpus

    path = tmp_path / "in" / "web" / "part-00000-0000.parquet"
    path.parent.mkdir(parents=True)
    pq.write_table(KEPT_SCHEMA.empty_table(), path)
    metrics, histogram, report = dedup_corpus(resolved(), {"workers": 1}, tmp_path / "in", tmp_path / "kept",
                                              tmp_path / "removed")
    assert pq.read_table(tmp_path / "kept" / "web" / "part-00000-0000.parquet").num_rows == 0
    assert metrics["documents_in"] == 0 and histogram == [] and "No duplicates found." in report


def test_missing_input_is_one_line(tmp_path):
    project = Project(tmp_path)
    project.params["dedup"] = {}
    proc = project.run("dedup", check=False)
    assert proc.returncode == 2 and "run the filter stage first" in proc.stderr and "Traceback" not in proc.stderr


def test_source_priority_naming_absent_sources_is_warned(tmp_path, stage_run):
    import shutil
    root, _, _, _ = stage_run
    shutil.copytree(root / "data/filtered", tmp_path / "data/filtered")
    project = dedup_project(tmp_path)
    project.params["dedup"]["source_priority"] = ["books", "bookz"]
    project.write_params()
    p = project.run("dedup")
    assert "dedup.source_priority names source(s) not in the corpus: bookz" in p.stderr, p.stderr
    metrics = json.loads((tmp_path / "metrics/dedup.json").read_text())
    assert metrics["source_priority_unknown"] == 1
