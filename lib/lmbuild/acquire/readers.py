"""Readers: one function per source kind, each yielding `RawRecord`s from one task's files.

A task is a slice of one source that one worker reads start to end: a JSONL, Parquet or WARC
file, a group of plain-text files, a Hugging Face dataset, or one demo dataset. `plan_tasks`
expands a source's globs (relative to the repository root, sorted) into tasks.
"""

from __future__ import annotations

import glob
import gzip
import io
from pathlib import Path
from typing import Iterator

import orjson

from .records import MISSING, RawRecord

FILE_KINDS = ("jsonl", "parquet", "text", "warc")
KINDS = FILE_KINDS + ("hf", "demo")


class SourceError(Exception):
    """A source that cannot be read at all (no files match, unreadable file)."""


def expand_paths(source: dict) -> list[Path]:
    files: list[Path] = []
    for pattern in source["paths"]:
        matches = sorted(Path(p) for p in glob.glob(pattern, recursive=True) if Path(p).is_file())
        if not matches:
            raise SourceError(f"params.yaml: acquire.sources[{source['name']}].paths: {pattern!r} matches no file")
        files.extend(matches)
    return sorted(dict.fromkeys(files))


def plan_tasks(source: dict) -> list[dict]:
    kind = source["kind"]
    if kind in ("hf", "demo"):
        return [{"source": source, "files": []}]
    files = [str(p) for p in expand_paths(source)]
    if source.get("id_field"):
        # one worker reads the whole source, so a repeated id is caught wherever it repeats
        # (split a large corpus into several sources to read it in parallel)
        return [{"source": source, "files": files}]
    if kind == "text":
        step = source.get("files_per_task", 256)
        return [{"source": source, "files": files[i:i + step]} for i in range(0, len(files), step)]
    return [{"source": source, "files": [f]} for f in files]


def _open_text_stream(path: str):
    if path.endswith(".gz"):
        return gzip.open(path, "rb")
    if path.endswith(".zst") or path.endswith(".zstd"):
        import zstandard

        return io.BufferedReader(zstandard.ZstdDecompressor().stream_reader(open(path, "rb"), closefd=True))
    return open(path, "rb")


def _own_fields(src: dict, get) -> dict:
    """The record's id and domain where the source names their fields (id_field, domain_field):
    `get(field)` reads one field of the record, MISSING when absent. An empty or null domain
    falls back to the source's domain."""
    out = {}
    if src.get("id_field"):
        out["id"] = get(src["id_field"])
    if src.get("domain_field"):
        dom = get(src["domain_field"])
        out["domain"] = None if dom is MISSING or dom is None or dom == "" else dom
    return out


def read_jsonl(task: dict) -> Iterator[RawRecord]:
    src = task["source"]
    field, url_field = src.get("text_field", "text"), src.get("url_field")
    for path in task["files"]:
        try:
            with _open_text_stream(path) as lines:
                for lineno, line in enumerate(lines, 1):
                    loc = f"{path}:{lineno}"
                    if not line.strip():
                        continue  # blank lines separate nothing and hold no record
                    try:
                        line.decode("utf-8")
                    except UnicodeDecodeError:
                        yield RawRecord(line.rstrip(b"\r\n"), loc)
                        continue
                    try:
                        obj = orjson.loads(line)
                    except orjson.JSONDecodeError as exc:
                        yield RawRecord(line.rstrip(b"\r\n"), loc, error=f"invalid JSON: {exc}")
                        continue
                    if not isinstance(obj, dict):
                        yield RawRecord(obj, loc, error=f"expected a JSON object, got {type(obj).__name__}")
                        continue
                    if field not in obj:
                        yield RawRecord(None, loc, error=f"no field {field!r} (fields: {', '.join(sorted(obj))[:200]})")
                        continue
                    url = obj.get(url_field) if url_field else None
                    yield RawRecord(obj[field], loc, url=url if isinstance(url, str) else None,
                                    **_own_fields(src, lambda k: obj.get(k, MISSING)))
        except (OSError, EOFError, ValueError) as exc:  # truncated gzip/zstd: keep what was read
            yield RawRecord(None, f"{path}", error=f"unreadable file: {exc}")


