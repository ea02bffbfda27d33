"""Paragraph-level exact dedup in the dedup stage: units and their removal on literal texts, the
first copy kept in the stated order, short units kept, the line unit, emptied documents dropped
with their reason, metrics, byte-identical reruns whatever the workers or the key-range count
(the out-of-core join forced with a tiny partition_rows), and one-line param errors."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import tree_digest
from lmbuild.dedup.config import resolve
from lmbuild.dedup.paragraphs import find_units, remove_units, unit_strings
from lmbuild.dedup.run import dedup_corpus
from lmbuild.filter.run import KEPT_SCHEMA
from lmbuild.params import ParamsError, validate_section

LICENCE = ("Permission is hereby granted, free of charge, to any person obtaining a copy of this "
           "software, to deal in the software without restriction.")
SHARED = "The committee met on Tuesday and agreed that the budget for the coming year would stay as it was."


def unique(i: int) -> str:
    return f"Document {i} has its own body text, which nobody else wrote, about topic number {i * 7919}."


def write_corpus(root, shards: dict[tuple[str, str], list[str]], domain: str = "news") -> None:
    for (source, name), texts in shards.items():
        rows = [{"id": f"{source}-{name}-{i}", "text": t, "source": source, "domain": domain, "url": None,
                 "language": "en", "language_score": 0.9} for i, t in enumerate(texts)]
        path = root / "filtered" / source / f"{name}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pylist(rows, schema=KEPT_SCHEMA), path)


def run(root, workers: int = 1, out: str = "out", **paragraphs):
    dedup = {"minhash": {"enabled": False}, "source_priority": ["books"], "batch_rows": 2, "paragraphs": paragraphs}
    cfg = resolve({"common": validate_section("common", {}), "dedup": validate_section("dedup", dedup)})
    metrics, _, _ = dedup_corpus(cfg, {"workers": workers}, root / "filtered", root / out / "kept",
                                 root / out / "removed")
    kept = {r["id"]: r["text"] for p in sorted((root / out / "kept").rglob("*.parquet"))
            for r in pq.read_table(p).to_pylist()}
    removed = {r["id"]: r for p in sorted((root / out / "removed").rglob("*.parquet"))
               for r in pq.read_table(p).to_pylist()}
    return metrics, kept, removed


# ---------------------------------------------------------------- units and removal, one batch

def test_units_split_on_blank_lines_or_lines():
    texts = pa.array(["Title\n\nfirst line\nsecond line\n \t\n\nlast\n", "", "one\ntwo", None])
    assert unit_strings(find_units(texts, "paragraph")).to_pylist() == [
        "Title", "first line\nsecond line", "last", "one\ntwo"]
    units = find_units(texts, "line")
    assert unit_strings(units).to_pylist() == ["Title", "first line", "second line", "last", "one", "two"]
    assert units.doc.tolist() == [0, 0, 0, 0, 2, 2] and units.index_in_doc.tolist() == [0, 1, 2, 3, 0, 1]


@pytest.mark.parametrize("cut,expected", [
    ([], "\n  A\n\nB\nb\n\n\nC\n"),  # nothing removed: byte-identical
    ([0], "\nB\nb\n\n\nC\n"),  # a unit starts at its line's start (indentation is its own)
    ([1], "\n  A\n\n\nC\n"),  # the separator in front of the kept unit stays
    ([2], "\n  A\n\nB\nb\n"),  # leading and trailing whitespace kept
    ([0, 1, 2], "\n\n"),
])
def test_removal_keeps_everything_but_the_units_and_one_separator(cut, expected):
    units = find_units(pa.array(["\n  A\n\nB\nb\n\n\nC\n", "other"]), "paragraph")
    removed = np.zeros(len(units.starts), bool)
    removed[cut] = True
    assert remove_units(units, removed).to_pylist() == [expected, "other"]


# ---------------------------------------------------------------- the stage's corpus-wide pass

def test_first_copy_kept_in_priority_then_corpus_order(tmp_path):
    write_corpus(tmp_path, {
        ("web", "part-0"): [f"{unique(0)}\n\n{SHARED}", f"{LICENCE}\n\n{unique(1)}"],
        ("web", "part-1"): [f"{unique(2)}\n\n{SHARED}\n\n{LICENCE}\n\n{SHARED}"],
        ("books", "part-0"): [f"{LICENCE}\n\n{unique(3)}"],  # books first by source_priority
    })
    metrics, kept, removed = run(tmp_path)
    assert kept["books-part-0-0"] == f"{LICENCE}\n\n{unique(3)}"
    assert kept["web-part-0-0"] == f"{unique(0)}\n\n{SHARED}"  # first copy of SHARED in corpus order
    assert kept["web-part-0-1"] == unique(1)
    assert kept["web-part-1-0"] == unique(2)  # both later copies (one within the document) go
    assert not removed
    p = metrics["paragraphs"]
    assert (p["units"], p["units_removed"], p["documents_changed"], p["documents_dropped"]) == (10, 4, 2, 0)
    assert p["chars_removed"] == 2 * len(LICENCE) + 2 * len(SHARED) + 4 * 2  # each with one "\n\n"
    assert p["domains"]["news"]["units_removed"] == 4
    assert metrics["sources"]["web"]["paragraph_units_removed"] == 4
    assert metrics["chars_kept"] == sum(len(t) for t in kept.values())


def test_short_units_are_never_removed_and_line_unit(tmp_path):
    short = "See also:"
    write_corpus(tmp_path, {("web", "part-0"): [f"{short}\n{SHARED}\n{unique(0)}", f"{short}\n{SHARED}\n{unique(1)}"]})
    _, kept, _ = run(tmp_path, out="para")  # one paragraph each: different as a whole
    assert kept["web-part-0-1"] == f"{short}\n{SHARED}\n{unique(1)}"
    _, kept, _ = run(tmp_path, out="line", unit="line")
    assert kept["web-part-0-1"] == f"{short}\n{unique(1)}"  # "See also:" is under min_chars
    _, kept, _ = run(tmp_path, out="line0", unit="line", min_chars=0)
    assert kept["web-part-0-1"] == unique(1)


def test_emptied_document_is_dropped_with_its_reason(tmp_path):
    write_corpus(tmp_path, {("web", "part-0"): [f"{SHARED}\n\n{LICENCE}", f"Heading\n\n{LICENCE}\n\n{SHARED}\n"]})
    metrics, kept, removed = run(tmp_path)
    assert "web-part-0-1" not in kept
    row = removed["web-part-0-1"]
    assert row["dup_kind"] == "paragraphs" and row["duplicate_of"] == ""
    assert row["text"] == f"Heading\n\n{LICENCE}\n\n{SHARED}\n"  # the original text, as for other removals
    assert metrics["paragraphs"]["documents_dropped"] == 1 and metrics["paragraphs"]["chars_dropped"] == len("Heading\n")
    assert metrics["documents_kept"] == 1 and metrics["documents_removed"] == 1
    _, kept, removed = run(tmp_path, out="keep", min_doc_chars=0)
    assert kept["web-part-0-1"] == "Heading\n" and not removed


def test_skip_domains(tmp_path):
    write_corpus(tmp_path, {("web", "part-0"): [f"{unique(0)}\n\n{SHARED}", f"{unique(1)}\n\n{SHARED}"]}, domain="code")
    metrics, kept, _ = run(tmp_path, skip_domains=["code"])
    assert kept["web-part-0-1"] == f"{unique(1)}\n\n{SHARED}" and metrics["paragraphs"]["units_removed"] == 0


def test_same_bytes_whatever_workers_or_key_ranges(tmp_path):
    rng = np.random.default_rng(3)
    pool = [unique(100 + i) for i in range(40)]
    shards = {(src, f"part-{k}"): ["\n\n".join(rng.choice(pool, size=int(rng.integers(1, 6)))) for _ in range(25)]
              for src in ("books", "web") for k in range(2)}
    write_corpus(tmp_path, shards)
    metrics, _, _ = run(tmp_path, out="a")
    run(tmp_path, out="b")
    run(tmp_path, workers=2, out="c")
    small, _, _ = run(tmp_path, out="d", partition_rows=3)  # many key ranges: the out-of-core join
    assert small["paragraphs"]["key_ranges"] > 10 and small["paragraphs"]["largest_key_range_rows"] < 20
    digest = tree_digest(tmp_path / "a")
    assert digest == tree_digest(tmp_path / "b") == tree_digest(tmp_path / "c") == tree_digest(tmp_path / "d")
    used = {u for texts in shards.values() for t in texts for u in t.split("\n\n")}
    p = metrics["paragraphs"]
    assert p["units"] - p["units_removed"] == len(used)  # each distinct paragraph survives exactly once
    assert small["paragraphs"] | {"key_ranges": 0, "largest_key_range_rows": 0} == \
        metrics["paragraphs"] | {"key_ranges": 0, "largest_key_range_rows": 0}


@pytest.mark.parametrize("paragraphs,expected", [
    ({"unit": "sentence"}, "params.yaml: dedup.paragraphs.unit: must be one of ['paragraph', 'line'], got 'sentence'"),
    ({"method": "bloom"}, "params.yaml: dedup.paragraphs.method: must be one of ['sorted_hashes'], got 'bloom'"),
    ({"min_chars": -1}, "params.yaml: dedup.paragraphs.min_chars: must be >= 0, got -1"),
    ({"min_char": 5}, "params.yaml: dedup.paragraphs.min_char: unknown key"),
])
def test_bad_params_are_one_line_naming_the_key(paragraphs, expected):
    with pytest.raises(ParamsError) as exc:
        validate_section("dedup", {"paragraphs": paragraphs})
    assert len(exc.value.problems) == 1 and exc.value.problems[0].startswith(expected)
