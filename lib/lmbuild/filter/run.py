"""Plan, run and account for the filter stage.

Each raw shard is one task. Per record batch, in this order (the first failing rule is the
document's reason):

1. language ID (lid.176) on the first `max_chars` characters;
2. the quality rules of `rules.apply_rules` (C4 line removal first, then C4, Gopher
   repetition, Gopher quality and FineWeb document rules);
3. PII masking on the documents that are kept, by the backend `pii.backend` names: `regex`
   (lmbuild.filter.pii, the default) or `presidio` (lmbuild.filter.pii_presidio, an optional
   extra, checked to be installed before any work).

Rules are configured per domain and per source: the config of a document is
`rules` <- `domains[<domain>]` <- `sources[<source>]`, merged key by key, so a source can override
any single threshold. Kept documents go to `<filtered>/<source>/<shard>.parquet` with two new
columns (`language`, `language_score`); dropped ones to `<rejected>/<source>/<shard>.parquet`
with `reason` as well.
"""

from __future__ import annotations

import sys
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..executor import map_tasks
from ..params import ParamsError, deep_merge
from ..shards import DOC_SCHEMA, ShardWriter, atomic_dir, list_shards, read_batches
from . import langid, pii, pii_presidio
from .rule_config import GROUPS, PII_DEFAULTS, RULE_NAMES
from .rules import apply_rules

KEPT_SCHEMA = DOC_SCHEMA.append(pa.field("language", pa.string(), nullable=True)) \
    .append(pa.field("language_score", pa.float32(), nullable=True))
REJECTED_SCHEMA = KEPT_SCHEMA.append(pa.field("reason", pa.string(), nullable=False))
LANGID_RULE = "langid"
ALL_RULES = (LANGID_RULE, *RULE_NAMES)


def rules_for(cfg: dict, source: str, domain: str) -> dict:
    """The rule config for one source: defaults, then its domain's, then its own overrides."""
    resolved = deep_merge(cfg["rules"], cfg["domains"].get(domain))
    return deep_merge(resolved, cfg["sources"].get(source))


def presidio_requests(cfg: dict) -> list[str]:
    """The params keys (`filter.rules.pii.backend`, `filter.domains.<d>.pii.backend`, ...) that
    ask for the presidio PII backend."""
    scopes = [("filter.rules", cfg["rules"])]
    scopes += [(f"filter.{kind}.{name}", over) for kind in ("domains", "sources")
               for name, over in sorted(cfg[kind].items())]
    return [f"{where}.pii.backend" for where, rules in scopes
            if ((rules or {}).get("pii") or {}).get("backend") == "presidio"]


def read_bad_words(path: str | None) -> list[str]:
    if not path:
        return []
    p = Path(path)
    if not p.is_file():
        raise ParamsError([f"params.yaml: filter.rules.c4.bad_words_file: no file {path!r}"])
    return sorted({w.strip() for w in p.read_text(encoding="utf-8").splitlines() if w.strip()})