def read_parquet(task: dict) -> Iterator[RawRecord]:
    import pyarrow.parquet as pq

    src = task["source"]
    field, url_field = src.get("text_field", "text"), src.get("url_field")
    for path in task["files"]:
        try:
            pf = pq.ParquetFile(path)
            names = pf.schema_arrow.names
            if field not in names:
                yield RawRecord(None, path, error=f"no column {field!r} (columns: {', '.join(names)})")
                continue
            own = [c for c in (src.get("id_field"), src.get("domain_field")) if c]
            cols = list(dict.fromkeys([field] + ([url_field] if url_field and url_field in names else [])
                                      + [c for c in own if c in names]))
            row = 0
            for batch in pf.iter_batches(batch_size=4096, columns=cols):
                data = {c: batch.column(i).to_pylist() for i, c in enumerate(cols)}
                for i, text in enumerate(data[field]):
                    url = data[url_field][i] if url_field in data else None
                    yield RawRecord(text, f"{path}:{row}", url=url if isinstance(url, str) else None,
                                    **_own_fields(src, lambda k: data[k][i] if k in data else MISSING))
                    row += 1
        except (OSError, ValueError) as exc:
            yield RawRecord(None, path, error=f"unreadable Parquet file: {exc}")


def read_text(task: dict) -> Iterator[RawRecord]:
    for path in task["files"]:
        yield RawRecord(Path(path).read_bytes(), path)


def read_warc(task: dict) -> Iterator[RawRecord]:
    from warcio.archiveiterator import ArchiveIterator

    from .html import extract_main_text, load_extractor

    load_extractor()  # an installation problem must fail loudly, not look like a damaged file
    src = task["source"]
    for path in task["files"]:
        try:
            with open(path, "rb") as fh:
                it = ArchiveIterator(fh)
                for record in it:
                    if record.rec_type != "response":
                        continue
                    ctype = (record.http_headers.get_header("Content-Type") if record.http_headers else "") or ""
                    if "html" not in ctype.lower():
                        continue
                    url = record.rec_headers.get_header("WARC-Target-URI")
                    body = record.content_stream().read()  # before asking the offset, which moves the stream
                    loc = f"{path}#{it.get_record_offset()}"
                    yield RawRecord(extract_main_text(body, url, src.get("favor", "balanced")), loc, url=url)
        except Exception as exc:  # warcio raises several types for damaged archives
            yield RawRecord(None, path, error=f"damaged WARC file: {type(exc).__name__}: {exc}")


def read_hf(task: dict) -> Iterator[RawRecord]:
    import datasets

    src = task["source"]
    name, field = src["dataset"], src.get("text_field", "text")
    local = Path(name)
    if (local / "dataset_info.json").exists() or (local / "dataset_dict.json").exists():
        ds = datasets.load_from_disk(name)
        if isinstance(ds, datasets.DatasetDict):
            ds = ds[src.get("split", "train")]
    else:  # a builder name ("json", "parquet"...) with local data_files, or a hub name
        ds = datasets.load_dataset(name, src.get("config"), data_files=src.get("data_files"), split=src.get("split", "train"))
    if field not in ds.column_names:
        yield RawRecord(None, name, error=f"no column {field!r} (columns: {', '.join(ds.column_names)})")
        return
    url_field = src.get("url_field")
    cols = [field] + ([url_field] if url_field and url_field in ds.column_names else [])
    i = 0
    for batch in ds.select_columns(cols).iter(batch_size=1000):
        urls = batch[url_field] if len(cols) > 1 else [None] * len(batch[field])
        for text, url in zip(batch[field], urls):
            yield RawRecord(text, f"{name}:{i}", url=url if isinstance(url, str) else None)
            i += 1


def read_demo(task: dict) -> Iterator[RawRecord]:
    from .demo import DEMO_DATASETS

    yield from DEMO_DATASETS[task["source"]["dataset"]].records()


READERS = {"jsonl": read_jsonl, "parquet": read_parquet, "text": read_text, "warc": read_warc,
           "hf": read_hf, "demo": read_demo}
