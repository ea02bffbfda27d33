"""Model cards in Hugging Face's format (README.md with a YAML metadata block) for every model
stage, written by the `card` stage to cards/<stage>/README.md after that model's eval.

A card names what the model was built from: the sources (origin, licence, documents, bytes, from
the acquire manifest), the data params in force (filter, dedup, rate, mix), the tokens per domain
of its training split and the tokens it saw, the tokenizer, its training hyperparameters, the
upstream stages with their output hashes (lmbuild.lineage, from dvc.lock) and the git commit;
its model-index holds the eval results with their standard errors.

It lives beside the models, not in them: a card quotes eval results, and an output belongs to one
stage, so putting it in models/<stage> would make the training stage depend on eval. To publish,
copy cards/<stage>/README.md into the model directory.

Licence: the metadata's `license` is the sources' licence only when every source states the same
one; otherwise it is `other`, with every source's licence listed in the card (a model trained on
mixed or unknown licences must not claim one).
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from .lineage import Node, chain, git_commit
from .model_stages import MODEL_STAGES

DATA_SECTIONS = ("acquire", "filter", "dedup", "rate", "mix", "tokenize")
# SPDX ids the Hub accepts in `license:` (lower-case), for the licences the demo sources give
HUB_LICENSES = {"MIT": "mit", "BSD-3-Clause": "bsd-3-clause", "Apache-2.0": "apache-2.0", "CC-BY-SA-4.0": "cc-by-sa-4.0",
                "CC-BY-4.0": "cc-by-4.0", "CC0-1.0": "cc0-1.0", "PSF-2.0": "other", "LGPL-2.1": "lgpl-2.1",
                "GPL-3.0": "gpl-3.0"}


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def licence_fields(sources: dict[str, dict]) -> dict:
    """The metadata's licence fields: one SPDX id when all sources agree on a known one, else other."""
    licences = sorted({s.get("licence") or "unknown" for s in sources.values()})
    if not licences:
        return {"license": "other", "license_name": "unknown",
                "license_details": "the acquire manifest (data/raw/manifest.json) was not available"}
    if len(licences) == 1 and HUB_LICENSES.get(licences[0], "other") != "other":
        return {"license": HUB_LICENSES[licences[0]]}
    return {"license": "other",
            "license_name": "mixed-sources" if len(licences) > 1 else (licences[0] or "unknown").lower(),
            "license_details": "the training sources carry these licences: " + ", ".join(licences)}


def _metric(kind: str, name: str, value, stderr=None) -> dict:
    m = {"type": kind, "value": round(float(value), 6), "name": name}
    if stderr is not None:
        m["name"] += f" (stderr {float(stderr):.4f})"
        m["stderr"] = round(float(stderr), 6)
    return m


def model_index(stage: str, ev: dict) -> list[dict]:
    """Hugging Face model-index results from one stage's eval metrics (data/eval/<stage>/metrics.json)."""
    results = []
    if "task_accuracy" in ev:
        fams = sorted(k[len("task_accuracy_"):] for k in ev if k.startswith("task_accuracy_")
                      and not k.endswith("_stderr") and k != "task_accuracy_gain")
        results.append({"task": {"type": "text-generation", "name": "held-out verifiable tasks (greedy)"},
                        "dataset": {"type": "lmbuild/tasks", "name": "lmbuild tasks, test split"},
                        "metrics": [_metric("accuracy", "task accuracy", ev["task_accuracy"], ev.get("task_accuracy_stderr"))]
                        + [_metric("accuracy", f"task accuracy: {f}", ev[f"task_accuracy_{f}"],
                                   ev.get(f"task_accuracy_{f}_stderr")) for f in fams]})
    bpb = ev.get("bpb") or {}
    if "all" in bpb:
        doms = sorted(k for k in bpb if not k.endswith("_stderr") and k != "all")
        results.append({"task": {"type": "text-generation", "name": "held-out bits per byte"},
                        "dataset": {"type": "lmbuild/val", "name": "held-out documents of the mix"},
                        "metrics": [_metric("bits_per_byte", "bits per byte", bpb["all"], bpb.get("all_stderr"))]
                        + [_metric("bits_per_byte", f"bits per byte: {d}", bpb[d], bpb.get(f"{d}_stderr")) for d in doms]})
    mc = ev.get("mc") or {}
    if mc:
        results.append({"task": {"type": "multiple-choice", "name": "cloze multiple choice (log-likelihood)"},
                        "dataset": {"type": "lmbuild/eval_sets", "name": "lmbuild cloze sets"},
                        "metrics": [_metric("acc_norm", f"acc_norm: {name}", r["acc_norm"], r.get("acc_norm_stderr"))
                                    for name, r in sorted(mc.items()) if isinstance(r, dict) and "acc_norm" in r]})
    for name, r in sorted((ev.get("preference") or {}).items()):
        if isinstance(r, dict) and "accuracy" in r:
            results.append({"task": {"type": "text-classification", "name": f"preference accuracy ({name})"},
                            "dataset": {"type": f"lmbuild/{name}", "name": f"held-out {name} pairs"},
                            "metrics": [_metric("accuracy", "chosen over rejected", r["accuracy"], r.get("accuracy_stderr"))]})
    for task, r in sorted((ev.get("harness") or {}).items()):   # lm-evaluation-harness tasks
        names = sorted(k for k, v in r.items() if not k.endswith("_stderr") and isinstance(v, (int, float))
                       and k not in ("samples", "num_fewshot", "chat_template"))
        if names:
            results.append({"task": {"type": "text-generation", "name": f"{task} (lm-evaluation-harness, "
                                                                        f"{r.get('num_fewshot', 0)}-shot)"},
                            "dataset": {"type": task, "name": task},
                            "metrics": [_metric(n, n, r[n], r.get(f"{n}_stderr")) for n in names]})
    return [{"name": f"lmbuild-{stage}", "results": results}]


