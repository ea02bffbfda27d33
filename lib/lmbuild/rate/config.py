"""Check each rater of `rate.raters` against the schema of its kind, and the files it names.

specs/rate.yaml validates `name` and `kind` of every rater; the other keys depend on the kind,
so each rater is then validated and normalised (defaults filled) against the registry entry of
its kind in the same spec file. Problems come out as the usual one line each:

    params.yaml: rate.raters[0].epochs: must be >= 1, got 0

Checks that need the file system (positive files, the judgments file, the model directory, the
label of a Hugging Face model) run here too, before the stage reads any data.
"""

from __future__ import annotations

import glob
import json
from pathlib import Path

from ..params import ParamsError, load_spec, validate_document

KINDS = ("fasttext", "bradley_terry", "hf_classifier")
FILE_SUFFIXES = (".txt", ".jsonl")


def _validate_rater(i: int, rater: dict, registry, source: str) -> tuple[dict | None, list[str]]:
    return validate_document(registry.get(rater["kind"]), registry, rater, f"rate.raters[{i}]", source)


def positive_file_paths(patterns: list[str]) -> list[Path]:
    """Files matched by the globs, sorted, without duplicates."""
    found = set()
    for pattern in patterns:
        found.update(Path(p) for p in glob.glob(pattern, recursive=True) if Path(p).is_file())
    return sorted(found)


def _check_files(i: int, rater: dict, source: str) -> list[str]:
    where = f"{source}: rate.raters[{i}]"
    problems = []
    kind = rater["kind"]
    if kind == "fasttext":
        if not rater["positive_sources"] and not rater["positive_files"]:
            problems.append(f"{where}.positive_sources: a fasttext rater needs positive_sources or "
                            f"positive_files, got neither")
        for pattern in rater["positive_files"]:
            paths = positive_file_paths([pattern])
            if not paths:
                problems.append(f"{where}.positive_files: no file matches {pattern!r}")
            bad = [p for p in paths if p.suffix not in FILE_SUFFIXES]
            if bad:
                problems.append(f"{where}.positive_files: {pattern!r} matches {str(bad[0])!r}; "
                                f"only .txt (one document per file) and .jsonl files are read")
    elif kind == "bradley_terry":
        if not Path(rater["judgments"]).is_file():
            problems.append(f"{where}.judgments: no file {rater['judgments']!r}")
    elif kind == "hf_classifier":
        problems.extend(_check_hf(rater, where))
    return problems


def _check_hf(rater: dict, where: str) -> list[str]:
    config_path = Path(rater["model"]) / "config.json"
    if not config_path.is_file():
        return [f"{where}.model: no Hugging Face model directory at {rater['model']!r} (config.json missing)"]
    try:
        config = json.loads(config_path.read_text())
    except ValueError as exc:
        return [f"{where}.model: {config_path} is not valid JSON ({exc})"]
    id2label = config.get("id2label") or {}
    labels = [id2label[k] for k in sorted(id2label, key=int)] if id2label else []
    num_labels = len(labels) or int(config.get("num_labels", 2))
    if rater["label"] is None and num_labels != 1:
        return [f"{where}.label: the model has {num_labels} outputs {labels}; name the label to score "
                f"(or use a regression model with one output)"]
    if rater["label"] is not None and rater["label"] not in labels:
        return [f"{where}.label: must be one of the model's labels {labels}, got {rater['label']!r}"]
    if rater["device"] == "cuda":
        import torch

        if not torch.cuda.is_available():
            return [f"{where}.device: 'cuda' asked for but torch sees no CUDA device"]
    return []


def check_raters(params: dict, source: str = "params.yaml") -> list[dict]:
    """Validated, normalised raters (with `seed` filled from common.seed), or ParamsError."""
    _, registry = load_spec("rate")
    problems, raters = [], []
    for i, rater in enumerate(params["rate"]["raters"]):
        normal, errs = _validate_rater(i, rater, registry, source)
        problems.extend(errs)
        if normal is not None:
            if normal.get("seed") is None and "seed" in registry.get(normal["kind"]):
                normal["seed"] = params["common"]["seed"]
            problems.extend(_check_files(i, normal, source))
            raters.append(normal)
    names = [r["name"] for r in params["rate"]["raters"]]
    for i, name in enumerate(names):
        if name in names[:i]:
            problems.append(f"{source}: rate.raters[{i}].name: must be unique (it names the column quality_{name}), "
                            f"got {name!r} twice")
    if problems:
        raise ParamsError(problems)
    return raters
