"""Reference sets for the judge stage: prompts with a reference answer each, in AlpacaEval's file
format (Dubois et al. 2023/2024: a JSON list of records with `instruction` and `output`, plus the
`generator` and `dataset` fields it carries along), or the same records one per line (JSONL).

Each chat stage answers every instruction and the judge compares that answer with the reference
output, as AlpacaEval compares a model with its reference model's outputs; the records' other
fields are kept only to say where a reference came from.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..params import ParamsError


def read_reference_set(path: Path, what: str) -> list[dict]:
    """[{id, instruction, output, generator}] from an AlpacaEval-format .json list or a .jsonl
    file; ParamsError naming `what`, the file and the record on anything malformed."""
    if not path.is_file():
        raise ParamsError([f"params.yaml: {what}: no such file {path} (an AlpacaEval-format .json or .jsonl)"])
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix == ".jsonl":
            records = [json.loads(line) for line in text.splitlines() if line.strip()]
        else:
            records = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ParamsError([f"params.yaml: {what}: {path} is not valid JSON: {exc}"]) from None
    if not isinstance(records, list) or not records:
        raise ParamsError([f"params.yaml: {what}: {path} must hold a non-empty list of records"])
    out = []
    for i, rec in enumerate(records):
        bad = [k for k in ("instruction", "output") if not isinstance(rec, dict) or not isinstance(rec.get(k), str)
               or not rec[k].strip()]
        if bad:
            raise ParamsError([f"params.yaml: {what}: {path} record {i}: needs non-empty string field(s) "
                               f"{', '.join(bad)}"])
        out.append({"id": f"{path.stem}:{i}", "instruction": rec["instruction"], "output": rec["output"],
                    "generator": str(rec.get("generator", ""))})
    return out
