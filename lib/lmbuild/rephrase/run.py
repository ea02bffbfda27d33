"""The rephrase stage's work: pick a seeded sample of documents, cut them into chunks, have the
model rewrite every chunk in every style (batched sampling with a KV cache), and write the
rewrites as raw document shards, one source per style, with their lineage.

What stays out of the sample: the main mix's held-out documents (data/mix/val), so that a
rewrite of an eval document never reaches a training mix.

Lineage: every output row carries `parent_id` (the document it rewrites) and `style`; the
directory's lineage.json names the model (path, type, a digest of its weights), the prompts and
the sampling settings. The filter stage keeps only the contract's columns, so a kept document's
lineage is found by its id in these shards.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import re
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from ..shards import DOC_SCHEMA, ShardWriter, atomic_dir, doc_id, list_shards, read_batches
from .styles import StyleError, prompts_for, render

LINEAGE_SCHEMA = pa.schema([*DOC_SCHEMA, pa.field("parent_id", pa.string(), nullable=False),
                            pa.field("style", pa.string(), nullable=False)])
COPY_NGRAM = 8   # words per n-gram of the copy rate (share of an output's 8-grams found in its parent)


class RephraseError(ValueError):
    """What the user must change before the stage can run; the message names the key."""


def log(msg: str) -> None:
    print(f"rephrase: {msg}", file=sys.stderr)


def check_model(path: Path):
    """The model's config, when `path` holds a causal LM; else a one-line error naming the key."""
    from transformers import AutoConfig
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    if not (path / "config.json").is_file():
        raise RephraseError(f"params.yaml: rephrase.model: {path} has no config.json; name a local Hugging Face "
                            f"model directory (your instruct model, or models/anneal to exercise the path)")
    config = AutoConfig.from_pretrained(path)
    archs = config.architectures or []
    causal = config.model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES and (
        not archs or any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in archs))
    if not causal:
        raise RephraseError(f"params.yaml: rephrase.model: {path} is a {config.model_type} model "
                            f"({', '.join(archs) or 'no architecture named'}), not a causal LM; rephrasing needs a "
                            f"model that generates text")
    return config


def prompt_format(tok, asked: str) -> str:
    """`auto`: chat when the tokenizer has a chat template (an instruct model), else plain."""
    if asked != "auto":
        return asked
    fmt = "chat" if getattr(tok, "chat_template", None) else "plain"
    log(f"rephrase.format auto -> {fmt} ({'the tokenizer has' if fmt == 'chat' else 'no'} chat template)")
    return fmt


def held_out_ids(val_dir: Path) -> set[str]:
    return {i for s in list_shards(val_dir) for b in read_batches(s, columns=["id"]) for i in b.column(0).to_pylist()}


def _rank(seed: int, doc: str) -> int:
    return int.from_bytes(hashlib.blake2b(f"{seed}\x00{doc}".encode(), digest_size=8).digest(), "big")


def sample_documents(input_dir: Path, domains: list[str], n: int, seed: int, exclude: set[str]) -> list[dict]:
    """The n documents of `domains` with the smallest seeded hash of their id (the same sample on
    any machine, whatever the shard layout), in that hash order; held-out ids excluded."""
    heap: list[tuple[int, str, str, str]] = []   # (-rank, id, text, domain): the n smallest ranks kept
    wanted = pa.array(domains)
    for shard in list_shards(input_dir):
        for batch in read_batches(shard, columns=["id", "text", "domain"]):
            batch = batch.filter(pc.is_in(batch.column(2), value_set=wanted))
            for doc, text, dom in zip(*(batch.column(i).to_pylist() for i in range(3))):
                if doc in exclude:
                    continue
                item = (-_rank(seed, doc), doc, text, dom)
                if len(heap) < n:
                    heapq.heappush(heap, item)
                elif item[0] > heap[0][0]:
                    heapq.heapreplace(heap, item)
    return [{"id": d, "text": t, "domain": dom} for _, d, t, dom in sorted(heap, reverse=True)]


def chunks(tok, text: str, size: int, most: int) -> list[str]:
    """The document cut into pieces of at most `size` tokens (WRAP rewrites chunks of up to 300
    tokens, since a model paraphrases a short passage more faithfully), at most `most` of them."""
    # only the head of a long document is used: tokenize at most 8 characters per kept token
    # (every tokenizer lmbuild trains averages 3-4)
    ids = tok(text[:size * most * 8], add_special_tokens=False)["input_ids"][:size * most]
    return [tok.decode(ids[i:i + size]) for i in range(0, len(ids), size)][:most]


def copy_rate(output: str, parent: str, n: int = COPY_NGRAM) -> float | None:
    """Share of the output's word n-grams that appear in its parent: 1 = a verbatim copy, 0 = all
    new wording (None: the output has fewer than n words)."""
    def grams(s: str) -> list[tuple[str, ...]]:
        w = re.findall(r"\w+", s.lower())
        return [tuple(w[i:i + n]) for i in range(len(w) - n + 1)]
    out, seen = grams(output), set(grams(parent))
    return None if not out else sum(g in seen for g in out) / len(out)


