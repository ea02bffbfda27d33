"""MinHash and LSH of lmbuild.dedup: hashing and word splitting against plain Python, Jaccard
estimates against exact Jaccard, and detection rates on a planted corpus against the S-curve
P(J) = 1 - (1 - J^r)^b of the default bands x rows."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from lmbuild.dedup import hashing, lsh
from lmbuild.dedup.clusters import Components
from lmbuild.dedup.config import resolve
from lmbuild.dedup.minhash import EMPTY, MinHasher, estimate_jaccard
from lmbuild.dedup.words import split_and_hash
from lmbuild.params import validate_section

M64 = 2**64
NGRAM = 5


def defaults():
    return resolve({"common": validate_section("common", {}), "dedup": validate_section("dedup", {})})


# ---------------------------------------------------------------- hashing and words

def _fmix(h: int) -> int:
    h ^= h >> 33
    h = h * 0xFF51AFD7ED558CCD % M64
    h ^= h >> 33
    h = h * 0xC4CEB9FE1A85EC53 % M64
    return h ^ (h >> 33)


def _reference_hash(data: bytes, base: int, seed: int = 0) -> int:
    total = sum(b * pow(base, k, M64) for k, b in enumerate(data)) % M64
    return _fmix((total + len(data) * 0xD6E8FEB86659FD93 + seed) % M64)


def test_string_hash_matches_a_plain_python_polynomial(monkeypatch):
    monkeypatch.setattr(hashing, "CHUNK_BYTES", 64)  # small windows: many windows and long spans
    monkeypatch.setattr(hashing, "_tables", {})
    rng = np.random.default_rng(0)
    strings = ["", "a", "a\x00", "hello", "é€😀", "x" * 500] + [
        "".join(rng.choice(list("ab cé"), size=int(rng.integers(0, 90)))) for _ in range(300)]
    arr = pa.array(strings)
    for base in hashing.BASES:
        want = [_reference_hash(s.encode(), int(base), 7) for s in strings]
        assert [int(h) for h in hashing.hash_strings(arr, base, seed=7)] == want
        assert [int(h) for h in hashing.hash_strings(arr.slice(5, 200), base, seed=7)] == want[5:205]
    assert len(set(want)) == len(set(strings))


def test_words_are_python_str_split():
    rng = np.random.default_rng(1)
    alphabet = ["a", "b", "é", "€", " ", "\n", "\t", "\r", "\x0b", "\x0c", "\x1c", "\x1f", "\u0085", "\u00a0",
                "\u1680", "\u2000", "\u200a", "\u2028", "\u2029", "\u202f", "\u205f", "\u3000", "\u200b", "µ", "—"]
    docs = ["".join(rng.choice(alphabet, size=int(rng.integers(0, 40)))) for _ in range(2000)] + ["", "   ", "one"]
    arr = pa.array(docs)
    for batch in (arr, arr.slice(3, 1500)):
        words = split_and_hash(batch, seed=3)
        expected = [t.split() for t in batch.to_pylist()]
        assert words.count.tolist() == [len(w) for w in expected]
        flat = pa.array([w for ws in expected for w in ws], pa.string())
        assert np.array_equal(words.hashes, hashing.hash_strings(flat, seed=3, mix=False))
        assert words.doc.tolist() == [i for i, ws in enumerate(expected) for _ in ws]


# ---------------------------------------------------------------- signatures

def test_signatures_are_deterministic_and_seeded():
    texts = pa.array(["the quick brown fox jumps over the lazy dog again and again"] * 2 + ["short one", ""])
    a, words = MinHasher(NGRAM, 64, seed=5).signatures(texts)
    b, _ = MinHasher(NGRAM, 64, seed=5).signatures(texts)
    c, _ = MinHasher(NGRAM, 64, seed=6).signatures(texts)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert np.array_equal(a[:, 0], a[:, 1])
    assert words.tolist() == [12, 12, 2, 0]
    assert (a[:, 3] == EMPTY).all()  # no word, no shingle
    assert (a[:, 2] != EMPTY).all()  # fewer words than n: the whole text is one shingle


def test_short_documents_are_one_whole_text_shingle():
    mh = MinHasher(NGRAM, 128, seed=1)
    sig, _ = mh.signatures(pa.array(["alpha beta", "alpha beta", "beta alpha", "alpha", "alpha beta gamma delta eps"]))
    assert np.array_equal(sig[:, 0], sig[:, 1])
    assert estimate_jaccard(sig[:, 0], sig[:, 2]) < 0.1  # word order matters
    assert estimate_jaccard(sig[:, 0], sig[:, 3]) < 0.1
    long_doc = mh.signatures(pa.array(["alpha beta gamma delta eps"]))[0][:, 0]
    assert estimate_jaccard(sig[:, 0], long_doc) < 0.1


def test_permute_min_is_the_minimum_of_each_affine_permutation_per_group():
    """The compiled pass equals the definition: min over a group of (a x + b) mod 2^32, per k."""
    rng = np.random.default_rng(2)
    mh = MinHasher(NGRAM, 37, seed=3)
    values = rng.integers(0, 2**32, 5000, dtype=np.uint64).astype(np.uint32)
    starts = np.concatenate([[0], np.sort(rng.choice(np.arange(1, 5000), 40, replace=False))])
    permuted = (mh.a[:, None].astype(np.uint64) * values + mh.b[:, None]) % 2**32
    expected = np.minimum.reduceat(permuted, starts, axis=1).astype(np.uint32)
    got = mh.permute_min(values, starts)
    assert got.shape == (37, 41) and got.flags.c_contiguous
    assert np.array_equal(got, expected)


def test_long_documents_match_their_pieces():
    """A long document's signature is the element-wise minimum of its shingles' in any split."""
    rng = np.random.default_rng(2)
    texts = pa.array([" ".join(f"w{i}" for i in rng.integers(0, 5000, size=int(n))) for n in (3000, 7, 1, 4000, 0, 50)])
    mh = MinHasher(NGRAM, 32, seed=1)
    sh = mh.shingles(split_and_hash(texts, mh.seed))
    whole = mh.permute_min(sh.values, sh.starts)
    pieces = mh.permute_min(sh.values, np.arange(len(sh.values)))  # every shingle its own group
    ends = np.append(sh.starts[1:], len(sh.values))
    for g, (lo, hi) in enumerate(zip(sh.starts, ends)):
        assert np.array_equal(whole[:, g], pieces[:, lo:hi].min(axis=1))


# ---------------------------------------------------------------- the planted corpus

def _ngrams(words: list[str]) -> set:
    return {tuple(words[i:i + NGRAM]) for i in range(len(words) - NGRAM + 1)}


def planted_pairs(targets, per_target: int, seed: int):
    """Pairs A = X + C, B = C + Y of distinct tokens (nothing else in the corpus shares a word
    n-gram), the shared block C sized for each target Jaccard; returns texts and exact Jaccards."""
    rng = np.random.default_rng(seed)
    counter = iter(range(10**9))
    left, right, exact = [], [], []
    for target in targets:
        for _ in range(per_target):
            length = int(rng.integers(100, 160))
            m = length - NGRAM + 1
            k = int(round(2 * m * target / (1 + target)))  # shared n-grams for J = k / (2m - k)
            c = k + NGRAM - 1
            shared = [f"s{next(counter)}" for _ in range(c)]
            a = [f"x{next(counter)}" for _ in range(length - c)] + shared
            b = shared + [f"y{next(counter)}" for _ in range(length - c)]
            left.append(" ".join(a))
            right.append(" ".join(b))
            ga, gb = _ngrams(a), _ngrams(b)
            exact.append(len(ga & gb) / len(ga | gb))
    return left, right, np.array(exact)


@pytest.fixture(scope="module")
def planted():
    cfg = defaults()
    targets = [0.2, 0.4, 0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95]
    left, right, exact = planted_pairs(targets, per_target=200, seed=11)
    n = len(left)
    mh = MinHasher(cfg.ngram, cfg.num_perm, cfg.seed)
    sig, _ = mh.signatures(pa.array(left + right))
    keys = lsh.band_keys(sig, cfg.bands, cfg.rows, cfg.seed)
    comps = Components(2 * n)
    docs = np.arange(2 * n)
    for band in range(cfg.bands):
        u, v, _ = lsh.bucket_edges(*lsh.sort_band(keys[band], docs))
        comps.merge(u, v)
    detected = comps.root[:n] == comps.root[n:]
    estimate = estimate_jaccard(sig[:, :n], sig[:, n:])
    return cfg, exact, detected, estimate, comps


def test_defaults_meet_the_recall_and_false_positive_targets():
    cfg = defaults()
    assert (cfg.bands, cfg.rows, cfg.num_perm, cfg.ngram) == (20, 12, 240, 5)
    assert lsh.s_curve(0.85, cfg.bands, cfg.rows) >= 0.9
    assert lsh.s_curve(0.5, cfg.bands, cfg.rows) <= 0.01


def test_detection_follows_the_s_curve(planted):
    cfg, exact, detected, _, comps = planted
    # nothing but the planted partners ends up together
    assert np.bincount(comps.root).max() <= 2
    edges = np.array([0.0, 0.3, 0.45, 0.55, 0.65, 0.72, 0.77, 0.82, 0.875, 0.925, 1.01])
    for lo, hi in zip(edges[:-1], edges[1:]):
        inside = (exact >= lo) & (exact < hi)
        if not inside.any():
            continue
        p = lsh.s_curve(exact[inside], cfg.bands, cfg.rows)
        expected, observed = p.mean(), detected[inside].mean()
        sigma = np.sqrt((p * (1 - p)).sum()) / inside.sum()
        assert abs(observed - expected) <= 4 * sigma + 0.02, (lo, hi, observed, expected)


def test_recall_and_false_positives_on_the_planted_corpus(planted):
    _, exact, detected, _, _ = planted
    high, low = exact >= 0.85, exact <= 0.5
    assert high.sum() >= 300 and low.sum() >= 300
    recall, false_pos = detected[high].mean(), detected[low].mean()
    print(f"recall at J >= 0.85: {recall:.3f} ({high.sum()} pairs); "
          f"false positives at J <= 0.5: {false_pos:.4f} ({low.sum()} pairs)")
    assert recall >= 0.9
    assert false_pos <= 0.01


def test_jaccard_estimate_is_within_003_of_exact(planted):
    _, exact, _, estimate, _ = planted
    mae = np.abs(estimate - exact).mean()
    print(f"mean absolute error of the Jaccard estimate: {mae:.4f} over {len(exact)} pairs")
    assert mae <= 0.03
    assert abs(np.mean(estimate - exact)) <= 0.01  # unbiased


# ---------------------------------------------------------------- banding helpers

def test_threshold_derives_bands_and_rows():
    b, r = lsh.bands_rows_for(0.8, 240)
    assert b * r <= 240
    assert abs(lsh.threshold(b, r) - 0.8) < 0.06
    assert lsh.s_curve(0.95, b, r) > 0.95 and lsh.s_curve(0.5, b, r) < 0.05


def test_bucket_edges_form_stars_and_count_pairs():
    keys = np.array([5, 5, 5, 9, 2, 2, 7], np.uint64)
    docs = np.arange(7)
    u, v, counts = lsh.bucket_edges(*lsh.sort_band(keys, docs))
    assert sorted(zip(u.tolist(), v.tolist())) == [(1, 0), (2, 0), (5, 4)]
    assert counts == {"buckets": 2, "documents": 5, "pairs": 4}
