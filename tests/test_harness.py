"""lm-evaluation-harness tasks in the eval stage (lmbuild.eval.harness): a task that is unknown or
whose data is not on this machine stops before any model loads, in one line naming the task and
the fetch command; local task files of the three request types run on a tiny model and land in
the stage's metrics (with the harness's standard errors) and per-sample items, the chat template
on generative tasks of chat stages only; compare pairs them; the model card lists them."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("lm_eval")

from lmbuild.compare import paired_stderr  # noqa: E402
from lmbuild.eval.harness import HarnessError, evaluate_with_harness, plan  # noqa: E402
from lmbuild.model_card import model_index  # noqa: E402
from lmbuild.params import validate_section  # noqa: E402
from train_data import tiny_chat_llama  # noqa: E402

# the three request types over one local JSONL file: what each task file adds to the shared head
HEAD = """task: {name}
dataset_path: json
dataset_kwargs: {{data_files: {{test: {data}}}}}
test_split: test
"""
TASKS = {
    "t_choice": """output_type: multiple_choice
doc_to_text: "{{query}}"
doc_to_choice: "{{choices}}"
doc_to_target: gold
metric_list: [{metric: acc}, {metric: acc_norm}]
""",
    "t_answer": """output_type: generate_until
doc_to_text: "{{query}}"
doc_to_target: "{{choices[gold]}}"
generation_kwargs: {until: ["\\n"], max_gen_toks: 4, do_sample: false}
metric_list: [{metric: exact_match, aggregation: mean, higher_is_better: true}]
""",
    "t_text": """output_type: loglikelihood_rolling
doc_to_text: ""
doc_to_target: "{{query}}"
metric_list: [{metric: bits_per_byte}]
""",
}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("harness")
    tiny_chat_llama(root / "tok", root / "model")
    rows = [{"query": f"Sort: {a} {b} 1 Answer:", "choices": [f"1 {a} {b}", f"{b} {a} 1"], "gold": 0}
            for a, b in [(3, 2), (5, 4), (2, 9), (7, 3), (4, 8), (6, 5)]]
    data = root / "items.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    tasks = root / "tasks"
    tasks.mkdir()
    for name, body in TASKS.items():
        (tasks / f"{name}.yaml").write_text(HEAD.format(name=name, data=data) + body)
    return root, tasks


def cfg(tasks, names, **kw):
    return validate_section("harness", {"tasks": [{"name": n} for n in names], "include_path": str(tasks),
                                        "batch_size": 4, "bootstrap_iters": 10, **kw})


def test_unknown_tasks_and_missing_data_stop_before_any_model_loads(setup, tmp_path):
    _, tasks = setup
    # one plan, every problem at once (indexing the harness's built-in tasks is the slow part): a
    # name no index knows, and a registered task whose dataset was never fetched into data_dir
    # (offline, so no download is tried)
    with pytest.raises(HarnessError) as e:
        plan(cfg(tasks, ["t_choice", "no_such_task", "arc_easy"], data_dir=str(tmp_path / "empty")), chat_stage=False)
    lines = str(e.value).splitlines()
    assert len(lines) == 2 and "eval.harness.tasks: 'no_such_task' is neither" in lines[0]
    assert "task arc_easy: its data cannot be read offline" in lines[1]
    assert "python -m lmbuild.eval.harness fetch arc_easy --to" in lines[1]


def own_eval(params, stage, model_dir, out_dir, val_root):
    """A stand-in for lmbuild's own eval: what evaluate_stage writes, reduced to its shape."""
    out_dir.mkdir(parents=True)
    (out_dir / "items").mkdir()
    (out_dir / "items" / "tasks.jsonl").write_text("")
    m = {"chat": stage == "sft", "task_accuracy": 0.5}
    (out_dir / "metrics.json").write_text(json.dumps(m))
    return m


