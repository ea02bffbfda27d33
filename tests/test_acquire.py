"""acquire: every source kind reads into document shards; every bad record is quarantined with
its reason and no good record is lost."""

from __future__ import annotations

import gzip
import io
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard

from lmbuild.shards import DOC_SCHEMA, doc_id

GOOD = ["The first good document.", "Second good one, with unicode: café, Привет, 東京.", "Third."]


def read_dir(path):
    files = sorted(path.glob("*/*.parquet"))
    return pa.concat_tables([pq.read_table(f) for f in files]) if files else None


def write_mixed_jsonl(path):
    lines = [json.dumps({"text": GOOD[0], "url": "https://example.org/a"}).encode(),
             b'{"text": "unterminated',                       # malformed JSON
             json.dumps({"text": 42}).encode(),                # wrong field type
             json.dumps({"body": "no text field"}).encode(),   # missing field
             json.dumps([1, 2]).encode(),                      # not an object
             b'{"text": "caf\xe9 latin-1 bytes"}',             # invalid UTF-8
             json.dumps({"text": GOOD[1]}, ensure_ascii=False).encode(),
             json.dumps({"text": "   \n\t "}).encode(),        # empty text
             json.dumps({"text": "x" * 500}).encode(),         # over max_chars
             json.dumps({"text": "nul\u0000inside"}).encode(),  # binary content
             b"",                                              # blank line: not a record
             json.dumps({"text": GOOD[2]}).encode()]
    path.write_bytes(b"\n".join(lines) + b"\n")


def test_mixed_good_and_bad_records(project):
    src = project.root / "in"
    src.mkdir()
    write_mixed_jsonl(src / "mixed.jsonl")
    (src / "docs").mkdir()
    (src / "docs" / "a.txt").write_text("A plain text file is one document.")
    (src / "docs" / "b.bin").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00binary")
    (src / "docs" / "c.txt").write_bytes(b"\xff\xfe not utf-8")
    project.params["acquire"] = {"max_chars": 100, "shard_mb": 1, "sources": [
        {"name": "mixed", "kind": "jsonl", "domain": "web", "paths": ["in/mixed.jsonl"], "url_field": "url"},
        {"name": "files", "kind": "text", "domain": "web", "paths": ["in/docs/*"]},
    ]}
    project.run("acquire")
    docs = read_dir(project.root / "data" / "raw")
    assert docs.schema.equals(DOC_SCHEMA)
    by_source = {s: sorted(t for t, src_ in zip(docs["text"].to_pylist(), docs["source"].to_pylist()) if src_ == s)
                 for s in ("mixed", "files")}
    assert by_source["mixed"] == sorted(GOOD)
    assert by_source["files"] == ["A plain text file is one document."]
    urls = dict(zip(docs["text"].to_pylist(), docs["url"].to_pylist()))
    assert urls[GOOD[0]] == "https://example.org/a" and urls[GOOD[1]] is None

    bad = read_dir(project.root / "data" / "raw_quarantine").to_pylist()
    reasons = sorted((r["source"], r["location"].rsplit("/", 1)[-1], r["reason"]) for r in bad)
    assert reasons == sorted([
        ("mixed", "mixed.jsonl:2", "malformed_record"),
        ("mixed", "mixed.jsonl:3", "wrong_type"),
        ("mixed", "mixed.jsonl:4", "malformed_record"),
        ("mixed", "mixed.jsonl:5", "malformed_record"),
        ("mixed", "mixed.jsonl:6", "invalid_utf8"),
        ("mixed", "mixed.jsonl:8", "empty_text"),
        ("mixed", "mixed.jsonl:9", "too_long"),
        ("mixed", "mixed.jsonl:10", "binary"),
        ("files", "b.bin", "binary"),
        ("files", "c.txt", "invalid_utf8"),
    ])
    assert all(r["raw"] is not None for r in bad if r["reason"] not in ("malformed_record",) or "unterminated" in str(r["raw"]))

    metrics = json.loads((project.root / "metrics" / "acquire.json").read_text())
    assert metrics["documents"] == 4 and metrics["quarantined"] == 10
    assert metrics["sources.mixed.quarantined.malformed_record"] == 3
    manifest = json.loads((project.root / "data" / "raw" / "manifest.json").read_text())
    assert manifest["sources"]["mixed"]["documents"] == 3
    assert manifest["sources"]["mixed"]["bytes"] == sum(len(t.encode()) for t in GOOD)
    assert manifest["sources"]["files"]["licence"] == "unknown"


