"""Proxy runs of the studies: small pretrain runs on the pool split, one per candidate mixture
(or seed), each a cached DVC unit (studies/dvc.yaml), and what they measure.

A proxy is the pretrain stage's recipe with `studies.proxy` laid over it (a smaller model, fewer
tokens) and a fixed or DoReMi mixture, trained by lmbuild.train.causal_lm like any pretrain. It
reports per-domain held-out loss and bits per byte: bpb_d = loss_d / ln 2 / (bytes per token of
domain d in the val split, from metrics/tokenize.json), so the number does not depend on the
tokenizer and domains compare.

Candidate mixtures of the mixture study: proxy 0 is the prior (the default mix's pretrain
weights), proxy i > 0 is a Dirichlet draw around it (lmbuild.study.mixtures.sample_mixtures) from
the seed (studies.mixture.seed, i): adding proxies leaves the existing ones, and their cache, as
they are.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np

from ..params import ParamsError, deep_merge, training_seed, validate_section
from ..shards import atomic_dir
from .mixtures import RegmixError, clip_to_caps, sample_mixtures, weight_caps

STUDIES = Path("studies")


class StudyError(Exception):
    """A study that cannot run as asked; the message says what to change."""


def prior(params: dict) -> dict[str, float]:
    """The default mixture: mix.pretrain's domain weights, normalised."""
    w = {d: float(v["weight"]) for d, v in params["mix"]["pretrain"]["domains"].items() if v["weight"] > 0}
    total = sum(w.values())
    return {d: v / total for d, v in sorted(w.items())}


