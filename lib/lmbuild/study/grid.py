"""The proxies of a scaling study: parameter counts of model configs, and (config, token budget)
grids whose budgets the token pool can reach.

Which N: the fit uses total parameters (embeddings included, tied weights counted once), as
Hoffmann et al. 2022 (Chinchilla) do. Kaplan et al. 2020 count non-embedding parameters
("excluding all vocabulary and positional embeddings", ~12 n_layer d^2); Pearce & Song 2024,
"Reconciling Kaplan and Chinchilla Scaling Laws" (arXiv 2406.12907), trace most of the gap
between the two papers' exponents to that choice at small scale, where embeddings are a large
share of the model, and recommend total parameters. lmbuild's proxies are small, so the choice
matters here; `param_counts` returns both, and `proxy_grid` uses the total.

A config is a dict with the keys of params.yaml `pretrain.model` plus the vocabulary size:
hidden_size, num_layers, intermediate_size, vocab_size, tie_embeddings, and optionally
num_heads / num_kv_heads (grouped-query attention; default: as many KV heads as heads), type
(llama | olmo2: OLMo 2 adds QK-norm weights) and name.
"""

from __future__ import annotations

from dataclasses import dataclass

REQUIRED = ("hidden_size", "num_layers", "intermediate_size", "vocab_size", "tie_embeddings")


class GridError(ValueError):
    """A config or a budget the study cannot use; one line naming the proxy or config."""


@dataclass
class Proxy:
    name: str
    config: dict
    N: int  # total parameters (Chinchilla's count)
    D: int  # training tokens
    C: float  # training FLOPs, 6 N D (Kaplan et al. 2020, section 2.1)
    epochs: float  # D / pool tokens: passes over the pool this budget needs


def config_name(cfg: dict) -> str:
    return str(cfg.get("name") or f"d{cfg.get('hidden_size')}_l{cfg.get('num_layers')}")


def param_counts(cfg: dict) -> dict[str, int]:
    """Parameter counts of a Llama- or OLMo2-style decoder (no biases), as transformers builds it.

    Per layer: attention q, o (d x d) and k, v (d x kv_dim, kv_dim = d * kv_heads / heads);
    SwiGLU MLP gate, up, down (3 x d x ff); two RMSNorm weights (d each); OLMo 2's QK-norm adds
    d + kv_dim. Then a final norm (d), the input embedding (V x d) and, untied, an output head
    (V x d). total counts tied weights once (what `lmbuild.train.model.count_params` calls
    total); non_embedding excludes the input embedding and the output head (Kaplan's N)."""
    name = config_name(cfg)
    missing = [k for k in REQUIRED if k not in cfg]
    if missing:
        raise GridError(f"scaling grid: config {name}: missing {', '.join(missing)}")
    d, n_layers, ff, vocab = (cfg[k] for k in ("hidden_size", "num_layers", "intermediate_size", "vocab_size"))
    heads = cfg.get("num_heads") or 1
    kv_heads = cfg.get("num_kv_heads") or heads
    for key, v in (("hidden_size", d), ("num_layers", n_layers), ("intermediate_size", ff),
                   ("vocab_size", vocab), ("num_heads", heads), ("num_kv_heads", kv_heads)):
        if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
            raise GridError(f"scaling grid: config {name}: {key} must be a positive integer, got {v!r}")
    if d % heads or heads % kv_heads:
        raise GridError(f"scaling grid: config {name}: hidden_size ({d}) must be a multiple of "
                        f"num_heads ({heads}), and num_heads of num_kv_heads ({kv_heads})")
    kind = cfg.get("type", "llama")
    if kind not in ("llama", "olmo2"):
        raise GridError(f"scaling grid: config {name}: type must be llama or olmo2, got {kind!r}")
    kv_dim = d // heads * kv_heads
    layer = 2 * d * d + 2 * d * kv_dim + 3 * d * ff + 2 * d
    if kind == "olmo2":
        layer += d + kv_dim  # q_norm over all heads, k_norm over the KV heads
    non_embedding = n_layers * layer + d  # + final norm
    embedding = vocab * d
    head = 0 if cfg["tie_embeddings"] else vocab * d
    return {"total": non_embedding + embedding + head, "non_embedding": non_embedding,
            "embedding": embedding, "head": head}


def proxy_grid(configs: list[dict], budgets: list[int], pool_tokens: int,
               max_epochs: float) -> list[Proxy]:
    """Every (config, token budget) pair, each checked reachable: budget <= pool_tokens x max_epochs.

    A proxy that would need more passes over the pool than max_epochs stops the study before
    any run, with one line naming it (the mix stage's on_shortfall: fail, for studies)."""
    if pool_tokens <= 0 or max_epochs <= 0:
        raise GridError(f"scaling grid: pool_tokens and max_epochs must be positive, got "
                        f"{pool_tokens} and {max_epochs}")
    names = [config_name(c) for c in configs]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise GridError(f"scaling grid: config names must be unique, {', '.join(dup)} repeat (set 'name')")
    proxies = []
    for cfg, cname in zip(configs, names):
        n = param_counts(cfg)["total"]
        for tokens in budgets:
            pname = f"{cname}@{tokens}"
            if not isinstance(tokens, int) or isinstance(tokens, bool) or tokens <= 0:
                raise GridError(f"scaling grid: proxy {pname}: token budget must be a positive integer")
            if tokens > pool_tokens * max_epochs:
                raise GridError(f"scaling grid: proxy {pname}: a budget of {tokens} tokens exceeds "
                                f"pool_tokens x max_epochs = {pool_tokens} x {max_epochs} "
                                f"= {pool_tokens * max_epochs:g}")
            proxies.append(Proxy(pname, cfg, n, tokens, 6.0 * n * tokens, tokens / pool_tokens))
    return proxies