def _filter_batch(batch: pa.RecordBatch, cfg: dict, stats: dict) -> tuple[pa.RecordBatch, pa.RecordBatch]:
    n = batch.num_rows
    text = batch.column("text")
    chars_in = pc.utf8_length(text).to_numpy(zero_copy_only=False).astype(np.int64)
    reason = np.full(n, None, dtype=object)
    lang_cfg = cfg["langid"]
    if lang_cfg["enabled"]:
        langs, scores = langid.predict(text, lang_cfg["model"], lang_cfg["max_chars"])
        reason[~langid.keep_mask(langs, scores, lang_cfg["languages"], lang_cfg["min_score"])] = LANGID_RULE
        scores_arr = pa.array(scores, pa.float32())
    else:
        langs, scores_arr = pa.nulls(n, pa.string()), pa.nulls(n, pa.float32())

    undecided = np.flatnonzero(reason == None)  # noqa: E711  (elementwise comparison)
    decided = np.flatnonzero(reason != None)  # noqa: E711
    result = apply_rules(text.take(pa.array(undecided, pa.int64())), cfg["quality"])
    reason[undecided] = result.reason.to_numpy(zero_copy_only=False)
    for rule, chars in result.line_chars_removed.items():
        stats["line_chars"][rule] += int(chars)
    for rule, docs in result.line_docs_touched.items():
        stats["line_docs"][rule] += int(docs)
    # texts after C4 line removal go back to their rows; rows decided by langid keep theirs
    stacked = pa.concat_arrays([result.text.cast(pa.string()), text.take(pa.array(decided, pa.int64())).cast(pa.string())])
    position = np.empty(n, dtype=np.int64)
    position[np.concatenate([undecided, decided])] = np.arange(n)
    text_after = stacked.take(pa.array(position))

    keep = reason == None  # noqa: E711
    rules, which = np.unique(reason[~keep].astype(str), return_inverse=True)
    for rule, docs, chars in zip(rules, np.bincount(which, minlength=len(rules)),
                                 np.bincount(which, weights=chars_in[~keep], minlength=len(rules))):
        stats["removed_docs"][str(rule)] += int(docs)
        stats["removed_chars"][str(rule)] += int(chars)
    stats["docs_in"] += n
    stats["chars_in"] += int(chars_in.sum())

    cols = {name: batch.column(name) for name in DOC_SCHEMA.names}
    cols["text"] = text_after
    cols["language"], cols["language_score"] = langs, scores_arr
    full = pa.RecordBatch.from_pydict(cols, schema=KEPT_SCHEMA)
    keep_idx = pa.array(np.flatnonzero(keep))
    kept = full.take(keep_idx)
    if kept.num_rows and cfg["pii"]["enabled"]:
        backend = cfg["pii"].get("backend", PII_DEFAULTS["backend"])
        masker = pii_presidio.mask if backend == "presidio" else pii.mask
        masked, counts = masker(kept.column("text"), cfg["pii"])
        kept = kept.set_column(kept.schema.get_field_index("text"), "text", masked)
        for kind, per_doc in counts.items():
            stats["pii"][kind] += int(per_doc.sum())
            stats["pii_docs"][kind] += int((per_doc > 0).sum())
    stats["docs_kept"] += kept.num_rows
    stats["chars_kept"] += int(pc.sum(pc.utf8_length(kept.column("text"))).as_py() or 0)
    drop_idx = pa.array(np.flatnonzero(~keep))
    rejected = batch_with_reason(full.take(drop_idx), reason[~keep])
    return kept, rejected


def batch_with_reason(batch: pa.RecordBatch, reasons: np.ndarray) -> pa.RecordBatch:
    arrays = list(batch.columns) + [pa.array(list(reasons), pa.string())]
    return pa.RecordBatch.from_arrays(arrays, schema=REJECTED_SCHEMA)


def new_stats() -> dict:
    """Counters of one task, and of one source once the tasks are summed."""
    return {"docs_in": 0, "chars_in": 0, "docs_kept": 0, "chars_kept": 0,
            "removed_docs": Counter(), "removed_chars": Counter(), "line_chars": Counter(),
            "line_docs": Counter(), "pii": Counter(), "pii_docs": Counter(),
            "default_domains": Counter()}  # documents of domains filter.domains does not name


def run_task(task: dict) -> dict:
    shard = Path(task["shard"])
    stats = new_stats()
    source = shard.parent.name
    kept_w = ShardWriter(Path(task["kept"]) / source, shard.stem, KEPT_SCHEMA, numbered=False)
    rej_w = ShardWriter(Path(task["rejected"]) / source, shard.stem, REJECTED_SCHEMA, numbered=False)
    cfgs: dict[str, dict] = {}
    for batch in read_batches(shard, batch_size=task["batch_rows"]):
        # a shard holds one source, but may (user data) hold several domains
        domains = batch.column("domain")
        unique = sorted(pc.unique(domains).to_pylist())
        for domain in unique:
            part = batch if len(unique) == 1 else batch.filter(pc.equal(domains, domain))
            if domain not in task["cfg"]["domains"]:
                stats["default_domains"][domain] += part.num_rows
            if domain not in cfgs:
                cfgs[domain] = rules_for(task["cfg"], source, domain)
                quality = {group: dict(cfgs[domain][group]) for group in GROUPS}
                quality["c4"].pop("bad_words_file", None)
                quality["c4"]["bad_words"] = task["bad_words"]
                cfgs[domain]["quality"] = quality
            kept, rejected = _filter_batch(part, cfgs[domain], stats)
            kept_w.write(kept)
            rej_w.write(rejected)
    kept_w.close()
    rej_w.close()
    stats["source"] = source
    return stats


