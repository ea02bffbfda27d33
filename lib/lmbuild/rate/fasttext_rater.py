"""`fasttext` rater: DCLM-style model-based quality filtering (Li et al. 2024, "DataComp-LM").

A fastText supervised classifier learns to tell reference documents (positives: documents of the
pool from `positive_sources` and/or the texts of `positive_files`) from the rest of the pool
(negatives); a document's score is the classifier's probability of the high-quality label.
DCLM's positives were instruction data and ELI5 answers against RefinedWeb negatives; the
demo uses encyclopedic and technical prose against everything else.

Sampling: every document of the pool gets a uniform random key from a generator seeded with
(seed, rater, shard). The shard tasks return the documents whose key is below a rate set from
the pool's size (a little above max/N), and the main process keeps the `max_*` documents of
each class with the smallest keys: a uniform sample that does not depend on how the shards were
spread over workers, with memory bounded by the sample size. `heldout_fraction` of each class is
held out for the metrics.

Reproducibility: training uses one thread and the seed. fastText's matrix initialisation fills
only `thread`/10 of the input matrix (the block size is hard-coded to a tenth) and this build
leaves the rest uninitialised, so in a long-lived process training reads old heap contents: the
model changes from run to run and sometimes fails with "Encountered NaN". Training therefore
runs in a fresh child process whose glibc allocator hands out zero-filled memory
(GLIBC_TUNABLES malloc.perturb), which gives upstream's zero initialisation and byte-identical
model files. (On a non-glibc platform the model may differ between runs; the scores still only
depend on the model file.)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from scipy.stats import rankdata

from .config import positive_file_paths
from .text import is_empty, prepare

HQ, LQ = "__label__hq", "__label__lq"
MODEL_FILE = "model.bin"
_LIB = Path(__file__).resolve().parents[2]


def prepare_text(texts: pa.Array, rater: dict) -> pa.Array:
    """The shared preparation (text.prepare), with fastText's label prefix defused: a word that
    starts with `__label__` would be read as a label."""
    prepared = prepare(texts, rater["max_chars"], rater["lowercase"], rater["split_punctuation"])
    return pc.replace_substring(prepared, "__label__", "_label_")


def _rng(seed: int, *key: str) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32("/".join(key).encode())])


def smallest_keys(keys: list[np.ndarray], texts: list[pa.Array], k: int) -> pa.Array:
    """The k texts with the smallest keys (ties: first come), in key order."""
    if not keys:
        return pa.array([], pa.large_string())
    all_keys = np.concatenate(keys)
    all_texts = pa.concat_arrays([t.cast(pa.large_string()) for t in texts])
    order = np.argsort(all_keys, kind="stable")[:k]
    return all_texts.take(pa.array(order))


# -- sampling (per shard, in the workers) ------------------------------------------------------

def prepare_context(rater: dict, census: dict[str, int]) -> dict:
    """Per class, the fraction of the pool to sample so that about `max_*` documents come back:
    a margin of five standard deviations above max/N, so the final cut to the smallest keys
    almost always has enough to choose from (and then equals a global smallest-keys sample).
    Positives count the pool's documents of positive_sources and the positive files' records."""
    n_pos = sum(n for source, n in census.items() if source in rater["positive_sources"])
    n_pos += count_file_records(rater)
    n_neg = sum(n for source, n in census.items() if source not in rater["positive_sources"])

    def rate(k: int, n: int) -> float:
        return 1.0 if n <= k else min(1.0, (k + 5 * np.sqrt(k) + 10) / n)

    return {"rate_pos": rate(rater["max_positives"], n_pos), "rate_neg": rate(rater["max_negatives"], n_neg)}


def worker_context(context: dict) -> dict:
    return context


class Collector:
    """Samples positives and negatives of one shard: the documents whose key is below the rate."""

    def __init__(self, rater: dict, context: dict, shard_key: str):
        self.rater = rater
        self.rng = _rng(rater["seed"], rater["name"], shard_key)
        self.sources = pa.array(rater["positive_sources"], pa.string())
        self.rates = {"positives": context["rate_pos"], "negatives": context["rate_neg"]}
        self.keys: dict[str, list[np.ndarray]] = {"positives": [], "negatives": []}
        self.texts: dict[str, list[pa.Array]] = {"positives": [], "negatives": []}
        self.pool = {"positives": 0, "negatives": 0}

    def add(self, batch: pa.RecordBatch) -> None:
        keys = self.rng.random(batch.num_rows)
        is_pos = pc.fill_null(pc.is_in(batch.column("source"), value_set=self.sources), False)
        is_pos = is_pos.to_numpy(zero_copy_only=False)
        text = batch.column("text")
        for mask, label in ((is_pos, "positives"), (~is_pos, "negatives")):
            self.pool[label] += int(mask.sum())
            idx = np.flatnonzero(mask & (keys < self.rates[label]))
            if idx.size:
                prepared = prepare_text(text.take(pa.array(idx)), self.rater)
                keep = ~is_empty(prepared)
                self.keys[label].append(keys[idx][keep])
                self.texts[label].append(prepared.filter(pa.array(keep)))

    def result(self) -> dict:
        return {"keys": self.keys, "texts": self.texts, "pool": self.pool}


def file_records(rater: dict) -> Iterator[str | None]:
    """Texts of the positive files (.txt: the whole file; .jsonl: `text_field` of each non-empty
    line), None for a .jsonl line that is not an object with a string in that field."""
    for path in positive_file_paths(rater["positive_files"]):
        if path.suffix == ".txt":
            yield path.read_text(encoding="utf-8", errors="replace")
            continue
        with path.open(encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if not line.strip():
                    continue
                try:
                    value = json.loads(line).get(rater["text_field"])
                except (ValueError, AttributeError):
                    value = None
                yield value if isinstance(value, str) else None


def count_file_records(rater: dict) -> int:
    """Records of the positive files, without parsing them (non-empty lines of .jsonl files)."""
    n = 0
    for path in positive_file_paths(rater["positive_files"]):
        if path.suffix == ".txt":
            n += 1
        else:
            with path.open("rb") as fh:
                n += sum(1 for line in fh if line.strip())
    return n


def sample_files(rater: dict, rate: float) -> tuple[np.ndarray, pa.Array, int, int]:
    """(keys, prepared texts with words) of the positive-file records whose key is below `rate`,
    the number of valid records, and the number of invalid ones."""
    rng = _rng(rater["seed"], rater["name"], "positive_files")
    keys, texts, docs, invalid = [], [], 0, 0
    for record in file_records(rater):
        if record is None:
            invalid += 1
            continue
        key = rng.random()
        if key < rate:
            keys.append(key)
            texts.append(record)
        docs += 1
    prepared = prepare_text(pa.array(texts, pa.large_string()), rater)
    keep = ~is_empty(prepared)
    return np.array(keys, dtype=np.float64)[keep], prepared.filter(pa.array(keep)), docs, invalid


def gather(rater: dict, context, results: list[dict]) -> dict:
    """Merge the per-shard samples (in shard order) and the positive files; cut each class to
    its `max_*` smallest keys."""
    keys = {"positives": [], "negatives": []}
    texts = {"positives": [], "negatives": []}
    pool = {"positives": 0, "negatives": 0}
    for r in results:
        for label in keys:
            keys[label] += r["keys"][label]
            texts[label] += r["texts"][label]
            pool[label] += r["pool"][label]
    file_keys, file_texts, file_docs, invalid = sample_files(rater, context["rate_pos"])
    keys["positives"].append(file_keys)
    texts["positives"].append(file_texts)
    return {"pos": smallest_keys(keys["positives"], texts["positives"], rater["max_positives"]),
            "neg": smallest_keys(keys["negatives"], texts["negatives"], rater["max_negatives"]),
            "pool_positives": pool["positives"], "pool_negatives": pool["negatives"],
            "file_positives": file_docs, "file_records_invalid": invalid}


def problems(index: int, rater: dict, data: dict, source: str = "params.yaml") -> list[str]:
    out = []
    where = f"{source}: rate.raters[{index}]"
    n_pos, n_neg = len(data["pos"]), len(data["neg"])
    if n_pos < rater["min_positives"]:
        out.append(f"{where}.min_positives: rater {rater['name']!r} found {n_pos} positive documents with words "
                   f"(positive_sources {rater['positive_sources']}, {data['file_positives']} from positive_files), "
                   f"fewer than min_positives={rater['min_positives']}; add positives or lower min_positives")
    if n_neg < rater["min_negatives"]:
        out.append(f"{where}.min_negatives: rater {rater['name']!r} found {n_neg} negative documents with words "
                   f"(the pool outside positive_sources), fewer than min_negatives={rater['min_negatives']}; "
                   f"add data or lower min_negatives")
    return out


# -- training (main process) -------------------------------------------------------------------

def _split(n: int, fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    perm = rng.permutation(n)
    n_held = int(round(fraction * n))
    return np.sort(perm[n_held:]), np.sort(perm[:n_held])


def _hyperparams(rater: dict) -> dict:
    return {"epoch": rater["epochs"], "lr": float(rater["lr"]), "wordNgrams": rater["word_ngrams"],
            "dim": rater["dim"], "minCount": rater["min_count"], "bucket": rater["bucket"],
            "loss": "softmax", "thread": 1, "seed": rater["seed"]}


def train_fasttext(train_file: Path, model_file: Path, hyperparams: dict) -> None:
    """Train in a fresh child process with zero-filled allocations (see the module docstring)."""
    env = dict(os.environ)
    tunables = "glibc.malloc.perturb=255:glibc.malloc.tcache_count=0"
    env["GLIBC_TUNABLES"] = f"{env['GLIBC_TUNABLES']}:{tunables}" if env.get("GLIBC_TUNABLES") else tunables
    env["MALLOC_PERTURB_"] = "255"  # glibc before tunables
    env["PYTHONPATH"] = str(_LIB) + os.pathsep + env.get("PYTHONPATH", "")
    # fastText's own progress line (verbose 2) goes to stderr unless progress bars are off
    verbose = 0 if os.environ.get("LMBUILD_NO_PROGRESS") == "1" else 2
    args = json.dumps({"input": str(train_file), "output": str(model_file), "hyperparams": hyperparams,
                       "verbose": verbose})
    proc = subprocess.run([sys.executable, "-m", "lmbuild.rate.fasttext_rater", args], env=env,
                          stdout=subprocess.DEVNULL, stderr=None if verbose else subprocess.PIPE, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"fastText training failed (exit {proc.returncode}): {(proc.stderr or '').strip()[-2000:]}")


def _train_child(args: dict) -> None:
    import fasttext

    fasttext.FastText.eprint = lambda *a, **k: None
    model = fasttext.train_supervised(input=args["input"], verbose=args["verbose"], **args["hyperparams"])
    model.save_model(args["output"])


def accuracy_auc(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """Accuracy of `score > 0.5` and ROC AUC (Mann-Whitney, ties half) for labels 1/0."""
    if len(scores) == 0:
        return float("nan"), float("nan")
    acc = float(np.mean((scores > 0.5) == (labels == 1)))
    n_pos, n_neg = int((labels == 1).sum()), int((labels == 0).sum())
    if not n_pos or not n_neg:
        return acc, float("nan")
    ranks = rankdata(scores)
    auc = (ranks[labels == 1].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
    return acc, float(auc)


def train(rater: dict, data: dict, model_dir: Path) -> dict:
    """Train, save `model.bin` and `rater.json` into model_dir; return the training metrics."""
    model_dir.mkdir(parents=True, exist_ok=True)
    rng = _rng(rater["seed"], rater["name"], "split")
    pos_train, pos_held = _split(len(data["pos"]), rater["heldout_fraction"], rng)
    neg_train, neg_held = _split(len(data["neg"]), rater["heldout_fraction"], rng)
    lines = [f"{HQ} {t}" for t in data["pos"].take(pa.array(pos_train)).to_pylist()]
    lines += [f"{LQ} {t}" for t in data["neg"].take(pa.array(neg_train)).to_pylist()]
    lines = [lines[i] for i in rng.permutation(len(lines))]  # SGD sees the classes mixed
    with tempfile.TemporaryDirectory(prefix="lmbuild-fasttext-") as tmp:
        train_file = Path(tmp) / "train.txt"
        train_file.write_text("\n".join(lines) + "\n", encoding="utf-8")
        train_fasttext(train_file, model_dir / MODEL_FILE, _hyperparams(rater))
    model = load_model(model_dir)

    def evaluate(pos_idx, neg_idx):
        texts = pa.concat_arrays([data["pos"].take(pa.array(pos_idx)), data["neg"].take(pa.array(neg_idx))])
        labels = np.r_[np.ones(len(pos_idx), dtype=np.int8), np.zeros(len(neg_idx), dtype=np.int8)]
        return accuracy_auc(predict_hq(model, texts.to_pylist()), labels)

    held_acc, held_auc = evaluate(pos_held, neg_held)
    train_acc, _ = evaluate(pos_train, neg_train)
    metrics = {"pool_positives": data["pool_positives"], "pool_negatives": data["pool_negatives"],
               "file_positives": data["file_positives"], "file_records_invalid": data["file_records_invalid"],
               "train_positives": len(pos_train), "train_negatives": len(neg_train),
               "heldout_positives": len(pos_held), "heldout_negatives": len(neg_held),
               "train_accuracy": train_acc, "heldout_accuracy": held_acc, "heldout_auc": held_auc}
    info = {"name": rater["name"], "kind": "fasttext", "model_file": MODEL_FILE, "labels": {"high": HQ, "low": LQ},
            "score": "probability of the high-quality label",
            "text": {k: rater[k] for k in ("max_chars", "lowercase", "split_punctuation")},
            "fasttext": _hyperparams(rater),
            "trained_on": {"positive_sources": rater["positive_sources"],
                           "positive_files": [str(p) for p in positive_file_paths(rater["positive_files"])],
                           "negatives": "seeded sample of the pool outside positive_sources",
                           "heldout_fraction": rater["heldout_fraction"], **metrics}}
    (model_dir / "rater.json").write_text(json.dumps(info, indent=1, sort_keys=True) + "\n")
    return metrics


# -- scoring (per shard, in the workers) -------------------------------------------------------

def load_model(model_dir: Path | str):
    """The fastText model of a rater directory (run.py keeps one Scorer per process)."""
    import fasttext

    fasttext.FastText.eprint = lambda *a, **k: None  # silence the load-time warning
    return fasttext.load_model(str(Path(model_dir) / MODEL_FILE))


def predict_hq(model, lines: list[str]) -> np.ndarray:
    """P(high quality) for every line, from one batched predict call."""
    if not lines:
        return np.zeros(0, dtype=np.float32)
    labels, probs = model.predict(lines, k=-1, threshold=0.0)
    try:
        lab, prob = np.array(labels), np.array(probs, dtype=np.float64)
        hq = np.where(lab == HQ, prob, 0.0).sum(axis=1)
    except ValueError:  # ragged (a label below the threshold): row by row
        hq = np.array([dict(zip(la, pr)).get(HQ, 0.0) for la, pr in zip(labels, probs)], dtype=np.float64)
    # fastText adds 1e-5 inside its log-probabilities, so a certain label reads 1.00001
    return np.clip(hq, 0.0, 1.0).astype(np.float32)


class Scorer:
    def __init__(self, rater: dict, model_dir: Path | str):
        self.rater = rater
        self.model = load_model(model_dir)
        empty = rater["empty_score"]
        self.empty_score = np.float32(0.0 if empty is None else empty)

    def score(self, texts: pa.Array) -> tuple[np.ndarray, np.ndarray]:
        """(scores, empty mask) for a batch of raw texts."""
        prepared = prepare_text(texts, self.rater)
        empty = is_empty(prepared)
        scores = predict_hq(self.model, prepared.to_pylist())
        scores[empty] = self.empty_score
        return scores, empty


if __name__ == "__main__":
    _train_child(json.loads(sys.argv[1]))
