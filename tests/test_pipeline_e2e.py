"""The whole pipeline under `dvc repro` on the demo corpus (tiny training stages), once for the
module; its data stages are the reference for the rest: byte-identical reruns, the same bytes from
the local and the Dask executor, a killed stage leaves nothing half-written and its rerun matches
an uninterrupted run, and DVC reruns exactly what a change touches."""

from __future__ import annotations

import copy
import functools
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO, Project, pipeline_stages, requires_lid, run_stage, stage_env, tree_digest

pytestmark = [pytest.mark.slow, requires_lid]

PIPELINE = pipeline_stages()
# the data stages, in pipeline order (training stages have their own tests in test_train.py)
STAGES = list(PIPELINE)[: list(PIPELINE).index("tokenize") + 1]
# the part of an upstream output a stage reads first, where it is not its first data dep
READS = {"eval_sets": "data/mix/val", "tokenize": "data/decontam"}


def outputs_of(stages) -> list[str]:
    return [next(iter(o)) if isinstance(o, dict) else o for name in stages for o in PIPELINE[name]["outs"]]


def digest_of(files: dict[str, bytes], stages) -> dict[str, bytes]:
    keep = outputs_of(stages)
    return {k: v for k, v in files.items() if any(k == o or k.startswith(o + "/") for o in keep)}


def digest(root: Path, stages=None) -> dict[str, bytes]:
    out = {}
    for rel in outputs_of(stages or STAGES):
        p = root / rel
        if p.is_dir():
            out.update({f"{rel}/{k}": v for k, v in tree_digest(p).items()})
        elif p.exists():
            out[rel] = p.read_bytes()
    return out


def scratch_project(root: Path, params: dict) -> Project:
    """A scratch project with these params and the repository's own eval sets (evals/) and
    harness task files (harness_tasks/), which the reference run (a git copy of the repository)
    has too."""
    project = Project(root)
    project.write_params(params)
    shutil.copytree(REPO / "evals", root / "evals", dirs_exist_ok=True)
    shutil.copytree(REPO / "harness_tasks", root / "harness_tasks", dirs_exist_ok=True)
    return project


def run_pipeline(root: Path, params: dict, stages=STAGES) -> dict[str, bytes]:
    project = scratch_project(root, params)
    for stage in stages:
        project.run(stage)
    return digest(root)


def copy_outputs(src: Path, dst: Path, stages) -> None:
    for rel in outputs_of(stages):
        if (src / rel).is_dir():
            shutil.copytree(src / rel, dst / rel, symlinks=True)
        elif (src / rel).exists():
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src / rel, dst / rel)


