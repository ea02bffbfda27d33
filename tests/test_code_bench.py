"""HumanEval-style scoring (lmbuild.eval.code_bench): the reference solutions pass, wrong or
hostile completions fail, and pass@k is the unbiased estimator over the sandboxed runs."""

from __future__ import annotations

import pytest

from lmbuild.eval.code_bench import builtin_humaneval, heldout_ids, load_problems, program, score, truncate
from lmbuild.eval.sandbox import Limits
from lmbuild.lm.generation import pass_at_k


@pytest.fixture(scope="module")
def problems():
    return load_problems(builtin_humaneval())


def test_every_reference_solution_passes_its_tests_in_the_sandbox(problems):
    # the harness end to end: prompt + completion + tests + check(entry_point), run sandboxed
    summary, rows = score(problems, [[p["canonical_solution"]] for p in problems], Limits(wall_s=20))
    failing = [r["id"] for r in rows if r["correct"] != 1]
    assert len(problems) == 164 and not failing, failing
    assert summary["pass@1"] == 1.0 and summary["share_passed"] == 1.0


def test_wrong_and_hostile_completions_fail(problems):
    p = next(x for x in problems if x["entry_point"] == "has_close_elements")
    completions = ["    return True\n",                                   # wrong
                   "    while True:\n        pass\n",                     # hangs
                   "    import os\n    os.system('true')\n    return False\n",  # shells out
                   p["canonical_solution"]]
    summary, rows = score([p], [completions], Limits(wall_s=3, cpu_s=2))
    assert rows[0]["correct"] == 1 and rows[0]["statuses"][0] == "failed"
    assert rows[0]["statuses"][1] in ("timeout", "killed") and rows[0]["statuses"][3] == "passed"
    assert summary["pass@1"] == pytest.approx(pass_at_k(4, 1, 1)) and summary["pass@4"] == 1.0


def test_a_completion_stops_where_a_new_top_level_block_starts():
    body = "    return x + 1\n"
    assert truncate(body + "\ndef helper():\n    pass\n") == body
    assert truncate(body + "\nif __name__ == '__main__':\n    main()\n") == body
    assert truncate(body + "\nprint(f(1))\n") == body
    assert truncate(body) == body
    assert program({"prompt": "def f(x):\n", "test": "def check(c):\n    assert c(1) == 2\n", "entry_point": "f"},
                   body + "\n#trailing\n").endswith("check(f)\n")


def test_the_heldout_problems_are_fixed_by_the_seed(problems):
    a, b = heldout_ids(problems, 40, seed=1234), heldout_ids(problems, 40, seed=1234)
    assert a == b and len(set(a)) == 40
    assert heldout_ids(problems, 40, seed=7) != a
    order = [p["task_id"] for p in problems]
    assert a == sorted(a, key=order.index)  # in file order
