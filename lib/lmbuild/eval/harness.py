"""lm-evaluation-harness tasks in the eval stage (`eval.harness`): registered tasks (HellaSwag,
ARC, MMLU, GSM8K, ...) or task YAML files kept in the repository (`harness_tasks/`), run on every
model stage with the harness's own scoring, so a number is the one a published model reports for
the same task and settings.

Offline by construction: while the tasks are read and run, the Hugging Face libraries are told
to stay offline and read datasets from `eval.harness.data_dir`, which

    python -m lmbuild.eval.harness fetch TASK [TASK ...] --to DIR

fills once on a machine with a network (it loads each task's dataset into DIR's cache). Every
task is built before the model is loaded: one whose data is missing stops the stage with a line
naming the task and that command.

Chat stages: a task runs through the chat template when its `chat_template` says so; left
unset, generative tasks (generate_until) on a chat stage use it and log-likelihood tasks do
not (they score raw text on every stage, so their numbers compare across stages, as lmbuild's
own multiple-choice scorer does).

Outputs: metrics `harness.<task>.<metric>[_<filter>]` with `..._stderr` (the harness's own
standard errors), and per-sample rows (items/harness.jsonl: task, id, one value per metric) so
that lmbuild.compare pairs two models on the same documents.

CORE (`harness.core.bundle`: a local copy of DCLM's eval bundle) runs in the same pass with
lmbuild.eval.core: `core.score` (mean centred accuracy) with its standard error and `core.tasks.
<label>.*` per task, per-item rows in items/core.jsonl.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path

OFFLINE = {"HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
FETCH = "python -m lmbuild.eval.harness fetch"


def log(msg: str) -> None:
    print(msg, file=sys.stderr)


class HarnessError(ValueError):
    """A task that cannot run here; the message names the task and what to do."""


@contextlib.contextmanager
def hf_env(data_dir: str | None, offline: bool = True):
    """The Hugging Face libraries offline (or not) and reading datasets from data_dir."""
    keys = {**(OFFLINE if offline else {}), **({"HF_DATASETS_CACHE": str(Path(data_dir).resolve())} if data_dir else {})}
    old = {k: os.environ.get(k) for k in keys}
    os.environ.update(keys)
    try:
        yield
    finally:
        for k, v in old.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)


def task_manager(include_path: str | None, names: list[str] = ()):
    """The harness's task index: only the repository's task files when they hold every name asked
    for (indexing the harness's thousands of built-in task files takes about 20 s), else both."""
    from lm_eval.tasks import TaskManager
    path = include_path if include_path and Path(include_path).is_dir() else None
    if path and names:
        own = TaskManager(include_path=path, include_defaults=False)
        if all(n in own.all_tasks for n in names):
            return own
    return TaskManager(include_path=path)


@dataclass
class Planned:
    name: str
    num_fewshot: int
    limit: int | None
    chat: bool
    output_types: tuple[str, ...]


def plan(cfg: dict, chat_stage: bool, log=log) -> tuple[object, list[Planned]]:
    """Every configured task built offline from data_dir (its data read, nothing run), before any
    model loads; a task that is unknown or whose data is missing is one HarnessError line."""
    tm = task_manager(cfg["include_path"], [t["name"] for t in cfg["tasks"]])
    out, problems = [], []
    with hf_env(cfg["data_dir"]):
        for t in cfg["tasks"]:
            name = t["name"]
            if name not in tm.all_tasks:
                problems.append(f"params.yaml: eval.harness.tasks: {name!r} is neither an lm-evaluation-harness task "
                                f"nor a task file under {cfg['include_path']}")
                continue
            try:
                built = tm.load([name])
            except Exception as exc:   # the harness raises whatever the dataset library raised
                problems.append(f"eval.harness: task {name}: its data cannot be read offline from "
                                f"{cfg['data_dir'] or 'the default Hugging Face cache'} ({type(exc).__name__}); fetch it "
                                f"once where there is a network: {FETCH} {name} --to {cfg['data_dir'] or 'DIR'} "
                                f"(and set eval.harness.data_dir)")
                continue
            types = tuple(sorted({t.OUTPUT_TYPE for t in built["tasks"].values()}))   # every leaf task of a group
            chat = t["chat_template"] if t["chat_template"] is not None else (chat_stage and "generate_until" in types)
            if chat and not chat_stage:
                log(f"eval.harness: task {name}: chat_template true on a stage that eval.chat_stages does not name")
            out.append(Planned(name, t["num_fewshot"], t["limit"], bool(chat), types))
    if problems:
        raise HarnessError("\n".join(problems))
    return tm, out


def _metric_name(key: str) -> str:
    """'acc,none' -> 'acc'; 'exact_match,strict-match' -> 'exact_match_strict-match'."""
    metric, _, filt = key.partition(",")
    return metric if filt in ("", "none") else f"{metric}_{filt}"


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def run(model, tok, tm, planned: list[Planned], cfg: dict, *, seed: int, device, log=log) -> tuple[dict, list[dict]]:
    """Run every planned task on the loaded model: (metrics per task, per-sample rows)."""
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM

    lm = HFLM(pretrained=model, tokenizer=tok, batch_size=cfg["batch_size"], device=str(device))
    metrics: dict[str, dict] = {}
    rows: list[dict] = []
    with hf_env(cfg["data_dir"]):
        for p in planned:
            res = simple_evaluate(model=lm, tasks=[p.name], num_fewshot=p.num_fewshot, limit=p.limit,
                                  task_manager=tm, log_samples=True, apply_chat_template=p.chat,
                                  fewshot_as_multiturn=p.chat, bootstrap_iters=cfg["bootstrap_iters"],
                                  random_seed=seed, numpy_random_seed=seed, torch_random_seed=seed,
                                  fewshot_random_seed=seed)
            for task, values in sorted(res["results"].items()):
                m = {}
                for key, v in values.items():
                    if "," not in key or "_stderr," in key or not _finite(v):
                        continue
                    name = _metric_name(key)
                    se = values.get(key.replace(",", "_stderr,", 1))
                    m[name] = float(v)
                    if _finite(se):
                        m[f"{name}_stderr"] = float(se)
                n = res.get("n-samples", {}).get(task, {})
                if n:
                    m["samples"] = n.get("effective", n.get("original"))
                m["num_fewshot"] = p.num_fewshot
                m["chat_template"] = int(p.chat)
                metrics[task] = m
            for task, samples in sorted(res.get("samples", {}).items()):
                bases = {k.partition(",")[0] for k in res["results"].get(task, {}) if "," in k and "_stderr," not in k}
                for s in samples:   # one per (document, filter): the metric names carry the filter
                    filt = s.get("filter", "none")
                    suffix = "" if filt in ("", "none") else f"_{filt}"
                    rows.append({"task": task, "id": s["doc_id"],
                                 **{b + suffix: float(s[b]) for b in sorted(bases) if _finite(s.get(b))}})
            shown = ", ".join(f"{k} {v:.3f}" for k, v in metrics.get(p.name, {}).items()
                              if not k.endswith("_stderr") and k not in ("samples", "num_fewshot", "chat_template"))
            log(f"harness {p.name}: {shown}{' (chat template)' if p.chat else ''}")
    return metrics, rows


def evaluate_with_harness(params: dict, stage: str, model_dir: Path, out_dir: Path, val_root: Path,
                          evaluate) -> dict:
    """eval@<stage>: lmbuild's own eval (`evaluate`: lmbuild.eval.model_eval.evaluate_stage), then
    the harness tasks on the same model, written into out_dir together (atomically): metrics.json
    gains `harness`, items/ gains harness.jsonl. The tasks are planned (their data read offline)
    before any model loads."""
    import json
    import time

    import torch
    from transformers import AutoTokenizer

    from ..lm.model import choose_attention, load_model
    from ..shards import atomic_dir

    from .core import read_bundle

    cfg = params["harness"]
    tm, planned = plan(cfg, stage in params["eval"]["chat_stages"], log) if cfg["tasks"] else (None, [])
    bundle = read_bundle(Path(cfg["core"]["bundle"])) if cfg["core"]["bundle"] else []   # checked before any model loads
    with atomic_dir(out_dir) as tmp:
        metrics = evaluate(params, stage, model_dir, tmp / "own", val_root)
        for f in sorted((tmp / "own").iterdir()):
            os.replace(f, tmp / f.name)
        (tmp / "own").rmdir()
        if planned or bundle:
            t0 = time.perf_counter()
            device = torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
            tok = AutoTokenizer.from_pretrained(model_dir)
            model = load_model(model_dir, choose_attention(params["eval"]["attn_implementation"], device))
            model = model.to(device).eval()
            if planned:
                metrics["harness"], rows = run(model, tok, tm, planned, cfg, seed=params["common"]["seed"],
                                               device=device, log=log)
                _write_rows(tmp / "items" / "harness.jsonl", rows)
            if bundle:
                metrics["core"], rows = core(model, tok, bundle, cfg)
                _write_rows(tmp / "items" / "core.jsonl", rows)
                log(f"eval {stage}: CORE {metrics['core']['score']:.4f} +- {metrics['core']['score_stderr']:.4f} "
                    f"over {len(bundle)} tasks")
            (tmp / "metrics.json").write_text(json.dumps(metrics, indent=1, sort_keys=True) + "\n", encoding="utf-8")
            log(f"eval {stage}: {len(planned)} harness task(s){', CORE' if bundle else ''} "
                f"({time.perf_counter() - t0:.1f} s)")
    return metrics


def _write_rows(path: Path, rows: list[dict]) -> None:
    import json
    path.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in rows), encoding="utf-8")