@pytest.fixture(scope="module")
def pipeline_run(tmp_path_factory):
    """The whole pipeline under `dvc repro`, once for this module, in a git copy of the repository:
    params.yaml's data stages on the demo corpus and the training stages at a few seconds each
    (SMALL_TRAINING). Its data-stage outputs are the reference every rerun below must reproduce
    byte for byte, so the data stages run once under DVC instead of once more outside it."""
    import yaml

    root = tmp_path_factory.mktemp("pipeline")
    _git_copy(root)
    prefs = [{"prompt": f"Sort: {a} {b}", "chosen": f"Answer: {min(a, b)} {max(a, b)}", "rejected": f"Answer: {a}"}
             for a in range(1, 9) for b in range(1, 9) if a != b]
    (root / "prefs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in prefs))
    params = small_training(yaml.safe_load((root / "params.yaml").read_text()))
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    first = dvc(root, "repro")
    assert first.returncode == 0, first.stderr[-4000:] + first.stdout[-4000:]
    return root, params, first.stdout


@pytest.fixture(scope="module")
def run_params(pipeline_run):
    """The reference run's params: params.yaml with the training sections shrunk (the data
    stages read params.yaml's own sections, apart from the task families and eval set sizes)."""
    return pipeline_run[1]


@pytest.fixture(scope="module")
def reference_run(pipeline_run):
    root = pipeline_run[0]
    return root, digest(root)


def test_demo_run_has_real_work_in_it(reference_run):
    root, files = reference_run
    acquire = json.loads(files["metrics/acquire.json"])
    filt = json.loads(files["metrics/filter.json"])
    assert acquire["bytes"] > 10 * 2**20
    assert 0.2 < filt["kept_fraction"] < 0.95
    assert filt["removed.langid.documents"] > 0  # Bulgarian pages and non-English jokes
    assert filt["sources.wiki_stemmed.kept_fraction"] < 0.2  # stemmed text without punctuation
    assert filt["sources.python_stdlib.kept_fraction"] > 0.95  # code skips the prose rules
    assert any(k.startswith("pii.") and v > 0 for k, v in filt.items())
    assert "rule,documents" in files["plots/filter_removals.csv"].decode().replace("source,", "")
    dedup = json.loads(files["metrics/dedup.json"])
    assert 0 < dedup["documents_kept"] < dedup["documents_in"] == filt["documents_kept"]
    rate = json.loads(files["metrics/rate.json"])
    assert rate["raters.dclm.heldout_accuracy"] > 0.9
    means = {k.split(".")[3]: v for k, v in rate.items() if k.startswith("raters.dclm.sources.") and k.endswith(".mean")}
    assert means["wiki_en"] > 0.5 > means["python_stdlib"]
    mix = json.loads(files["metrics/mix.json"])
    for split in ("pretrain", "anneal"):
        # whole documents: each domain's last one may cross its request (anneal's code share is
        # 40k tokens filled by 6 documents of ~8k), so a split lands within ~15% of its budget
        assert mix[f"{split}.tokens_est"] == pytest.approx(mix[f"{split}.token_budget"], rel=0.15)
        for key, requested in mix.items():
            if key.startswith(f"{split}.domains.") and key.endswith(".requested_share"):
                assert mix[key.replace("requested", "achieved")] == pytest.approx(requested, abs=0.03), key
    assert mix["val.train_overlap_documents"] == 0 and mix["val.documents"] > 0


def test_rerun_from_scratch_is_byte_identical(reference_run, tmp_path, run_params):
    _, first = reference_run
    assert run_pipeline(tmp_path, run_params) == first


def test_dask_executor_gives_the_same_bytes(reference_run, tmp_path, run_params):
    pytest.importorskip("distributed")
    _, first = reference_run
    params = copy.deepcopy(run_params)
    params["common"]["executor"] = "dask"
    assert run_pipeline(tmp_path, params) == first


# eval_sets writes its few small files in milliseconds, too fast to catch mid-write; it uses the
# same atomic_dir as the stages tested here
def _holds_files(tmp: Path) -> bool:
    """Whether a stage's temporary output directory exists with a file in it; False when the
    stage renames it into place while it is being listed."""
    try:
        return tmp.exists() and any(p.is_file() for p in tmp.rglob("*"))
    except FileNotFoundError:
        return False


@pytest.mark.parametrize("stage", [s for s in STAGES if s != "eval_sets"])
def test_killed_stage_leaves_nothing_and_rerun_matches(reference_run, tmp_path, run_params, stage):
    root, first = reference_run
    scratch_project(tmp_path, run_params)
    position = STAGES.index(stage)
    # the upstream outputs come from the reference run rather than from running the upstream
    # stages again: they are the same bytes (test_rerun_from_scratch_is_byte_identical), and
    # what is under test is this stage's kill and rerun
    copy_outputs(root, tmp_path, STAGES[:position])
    proc = subprocess.Popen([sys.executable, "-m", f"stages.{stage}"], cwd=tmp_path, env=stage_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    dirs = [Path(o) for o in (next(iter(x)) if isinstance(x, dict) else x for x in PIPELINE[stage]["outs"])
            if not Path(o).suffix]
    temporaries = {tmp_path / d.parent / f".{d.name}.tmp": tmp_path / d for d in dirs}
    deadline = time.time() + 120
    busy = []
    while not busy:  # kill once the stage is writing one of its outputs
        assert proc.poll() is None and time.time() < deadline, "stage ended before it could be killed"
        busy = [t for t in temporaries if _holds_files(t)]
        time.sleep(0.005)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    for tmp in busy:  # cut off mid-write, and nothing half-written where a later stage reads:
        # either the temporary is still there and the output is not, or the directory was
        # finished and renamed whole in the instant between seeing it and the kill
        assert tmp.exists() != temporaries[tmp].exists(), tmp
    run_stage(tmp_path, stage)
    done = STAGES[: position + 1]  # the stages downstream are covered by the rerun tests above
    assert digest(tmp_path, done) == digest_of(first, done)
    assert not list(tmp_path.rglob(".*.tmp"))


def _git_copy(dst: Path) -> None:
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, capture_output=True,
                           text=True, check=True).stdout.split()
    for rel in files:
        if (REPO / rel).is_file():
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / rel, dst / rel)
    (dst / "assets").mkdir(exist_ok=True)
    shutil.copy2(REPO / "assets" / "lid.176.ftz", dst / "assets" / "lid.176.ftz")
    subprocess.run(["git", "init", "-q"], cwd=dst, check=True)
    git = ["git", "-c", "user.name=test", "-c", "user.email=test@example.com"]
    subprocess.run(["git", "add", "-A"], cwd=dst, check=True)
    subprocess.run([*git, "commit", "-qm", "copy"], cwd=dst, check=True)