def _yaml_block(value) -> str:
    return yaml.safe_dump(value, sort_keys=True, default_flow_style=False, allow_unicode=True).rstrip()


def build_card(stage: str, root: Path = Path(".")) -> str:
    """The card of models/<stage> as README.md text."""
    if stage not in MODEL_STAGES:
        raise ValueError(f"card: {stage!r} is not a model stage ({', '.join(MODEL_STAGES)})")
    nodes: list[Node] = chain(f"models/{stage}", root)
    by_stage = {n.stage: n for n in nodes}
    manifest = _read_json(root / "data/raw/manifest.json").get("sources", {})
    ev = _read_json(root / f"data/eval/{stage}/metrics.json")
    train = _read_json(root / f"metrics/{stage}.json")
    tok = _read_json(root / "metrics/tokenize.json")
    git = git_commit(root)
    upstream_models = [n.stage for n in nodes[1:] if n.stage in MODEL_STAGES]

    meta = {"library_name": "transformers", "pipeline_tag": "text-generation",
            "tags": ["lmbuild", stage], "datasets": sorted(manifest), **licence_fields(manifest),
            "model-index": model_index(stage, ev)}
    out = ["---", _yaml_block(meta), "---", "", f"# lmbuild {stage} model", ""]
    out.append(f"Built by the lmbuild pipeline's `{stage}` stage"
               + (f" from {', '.join(f'models/{m}' for m in upstream_models[:1])}" if upstream_models else "")
               + f", at git commit `{git['commit']}`" + (" (with uncommitted changes)" if git["dirty"] else "")
               + ". `python -m lmbuild.lineage models/" + stage + "` prints the full chain.")
    out += ["", "## Training data sources", "",
            "| source | domain | origin | licence | documents | bytes |", "|---|---|---|---|---:|---:|"]
    for name, s in sorted(manifest.items()):
        out.append(f"| {name} | {s.get('domain')} | {s.get('origin')} | {s.get('licence') or 'unknown'} "
                   f"| {s.get('documents', 0):,} | {s.get('bytes', 0):,} |")
    if meta["license"] == "other":
        out += ["", f"Licence: {meta['license_details']}. No single licence is claimed for the model."]

    split = "anneal" if stage == "anneal" else "pretrain"
    domains = sorted({k.split(".")[2] for k in tok if k.startswith(f"{split}.domains.") and k.endswith(".tokens")})
    if domains and stage in ("pretrain", "anneal"):
        total = tok.get(f"{split}.tokens") or 1
        seen = train.get("tokens_seen", 0)
        out += ["", f"## Tokens ({split} split)", "",
                f"Seen in training: {seen:,} tokens. Per domain, the split's tokens and the tokens seen "
                f"(estimated as tokens seen x the domain's share: batches draw blocks uniformly):", "",
                "| domain | tokens in split | share | tokens seen (est.) |", "|---|---:|---:|---:|"]
        for d in domains:
            n = tok[f"{split}.domains.{d}.tokens"]
            out.append(f"| {d} | {n:,} | {n / total:.3f} | {round(seen * n / total):,} |")
    elif train.get("tokens_seen"):
        out += ["", "## Tokens", "", f"Seen in this stage: {train['tokens_seen']:,} tokens "
                "(post-training data; see the stage's params below)."]
    if "tokenize" in by_stage:
        tn = by_stage["tokenize"]
        tok_hash = next((o["md5"] for o in tn.outs if o["path"] == "models/tokenizer"), "")
        out += ["", "## Tokenizer", "", f"models/tokenizer `{tok_hash}`, vocabulary {tok.get('vocab_size', '?')}; "
                f"params:", "", "```yaml", _yaml_block(tn.params.get("tokenize", {})), "```"]

    own = by_stage[stage].params
    out += ["", "## Training hyperparameters", "", "```yaml", _yaml_block({stage: own.get(stage, {}),
                                                                          "common": own.get("common", {})}), "```"]
    for key in ("train_loss", "val_loss", "task_accuracy", "steps", "tokens_per_s", "wall_time_s", "parameters"):
        if key in train:
            out.append(f"- {key}: {train[key]:.6g}" if isinstance(train[key], float) else f"- {key}: {train[key]}")

    data_params = {sec: n.params[sec] for n in nodes for sec in DATA_SECTIONS if sec in n.params}
    if data_params:
        out += ["", "## Data params in force", "", "```yaml", _yaml_block(data_params), "```"]

    out += ["", "## Lineage (from dvc.lock)", "", "| stage | output | hash |", "|---|---|---|"]
    for n in nodes:
        for o in n.outs:
            out.append(f"| {n.stage} | {o['path']} | `{o['md5']}` |")
    out += ["", "## Evaluation", "", "The model-index above holds every eval number with its standard error "
            f"(data/eval/{stage}/metrics.json; items in data/eval/{stage}/items).", ""]
    return "\n".join(out)