def core(model, tok, tasks: list, cfg: dict) -> tuple[dict, list[dict]]:
    """CORE over the bundle's tasks (lmbuild.eval.core): every sequence starts with the model's
    BOS (<|endoftext|> in lmbuild's tokenizers), as DCLM's harness scores it."""
    import torch

    from ..lm.chat import chat_ids
    from ..tokenize.chat_template import EOT
    from .core import core_score, score_task

    bos = tok.convert_tokens_to_ids(EOT) if EOT in tok.get_vocab() else (tok.bos_token_id or tok.eos_token_id)
    _, pad = chat_ids(tok)

    def encode(text: str) -> list[int]:
        return [bos] + tok(text, add_special_tokens=False)["input_ids"]

    per, rows = {}, []
    max_len = getattr(model.config, "max_position_embeddings", 2048)
    with torch.no_grad():
        for task in tasks:
            per[task.label], r = score_task(model, encode, task, pad_id=pad, max_len=max_len,
                                            batch_size=cfg["batch_size"], max_items=cfg["core"]["max_items"])
            rows += r
    c = core_score(per)
    return {"score": c["core"], "score_stderr": c["core_stderr"], "tasks": per}, rows


def fetch(names: list[str], to: str, include_path: str | None = None) -> None:
    """Load each task's dataset with the network on, into `to` (the cache eval.harness.data_dir
    names); the eval stage then reads it offline."""
    Path(to).mkdir(parents=True, exist_ok=True)
    with hf_env(to, offline=False):
        tm = task_manager(include_path, names)
        for name in names:
            tm.load([name])
            print(f"fetched {name} -> {to}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lmbuild.eval.harness", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("fetch", help="download the named tasks' datasets once, for offline eval runs")
    f.add_argument("tasks", nargs="+")
    f.add_argument("--to", required=True, help="the directory eval.harness.data_dir will name")
    f.add_argument("--include-path", default="harness_tasks", help="task YAML files kept in the repository")
    a = ap.parse_args(argv)
    fetch(a.tasks, a.to, a.include_path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
