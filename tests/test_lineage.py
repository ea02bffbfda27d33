"""Lineage (lmbuild.lineage) and model cards (lmbuild.model_card), on the repository's own
dvc.lock and committed eval results: the chain from a model back to acquire, the card's
metadata (licence honesty, model-index with standard errors) and the CLI's errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml

from conftest import REPO, stage_env
from lmbuild.lineage import LineageError, chain
from lmbuild.model_card import build_card, licence_fields, model_index


def test_chain_from_a_chat_model_reaches_the_raw_sources():
    nodes = chain("models/sft", REPO)
    names = [n.stage for n in nodes]
    assert names[0] == "sft" and names[-1] == "acquire"
    assert {"anneal", "pretrain", "tokenize", "mix", "rate", "dedup", "filter"} <= set(names)
    assert len(names) == len(set(names))
    lock = yaml.safe_load((REPO / "dvc.lock").read_text())["stages"]
    sft = nodes[0]
    assert [o["md5"] for o in sft.outs] == [o["md5"] for o in lock["sft"]["outs"]]
    assert sft.params["sft"] == lock["sft"]["params"]["params.yaml"]["sft"]
    assert sft.upstream == ["anneal"]  # code is counted, not walked
    assert nodes[names.index("filter")].params["filter"] == lock["filter"]["params"]["params.yaml"]["filter"]


def test_unknown_output_is_one_line():
    with pytest.raises(LineageError, match="no stage in dvc.lock produces it"):
        chain("models/nothing", REPO)
    p = subprocess.run([sys.executable, "-m", "lmbuild.lineage", "models/nothing"], cwd=REPO, env=stage_env(),
                       capture_output=True, text=True)
    assert p.returncode == 2 and p.stderr.count("\n") == 1 and "models/sft" in p.stderr


def test_cli_prints_every_stage_with_hashes():
    p = subprocess.run([sys.executable, "-m", "lmbuild.lineage", "models/rlvr", "--json"], cwd=REPO,
                       env=stage_env(), capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert [s["stage"] for s in out["stages"]][:3] == ["rlvr", "dpo", "dpo_pairs"]
    assert all(o["md5"] for s in out["stages"] for o in s["outs"])


@pytest.mark.parametrize("licences, expected", [
    (["MIT", "MIT"], {"license": "mit"}),
    (["MIT", "BSD-3-Clause"], {"license": "other", "license_name": "mixed-sources"}),
    ([None], {"license": "other", "license_name": "unknown"}),
])
def test_licence_is_never_claimed_beyond_the_sources(licences, expected):
    got = licence_fields({f"s{i}": {"licence": lic} for i, lic in enumerate(licences)})
    assert {k: got[k] for k in expected} == expected
    if got["license"] == "other":
        assert all((lic or "unknown") in got["license_details"] for lic in licences)


def test_card_metadata_holds_the_eval_results_with_stderr():
    text = build_card("sft", REPO)
    assert text.startswith("---\n")
    meta = yaml.safe_load(text.split("---\n")[1])
    ev = json.loads((REPO / "data/eval/sft/metrics.json").read_text())
    results = meta["model-index"][0]["results"]
    task = next(r for r in results if r["dataset"]["type"] == "lmbuild/tasks")["metrics"][0]
    assert task["value"] == pytest.approx(ev["task_accuracy"], abs=1e-6)  # rounded to 6 places
    assert task["stderr"] == pytest.approx(ev["task_accuracy_stderr"], abs=1e-6)
    bpb = next(r for r in results if r["dataset"]["type"] == "lmbuild/val")["metrics"][0]
    assert bpb["value"] == pytest.approx(ev["bpb"]["all"], abs=1e-6)
    assert "## Lineage (from dvc.lock)" in text and "| acquire |" in text and "## Training hyperparameters" in text
    assert model_index("sft", {})[0]["results"] == []