def dvc(root: Path, *args: str) -> subprocess.CompletedProcess:
    env = stage_env()
    env["DVC_NO_ANALYTICS"] = "1"
    dvc_bin = Path(sys.executable).with_name("dvc")
    return subprocess.run([str(dvc_bin), *args], cwd=root, env=env, capture_output=True, text=True, timeout=900)


@functools.lru_cache(maxsize=None)
def _resolved(dep: str) -> str:
    """A dep as DVC reads it: `${sft.init_model}` is params.yaml's value (the start model)."""
    import re
    import yaml
    m = re.fullmatch(r"\$\{([a-z_.]+)\}", dep)
    if not m:
        return dep
    node = yaml.safe_load((REPO / "params.yaml").read_text())
    for part in m.group(1).split("."):
        node = node[part]
    return node


def _overlap(dep: str, out: str) -> bool:
    """A dep reads an output when it is the output, a file inside it (card@sft reads
    data/eval/sft/metrics.json of eval@sft's data/eval/sft) or a directory holding it, as DVC
    links stages."""
    return dep == out or dep.startswith(out + "/") or out.startswith(dep + "/")


def downstream_of(section: str) -> set[str]:
    """Stages that use a params section, plus every stage that depends on their outputs."""
    stages = PIPELINE
    outs = {name: {next(iter(o)) if isinstance(o, dict) else o for o in st.get("outs", [])} for name, st in stages.items()}
    deps = {name: [_resolved(d) for d in st["deps"]] for name, st in stages.items()}
    hit = {name for name, st in stages.items() if section in st.get("params", [])}
    changed = True
    while changed:
        changed = False
        for name in stages:
            if name not in hit and any(_overlap(d, o) for h in hit for o in outs[h] for d in deps[name]):
                hit.add(name)
                changed = True
    return hit


def bump_one_param(params: dict, section: str) -> None:
    """Change the first number at the top of a section (seeds, sizes, ratios)."""
    for key, value in params[section].items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            # (a float 0.0, as reward_model.center_coef, x 0.9 would not change)
            params[section][key] = value + 1 if isinstance(value, int) else value * 0.9 if value else 0.1
            return
    raise AssertionError(f"params.yaml: {section} has no top-level number to change in this test")


