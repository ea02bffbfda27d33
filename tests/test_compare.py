"""python -m lmbuild.compare on a small git repository with two committed runs: changed metrics
with differences, paired standard errors from per-item results, unpaired ones from the two
`_stderr` values otherwise, experiments found by name, and one-line errors."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from lmbuild import compare, stats

ENV = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}


def git(root: Path, *args: str) -> str:
    import os
    return subprocess.run(["git", *args], cwd=root, check=True, capture_output=True, text=True,
                          env={**os.environ, **ENV}).stdout.strip()


def write_run(root: Path, correct: list[float], bits: list[float], steps: int) -> None:
    n = len(correct)
    items = root / "data/eval/sft/items"
    items.mkdir(parents=True, exist_ok=True)
    (items / "tasks.jsonl").write_text("".join(
        json.dumps({"id": f"p{i}", "family": "sort" if i % 2 else "count", "correct": c, "format": 1.0}) + "\n"
        for i, c in enumerate(correct)))
    (items / "bpb.jsonl").write_text("".join(
        json.dumps({"id": f"d{i}", "domain": "prose", "bits": b, "bytes": 100, "tokens": 30}) + "\n"
        for i, b in enumerate(bits)))
    acc = stats.with_stderr("task_accuracy", correct)
    bpb = sum(bits) / (100 * len(bits))
    ev = {"sft": {**acc, "bpb": {"all": bpb, "all_stderr": stats.ratio_stderr(bits, [100] * len(bits))}},
          "pretrain": {"task_accuracy": 0.1, "task_accuracy_stderr": 0.03}}
    (root / "metrics").mkdir(exist_ok=True)
    (root / "metrics/eval.json").write_text(json.dumps(ev))
    (root / "metrics/sft.json").write_text(json.dumps({"steps": steps, "task_accuracy": acc["task_accuracy"]}))
    assert n


@pytest.fixture
def repo(tmp_path):
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q")
    (root / "dvc.yaml").write_text("stages: {}\nmetrics:\n  - metrics/eval.json\n  - metrics/sft.json\n")
    base = [1.0 if i % 3 == 0 else 0.0 for i in range(90)]
    write_run(root, base, [200.0 + (i % 7) * 30 for i in range(40)], steps=100)
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "a")
    # run B: 12 more items right (nothing lost), and every document 2 bits cheaper
    better = [1.0 if (i % 3 == 0 or i < 18) else 0.0 for i in range(90)]
    write_run(root, better, [198.0 + (i % 7) * 30 for i in range(40)], steps=120)
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "b")
    return root


def rows_by_metric(rows):
    return {r["metric"]: r for r in rows}


def test_paired_errors_from_items_and_unchanged_metrics_left_out(repo):
    rows = rows_by_metric(compare.compare(repo, "HEAD~1", "HEAD"))
    assert "eval.pretrain.task_accuracy" not in rows  # unchanged
    acc = rows["eval.sft.task_accuracy"]
    a = [1.0 if i % 3 == 0 else 0.0 for i in range(90)]
    b = [1.0 if (i % 3 == 0 or i < 18) else 0.0 for i in range(90)]
    gain, se = stats.paired(a, b)
    assert acc["paired"] and acc["diff"] == pytest.approx(gain) and acc["stderr"] == pytest.approx(se)
    assert acc["beyond_noise"]
    # unpaired, the same gain would not be beyond noise: pairing is what detects it
    unpaired = stats.unpaired_stderr(stats.mean_stderr(a), stats.mean_stderr(b))
    assert not stats.beyond_noise(gain, unpaired)
    fam = rows["eval.sft.task_accuracy_sort"] if "eval.sft.task_accuracy_sort" in rows else None
    assert fam is None  # no such metric in the file: items alone do not invent metrics
    bpb = rows["eval.sft.bpb.all"]
    assert bpb["paired"] and bpb["diff"] == pytest.approx(-0.02) and bpb["beyond_noise"]
    # metrics without a standard error: the difference alone
    steps = rows["sft.steps"]
    assert steps["diff"] == 20 and steps["stderr"] is None and steps["beyond_noise"] is None


def test_unpaired_when_items_are_missing(repo):
    git(repo, "rm", "-q", "-r", "data/eval/sft/items")
    git(repo, "commit", "-q", "-m", "no items")
    # HEAD~2 has items, HEAD has none: the error comes from the two _stderr values
    rows = rows_by_metric(compare.compare(repo, "HEAD~2", "HEAD"))
    acc = rows["eval.sft.task_accuracy"]
    ma = json.loads(git(repo, "show", "HEAD~2:metrics/eval.json"))["sft"]
    mb = json.loads(git(repo, "show", "HEAD:metrics/eval.json"))["sft"]
    assert not acc["paired"]
    assert acc["stderr"] == pytest.approx(stats.unpaired_stderr(ma["task_accuracy_stderr"], mb["task_accuracy_stderr"]))


def test_workspace_default_experiment_names_and_cli(repo, capsys, tmp_path):
    (repo / "metrics/sft.json").write_text(json.dumps({"steps": 130, "task_accuracy": 0.5}))
    rows = rows_by_metric(compare.compare(repo, "HEAD", compare.WORKSPACE))
    assert rows["sft.steps"]["diff"] == 10
    # dvc keeps an experiment as refs/exps/<..>/<name>: found by its name
    git(repo, "update-ref", "refs/exps/ab/cdef/lucky-seed", "HEAD~1")
    rows = rows_by_metric(compare.compare(repo, "lucky-seed", "HEAD"))
    assert rows["sft.steps"]["diff"] == 20
    html = tmp_path / "c.html"
    assert compare.main(["HEAD~1", "HEAD", "--html", str(html), "--repo", str(repo)]) == 0
    out = capsys.readouterr().out
    assert "| eval.sft.task_accuracy |" in out and "beyond noise" in out
    page = html.read_text()
    assert "<table>" in page and "http" not in page and "<script" not in page
    assert compare.main(["no-such-rev", "--repo", str(repo)]) == 2
    assert "no-such-rev: not a git revision" in capsys.readouterr().err
