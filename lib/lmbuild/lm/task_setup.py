"""The `tasks` params section resolved once for every stage that uses it: validated difficulty
per family, the fixed held-out test problems, each stage's own part of the train split, and
rewards with the configured format weight."""

from __future__ import annotations

from ..params import ParamsError
from ..tasks import Example, TaskError, generate, reward, space_size, split_size, validate_difficulty


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


def check_answer_room(tp: dict, tok, examples: list[Example]) -> None:
    """ParamsError when a reference solution (plus its end-of-turn token) is longer than
    `tasks.max_new_tokens`: generation would cut such answers off before their Answer line and
    score them wrong whatever the model knows (worked solutions are several times longer)."""
    if not examples:
        return
    lengths = [len(tok(e.solution, add_special_tokens=False)["input_ids"]) for e in examples]
    i = max(range(len(examples)), key=lengths.__getitem__)
    longest, need = examples[i], lengths[i] + 1
    if need > tp["max_new_tokens"]:
        raise ParamsError([f"params.yaml: tasks.max_new_tokens ({tp['max_new_tokens']}) is shorter than the "
                           f"longest reference solution ({need} tokens with its end token, {longest.family}: "
                           f"{longest.prompt!r}); raise it to at least {need}"])


# The train split is cut into one part per post-training use, in this order (tasks.train_parts
# gives their shares): sft's demonstrations, dpo's (and the reward model's) preference prompts,
# rl's prompts. Disjoint parts mean dpo and rl never train on a problem sft has seen.
PART_USERS = ("sft", "dpo", "rlvr")


def train_part(tp: dict, user: str) -> tuple[float, float]:
    """The (lo, hi) range of the train split that `user` (sft, dpo or rlvr) draws from."""
    shares = tp["train_parts"]
    lo = sum(shares[u] for u in PART_USERS[:PART_USERS.index(user)])
    return lo, min(1.0, lo + shares[user])


def check_parts(tp: dict) -> None:
    total = sum(tp["train_parts"][u] for u in PART_USERS)
    if total > 1.0 + 1e-9:
        raise ParamsError([f"params.yaml: tasks.train_parts: shares must add up to at most 1, got {total:g}"])


def training_examples(tp: dict, per_family: int, seed: int, user: str) -> list[Example]:
    """`per_family` problems of every family from `user`'s part of the train split (may repeat
    where a level is small)."""
    check_parts(tp)
    out = []
    for family, diff in difficulties(tp).items():
        out.extend(generate(family, "train", per_family, seed, diff, part=train_part(tp, user)))
    return out


def draw_stats(tp: dict, examples: list[Example]) -> dict[str, dict[str, int]]:
    """{family: {drawn, distinct, space}}: how many problems a stage drew, how many of them
    differ, and how many the family's space holds (train and test), for its metrics: how much
    of each problem space the stage saw."""
    diffs = difficulties(tp)
    out: dict[str, dict[str, int]] = {}
    seen: dict[str, set[str]] = {}
    for ex in examples:
        st = out.setdefault(ex.family, {"drawn": 0, "distinct": 0, "space": space_size(ex.family, diffs[ex.family])})
        st["drawn"] += 1
        ids = seen.setdefault(ex.family, set())
        if ex.id not in ids:
            ids.add(ex.id)
            st["distinct"] += 1
    return out


def task_reward(tp: dict, example: Example, completion: str) -> float:
    return reward(example, completion, format_weight=tp["format_weight"])
