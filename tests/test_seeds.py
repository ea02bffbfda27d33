"""Seed studies and scratch workspaces: which seeds a study varies, the experiments it queues,
its summary, and the workspaces the robustness benchmark trains in."""

from __future__ import annotations

import json
import math
import subprocess

import pytest
import yaml

from lmbuild import seeds, workspace
from lmbuild.params import load_params, training_seed


def test_training_seed_falls_back_to_common_and_reads_nested_sections():
    params = {"common": {"seed": 7}, "sft": {"seed": None}, "rlvr": {"seed": 3}, "dpo": {"pairs": {"seed": 5}}}
    assert training_seed(params, "sft") == 7
    assert training_seed(params, "rlvr") == 3
    assert training_seed(params, "dpo.pairs") == 5


def test_every_training_section_accepts_a_seed(tmp_path):
    p = yaml.safe_load(open("params.yaml"))
    for sec in ("pretrain", "anneal", "sft", "dpo", "rlvr"):
        p[sec]["seed"] = 11
    p["dpo"]["pairs"]["seed"] = 12
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(p))
    for sec in ("pretrain", "anneal", "sft", "dpo", "rlvr"):
        assert training_seed(load_params(sec, path), sec) == 11
    assert training_seed(load_params("dpo", path), "dpo.pairs") == 12
    p["sft"]["seed"] = -1
    path.write_text(yaml.safe_dump(p))
    with pytest.raises(Exception, match=r"sft\.seed: must be >= 0, got -1"):
        load_params("sft", path)


def test_a_study_varies_the_seeds_from_its_first_stage_on():
    assert seeds.sections_from("sft") == ["sft", "dpo.pairs", "dpo", "rlvr"]
    assert seeds.sections_from("dpo_pairs") == ["dpo.pairs", "dpo", "rlvr"]
    assert seeds.sections_from("pretrain")[:2] == ["pretrain", "anneal"]
    with pytest.raises(SystemExit, match="--from must be one of"):
        seeds.sections_from("filter")
    cmds = seeds.queue_commands("st", ["dpo", "rlvr"], [1, 2], ["dpo.precision=fp32"], ["assets/lid.176.ftz"])
    assert cmds[1] == ["dvc", "exp", "run", "--queue", "-n", "st-s2", "-S", "dpo.seed=2", "-S", "rlvr.seed=2",
                       "-S", "dpo.precision=fp32", "-C", "assets/lid.176.ftz"]


def test_summary_over_runs_leaves_out_machine_measurements():
    runs = {1: {"sft.task_accuracy": 0.5, "sft.task_accuracy_stderr": 0.03, "sft.tokens_per_s": 9000.0,
                "sft.numerics.bf16": 1.0},
            2: {"sft.task_accuracy": 0.7, "sft.task_accuracy_stderr": 0.03, "sft.tokens_per_s": 8000.0,
                "sft.numerics.bf16": 1.0},
            3: {"sft.task_accuracy": 0.6}}
    s = seeds.summarize_runs(runs)
    assert list(s) == ["sft.task_accuracy"]
    acc = s["sft.task_accuracy"]
    assert acc["n"] == 3 and acc["mean"] == pytest.approx(0.6) and acc["sd"] == pytest.approx(0.1)
    assert acc["se"] == pytest.approx(0.1 / math.sqrt(3)) and acc["values"] == [0.5, 0.7, 0.6]
    md = seeds.to_markdown("st", s, [1, 2, 3], "note")
    assert "| sft.task_accuracy | 0.6000 | 0.1000 |" in md


def test_summary_reads_experiments_by_name(tmp_path, monkeypatch):
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    monkeypatch.chdir(tmp_path)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    subprocess.run(["git", "init", "-q"], check=True)
    (tmp_path / "dvc.yaml").write_text("stages: {}\nmetrics: [metrics/sft.json]\n")
    (tmp_path / "metrics").mkdir()
    for seed, acc in ((1, 0.5), (2, 0.7)):
        (tmp_path / "metrics/sft.json").write_text(json.dumps({"task_accuracy": acc}))
        subprocess.run(["git", "add", "-A"], check=True)
        subprocess.run(["git", "commit", "-q", "-m", str(seed)], check=True)
        subprocess.run(["git", "update-ref", f"refs/exps/00/11/st-s{seed}", "HEAD"], check=True)
    assert seeds.main(["--from", "sft", "--seeds", "1", "2", "--name", "st", "--collect"]) == 0
    out = json.loads((tmp_path / "studies/seeds/st.json").read_text())
    assert out["metrics"]["sft.task_accuracy"]["mean"] == pytest.approx(0.6) and out["seeds"] == [1, 2]
    assert seeds.main(["--from", "sft", "--seeds", "9", "--name", "st", "--collect"]) == 2


def test_workspace_applies_overrides_and_links_upstream_outputs(tmp_path):
    assert workspace.parse_override("sft.optim.lr=0.01") == ("sft.optim.lr", 0.01)
    assert workspace.parse_override("tasks.families=[sort, count]") == ("tasks.families", ["sort", "count"])
    with pytest.raises(ValueError, match="key=value"):
        workspace.parse_override("sft.epochs")
    root = workspace.make(tmp_path / "ws", {"sft.seed": 5, "sft.optim.lr": 0.01}, ["specs"])
    p = yaml.safe_load((root / "params.yaml").read_text())
    assert p["sft"]["seed"] == 5 and p["sft"]["optim"]["lr"] == 0.01
    assert p["common"] == yaml.safe_load(open("params.yaml"))["common"]
    assert (root / "specs").is_symlink() and (root / "stages").is_symlink() and (root / ".git").is_dir()
    with pytest.raises(FileNotFoundError, match="make repro"):
        workspace.make(tmp_path / "ws2", {}, ["models/no-such-model"])