# the training stages at a few seconds each, so the whole pipeline runs under DVC in the test
SMALL_TRAINING = {
    "pretrain": {"max_tokens": 4096, "seq_len": 64, "batch_size": 8, "micro_batch_size": 8, "log_every": 2,
                 "eval": {"every_steps": 4, "blocks_per_domain": 1}, "checkpoint": {"every_steps": 4},
                 "model": {"hidden_size": 32, "num_layers": 1, "num_heads": 2, "intermediate_size": 64,
                           "max_length": 128}},
    "anneal": {"max_tokens": 1024, "seq_len": 64, "batch_size": 8, "micro_batch_size": 8, "log_every": 2,
               "eval": {"every_steps": 2, "blocks_per_domain": 1}, "checkpoint": {"every_steps": 2}},
    # 18: a 6-number sort's answer with its end token (sft stops when the longest does not fit)
    "tasks": {"families": ["sort", "count"], "test_examples": 8, "max_new_tokens": 18},
    "sft": {"sources": [{"name": "tasks", "type": "tasks", "count": 100}], "seq_len": 64, "batch_size": 8,
            "micro_batch_size": 8, "epochs": 2, "optim": {"lr": 0.01}, "eval": {"every_steps": 10, "batch_size": 8},
            "checkpoint": {"every_steps": 10}},
    # pairs from a file: a model this small rarely writes an answer line, so sampled pairs would tie
    "dpo": {"pairs": {"source": "files", "files": [{"path": "prefs.jsonl"}], "max_len": 48, "val_fraction": 0.2},
            "batch_size": 8, "micro_batch_size": 8, "epochs": 1, "eval": {"every_steps": 4, "batch_size": 8},
            "checkpoint": {"every_steps": 4}},
    "reward_model": {"batch_size": 8, "micro_batch_size": 8, "eval": {"every_steps": 4, "batch_size": 16},
                     "checkpoint": {"every_steps": 4}},
    "judge": {"batch_size": 16},
    "rlvr": {"steps": 2, "batch_size": 4, "micro_batch_size": 4, "group_size": 4, "prompts_per_family": 20,
             "eval": {"every_steps": 2, "batch_size": 32, "samples": 2}, "checkpoint": {"every_steps": 2}},
    "eval": {"bpb": {"max_docs_per_domain": 2, "max_bytes_per_domain": 2000}, "prompts": ["Sort: 3 1"],
             "max_new_tokens": 8, "sets": {"cloze": {"per_domain": 8, "per_doc": 2, "context_words": 16}}},
    "harness": {"tasks": [{"name": "lmbuild_task_choice", "limit": 8}, {"name": "lmbuild_task_answer", "limit": 4},
                          {"name": "lmbuild_heldout_text", "limit": 2}]},
}


def small_training(params: dict) -> dict:
    out = copy.deepcopy(params)
    for section, override in SMALL_TRAINING.items():
        if section in out:
            for key, value in override.items():
                out[section][key] = {**out[section].get(key, {}), **value} if isinstance(value, dict) else value
    tasks = out["tasks"]  # difficulty settings only for the families the small run keeps
    tasks["difficulty"] = {f: d for f, d in tasks.get("difficulty", {}).items() if f in tasks["families"]}
    return out


def ran(proc: subprocess.CompletedProcess) -> set[str]:
    """The stages a `dvc repro` ran (with --dry: would run)."""
    return {name for name in PIPELINE if f"Running stage '{name}'" in proc.stdout}


def dvc_dependents(root: Path) -> dict[str, set[str]]:
    """DVC's own graph of the main pipeline (${<stage>.init_model} deps resolved as it resolves
    them): each stage -> every stage that depends on it, directly or through others, which is what
    `dvc repro` reruns when the stage's outputs change (--force-downstream walks the same graph)."""
    import networkx as nx
    from dvc.repo import Repo

    cwd = os.getcwd()
    os.chdir(root)  # DVC places outputs against the working directory
    try:
        with Repo(".") as repo:
            graph = repo.index.graph  # edges go from a stage to the stages it depends on
            return {stage.addressing: {s.addressing for s in nx.ancestors(graph, stage)} & set(PIPELINE)
                    for stage in graph if stage.addressing in PIPELINE}
    finally:
        os.chdir(cwd)


