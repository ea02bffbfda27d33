"""`bradley_terry` rater: ratings from pairwise judgments, after QuRating (Wettig et al. 2024).

A judgments file (JSONL, one `{"doc_a": id, "doc_b": id, "p_b_better": p}` per line, ids of
documents in the pool) says how likely document b is the better one of each pair. Two steps:

1. Bradley-Terry fit. Each judged document i gets a rating r_i with
   P(b better than a) = sigmoid(r_b - r_a). The ratings maximise the likelihood of the soft
   labels under a Gaussian prior: minimise
       sum_pairs [ p * softplus(-(r_b - r_a)) + (1 - p) * softplus(r_b - r_a) ] + l2/2 * |r|^2
   (convex; the prior makes the optimum unique and finite even for a document that wins every
   comparison), by L-BFGS with the exact gradient (scipy.optimize).
2. Text model. QuRating fine-tunes a language model to predict the ratings; here a ridge
   regression on word and word-bigram features does it (features: L2-normalised log(1 + count)
   of the `max_features` terms found in at least `min_df` training documents; intercept = the
   mean rating; solved by LSQR with damping sqrt(alpha)). Its prediction is the score of every
   document of the pool.

`heldout_fraction` of the usable judgments is held out of both steps; `heldout_agreement` is the
fraction of held-out judgments (p != 0.5) where sign(score_b - score_a) agrees with p > 0.5
(score ties count half). Judgments naming an id that is not in the pool, and lines that are not
valid judgments, are counted in the metrics and otherwise skipped.
"""

from __future__ import annotations

import json
import math
import zlib
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import scipy.sparse as sp
from scipy.optimize import minimize
from scipy.sparse.linalg import lsqr
from scipy.special import expit
from scipy.stats import spearmanr

from .text import is_empty, prepare, split_words

FEATURES_FILE = "features.parquet"
RATINGS_FILE = "ratings.parquet"


def prepare_text(texts: pa.Array, rater: dict) -> pa.Array:
    return prepare(texts, rater["max_chars"], rater["lowercase"], rater["split_punctuation"])


# -- judgments ---------------------------------------------------------------------------------