@pytest.mark.parametrize("stage", ["pretrain", "sft"])
def test_harness_tasks_of_each_request_type_land_in_the_stage_outputs(setup, tmp_path, stage):
    root, tasks = setup
    params = {"common": {"seed": 1}, "eval": validate_section("eval", {}),
              "harness": cfg(tasks, ["t_choice", "t_answer", "t_text"])}
    m = evaluate_with_harness(params, stage, root / "model", tmp_path / "out", tmp_path, own_eval)
    saved = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert saved == json.loads(json.dumps(m)) and saved["task_accuracy"] == 0.5   # the own eval kept
    h = saved["harness"]
    assert 0 <= h["t_choice"]["acc"] <= 1 and h["t_choice"]["acc_stderr"] > 0 and h["t_choice"]["samples"] == 6
    assert "exact_match" in h["t_answer"] and h["t_text"]["bits_per_byte"] > 0
    # generative tasks through the chat template on chat stages only; log-likelihood tasks never by default
    assert h["t_answer"]["chat_template"] == (stage == "sft") and h["t_choice"]["chat_template"] == 0
    rows = [json.loads(x) for x in (tmp_path / "out" / "items" / "harness.jsonl").read_text().splitlines()]
    assert {r["task"] for r in rows} == {"t_choice", "t_answer", "t_text"}
    choice = [r for r in rows if r["task"] == "t_choice"]
    assert len(choice) == 6 and sum(r["acc"] for r in choice) / 6 == pytest.approx(h["t_choice"]["acc"])
    assert (tmp_path / "out" / "items" / "tasks.jsonl").is_file()
    # compare pairs two runs on the same documents; the model card lists the tasks
    flipped = [{**r, "acc": 1.0 - r["acc"]} if r["task"] == "t_choice" else r for r in rows]
    assert paired_stderr("harness.t_choice.acc", {"harness": rows}, {"harness": flipped}) > 0
    names = [r["task"]["name"] for r in model_index(stage, saved)[0]["results"]]
    assert "t_choice (lm-evaluation-harness, 0-shot)" in names


def test_core_runs_from_a_local_bundle_and_a_broken_one_stops_before_the_model(setup, tmp_path):
    from lmbuild.eval.core import CoreError
    from test_core_score import write_bundle
    root, tasks = setup
    bundle = tmp_path / "bundle"
    write_bundle(bundle, [{"label": "mc", "icl_task_type": "multiple_choice", "dataset_uri": "mc.jsonl", "num_fewshot": [1]},
                          {"label": "lm", "icl_task_type": "language_modeling", "dataset_uri": "lm.jsonl", "num_fewshot": [0]}],
                 {"mc": 50.0, "lm": 0.0},
                 {"mc.jsonl": [{"query": f"Sort: {a} 1", "choices": [f"1 {a}", f"{a} 1"], "gold": 0} for a in range(2, 9)],
                  "lm.jsonl": [{"context": f"Sort: {a} 1 Answer:", "continuation": f"1 {a}"} for a in range(2, 9)]})
    params = {"common": {"seed": 1}, "eval": validate_section("eval", {}),
              "harness": validate_section("harness", {"include_path": str(tasks), "core": {"bundle": str(bundle)}})}
    m = evaluate_with_harness(params, "pretrain", root / "model", tmp_path / "out", tmp_path, own_eval)
    per = m["core"]["tasks"]
    assert set(per) == {"mc", "lm"} and per["mc"]["items"] == 7 and per["mc"]["num_fewshot"] == 1
    assert per["mc"]["centred"] == pytest.approx((per["mc"]["accuracy"] - 0.5) / 0.5)
    assert m["core"]["score"] == pytest.approx((per["mc"]["centred"] + per["lm"]["centred"]) / 2)
    assert len((tmp_path / "out" / "items" / "core.jsonl").read_text().splitlines()) == 14
    (bundle / "eval_meta_data.csv").write_text("Eval Task,Random baseline\nmc,50\n")   # no chance level for lm

    def must_not_run(*a):
        raise AssertionError("the own eval ran before the bundle was checked")
    with pytest.raises(CoreError):
        evaluate_with_harness(params, "pretrain", root / "model", tmp_path / "out2", tmp_path, must_not_run)
