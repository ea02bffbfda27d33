"""The `tasks` params section resolved once for every stage that uses it: validated difficulty
per family, the fixed held-out test problems, and rewards with the configured format weight."""

from __future__ import annotations

from ..params import ParamsError
from ..tasks import Example, TaskError, generate, reward, split_size, validate_difficulty


def difficulties(tp: dict) -> dict[str, dict]:
    """family -> validated difficulty; ParamsError with a params.yaml line on a bad setting."""
    out, problems = {}, []
    for family in tp["difficulty"]:
        if family not in tp["families"]:
            problems.append(f"params.yaml: tasks.difficulty.{family}: family is not in tasks.families "
                            f"({', '.join(tp['families'])})")
    for family in tp["families"]:
        try:
            out[family] = validate_difficulty(family, tp["difficulty"].get(family))
        except TaskError as exc:
            problems.append(f"params.yaml: tasks.difficulty.{str(exc).removeprefix('tasks: ')}")
    if problems:
        raise ParamsError(problems)
    return out


def heldout(tp: dict, seed: int) -> list[Example]:
    """The held-out problems every stage reports accuracy on: up to `test_examples` per family
    from the test split (all of them where a family has fewer), in family order."""
    out = []
    for family, diff in difficulties(tp).items():
        have = split_size(family, "test", diff)
        n = tp["test_examples"] if have is None else min(tp["test_examples"], have)
        out.extend(generate(family, "test", n, seed, diff))
    return out


def training_examples(tp: dict, per_family: int, seed: int) -> list[Example]:
    """`per_family` train-split problems of every family (may repeat where a family is small)."""
    out = []
    for family, diff in difficulties(tp).items():
        out.extend(generate(family, "train", per_family, seed, diff))
    return out


def task_reward(tp: dict, example: Example, completion: str) -> float:
    return reward(example, completion, format_weight=tp["format_weight"])