def test_jsonl_compressed_parquet_and_ids(project):
    src = project.root / "in"
    src.mkdir()
    rows = [{"content": f"document number {i}"} for i in range(5)]
    payload = "".join(json.dumps(r) + "\n" for r in rows).encode()
    (src / "a.jsonl.gz").write_bytes(gzip.compress(payload))
    (src / "b.jsonl.zst").write_bytes(zstandard.ZstdCompressor().compress(payload))
    pq.write_table(pa.table({"body": [r["content"] for r in rows], "link": [f"https://x/{i}" for i in range(5)]}),
                   src / "c.parquet")
    project.params["acquire"] = {"sources": [
        {"name": "gz", "kind": "jsonl", "domain": "web", "paths": ["in/*.jsonl.gz"], "text_field": "content",
         "licence": "CC0-1.0"},
        {"name": "zst", "kind": "jsonl", "domain": "web", "paths": ["in/*.zst"], "text_field": "content"},
        {"name": "pq", "kind": "parquet", "domain": "web", "paths": ["in/c.parquet"], "text_field": "body",
         "url_field": "link"},
    ]}
    project.run("acquire")
    docs = read_dir(project.root / "data" / "raw")
    for source in ("gz", "zst", "pq"):
        texts = [t for t, s in zip(docs["text"].to_pylist(), docs["source"].to_pylist()) if s == source]
        assert texts == [r["content"] for r in rows]
    ids = docs["id"].to_pylist()
    assert len(set(ids)) == len(ids)
    assert doc_id("gz", "in/a.jsonl.gz:1") in ids
    pq_urls = [u for u, s in zip(docs["url"].to_pylist(), docs["source"].to_pylist()) if s == "pq"]
    assert pq_urls == [f"https://x/{i}" for i in range(5)]
    manifest = json.loads((project.root / "data" / "raw" / "manifest.json").read_text())
    assert manifest["sources"]["gz"]["licence"] == "CC0-1.0"


def test_warc_html_is_extracted_to_main_text(project):
    from warcio.statusandheaders import StatusAndHeaders
    from warcio.warcwriter import WARCWriter

    article = " ".join(["The river flows past the old mill and the village keeps its records of every flood."] * 6)
    html = (f"<html><head><title>T</title><script>var x = 1;</script></head><body>"
            f"<nav><a href='/'>Home</a> | <a href='/about'>About</a></nav>"
            f"<article><h1>Floods</h1><p>{article}</p><p>{article}</p></article>"
            f"<footer>Copyright footer text</footer></body></html>").encode()
    (project.root / "in").mkdir()
    with open(project.root / "in" / "crawl.warc.gz", "wb") as fh:
        writer = WARCWriter(fh, gzip=True)
        for i, (ctype, body) in enumerate([("text/html; charset=utf-8", html), ("image/png", b"\x89PNG"),
                                           ("text/html", b"<html><body></body></html>")]):
            headers = StatusAndHeaders("200 OK", [("Content-Type", ctype)], protocol="HTTP/1.1")
            writer.write_record(writer.create_warc_record(f"https://example.org/{i}", "response",
                                                          payload=io.BytesIO(body), http_headers=headers))
    project.params["acquire"] = {"sources": [{"name": "crawl", "kind": "warc", "domain": "web",
                                              "paths": ["in/*.warc.gz"]}]}
    project.run("acquire")
    docs = read_dir(project.root / "data" / "raw").to_pylist()
    assert len(docs) == 1
    assert "old mill" in docs[0]["text"] and "var x" not in docs[0]["text"]
    assert docs[0]["url"] == "https://example.org/0"
    bad = read_dir(project.root / "data" / "raw_quarantine").to_pylist()
    assert [(b["reason"]) for b in bad] == ["empty_text"]  # the page with no main text


def test_huggingface_saved_dataset_and_local_files(project):
    datasets = pytest.importorskip("datasets")
    ds = datasets.Dataset.from_dict({"text": ["alpha doc", "", "gamma doc"], "meta": [1, 2, 3]})
    ds.save_to_disk(str(project.root / "saved"))
    (project.root / "files").mkdir()
    (project.root / "files" / "d.jsonl").write_text('{"text": "from data files"}\n')
    project.params["acquire"] = {"sources": [
        {"name": "saved", "kind": "hf", "domain": "web", "dataset": "saved"},
        {"name": "builder", "kind": "hf", "domain": "web", "dataset": "json", "data_files": "files/d.jsonl"},
    ]}
    project.run("acquire")
    docs = read_dir(project.root / "data" / "raw")
    assert sorted(docs["text"].to_pylist()) == ["alpha doc", "from data files", "gamma doc"]
    bad = read_dir(project.root / "data" / "raw_quarantine").to_pylist()
    assert [(b["location"], b["reason"]) for b in bad] == [("saved:1", "empty_text")]


