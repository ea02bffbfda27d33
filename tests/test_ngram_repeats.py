"""The compiled Gopher n-gram repetition pass: exact dense ids, and per document the same
top and duplicated n-gram characters as the per-document reference."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from lmbuild.filter.ngram_repeats import dense_ids, ngram_repeats
from lmbuild.filter.reference import _dup_ngram_chars, _top_ngram_chars


@pytest.mark.parametrize("n, distinct", [(0, 1), (1000, 3), (5000, 4000), (1_200_000, 700_000)])
def test_dense_ids_number_keys_in_order_of_first_appearance(n, distinct):
    """As Arrow's dictionary encoding numbers them, also once the table has had to grow."""
    keys = np.random.default_rng(n).integers(-distinct, distinct, n) * 1_000_003
    ids, count = dense_ids(keys)
    expected = pc.dictionary_encode(pa.array(keys, pa.int64())).indices.to_numpy()
    assert np.array_equal(ids, expected) and count == len(np.unique(keys))


def _run(docs: list[list[str]], n_max: int = 10):
    vocab = {w: i for i, w in enumerate(sorted({w for d in docs for w in d}))}
    words = [w for d in docs for w in d]
    doc = np.repeat(np.arange(len(docs)), [len(d) for d in docs]).astype(np.int64)
    vid = np.array([vocab[w] for w in words], np.int64)
    length = np.array([len(w) for w in words], np.int64)
    return ngram_repeats(doc, vid, length, np.array([len(d) for d in docs], np.int64), n_max)


def test_a_literal_document():
    # "ab cd ab cd ab": 2-grams (ab, cd) and (cd, ab) twice each, the 3-gram (ab, cd, ab) twice
    top, dup = _run([["ab", "cd", "ab", "cd", "ab"], ["one"], [], ["x", "y", "x", "yy"]], n_max=4)
    assert top[2].tolist() == [2 * 4, 0, 0, 0]
    assert top[3].tolist() == [2 * 6, 0, 0, 0] and top[4].tolist() == [0, 0, 0, 0]
    assert dup[2].tolist() == [6, 0, 0, 0]  # the repeats at words 2 and 3 cover words 2..4, once each
    assert dup[3].tolist() == [6, 0, 0, 0] and not dup[:2].any()


def test_the_same_numbers_as_the_reference_on_random_documents():
    rng = np.random.default_rng(5)
    vocab = [f"w{i}" * int(rng.integers(1, 4)) for i in range(12)]
    docs = [[vocab[int(k)] for k in rng.integers(0, int(rng.integers(2, 12)), int(rng.integers(0, 80)))]
            for _ in range(300)]
    top, dup = _run(docs)
    for n in range(2, 11):
        assert top[n].tolist() == [_top_ngram_chars(d, n) for d in docs], n
        assert dup[n].tolist() == [_dup_ngram_chars(d, n) for d in docs], n
