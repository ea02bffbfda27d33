"""The presidio PII backend (lmbuild.filter.pii_presidio): precision and recall floors on the
labelled set beside the regex's, the placeholders, the shortcuts against plain Presidio, one engine
per process, the filter stage using it, and the stop before any work when it is not installed
(that last test runs without Presidio too). Run with `pytest -s` to see the figures.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import stage_env
from lmbuild.executor import map_tasks
from lmbuild.filter import pii_presidio
from lmbuild.filter.run import filter_corpus, presidio_requests
from lmbuild.params import ParamsError, validate_section
from lmbuild.shards import table_from_pylist
from test_pii_precision import EXTRA, load_labelled, precision_recall, report

ALL = {"emails": True, "ip_addresses": True, "phone_numbers": True}
requires_presidio = pytest.mark.skipif(
    bool(pii_presidio.missing_packages()),
    reason=f"presidio backend not installed ({pii_presidio.INSTALL})")


@requires_presidio
def test_precision_and_recall_per_kind():
    figures = precision_recall(load_labelled(), mask=pii_presidio.mask)
    print("\nPII (presidio) on tests/data/pii_labelled.jsonl\n" + report(figures))
    # Measured with presidio-analyzer 2.2.366, phonenumbers 9.0.43, tldextract 5.4.0:
    #   emails  1.000 / 1.000 (its pattern takes the apostrophe of bob.o'neil@firm.com)
    #   IPs     0.571 / 1.000 (no context rules: section, version, OID and dotted step numbers,
    #           and the slices a[1::2], a[::3] as IPv6, are all masked)
    #   phones  0.900 / 0.900 (libphonenumber finds the London, Berlin, Paris and Tokyo numbers;
    #           masks the date 02.12.2026 and takes ", ext 4" into a number)
    assert figures["emails"]["precision"] >= 0.95 and figures["emails"]["recall"] >= 0.95, report(figures)
    assert figures["ip_addresses"]["precision"] >= 0.55, report(figures)
    assert figures["ip_addresses"]["recall"] >= 0.95, report(figures)
    assert figures["phone_numbers"]["precision"] >= 0.85, report(figures)
    assert figures["phone_numbers"]["recall"] >= 0.85, report(figures)


@requires_presidio
@pytest.mark.parametrize("text,expected,kind", [
    ("write to jane.doe+news@mail.example.co.uk today", "write to |||EMAIL_ADDRESS||| today", "emails"),
    ("server at 10.0.0.254 is down", "server at |||IP_ADDRESS||| is down", "ip_addresses"),
    ("ping 2001:db8::8a2e:370:7334 now", "ping |||IP_ADDRESS||| now", "ip_addresses"),
    ("call +44 20 7946 0958 now", "call |||PHONE_NUMBER||| now", "phone_numbers"),
])
def test_placeholders_are_the_regex_ones(text, expected, kind):
    masked, counts = pii_presidio.mask(pa.array([text]), ALL)
    assert masked.to_pylist() == [expected]
    assert {k: c.tolist() for k, c in counts.items()} == {k: [int(k == kind)] for k in ALL}


@requires_presidio
def test_kinds_can_be_switched_off_and_nulls_stay():
    text = "mail a@b.org or call +44 20 7946 0958"
    cfg = {"emails": True, "ip_addresses": True, "phone_numbers": False}
    masked, counts = pii_presidio.mask(pa.array([text, None, ""]), cfg)
    assert masked.to_pylist() == ["mail |||EMAIL_ADDRESS||| or call +44 20 7946 0958", None, ""]
    assert counts["phone_numbers"].tolist() == [0, 0, 0]
    assert counts["emails"].tolist() == [1, 0, 0]


@requires_presidio
def test_shortcuts_change_nothing():
    """The prefilter and the tokenless first pass against Presidio on every document in full."""
    texts = [r["text"] for r in load_labelled()] + EXTRA + [
        "no digits, no at sign here", "call our phone line: (555) 123-4567", "IP 10.0.0.1, email x@y.com",
        "tel. ０３-１２３４-５６７８", "a :: b", "contact support@example.org or phone 020 7946 0958"]
    for cfg in (ALL, {"ip_addresses": True}, {"emails": True, "phone_numbers": True}):
        fast = pii_presidio.mask(pa.array(texts), cfg)
        plain = pii_presidio.mask(pa.array(texts), cfg, shortcuts=False)
        assert fast[0].to_pylist() == plain[0].to_pylist()
        assert {k: v.tolist() for k, v in fast[1].items()} == {k: v.tolist() for k, v in plain[1].items()}


def _engine_builds(_task) -> tuple[int, int]:
    pii_presidio.mask(pa.array(["mail a@b.org", "10.0.0.1"]), ALL)
    return os.getpid(), pii_presidio.engine.cache_info().misses


@requires_presidio
def test_one_engine_per_process():
    for _ in range(3):
        _engine_builds(None)
    assert pii_presidio.engine.cache_info().misses == 1
    # in the filter's process pool: each worker builds it once, whatever number of tasks it runs
    # (cleared first, or forked workers would inherit this process's engine)
    pii_presidio.engine.cache_clear()
    pii_presidio._no_tokens.cache_clear()
    results = map_tasks(_engine_builds, range(6), {"workers": 2, "executor": "local"})
    assert {misses for _, misses in results} == {1}


def _raw_shard(root, texts):
    rows = [{"id": str(i), "text": t, "source": "docs", "domain": "web", "url": None}
            for i, t in enumerate(texts)]
    (root / "raw/docs").mkdir(parents=True)
    pq.write_table(table_from_pylist(rows), root / "raw/docs/part-00000-0000.parquet")


def _params(backend_at: str) -> dict:
    pii = {"pii": {"backend": "presidio"}}
    raw = {"rules": {"langid": {"enabled": False}, "c4": {"enabled": False},
                     "gopher_quality": {"enabled": False}, "gopher_repetition": {"enabled": False},
                     "fineweb": {"enabled": False}}}
    if backend_at == "rules":
        raw["rules"].update(pii)
    else:
        raw["domains"] = {"web": pii}
    return {"common": {"workers": 1, "executor": "local"}, "filter": validate_section("filter", raw)}


@requires_presidio
def test_filter_stage_masks_with_presidio(tmp_path):
    texts = ["Call +44 20 7946 0958 or mail ops@example.org.", "Nothing to see here.", "Server 10.1.2.3 is up."]
    _raw_shard(tmp_path, texts)
    tree, _ = filter_corpus(_params("domains"), tmp_path / "raw", tmp_path / "kept", tmp_path / "rej")
    kept = pq.read_table(tmp_path / "kept/docs/part-00000-0000.parquet").column("text").to_pylist()
    assert kept == pii_presidio.mask(pa.array(texts), ALL)[0].to_pylist()
    assert kept[0] == "Call |||PHONE_NUMBER||| or mail |||EMAIL_ADDRESS|||."
    assert tree["pii"] == {"emails": 1, "ip_addresses": 1, "phone_numbers": 1}


def test_presidio_requests_are_found_in_rules_domains_and_sources():
    assert presidio_requests(_params("rules")["filter"]) == ["filter.rules.pii.backend"]
    assert presidio_requests(_params("domains")["filter"]) == ["filter.domains.web.pii.backend"]
    assert presidio_requests(validate_section("filter", {})) == []  # regex is the default
    with pytest.raises(ParamsError) as exc:
        validate_section("filter", {"rules": {"pii": {"backend": "spacy"}}})
    assert "filter.rules.pii.backend: must be one of ['regex', 'presidio']" in str(exc.value)


def test_missing_presidio_stops_before_any_work(tmp_path, monkeypatch):
    _raw_shard(tmp_path, ["mail ops@example.org"])
    monkeypatch.setattr(pii_presidio, "missing_packages", lambda: ["presidio-analyzer", "spacy"])
    with pytest.raises(ParamsError) as exc:
        filter_corpus(_params("rules"), tmp_path / "raw", tmp_path / "kept", tmp_path / "rej")
    assert exc.value.problems == [
        "params.yaml: filter.rules.pii.backend: 'presidio' needs the pii extra "
        "(missing: presidio-analyzer, spacy): pip install 'lmbuild[pii]'"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["raw"]


def test_missing_presidio_stops_the_stage_with_one_line(project):
    """The stage itself, with the package hidden (a module set to None in sys.modules is one that
    cannot be found): exit 2, the line that says what to install, no output."""
    _raw_shard(project.root / "data", ["mail ops@example.org"])
    project.params["filter"]["rules"]["pii"] = {"backend": "presidio"}
    project.write_params()
    hide = ("import runpy, sys; sys.modules['presidio_analyzer'] = None; "
            "runpy.run_module('stages.filter', run_name='__main__')")
    p = subprocess.run([sys.executable, "-c", hide], cwd=project.root, env=stage_env(),
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 2, p.stderr
    assert p.stderr.splitlines() == [
        "params.yaml: filter.rules.pii.backend: 'presidio' needs the pii extra "
        "(missing: presidio-analyzer): pip install 'lmbuild[pii]'",
        "filter: stopped before doing any work: fix the params above"]
    assert not (project.root / "data/filtered").exists()
    assert not (project.root / "metrics").exists()
