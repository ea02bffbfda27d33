"""Peak memory of acquire and filter does not grow with corpus size (4x corpus, <= 1.3x RSS)."""

from __future__ import annotations

import sys

import pytest

from conftest import REPO, requires_lid

sys.path.insert(0, str(REPO / "benchmarks"))
from memory_scaling import measure  # noqa: E402


@pytest.mark.slow
@requires_lid
def test_peak_rss_is_flat_in_corpus_size(tmp_path):
    results = measure(base_mb=3, scales=[1, 4], workdir=tmp_path)
    assert results[4]["corpus_mb"] > 3.5 * results[1]["corpus_mb"]
    for stage in ("acquire", "filter"):
        assert results[4][stage] <= 1.3 * results[1][stage], results