def filter_corpus(params: dict, raw_dir: Path | list[Path], kept_dir: Path, rejected_dir: Path) -> tuple[dict, list[dict]]:
    """Run the stage; return (metrics tree, plot rows of removals per rule and source). raw_dir:
    one directory of `<source>/*.parquet` shards, or several (the data ablation adds a source
    written elsewhere, such as the rephrase stage's, to data/raw)."""
    cfg = params["filter"]
    dirs = raw_dir if isinstance(raw_dir, list) else [raw_dir]
    shards = [s for d in dirs for s in list_shards(d, "*/*.parquet")]
    homes = defaultdict(set)
    for s in shards:
        homes[s.parent.name].add(s.parent)
    clash = sorted(n for n, h in homes.items() if len(h) > 1)
    if clash:
        raise FileNotFoundError(f"source(s) {', '.join(clash)} appear in more than one of {', '.join(map(str, dirs))}; "
                                f"a source's name must be unique")
    if not shards:
        raise FileNotFoundError(f"{', '.join(map(str, dirs))}: no shards to filter; run the acquire stage first "
                                f"(dvc repro acquire)")
    bad_words = read_bad_words(cfg["rules"]["c4"].get("bad_words_file"))
    for where in presidio_requests(cfg)[:1]:
        pii_presidio.check_installed(where)  # ParamsError before any work if it is missing
    if cfg["rules"]["langid"]["enabled"] or any(
            (o.get("langid") or {}).get("enabled") for o in (*cfg["domains"].values(), *cfg["sources"].values())):
        langid.load_model(cfg["rules"]["langid"]["model"])  # fail before any work if it is missing
    with atomic_dir(kept_dir) as kept_tmp, atomic_dir(rejected_dir) as rej_tmp:
        tasks = [{"shard": str(s), "kept": str(kept_tmp), "rejected": str(rej_tmp), "cfg": cfg,
                  "bad_words": bad_words, "batch_rows": cfg["batch_rows"]} for s in shards]
        results = map_tasks(run_task, tasks, params["common"], desc="filter",
                            postfix=lambda r: {"docs": r["docs_in"], "kept": r["docs_kept"]})
    tree, plot_rows = summarise(results)
    unnamed = tree["documents_default_rules"]
    if unnamed:
        langs = ", ".join(cfg["rules"]["langid"]["languages"]) if cfg["rules"]["langid"]["enabled"] else "off"
        print(f"filter: warning: domain(s) {', '.join(f'{d} ({n:,} documents)' for d, n in unnamed.items())} are "
              f"not named in filter.domains and got the default rules (language ID: {langs}); name them there "
              f"to choose their rules", file=sys.stderr)
    return tree, plot_rows


def summarise(results: list[dict]) -> tuple[dict, list[dict]]:
    per_source: dict[str, dict] = defaultdict(new_stats)
    for r in results:
        agg = per_source[r["source"]]
        for key, value in r.items():
            if key != "source":
                agg[key] += value
    tree: dict = {"sources": {}}
    plot_rows = []
    totals = Counter()
    for source in sorted(per_source):
        agg = per_source[source]
        removed = {rule: {"documents": agg["removed_docs"].get(rule, 0), "chars": agg["removed_chars"].get(rule, 0)}
                   for rule in ALL_RULES}
        lines = {rule: {"chars": agg["line_chars"].get(rule, 0), "documents_touched": agg["line_docs"].get(rule, 0)}
                 for rule in sorted(set(agg["line_chars"]) | set(agg["line_docs"]))}
        tree["sources"][source] = {
            "documents_in": agg["docs_in"], "documents_kept": agg["docs_kept"],
            "kept_fraction": agg["docs_kept"] / agg["docs_in"] if agg["docs_in"] else 0.0,
            "chars_in": agg["chars_in"], "chars_kept": agg["chars_kept"],
            "removed": removed, "lines_removed": lines,
            "pii": {k: agg["pii"].get(k, 0) for k in pii.PLACEHOLDERS},
        }
        for rule in ALL_RULES:
            plot_rows.append({"source": source, "rule": rule, "documents": removed[rule]["documents"],
                              "chars": removed[rule]["chars"]})
        for key in ("docs_in", "docs_kept", "chars_in", "chars_kept"):
            totals[key] += agg[key]
        for k in pii.PLACEHOLDERS:
            totals[f"pii.{k}"] += agg["pii"].get(k, 0)
    default_domains = Counter()
    for agg in per_source.values():
        default_domains.update(agg["default_domains"])
    tree.update({
        # documents whose domain filter.domains does not name, so they got filter.rules as they are
        "documents_default_rules": dict(sorted(default_domains.items())),
        "documents_in": totals["docs_in"], "documents_kept": totals["docs_kept"],
        "kept_fraction": totals["docs_kept"] / totals["docs_in"] if totals["docs_in"] else 0.0,
        "chars_in": totals["chars_in"], "chars_kept": totals["chars_kept"],
        "pii": {k: totals[f"pii.{k}"] for k in pii.PLACEHOLDERS},
        "removed": {rule: {"documents": sum(s["removed"][rule]["documents"] for s in tree["sources"].values()),
                           "chars": sum(s["removed"][rule]["chars"] for s in tree["sources"].values())}
                    for rule in ALL_RULES},
    })
    return tree, plot_rows