def test_a_glob_matching_nothing_stops_the_stage(project):
    project.params["acquire"] = {"sources": [{"name": "x", "kind": "jsonl", "domain": "web", "paths": ["nope/*.jsonl"]}]}
    proc = project.run("acquire", check=False)
    assert proc.returncode == 2
    assert "acquire.sources[x].paths: 'nope/*.jsonl' matches no file" in proc.stderr
    assert not (project.root / "data" / "raw").exists()


def test_demo_datasets_are_real_and_varied():
    from lmbuild.acquire.demo import DEMO_DATASETS

    stats = {}
    for name, ds in DEMO_DATASETS.items():
        texts = [r.value for r in ds.records()]
        size = sum(len(t) if isinstance(t, (bytes, str)) else 0 for t in texts)
        stats[name] = (len(texts), size)
        assert texts and ds.licence and ds.origin()
    assert sum(s for _, s in stats.values()) > 10 * 2**20
    assert stats["wiki_bg"][0] >= 1 and stats["jokes"][0] > 100


def test_own_ids_and_domains_from_jsonl_and_parquet(project):
    """id_field keeps the user's ids (as <source>/<id>, unique across sources; a repeat anywhere in
    the source, or a missing id, is quarantined); domain_field sets each record's domain, with
    the source's domain where the record has none; a bad domain name is quarantined."""
    src = project.root / "in"
    src.mkdir()
    rows = [{"doc_id": "a1", "text": "First document.", "kind": "news"},
            {"doc_id": 7, "text": "Second document.", "kind": "forum"},
            {"doc_id": "a1", "text": "Same id again.", "kind": "news"},          # duplicate id
            {"text": "No id at all.", "kind": "news"},                            # missing id
            {"doc_id": "a3", "text": "No domain: the source's.", "kind": ""},
            {"doc_id": "a4", "text": "A domain that is not a name.", "kind": "Bad Domain!"}]
    (src / "one.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:3]))
    (src / "two.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[3:]))
    pq.write_table(pa.table({"body": ["Parquet one.", "Parquet two.", "Parquet dup."], "id": ["p1", "p2", "p1"],
                             "dom": ["code", None, "code"]}), src / "t.parquet")
    project.params["acquire"] = {"sources": [
        {"name": "mine", "kind": "jsonl", "domain": "web", "paths": ["in/*.jsonl"], "id_field": "doc_id",
         "domain_field": "kind"},
        {"name": "pq", "kind": "parquet", "domain": "technical", "paths": ["in/t.parquet"], "text_field": "body",
         "id_field": "id", "domain_field": "dom"},
        {"name": "plain", "kind": "jsonl", "domain": "web", "paths": ["in/one.jsonl"]},
    ]}
    project.run("acquire")
    docs = read_dir(project.root / "data" / "raw").to_pylist()
    got = sorted((d["id"], d["domain"], d["text"]) for d in docs if d["source"] != "plain")
    assert got == [("mine/7", "forum", "Second document."), ("mine/a1", "news", "First document."),
                   ("mine/a3", "web", "No domain: the source's."),
                   ("pq/p1", "code", "Parquet one."), ("pq/p2", "technical", "Parquet two.")]
    plain = [d for d in docs if d["source"] == "plain"]
    assert len(plain) == 3 and all("/" not in d["id"] for d in plain)  # no id_field: position hashes
    bad = sorted((r["source"], r["reason"]) for r in read_dir(project.root / "data" / "raw_quarantine").to_pylist())
    assert bad == [("mine", "bad_domain"), ("mine", "bad_id"), ("mine", "duplicate_id"), ("pq", "duplicate_id")]
    metrics = json.loads((project.root / "metrics" / "acquire.json").read_text())
    assert metrics["sources.mine.domains.news"] == 1 and metrics["sources.mine.domains.web"] == 1
    assert metrics["sources.pq.quarantined.duplicate_id"] == 1


def test_own_fields_need_a_record_format(project):
    (project.root / "a.txt").write_text("text")
    project.params["acquire"] = {"sources": [
        {"name": "t", "kind": "text", "domain": "web", "paths": ["a.txt"], "id_field": "id"}]}
    p = project.run("acquire", check=False)
    assert p.returncode == 2 and "only jsonl and parquet sources carry their own fields" in p.stderr, p.stderr