def test_dvc_reruns_only_what_changed(pipeline_run, tmp_path):
    import yaml

    built, _, first = pipeline_run
    for name in PIPELINE:
        assert f"Running stage '{name}'" in first, name
    # the reruns below change the project (workspace, git, DVC cache): they run on a copy, and the
    # other tests keep reading the reference run's outputs
    root = tmp_path / "project"
    shutil.copytree(built, root, symlinks=True)
    original = (root / "params.yaml").read_text()
    again = dvc(root, "repro")  # (a copy: new inodes, so DVC hashes every file again, and finds no change)
    assert again.returncode == 0 and "Running stage" not in again.stdout, again.stdout

    def write(params: dict) -> None:
        (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))

    # The params-to-rerun matrix: for every section, the stages DVC sees changed are exactly those
    # that read the section, and the stages that rerun when their outputs change (DVC's graph) are
    # exactly what dvc.yaml puts downstream of them, never a stage upstream. A params change that
    # changes an output reruns all of that (a new learning rate gives new weights, a new filter
    # threshold new documents); DVC's graph names those stages without training them, where real
    # reruns of every section would rerun most of the pipeline several times over. That a real
    # rerun does go down the graph, and stops where an output comes out unchanged, the two real
    # repros below show.
    dependents = dvc_dependents(root)
    changes = {}
    for section in yaml.safe_load(original):  # the whole matrix: every section, every stage
        if section == "studies":  # read by studies/dvc.yaml only (tests/test_studies.py)
            continue
        params = yaml.safe_load(original)
        bump_one_param(params, section)
        changes[section] = params
    # and nested keys: a filter threshold, the pretraining learning rate
    params = yaml.safe_load(original)
    params["filter"]["rules"]["langid"]["min_score"] = params["filter"]["rules"]["langid"]["min_score"] * 0.9
    changes["filter.rules.langid.min_score"] = params
    params = yaml.safe_load(original)
    params["pretrain"]["optim"]["lr"] = params["pretrain"]["optim"]["lr"] / 2
    changes["pretrain.optim.lr"] = params
    for what, params in changes.items():
        section = what.split(".")[0]
        write(params)
        status = dvc(root, "status", "dvc.yaml", "--json")  # the main pipeline (not the studies')
        changed = set(json.loads(status.stdout))
        users = {name for name, st in PIPELINE.items() if section in st.get("params", [])}
        assert changed == users, what
        rerun = changed.union(*(dependents[name] for name in changed))
        assert rerun == downstream_of(section), (what, rerun ^ downstream_of(section))
    assert {"pretrain", "anneal", "sft", "dpo", "rlvr", "report"} <= downstream_of("pretrain")
    assert not downstream_of("pretrain") & set(STAGES) and "acquire" not in downstream_of("filter")
    # and `dvc repro` walks that graph: with the learning rate changed, a dry run that treats every
    # rerun stage's outputs as changed names the same stages
    dry = dvc(root, "repro", "--dry", "--force-downstream", "dvc.yaml")
    assert dry.returncode == 0 and ran(dry) == downstream_of("pretrain"), dry.stdout
    (root / "params.yaml").write_text(original)

    # a real rerun absorbed: the filter's record-batch size changes its params but not its output
    # (rows are filtered one by one, whatever the batching); filter reruns, its outputs come out
    # byte-identical, and DVC reruns nothing after it
    params = yaml.safe_load(original)
    params["filter"]["batch_rows"] = params["filter"]["batch_rows"] // 2 - 7
    write(params)
    third = dvc(root, "repro")
    assert third.returncode == 0, third.stderr
    assert ran(third) == {"filter"}, third.stdout

    # a real rerun propagating: the dpo loss reruns dpo and what follows, a changed model going
    # down to the report, with trainers starting over from checkpoints made with other params
    # (dpo) or inputs (rlvr); the pairs and their cached reference log-probs (dpo_pairs reads
    # only dpo.pairs) are reused. (Its beta alone reruns the same stages: the matrix above shows
    # that a number of the dpo section reaches dpo and not dpo_pairs.)
    params["dpo"].update({"loss": "simpo", "beta": 2.0})
    write(params)
    out = dvc(root, "repro")
    assert out.returncode == 0, out.stderr
    assert "dpo" in ran(out) and "dpo_pairs" not in ran(out) and ran(out) <= downstream_of("dpo"), out.stdout
    # the eval re-evaluates the changed models only
    assert {"eval@dpo", "eval@rlvr", "report"} <= ran(out), out.stdout
    assert not {"eval@pretrain", "eval@anneal", "eval@sft", "eval_sets", "contamination"} & ran(out), out.stdout

    # versioning: push every output to a DVC remote, clone the repository elsewhere and pull:
    # models, data and metrics come back and nothing needs recomputing
    remote, clone = tmp_path / "remote", tmp_path / "clone"
    assert dvc(root, "remote", "add", "-d", "local", str(remote)).returncode == 0
    pushed = dvc(root, "push", "dvc.yaml")  # the main pipeline (studies/dvc.lock names outputs not run here)
    assert pushed.returncode == 0, pushed.stderr
    git = ["git", "-c", "user.name=test", "-c", "user.email=test@example.com"]
    subprocess.run(["git", "add", "-A"], cwd=root, check=True)
    subprocess.run([*git, "commit", "-qm", "demo run"], cwd=root, check=True)
    subprocess.run(["git", "clone", "-q", str(root), str(clone)], check=True)
    shutil.copy2(REPO / "assets" / "lid.176.ftz", clone / "assets" / "lid.176.ftz")  # what `make setup` does
    pulled = dvc(clone, "pull", "dvc.yaml")
    assert pulled.returncode == 0, pulled.stderr
    status = dvc(clone, "status", "dvc.yaml", "--json")  # the studies (studies/dvc.yaml) were not run
    assert status.returncode == 0 and json.loads(status.stdout) == {}, status.stdout
    for rel in ("models/rlvr/model.safetensors", "data/dpo/pairs.jsonl", "data/eval/sft/metrics.json",
                "metrics/eval.json", "reports/report.html", "cards/rlvr/README.md"):
        assert (clone / rel).read_bytes() == (root / rel).read_bytes(), rel
    # every model has a card naming its sources, and its lineage reaches acquire on the clone
    assert "| python_docs |" in (clone / "cards/sft/README.md").read_text()
    lineage = subprocess.run([sys.executable, "-m", "lmbuild.lineage", "models/rlvr"], cwd=clone, env=stage_env(),
                             capture_output=True, text=True)
    assert lineage.returncode == 0 and "\nacquire  (" in lineage.stdout, lineage.stderr
    metrics = dvc(clone, "metrics", "show", "--json")
    assert metrics.returncode == 0 and "rlvr" in metrics.stdout, metrics.stderr
    # every eval number carries its standard error, and the per-item results are in git, so a
    # clone compares two commits item by item without the DVC cache
    ev = json.loads((clone / "metrics/eval.json").read_text())
    assert {"task_accuracy_stderr", "mc_acc_norm_mean_stderr"} <= set(ev["sft"]) and "all_stderr" in ev["sft"]["bpb"]
    assert {"acc", "acc_stderr", "acc_norm"} <= set(ev["sft"]["harness"]["lmbuild_task_choice"])   # the harness tasks
    tracked = subprocess.run(["git", "ls-files", "data/eval/sft/items"], cwd=clone, capture_output=True, text=True)
    assert "data/eval/sft/items/tasks.jsonl" in tracked.stdout.split()
    cmp = subprocess.run([sys.executable, "-m", "lmbuild.compare", "HEAD~1", "HEAD"], cwd=clone, capture_output=True,
                         text=True)
    assert cmp.returncode == 0 and "| metric | A | B |" in cmp.stdout, cmp.stderr


