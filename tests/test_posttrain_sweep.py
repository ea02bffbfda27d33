"""benchmarks/posttrain_sweep.py's own arithmetic: the reference ordering of the held-out pairs,
the per-seed table and the verdict on the target (the runs themselves are the benchmark's)."""

from __future__ import annotations

import json
import sys

import pytest

from conftest import REPO

sys.path.insert(0, str(REPO / "benchmarks"))
from posttrain_sweep import reference_ordering, table  # noqa: E402


def test_reference_ordering_counts_pairs_the_reference_already_orders(tmp_path):
    rows = [{"split": "val", "family": "sort", "ref_chosen": -1.0, "ref_rejected": -2.0},
            {"split": "val", "family": "sort", "ref_chosen": -3.0, "ref_rejected": -2.0},
            {"split": "val", "family": "count", "ref_chosen": -1.0, "ref_rejected": -5.0},
            {"split": "train", "family": "count", "ref_chosen": -9.0, "ref_rejected": -1.0}]
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = reference_ordering(path)
    assert out["val"]["all"] == pytest.approx(2 / 3) and out["val"]["n"] == 3
    assert out["val"]["sort"] == 0.5 and out["val"]["count"] == 1.0
    assert out["train"]["all"] == 0.0


def test_table_pools_seeds_and_says_whether_any_setting_meets_the_target():
    rows = [{"label": "demo", "seed": None, "val.reward_accuracy": 0.60, "val.reward_accuracy_stderr": 0.02,
             "task_accuracy_gain": -0.02, "task_accuracy_gain_stderr": 0.01, "seconds": 50.0},
            {"label": "demo", "seed": 2, "val.reward_accuracy": 0.62, "val.reward_accuracy_stderr": 0.02,
             "task_accuracy_gain": 0.0, "task_accuracy_gain_stderr": 0.01, "seconds": 51.0},
            {"label": "lr 1e-4", "seed": None, "val.reward_accuracy": 0.66, "val.reward_accuracy_stderr": 0.02,
             "task_accuracy_gain": -0.1, "task_accuracy_gain_stderr": 0.02, "seconds": 52.0}]
    md = "\n".join(table("dpo", rows))
    assert "- demo (n 2): held-out reward accuracy 0.610 ± 0.010" in md
    assert "Highest mean held-out reward accuracy: lr 1e-4 (0.660); the target is met by lr 1e-4." in md
    rows[2]["val.reward_accuracy"] = 0.64
    assert "the target is met by no setting of this grid" in "\n".join(table("dpo", rows))
