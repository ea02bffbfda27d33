"""Validate raw records: good ones become documents, bad ones are quarantined with a reason.

Readers yield `RawRecord`s whose `value` is whatever the source held (a str, bytes, a number,
None...). `RecordSink` decides, per record, whether it is a document or a quarantined record
and buffers both into record batches for the shard writers. Nothing is dropped silently:
every record ends up in exactly one of the two outputs.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from ..shards import DOC_SCHEMA, ShardWriter, doc_id

# Quarantine reasons, in the order they are checked.
MALFORMED = "malformed_record"  # a JSON line that does not parse, a WARC record that fails
WRONG_TYPE = "wrong_type"  # the text field is missing or not a string
BINARY = "binary"  # NUL bytes: a binary file caught by a glob
INVALID_UTF8 = "invalid_utf8"
EMPTY = "empty_text"  # nothing but whitespace
TOO_LONG = "too_long"  # over max_chars
DUPLICATE_ID = "duplicate_id"  # id_field: an id this source already gave (the first one is kept)
BAD_ID = "bad_id"  # id_field: missing, empty, or not a string or integer
BAD_DOMAIN = "bad_domain"  # domain_field: not a domain name (lower case, digits, _)
REASONS = (MALFORMED, WRONG_TYPE, BAD_ID, DUPLICATE_ID, BAD_DOMAIN, BINARY, INVALID_UTF8, EMPTY, TOO_LONG)
DOMAIN_RE = re.compile(r"[a-z][a-z0-9_]*")  # the same pattern specs/acquire.yaml asks of `domain`

QUARANTINE_SCHEMA = pa.schema([
    pa.field("source", pa.string(), nullable=False),
    pa.field("location", pa.string(), nullable=False),
    pa.field("reason", pa.string(), nullable=False),
    pa.field("detail", pa.string(), nullable=True),
    pa.field("raw", pa.binary(), nullable=True),  # the first RAW_KEEP bytes of the record
])
RAW_KEEP = 4096
BATCH_BYTES = 32 * 2**20  # a buffered batch is written out at this size even before batch_rows


@dataclass
class RawRecord:
    value: Any
    location: str  # file:line, file, file#record, dataset:index... stable across runs
    url: str | None = None
    error: str | None = None  # set by the reader when the record could not even be parsed
    id: Any = None  # the record's own id (id_field), MISSING when the source names a field it lacks
    domain: Any = None  # the record's own domain (domain_field); None: the source's domain


MISSING = object()  # a record without the id field its source names


def _raw_bytes(value: Any) -> bytes | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        return value[:RAW_KEEP]
    return repr(value).encode("utf-8", "backslashreplace")[:RAW_KEEP] if not isinstance(value, str) \
        else value.encode("utf-8", "surrogatepass")[:RAW_KEEP]


class RecordSink:
    """Classify raw records and stream them into a document writer and a quarantine writer."""

    def __init__(self, source: str, domain: str, docs: ShardWriter, quarantine: ShardWriter,
                 max_chars: int, batch_rows: int = 2048, own_ids: bool = False):
        self.source, self.domain, self.max_chars = source, domain, max_chars
        # own_ids: the source's records carry their ids (id_field); kept as "<source>/<id>", so
        # they stay unique across sources, and checked for repeats within the source
        self.own_ids = own_ids
        self._seen_ids: set[str] = set()
        self.domains: Counter[str] = Counter()
        self.docs, self.quarantine = docs, quarantine
        self.batch_rows = batch_rows
        self.counts: Counter[str] = Counter()
        self.doc_bytes = 0
        self._buffered_bytes = 0
        self._docs: dict[str, list] = {f.name: [] for f in DOC_SCHEMA}
        self._bad: dict[str, list] = {f.name: [] for f in QUARANTINE_SCHEMA}

    def _classify(self, rec: RawRecord) -> tuple[str | None, str | None, str | None]:
        """Return (text, reason, detail)."""
        if rec.error is not None:
            return None, MALFORMED, rec.error
        if self.own_ids:
            if rec.id is MISSING or rec.id is None or isinstance(rec.id, bool) or \
                    not isinstance(rec.id, (str, int)) or not str(rec.id).strip():
                return None, BAD_ID, f"id must be a non-empty string or integer, got {rec.id if rec.id is not MISSING else 'no id field'!r}"
            if str(rec.id) in self._seen_ids:
                return None, DUPLICATE_ID, f"id {str(rec.id)[:200]!r} repeats an earlier record of this source"
        if rec.domain is not None and not (isinstance(rec.domain, str) and DOMAIN_RE.fullmatch(rec.domain)):
            return None, BAD_DOMAIN, f"domain must match [a-z][a-z0-9_]*, got {rec.domain!r}"[:300]
        value = rec.value
        if isinstance(value, bytes):
            if b"\x00" in value:
                return None, BINARY, "contains NUL bytes"
            try:
                value = value.decode("utf-8")
            except UnicodeDecodeError as exc:
                return None, INVALID_UTF8, str(exc)
        if not isinstance(value, str):
            return None, WRONG_TYPE, f"expected a string, got {type(value).__name__}"
        if "\x00" in value:
            return None, BINARY, "contains NUL characters"
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:  # lone surrogates from a lenient JSON parser
            return None, INVALID_UTF8, str(exc)
        if not value.strip():
            return None, EMPTY, None
        if len(value) > self.max_chars:
            return None, TOO_LONG, f"{len(value)} characters > max_chars {self.max_chars}"
        return value, None, None

    def add(self, rec: RawRecord) -> None:
        text, reason, detail = self._classify(rec)
        if reason is None:
            self.counts["documents"] += 1
            nbytes = len(text.encode("utf-8"))
            self.doc_bytes += nbytes
            self._buffered_bytes += nbytes
            d = self._docs
            if self.own_ids:
                self._seen_ids.add(str(rec.id))
                d["id"].append(f"{self.source}/{rec.id}")
            else:
                d["id"].append(doc_id(self.source, rec.location))
            d["text"].append(text)
            d["source"].append(self.source)
            domain = rec.domain if rec.domain is not None else self.domain
            self.domains[domain] += 1
            d["domain"].append(domain)
            d["url"].append(rec.url)
            if len(d["id"]) >= self.batch_rows or self._buffered_bytes >= BATCH_BYTES:
                self._flush_docs()
        else:
            self.counts[reason] += 1
            b = self._bad
            b["source"].append(self.source)
            b["location"].append(rec.location)
            b["reason"].append(reason)
            b["detail"].append(detail)
            b["raw"].append(_raw_bytes(rec.value))
            if len(b["source"]) >= self.batch_rows:
                self._flush_bad()

    def _flush_docs(self) -> None:
        if self._docs["id"]:
            self.docs.write(pa.RecordBatch.from_pydict(self._docs, schema=DOC_SCHEMA))
            self._docs = {k: [] for k in self._docs}
            self._buffered_bytes = 0

    def _flush_bad(self) -> None:
        if self._bad["source"]:
            self.quarantine.write(pa.RecordBatch.from_pydict(self._bad, schema=QUARANTINE_SCHEMA))
            self._bad = {k: [] for k in self._bad}

    def close(self) -> None:
        self._flush_docs()
        self._flush_bad()
        self.docs.close()
        self.quarantine.close()
