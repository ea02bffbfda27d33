"""Peak memory of acquire, filter and dedup does not grow with corpus size.

A 3 MiB proportional sample of the demo corpus at 1x and 4x (distinct copies, see
benchmarks/memory_scaling.py): acquire and filter peaks within 1.3x, dedup within 1.3x plus
1 KiB per extra document it reads (its per-document state is about 190 bytes by design).
"""

from __future__ import annotations

import sys

import pytest

from conftest import REPO, requires_lid

sys.path.insert(0, str(REPO / "benchmarks"))
from memory_scaling import STAGES, check, measure  # noqa: E402


@pytest.mark.slow
@requires_lid
def test_peak_rss_is_flat_in_corpus_size(tmp_path):
    results = measure(base_mb=3, scales=[1, 4], workdir=tmp_path)
    small, big = results[1], results[4]
    assert big["corpus_mb"] > 3.5 * small["corpus_mb"]
    # the copies are distinct text: the filter keeps about as much of each, dedup does not collapse them
    assert big["filtered_documents"] > 3.5 * small["filtered_documents"], results
    assert big["dedup_kept_documents"] > 3.5 * small["dedup_kept_documents"], results
    verdict = check(results)
    for stage in STAGES:
        assert verdict["ok"][stage], (stage, verdict, results)
