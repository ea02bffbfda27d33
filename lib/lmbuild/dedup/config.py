"""The dedup stage's settings, resolved from validated params, with the cross-key checks that a
cerberus schema cannot express (one line per problem, like lmbuild.params)."""

from __future__ import annotations

from dataclasses import dataclass

from ..params import ParamsError
from . import lsh


@dataclass(frozen=True)
class DedupConfig:
    normalize: dict
    exact: bool
    near: bool
    ngram: int
    bands: int
    rows: int
    seed: int
    source_priority: tuple[str, ...]
    batch_rows: int
    report: dict
    paragraphs: dict  # dedup.paragraphs: enabled, unit, method, min_chars, skip_domains, min_doc_chars, partition_rows

    @property
    def num_perm(self) -> int:
        return self.bands * self.rows


def resolve(params: dict, source: str = "params.yaml") -> DedupConfig:
    """DedupConfig from {'common': ..., 'dedup': ...} (both already validated by their specs)."""
    cfg, common = params["dedup"], params["common"]
    mh = cfg["minhash"]
    problems = []
    bands, rows, num_perm = mh["bands"], mh["rows"], mh["num_perm"]
    if mh["threshold"] is not None:
        if bands is not None or rows is not None:
            problems.append(f"{source}: dedup.minhash.threshold: derives bands and rows, so set both to null "
                            f"(or drop threshold), got bands={bands}, rows={rows}")
        else:
            bands, rows = lsh.bands_rows_for(mh["threshold"], num_perm)
    elif bands is None or rows is None:
        problems.append(f"{source}: dedup.minhash: needs bands and rows, or a threshold, "
                        f"got bands={bands}, rows={rows}")
    elif bands * rows != num_perm:
        problems.append(f"{source}: dedup.minhash.num_perm: must equal bands x rows = {bands} x {rows} = "
                        f"{bands * rows}, got {num_perm}")
    priority = cfg["source_priority"]
    repeated = sorted({s for s in priority if priority.count(s) > 1})
    if repeated:
        problems.append(f"{source}: dedup.source_priority: must not repeat a source, got {repeated} more than once")
    if problems:
        raise ParamsError(problems)
    seed = mh["seed"] if mh["seed"] is not None else common["seed"]
    return DedupConfig(normalize=dict(cfg["normalize"]), exact=cfg["exact"]["enabled"], near=mh["enabled"],
                       ngram=mh["ngram"], bands=bands, rows=rows, seed=seed, source_priority=tuple(priority),
                       batch_rows=cfg["batch_rows"], report=dict(cfg["report"]),
                       paragraphs=dict(cfg["paragraphs"]))