def read_judgments(path: str | Path) -> dict:
    """Valid judgments as arrays, and the number of invalid lines."""
    a, b, p, invalid = [], [], [], 0
    with open(path, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                doc_a, doc_b, prob = row["doc_a"], row["doc_b"], float(row["p_b_better"])
                ok = isinstance(doc_a, str) and isinstance(doc_b, str) and doc_a != doc_b and 0.0 <= prob <= 1.0
            except (ValueError, TypeError, KeyError, AttributeError):
                ok = False
            if not ok:
                invalid += 1
                continue
            a.append(doc_a)
            b.append(doc_b)
            p.append(prob)
    return {"a": np.array(a, dtype=object), "b": np.array(b, dtype=object), "p": np.array(p, dtype=np.float64),
            "invalid": invalid}


def prepare_context(rater: dict, census: dict[str, int]) -> dict:
    """Main-process context: the judgments."""
    return {"judgments": read_judgments(rater["judgments"])}


def worker_context(context: dict) -> pa.Array:
    """What the sampling tasks need: the judged ids."""
    j = context["judgments"]
    return pa.array(sorted(set(j["a"].tolist()) | set(j["b"].tolist())), pa.string())


class Collector:
    """Prepared texts of the judged documents of one shard."""

    def __init__(self, rater: dict, ids: pa.Array, shard_key: str):
        self.rater = rater
        self.ids = ids
        self.found_ids: list[pa.Array] = []
        self.texts: list[pa.Array] = []

    def add(self, batch: pa.RecordBatch) -> None:
        mask = pc.fill_null(pc.is_in(batch.column("id"), value_set=self.ids), False)
        if not pc.any(mask).as_py():
            return
        self.found_ids.append(batch.column("id").filter(mask).cast(pa.string()))
        self.texts.append(prepare_text(batch.column("text").filter(mask), self.rater).cast(pa.large_string()))

    def result(self) -> dict:
        return {"ids": self.found_ids, "texts": self.texts}


def gather(rater: dict, context: dict, results: list[dict]) -> dict:
    """Split the judgments into train / held out / unknown ids; texts of the judged documents."""
    docs: dict[str, str] = {}
    for r in results:
        for ids, texts in zip(r["ids"], r["texts"]):
            for doc_id, text in zip(ids.to_pylist(), texts.to_pylist()):
                docs.setdefault(doc_id, text)  # first occurrence wins
    j = context["judgments"]
    known = np.array([a in docs and b in docs for a, b in zip(j["a"], j["b"])], dtype=bool)
    usable = np.flatnonzero(known)
    rng = np.random.default_rng([rater["seed"], zlib.crc32(f"{rater['name']}/split".encode())])
    perm = rng.permutation(len(usable))
    n_held = int(round(rater["heldout_fraction"] * len(usable)))
    held, train = np.sort(usable[perm[:n_held]]), np.sort(usable[perm[n_held:]])
    return {"judgments": j, "docs": docs, "train": train, "held": held,
            "unknown": int((~known).sum()), "invalid": j["invalid"]}


def problems(index: int, rater: dict, data: dict, source: str = "params.yaml") -> list[str]:
    n = len(data["train"])
    if n >= rater["min_judgments"]:
        return []
    return [f"{source}: rate.raters[{index}].min_judgments: rater {rater['name']!r} has {n} usable training "
            f"judgments in {rater['judgments']} ({data['unknown']} name ids not in the pool, {data['invalid']} "
            f"invalid lines), fewer than min_judgments={rater['min_judgments']}; add judgments or lower min_judgments"]


# -- step 1: Bradley-Terry ratings -------------------------------------------------------------

def fit_ratings(a: np.ndarray, b: np.ndarray, p: np.ndarray, n_docs: int, l2: float) -> np.ndarray:
    """MAP ratings of n_docs documents from judgments (index a, index b, P(b better))."""
    def objective(r: np.ndarray) -> tuple[float, np.ndarray]:
        d = r[b] - r[a]
        loss = np.sum(p * np.logaddexp(0.0, -d) + (1.0 - p) * np.logaddexp(0.0, d)) + 0.5 * l2 * r @ r
        g = expit(d) - p  # d loss / d d
        grad = np.bincount(b, g, n_docs) - np.bincount(a, g, n_docs) + l2 * r
        return float(loss), grad

    result = minimize(objective, np.zeros(n_docs), jac=True, method="L-BFGS-B",
                      options={"maxiter": 10000, "gtol": 1e-10, "ftol": 1e-15})
    return result.x


def agreement(score_a: np.ndarray, score_b: np.ndarray, p: np.ndarray) -> float:
    """Fraction of judgments (p != 0.5) where sign(score_b - score_a) agrees with p > 0.5."""
    decided = p != 0.5
    if not decided.any():
        return float("nan")
    diff = np.sign(score_b[decided] - score_a[decided])
    want = np.where(p[decided] > 0.5, 1.0, -1.0)
    return float(np.mean(np.where(diff == 0, 0.5, diff == want)))


# -- step 2: text -> rating --------------------------------------------------------------------

def terms(prepared: pa.Array, ngrams: int) -> tuple[pa.Array, np.ndarray]:
    """Words and (ngrams=2) adjacent word pairs of every text, with the index of their text."""
    words, doc = split_words(prepared)
    words = words.cast(pa.large_string())
    if ngrams < 2 or len(words) < 2:
        return words, doc
    pair = np.flatnonzero(doc[1:] == doc[:-1])
    space = pa.scalar(" ", pa.large_string())
    bigrams = pc.binary_join_element_wise(words.take(pa.array(pair)), words.take(pa.array(pair + 1)), space)
    return pa.concat_arrays([words, bigrams]), np.r_[doc, doc[pair]]


def build_vocab(prepared: pa.Array, ngrams: int, min_df: int, max_features: int) -> pa.Array:
    """Terms in at least min_df texts, the max_features most frequent (ties by term)."""
    t, d = terms(prepared, ngrams)
    table = pa.table({"term": t, "doc": pa.array(d)})
    df = table.group_by("term").aggregate([("doc", "count_distinct")]).rename_columns(["term", "df"])
    df = df.filter(pc.greater_equal(df["df"], min_df))
    df = df.sort_by([("df", "descending"), ("term", "ascending")]).slice(0, max_features)
    return df["term"].combine_chunks().cast(pa.large_string())


def featurize(prepared: pa.Array, vocab: pa.Array, ngrams: int) -> sp.csr_matrix:
    """Rows of L2-normalised log(1 + count) over the vocabulary."""
    n = len(prepared)
    t, d = terms(prepared, ngrams)
    fid = pc.index_in(t, value_set=vocab)
    valid = fid.is_valid().to_numpy(zero_copy_only=False)
    cols = fid.filter(fid.is_valid()).to_numpy(zero_copy_only=False).astype(np.int64)
    x = sp.csr_matrix((np.ones(len(cols)), (d[valid], cols)), shape=(n, len(vocab)))
    x.sum_duplicates()
    x.data = np.log1p(x.data)
    norms = np.sqrt(np.bincount(np.repeat(np.arange(n), np.diff(x.indptr)), x.data ** 2, n))
    x.data /= np.repeat(np.where(norms > 0, norms, 1.0), np.diff(x.indptr))
    return x


def fit_ridge(x: sp.csr_matrix, y: np.ndarray, alpha: float) -> tuple[np.ndarray, float]:
    intercept = float(y.mean())
    w = lsqr(x, y - intercept, damp=math.sqrt(alpha), atol=1e-12, btol=1e-12, iter_lim=20 * max(x.shape))[0]
    return w, intercept


def train(rater: dict, data: dict, model_dir: Path) -> dict:
    """Fit ratings and the text model; save them into model_dir; return the training metrics."""
    model_dir.mkdir(parents=True, exist_ok=True)
    j, docs = data["judgments"], data["docs"]
    train_idx, held_idx = data["train"], data["held"]
    doc_ids = sorted(set(j["a"][train_idx].tolist()) | set(j["b"][train_idx].tolist()))
    index = {d: i for i, d in enumerate(doc_ids)}
    a = np.array([index[x] for x in j["a"][train_idx]], dtype=np.int64)
    b = np.array([index[x] for x in j["b"][train_idx]], dtype=np.int64)
    ratings = fit_ratings(a, b, j["p"][train_idx], len(doc_ids), float(rater["l2"]))

    texts = pa.array([docs[d] for d in doc_ids], pa.large_string())
    vocab = build_vocab(texts, rater["ngrams"], rater["min_df"], rater["max_features"])
    weights, intercept = fit_ridge(featurize(texts, vocab, rater["ngrams"]), ratings, float(rater["alpha"]))
    model = Model(vocab, weights, intercept, rater)
    train_scores = model.predict(texts)
    empty_score = float(train_scores.min()) if rater["empty_score"] is None else float(rater["empty_score"])

    judged = sorted(set(j["a"][held_idx].tolist()) | set(j["b"][held_idx].tolist()))
    held_scores = dict(zip(judged, model.predict(pa.array([docs[d] for d in judged], pa.large_string()))))
    train_lookup = dict(zip(doc_ids, train_scores))
    fitted = dict(zip(doc_ids, ratings))
    hp = j["p"][held_idx]
    both_fitted = np.array([x in fitted and y in fitted for x, y in zip(j["a"][held_idx], j["b"][held_idx])], bool)
    metrics = {
        "judgments": len(j["p"]), "judgments_invalid": data["invalid"], "judgments_unknown_ids": data["unknown"],
        "train_judgments": len(train_idx), "heldout_judgments": len(held_idx), "documents_fitted": len(doc_ids),
        "features": len(vocab),
        "train_agreement": agreement(np.array([train_lookup[x] for x in j["a"][train_idx]]),
                                     np.array([train_lookup[x] for x in j["b"][train_idx]]), j["p"][train_idx]),
        "heldout_agreement": agreement(np.array([held_scores[x] for x in j["a"][held_idx]]),
                                       np.array([held_scores[x] for x in j["b"][held_idx]]), hp),
        "heldout_agreement_fitted": agreement(
            np.array([fitted[x] for x in j["a"][held_idx][both_fitted]]),
            np.array([fitted[x] for x in j["b"][held_idx][both_fitted]]), hp[both_fitted]),
        "heldout_judgments_fitted": int(both_fitted.sum()),
        "text_rating_spearman": float(spearmanr(train_scores, ratings)[0]) if len(doc_ids) > 2 else float("nan"),
    }
    pq.write_table(pa.table({"term": vocab, "weight": pa.array(weights, pa.float64())}), model_dir / FEATURES_FILE,
                   compression="zstd", write_statistics=False)
    pq.write_table(pa.table({"id": pa.array(doc_ids, pa.string()), "rating": pa.array(ratings, pa.float64())}),
                   model_dir / RATINGS_FILE, compression="zstd", write_statistics=False)
    info = {"name": rater["name"], "kind": "bradley_terry", "features_file": FEATURES_FILE,
            "ratings_file": RATINGS_FILE, "intercept": intercept, "empty_score": empty_score,
            "score": "predicted Bradley-Terry rating (logit scale)",
            "text": {k: rater[k] for k in ("max_chars", "lowercase", "split_punctuation")},
            "ngrams": rater["ngrams"], "l2": rater["l2"], "alpha": rater["alpha"],
            "trained_on": {"judgments": rater["judgments"], "heldout_fraction": rater["heldout_fraction"],
                           "seed": rater["seed"], **metrics}}
    (model_dir / "rater.json").write_text(json.dumps(info, indent=1, sort_keys=True) + "\n")
    return metrics


class Model:
    def __init__(self, vocab: pa.Array, weights: np.ndarray, intercept: float, rater: dict):
        self.vocab, self.weights, self.intercept, self.rater = vocab, weights, intercept, rater

    def predict(self, prepared: pa.Array) -> np.ndarray:
        x = featurize(prepared, self.vocab, self.rater["ngrams"])
        return self.intercept + x @ self.weights


# -- scoring (per shard, in the workers) -------------------------------------------------------

def load_model(model_dir: Path | str, rater: dict) -> tuple[Model, float]:
    """(text model, score of empty texts) of a rater directory (run.py keeps one Scorer per process)."""
    info = json.loads((Path(model_dir) / "rater.json").read_text())
    table = pq.read_table(Path(model_dir) / FEATURES_FILE)
    model = Model(table["term"].combine_chunks().cast(pa.large_string()), table["weight"].to_numpy(),
                  info["intercept"], rater)
    return model, info["empty_score"]


class Scorer:
    def __init__(self, rater: dict, model_dir: Path | str):
        self.rater = rater
        self.model, self.empty_score = load_model(model_dir, rater)

    def score(self, texts: pa.Array) -> tuple[np.ndarray, np.ndarray]:
        prepared = prepare_text(texts, self.rater)
        empty = is_empty(prepared)
        scores = self.model.predict(prepared).astype(np.float32)
        scores[empty] = np.float32(self.empty_score)
        return scores, empty
