"""The two PII backends side by side: precision and recall per kind on the labelled set, and
throughput (documents/s, MB/s of UTF-8 text, one core) on the demo corpus.

- regex: lmbuild.filter.pii.mask, RE2 over whole record batches (best of --repeat runs);
- presidio: lmbuild.filter.pii_presidio.mask, Presidio's pattern recognizers per document, with
  its prefilter and tokenless first pass (one run; the engine is built before the clock starts,
  as a filter worker builds it once). Unless --no-check, Presidio is also run on every document
  in full without those shortcuts, and the outputs must be identical.

Every kind is switched on for every source (the demo's params turn phone numbers off for code),
so both backends see the same work. The labelled set is scored with the tests' own function
(tests/test_pii_precision.py), so the figures are the ones the tests hold floors for. Printed:
the CPU model and machine load (the 1-minute load average before and after), a markdown table
of precision and recall, and one of throughput per source.

    python benchmarks/pii_backends.py [--data 'data/raw/*/*.parquet'] [--batch-rows 2048] [--no-check]
"""

from __future__ import annotations

import argparse
import glob
import os
import platform
import sys
import time
from importlib.metadata import version
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from lmbuild.filter import pii, pii_presidio

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # the labelled set's loader and scorer
from test_pii_precision import LABELLED, load_labelled, precision_recall  # noqa: E402

ALL = {"emails": True, "ip_addresses": True, "phone_numbers": True}


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def batches(texts: pa.Array, rows: int) -> list[pa.Array]:
    return [texts.slice(i, rows) for i in range(0, len(texts), rows)]


def run(mask, parts: list[pa.Array], **kw) -> tuple[float, list, dict]:
    """Seconds, masked texts and total matches per kind of `mask` over the batches."""
    start = time.perf_counter()
    outs = [mask(b, ALL, **kw) for b in parts]
    seconds = time.perf_counter() - start
    texts = [t for masked, _ in outs for t in masked.to_pylist()]
    totals = {k: sum(int(c[k].sum()) for _, c in outs) for k in ALL}
    return seconds, texts, totals


def quality_table(rows: list[dict]) -> str:
    figures = {"regex": precision_recall(rows, pii.mask),
               "presidio": precision_recall(rows, pii_presidio.mask)}
    lines = ["| kind | planted | regex precision | regex recall | presidio precision | presidio recall |",
             "|---|---:|---:|---:|---:|---:|"]
    for kind in ALL:
        planted = sum(len(r["entities"]) for r in rows if r["kind"] == kind)
        r, p = figures["regex"][kind], figures["presidio"][kind]
        lines.append(f"| {kind} | {planted} | {r['precision']:.3f} | {r['recall']:.3f} | "
                     f"{p['precision']:.3f} | {p['recall']:.3f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="data/raw/*/*.parquet")
    parser.add_argument("--batch-rows", type=int, default=2048)
    parser.add_argument("--repeat", type=int, default=3, help="runs of the regex backend (best kept)")
    parser.add_argument("--no-check", action="store_true", help="skip plain Presidio on every document")
    args = parser.parse_args()
    if pii_presidio.missing_packages():
        raise SystemExit(f"the presidio backend is not installed: {pii_presidio.INSTALL}")
    paths = sorted(glob.glob(args.data))
    if not paths:
        raise SystemExit(f"no Parquet matches {args.data!r}: run `dvc repro acquire` first")
    pa.set_cpu_count(1)
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    pii_presidio.engine()
    build = time.perf_counter() - start

    rows = load_labelled()
    near = sum(not r["entities"] for r in rows)
    print(f"labelled set {LABELLED.relative_to(REPO)}: {len(rows)} sentences, "
          f"{sum(len(r['entities']) for r in rows)} planted entities, {near} near misses")
    print(quality_table(rows) + "\n")

    header = ("| source | docs | MB | regex docs/s | regex MB/s | presidio docs/s | presidio MB/s | "
              "sent to presidio | matches regex / presidio |")
    table = [header, "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    total = {"docs": 0, "mb": 0.0, "regex": 0.0, "presidio": 0.0, "sent": 0}
    mismatched = []
    for path in paths:
        texts = pq.read_table(path, columns=["text"]).column("text").combine_chunks().cast(pa.string())
        parts = batches(texts, args.batch_rows)
        mb = (pc.sum(pc.binary_length(texts)).as_py() or 0) / 1e6
        regex_s = min(run(pii.mask, parts)[0] for _ in range(args.repeat))
        _, _, regex_n = run(pii.mask, parts)
        pres_s, pres_texts, pres_n = run(pii_presidio.mask, parts)
        sent = sum(len(pii_presidio.candidates(b, ALL)) for b in parts)
        if not args.no_check and run(pii_presidio.mask, parts, shortcuts=False)[1] != pres_texts:
            mismatched.append(path)
        source = Path(path).parent.name
        n = len(texts)
        counts = "/".join(str(regex_n[k]) for k in ALL) + " vs " + "/".join(str(pres_n[k]) for k in ALL)
        table.append(f"| {source} | {n} | {mb:.2f} | {n / regex_s:,.0f} | {mb / regex_s:.1f} | "
                     f"{n / pres_s:,.1f} | {mb / pres_s:.2f} | {sent} | {counts} |")
        for key, value in (("docs", n), ("mb", mb), ("regex", regex_s), ("presidio", pres_s), ("sent", sent)):
            total[key] += value
    table.append(f"| **all** | {total['docs']} | {total['mb']:.2f} | {total['docs'] / total['regex']:,.0f} | "
                 f"{total['mb'] / total['regex']:.1f} | {total['docs'] / total['presidio']:,.1f} | "
                 f"{total['mb'] / total['presidio']:.2f} | {total['sent']} | |")
    print("\n".join(table))
    print("(matches: emails/ip_addresses/phone_numbers)")
    print(f"\nCPU: {cpu_model()}, {os.cpu_count()} logical cores, one used; load average (1 min) "
          f"{load_before:.2f} before, {os.getloadavg()[0]:.2f} after")
    print(f"presidio-analyzer {version('presidio-analyzer')}, spacy {version('spacy')}, "
          f"phonenumbers {version('phonenumbers')}, tldextract {version('tldextract')}; "
          f"engine built in {build:.1f} s (imports included), once per worker process")
    print(f"slowdown presidio / regex: {total['presidio'] / total['regex']:,.0f}x")
    if not args.no_check:
        if mismatched:
            raise SystemExit(f"presidio's shortcuts changed the output on: {', '.join(mismatched)}")
        print("presidio with its shortcuts = presidio on every document in full: identical output")


if __name__ == "__main__":
    main()