def weights_digest(path: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(path.glob("*.safetensors")) or sorted(path.glob("*.bin")):
        h.update(f.name.encode())
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def rephrase(params: dict, input_dir: Path, val_dir: Path, out_dir: Path) -> dict:
    """Run the stage; return its metrics tree."""
    import torch
    from transformers import AutoTokenizer

    from ..lm.chat import chat_ids
    from ..lm.model import load_model
    from ..lm.sampling import sample
    from ..stats import with_stderr

    cfg, seed = params["rephrase"], params["common"]["seed"]
    model_dir = Path(cfg["model"])
    config = check_model(model_dir)
    try:
        templates = prompts_for(cfg["styles"], cfg["prompts"])
    except StyleError as exc:
        raise RephraseError(str(exc)) from None
    tok = AutoTokenizer.from_pretrained(model_dir)
    fmt = prompt_format(tok, cfg["format"])
    limit = getattr(config, "max_position_embeddings", None)
    longest = max(len(render(tok, t, "", fmt)) for t in templates.values()) + cfg["chunk_tokens"] + cfg["max_new_tokens"]
    if limit and longest > limit:
        raise RephraseError(f"params.yaml: rephrase.chunk_tokens: {cfg['chunk_tokens']} + max_new_tokens "
                            f"{cfg['max_new_tokens']} + the longest prompt's own tokens = {longest} > the model's "
                            f"{limit} positions; lower either")
    exclude = held_out_ids(val_dir)
    docs = sample_documents(input_dir, cfg["domains"], cfg["documents"], seed, exclude)
    if not docs:
        raise RephraseError(f"params.yaml: rephrase.domains: no document of {', '.join(cfg['domains'])} in "
                            f"{input_dir} outside the held-out set")
    if len(docs) < cfg["documents"]:
        log(f"only {len(docs)} documents of {', '.join(cfg['domains'])} outside the held-out set "
            f"(rephrase.documents asks {cfg['documents']}); rewriting all of them")

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = load_model(model_dir).to(device)
    if device.type == "cuda":
        model = model.to(torch.bfloat16)
    log(f"{model_dir} ({config.model_type}) on {device.type} in {'bf16' if device.type == 'cuda' else 'fp32'}, "
        f"{len(docs)} documents x {len(templates)} styles, format {fmt}")
    if fmt == "chat":
        eos, pad = chat_ids(tok)
    else:
        eos = [tok.eos_token_id]
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id

    pieces = [chunks(tok, d["text"], cfg["chunk_tokens"], cfg["max_chunks"]) for d in docs]
    jobs = [(di, ci, style) for style in templates for di, cs in enumerate(pieces) for ci in range(len(cs))]
    prompts = [render(tok, templates[s], pieces[di][ci], fmt) for di, ci, s in jobs]
    order = sorted(range(len(jobs)), key=lambda j: len(prompts[j]))   # similar lengths batch together
    start = time.perf_counter()
    done = sample(model, [prompts[j] for j in order], max_new_tokens=cfg["max_new_tokens"],
                  greedy=cfg["temperature"] == 0, temperature=cfg["temperature"] or 1.0, top_p=cfg["top_p"], seed=seed, batch_size=cfg["batch_size"],
                  eos_ids=eos, pad_id=pad, progress="rephrase")
    wall = time.perf_counter() - start
    outputs: dict[tuple[int, str], list[str]] = {}
    generated = 0
    for j, (completion,) in zip(order, done):
        di, ci, style = jobs[j]
        generated += len(completion)
        outputs.setdefault((di, style), [""] * len(pieces[di]))[ci] = tok.decode(completion, skip_special_tokens=True).strip()

    metrics: dict = {"documents": len(docs), "chunks": sum(map(len, pieces)), "generated_tokens": generated,
                     "tokens_per_s": generated / wall if wall else 0.0, "wall_time_s": wall,
                     "held_out_excluded": len(exclude), "styles": {}}
    with atomic_dir(out_dir) as tmp:
        for style in templates:
            source = f"{cfg['source_prefix']}_{style}"
            rows, rates, ratios, empty = [], [], [], 0
            for di, d in enumerate(docs):
                text = "\n\n".join(t for t in outputs[(di, style)] if t)
                empty += not text
                rate = copy_rate(text, " ".join(pieces[di]))   # against what the model was shown
                if rate is not None:
                    rates.append(rate)
                ratios.append(len(text) / max(1, len("".join(pieces[di]))))
                rows.append({"id": doc_id(source, d["id"]), "text": text, "source": source, "domain": cfg["domain"],
                             "url": None, "parent_id": d["id"], "style": style})
            with ShardWriter(tmp / source, "part", LINEAGE_SCHEMA) as w:
                w.write(pa.Table.from_pylist(rows, schema=LINEAGE_SCHEMA))
            metrics["styles"][style] = {"documents": len(rows), "empty": empty, **with_stderr("copy_rate", rates),
                                        **with_stderr("length_ratio", ratios)}
        lineage = {"model": {"path": str(model_dir), "model_type": config.model_type,
                             "architectures": config.architectures, "weights_sha256": weights_digest(model_dir)},
                   "format": fmt, "prompts": templates,
                   "sampling": {k: cfg[k] for k in ("max_new_tokens", "temperature", "top_p", "batch_size")} | {"seed": seed},
                   "input": str(input_dir), "domains": cfg["domains"], "held_out": str(val_dir),
                   "chunk_tokens": cfg["chunk_tokens"], "max_chunks": cfg["max_chunks"],
                   "output": {"domain": cfg["domain"], "sources": [f"{cfg['source_prefix']}_{s}" for s in templates]},
                   "documents": len(docs)}
        (tmp / "lineage.json").write_text(json.dumps(lineage, indent=1, sort_keys=True) + "\n")
    return metrics