@pytest.mark.parametrize("stage", STAGES[1:])
def test_truncated_input_shard_is_named_not_a_traceback(reference_run, tmp_path, stage):
    root, _ = reference_run
    project = Project(tmp_path)
    shutil.copy2(root / "params.yaml", tmp_path / "params.yaml")
    shutil.copytree(root / "data", tmp_path / "data", symlinks=True)
    if (root / "models").exists():
        shutil.copytree(root / "models", tmp_path / "models")
    upstream = READS.get(stage) or [d for d in PIPELINE[stage]["deps"] if d.startswith("data/")][0]
    victim = sorted((tmp_path / upstream).rglob("*.parquet"))[0]
    victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])
    proc = project.run(stage, check=False)
    assert proc.returncode != 0
    assert str(victim.relative_to(tmp_path)) in proc.stderr, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]


def test_data_ablation_study_on_the_demo_data(reference_run, tmp_path, run_params, monkeypatch):
    """Recipes built from the first stage they change, on the main pipeline's held-out set;
    the default recipe rebuilt from raw gives the main pipeline's tokens byte for byte; proxies
    and the fit rank the recipes with standard errors."""
    import importlib

    import pyarrow.parquet as pq

    from lmbuild.study import data_ablation

    root, _ = reference_run
    proj = tmp_path / "p"
    for sub in ("data", "models", "metrics", "assets"):
        shutil.copytree(root / sub, proj / sub, symlinks=True)
    shutil.copy(root / "dvc.yaml", proj / "dvc.yaml")  # the recipes' inputs are read from it
    params = copy.deepcopy(run_params)
    params["studies"]["proxy"] = {**params["studies"]["proxy"], "max_tokens": 8192, "log_every": 2,
                                  "schedule": {"kind": "cosine", "warmup_steps": 1, "min_lr_ratio": 0.1},
                                  "eval": {"every_steps": 4, "blocks_per_domain": 1}}
    no_dedup = {"dedup": {"exact": {"enabled": False}, "minhash": {"enabled": False},
                          "paragraphs": {"enabled": False}}}
    params["studies"]["ablation"] = {"seeds": [1, 2], "baseline": "default", "size": "proxy",
                                     "recipes": {"default": {}, "no_dedup": no_dedup}}
    Project(proj).write_params(params)
    monkeypatch.chdir(proj)
    monkeypatch.setenv("LMBUILD_NO_PROGRESS", "1")

    def stage(*args, module="study_ablation"):
        monkeypatch.setattr(sys, "argv", [module, *args])
        importlib.import_module(f"stages.{module}").main()

    stage("data", "default")
    stage("data", "no_dedup")
    ab = proj / "studies/ablation/data"
    assert json.loads((ab / "default/recipe.json").read_text())["tokens"] == "data/tokens"
    rec = json.loads((ab / "no_dedup/recipe.json").read_text())
    assert rec["start"] == "dedup" and rec["stages"]["dedup"]["documents_kept"] == rec["stages"]["dedup"]["documents_in"]
    main_val = set(pq.read_table(proj / "data/mix/val").column("id").to_pylist())
    trained = set(pq.read_table(ab / "no_dedup/tokens/pretrain/index.parquet").column("id").to_pylist())
    assert main_val and not main_val & trained  # the main held-out documents stay held out
    assert tree_digest(ab / "no_dedup/tokens/val") == tree_digest(proj / "data/tokens/val")
    # the default recipe forced through every data stage is the main pipeline's data, byte for byte
    first_changed = data_ablation.first_changed
    monkeypatch.setattr(data_ablation, "first_changed", lambda *a: "filter")
    forced = data_ablation.build_recipe(load_all(proj), "default", tmp_path / "forced")
    assert forced["start"] == "filter"
    for split in ("pretrain", "anneal", "val"):
        assert tree_digest(tmp_path / "forced/default/tokens" / split) == tree_digest(proj / "data/tokens" / split)
    monkeypatch.setattr(data_ablation, "first_changed", first_changed)

    for recipe in ("default", "no_dedup"):
        for seed in ("1", "2"):
            stage("proxy", recipe, seed)
    stage("ablation", module="study_fit")
    m = json.loads((proj / "metrics/study_ablation.json").read_text())
    assert m["seeds"] == 2 and m["recipes"] == 2
    row = {k.rsplit(".", 1)[1]: v for k, v in m.items() if k.startswith("metrics.bpb.all.no_dedup.")}
    assert row["runs"] == 2 and row["diff_stderr"] > 0 and "p" in row
    assert "metrics.mc_acc_norm_mean.no_dedup.diff" in m and "metrics.bpb.code.default.mean" in m
    suites = [json.loads((proj / f"studies/ablation/proxies/no_dedup-{s}/eval/metrics.json").read_text()) for s in (1, 2)]
    assert row["mean"] == pytest.approx(sum(x["bpb"]["all"] for x in suites) / 2)
    report = (proj / "studies/ablation/report.md").read_text()
    assert "| no_dedup |" in report and "![" in report and (proj / "studies/ablation/bpb_differences.png").is_file()
    # a recipe that overlays a stage the study keeps fixed is one line and exit 2
    params["studies"]["ablation"]["recipes"]["tok"] = {"tokenize": {"vocab_size": 512}}
    Project(proj).write_params(params)
    with pytest.raises(SystemExit) as exit_:
        stage("data", "tok")
    assert exit_.value.code == 2


def load_all(root: Path) -> dict:
    from lmbuild.params import load_params
    from stages.study_ablation import SECTIONS

    return load_params("studies", root / "params.yaml", shared=SECTIONS)