def pool_tokens(tokens_dir: Path, seq_len: int | None = None) -> dict[str, int]:
    """Tokens of each domain's pool; with seq_len, only what whole blocks of it hold (the sampler
    reads blocks, so a cap from the raw count would let a small pool be read past max_epochs)."""
    meta = Path(tokens_dir) / "pool" / "meta.json"
    if not meta.exists():
        raise StudyError(f"{meta}: missing; the studies draw from the pool split (mix.pool: true, then "
                         f"`dvc repro tokenize`)")
    tokens = {d: int(t) for d, t in json.loads(meta.read_text())["tokens_per_domain"].items()}
    return {d: (t // seq_len) * seq_len for d, t in tokens.items()} if seq_len else tokens


def proxy_caps(params: dict, tokens_dir: Path, domains) -> dict[str, float]:
    """The largest weight each domain can take in a proxy run within studies.mixture.max_epochs."""
    section = proxy_section(params)
    pools = pool_tokens(tokens_dir, section["seq_len"])
    return weight_caps({d: pools.get(d, 0) for d in domains}, params["studies"]["mixture"]["max_epochs"],
                       section["max_tokens"])


def proxy_section(params: dict) -> dict:
    """The pretrain section a proxy trains with: pretrain's, with studies.proxy over it (checked
    against the pretrain schema, so a typo in studies.proxy is a one-line error)."""
    try:
        return validate_section("pretrain", deep_merge(params["pretrain"], params["studies"]["proxy"]))
    except ParamsError as exc:  # name the keys as the user wrote them: studies.proxy is pretrain's overlay
        raise ParamsError([line.replace("params.yaml: pretrain.", "params.yaml: studies.proxy.", 1)
                           for line in exc.problems]) from None


def candidate(params: dict, tokens_dir: Path, i: int) -> dict[str, float]:
    """Weights of the mixture study's proxy i (0 = the prior), within the pools' caps."""
    cfg, p = params["studies"]["mixture"], prior(params)
    try:
        caps = proxy_caps(params, tokens_dir, p)
        rows = sample_mixtures(p, i + 1, cfg["seed"], cfg["concentration"], max_weight=caps)
    except RegmixError as exc:
        raise StudyError(f"studies.mixture: {exc}") from None
    return dict(zip(p, map(float, rows[i])))


def study_params(params: dict, mixture: dict, seed: int | None = None) -> dict:
    """Full params for causal_lm.run with the proxy recipe and `mixture` as the pretrain section."""
    out = dict(params)
    section = proxy_section(params)
    section["mixture"] = deep_merge(section.get("mixture") or {}, mixture)
    if seed is not None:
        section["seed"] = seed
    out["pretrain"] = section
    return out


def bits_per_byte(val_loss_domain: dict[str, float], tokenize_metrics: dict) -> dict[str, float]:
    out = {}
    for d, loss in val_loss_domain.items():
        bpt = tokenize_metrics.get(f"val.domains.{d}.bytes_per_token")
        if bpt:
            out[d] = loss / math.log(2) / bpt
    return out


def run_proxy(params: dict, mixture: dict, out: Path, tokens_dir: Path, tokenizer_dir: Path,
              tokenize_metrics: dict, seed: int | None = None, extra: dict | None = None) -> dict:
    """Train one proxy into `out` (model/, live/, metrics.json, atomically); return its metrics."""
    from ..train.causal_lm import run  # torch and transformers only when a proxy trains

    full = study_params(params, mixture, seed)
    with atomic_dir(out) as tmp:
        m = run("pretrain", full, tokens_dir=tokens_dir, train_split="pretrain", tokenizer_dir=tokenizer_dir,
                out_model=tmp / "model", ckpt_dir=tmp / "ckpt", live_dir=tmp / "live")
        shutil.rmtree(tmp / "ckpt", ignore_errors=True)  # a proxy reruns whole; its checkpoint is not kept
        bpb = bits_per_byte(m["val_loss_domain"], tokenize_metrics)
        record = {"val_loss": m["val_loss"], "val_loss_domain": m["val_loss_domain"], "bpb": bpb,
                  "bpb_mean": sum(bpb.values()) / len(bpb) if bpb else float("nan"),
                  "mixture": m.get("mixture", {}), "tokens_seen": m["tokens_seen"], "parameters": m["parameters"],
                  "parameters_non_embedding": m["parameters_non_embedding"],
                  "wall_time_s": m["wall_time_s"], "seed": training_seed(full, "pretrain"), **(extra or {})}
        (tmp / "metrics.json").write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
    return record


def read_proxies(root: Path) -> dict[str, dict]:
    """{proxy name: its metrics.json} of every finished proxy under root, sorted by name."""
    out = {}
    for f in sorted(Path(root).glob("*/metrics.json"), key=lambda p: (len(p.parent.name), p.parent.name)):
        out[f.parent.name] = json.loads(f.read_text())
    return out


def check_count(n_runs: int, n_params: int, what: str) -> None:
    if n_runs <= n_params:
        raise ParamsError([f"params.yaml: studies.{what}: {n_runs} runs cannot fit {n_params} parameters; "
                           f"list more proxies (at least {n_params + 1})"])


def _weights_file(path: Path) -> dict[str, float]:
    if not path.is_file():
        raise StudyError(f"{path}: missing; run the study that writes it (dvc repro studies/dvc.yaml)")
    return {d: float(w) for d, w in json.loads(path.read_text())["weights"].items()}


def uniform_within_caps(params: dict, tokens_dir: Path) -> dict[str, float]:
    """Equal weights over the default mix's domains, clipped to the caps of the proxy's budget (a
    small pool, like the demo's jokes, cannot take a fifth of the tokens) and renormalised."""
    p = prior(params)
    try:
        caps = proxy_caps(params, tokens_dir, p)
    except RegmixError as exc:
        raise StudyError(f"studies.compare uniform: {exc}") from None
    w = clip_to_caps(np.full(len(p), 1.0 / len(p)), np.array([caps[d] for d in p]))
    return dict(zip(p, map(float, w)))


def scaled_model(hidden: int, layers: int) -> dict:
    """A proxy model of the scaling grid: heads of 16 dimensions (at least one), a SwiGLU width of
    8/3 the hidden size rounded to a multiple of 8 (the Llama convention)."""
    return {"hidden_size": hidden, "num_layers": layers, "num_heads": max(1, hidden // 16),
            "num_kv_heads": None, "intermediate_size": max(8, int(round(hidden * 8 / 3 / 8)) * 8)}


def proxy_job(params: dict, tokens_dir: Path, study: str, args: list[str]) -> tuple[dict, dict, Path, int | None, dict]:
    """(params, mixture, output dir, seed, extra metrics) of one proxy, from the stage's arguments."""
    root = STUDIES / study / "proxies"
    usage = StudyError(f"unknown proxy {study} {' '.join(args)}; see `python -m stages.study_proxy` --help in "
                       f"its docstring")
    if study == "mixture" and len(args) == 1 and args[0].isdigit():
        i = int(args[0])
        return params, {"kind": "fixed", "weights": candidate(params, tokens_dir, i)}, root / str(i), None, {"proxy": i}
    if study == "doremi" and args in (["reference"], ["proxy"]):
        seed = params["studies"]["doremi"]["seed"]
        if args[0] == "reference":  # DoReMi's reference model: the default mixture at proxy size
            return params, {"kind": "fixed", "weights": prior(params)}, root / "reference", seed, {}
        return params, {"kind": "doremi", "reference_model": str(root / "reference" / "model")}, root / "proxy", seed, {}
    if study in ("compare", "compare_full") and len(args) == 2 and args[1].isdigit():
        name, seed = args[0], int(args[1])
        if study == "compare_full":  # the demo's own pretrain recipe, not the proxy's
            params = {**params, "studies": {**params["studies"], "proxy": {}}}
        p = prior(params)
        weights = {"default": lambda: p, "uniform": lambda: uniform_within_caps(params, tokens_dir),
                   "regmix": lambda: _weights_file(STUDIES / "mixture" / "weights.json"),
                   "doremi": lambda: _weights_file(STUDIES / "doremi" / "weights.json")}
        if name not in weights:
            raise usage
        return params, {"kind": "fixed", "weights": weights[name]()}, root / f"{name}-{seed}", seed, {"mixture_name": name}
    if study == "scaling" and len(args) == 4 and all(a.isdigit() for a in args[1:]):
        name, hidden, layers, tokens = args[0], int(args[1]), int(args[2]), int(args[3])
        scaled = deep_merge(params, {"studies": {"proxy": {"model": scaled_model(hidden, layers), "max_tokens": tokens}}})
        return scaled, {"kind": "fixed", "weights": prior(params)}, root / name, None, {"grid_point": name}
    raise usage


def write_doremi(record: dict, path: Path) -> None:
    """DoReMi's result: the domain weights averaged over the proxy's training (Xie et al. 2023)."""
    mix = record["mixture"]
    path.write_text(json.dumps({"study": "doremi", "weights": mix["average_weights"],
                                "final_weights": mix["final_weights"]}, indent=1, sort_keys=True) + "\n")
