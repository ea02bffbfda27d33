"""Held-out task accuracy from greedy completions, per family and per difficulty level, and
sampled pass@k: shared by sft (evaluation), dpo (on-policy pairs), rlvr (group samples, pass@1,
headroom) and eval. The sampling itself is lmbuild/lm/sampling.py (re-exported here as `sample`).
"""

from __future__ import annotations

import math
from collections import defaultdict

from ..stats import paired, with_stderr
from ..tasks import Example, score
from .chat import encode_prompt
from .sampling import sample


def task_prompts(tok, examples: list[Example]) -> list[list[int]]:
    return [encode_prompt(tok, [{"role": "user", "content": ex.prompt}]) for ex in examples]


def task_accuracy(model, tok, examples: list[Example], *, max_new_tokens: int, batch_size: int, eos_ids: list[int],
                  pad_id: int, prompts: list[list[int]] | None = None, items: list | None = None) -> dict[str, float]:
    """Greedy pass@1 on held-out task examples under the chat template: `task_accuracy`,
    `task_format` (share with a well-formed answer line) and `task_accuracy_<family>`, each with
    its `_stderr`. A list passed as `items` receives the per-example results."""
    if not examples:
        return {}
    prompts = prompts if prompts is not None else task_prompts(tok, examples)
    outs = sample(model, prompts, n=1, max_new_tokens=max_new_tokens, greedy=True, batch_size=batch_size,
                  eos_ids=eos_ids, pad_id=pad_id)
    return accuracy_summary(examples, [tok.decode(c, skip_special_tokens=True) for (c,) in outs], items=items)


def accuracy_summary(examples: list[Example], answers: list[str], items: list | None = None) -> dict[str, float]:
    """`task_accuracy`, `task_format` (share with a well-formed answer line) and
    `task_accuracy_<family>` of one answer per example, each with its standard error (over the
    examples); a list passed as `items` receives {id, family, correct, format, answer} per example."""
    by_family: dict[str, list[float]] = defaultdict(list)
    rows = []
    for ex, answer in zip(examples, answers):
        s = score(ex, answer)
        rows.append({"id": ex.id, "family": ex.family, "level": ex.level, "correct": float(s.correct),
                     "format": float(s.format), "answer": answer})
        by_family[ex.family].append(float(s.correct))
    res = {**with_stderr("task_accuracy", [r["correct"] for r in rows]),
           **with_stderr("task_format", [r["format"] for r in rows])}
    for f, v in sorted(by_family.items()):
        res.update(with_stderr(f"task_accuracy_{f}", v))
    if items is not None:
        items[:] = rows
    return res


def by_level(rows: list[dict], field: str) -> dict[str, float]:
    """`<family>.<level>` -> mean of `field` over that level's rows, with `_stderr`: accuracy per
    difficulty level (lmbuild.tasks levels), flat for the metrics file."""
    groups: dict[str, list[float]] = defaultdict(list)
    for r in rows:
        groups[f"{r['family']}.{r.get('level') or 'all'}"].append(float(r[field]))
    out: dict[str, float] = {}
    for name, values in sorted(groups.items()):
        out.update(with_stderr(name, values))
    return out


def pass_at_k(n: int, c: int, k: int) -> float:
    """The chance that at least one of k samples is correct, estimated without bias from n >= k
    samples of which c are correct (Chen et al. 2021, "Evaluating Large Language Models Trained on
    Code", eq. 1): 1 - C(n-c, k) / C(n, k), computed as prod_{i=n-c+1}^{n} (1 - k/i) to stay
    exact in floating point."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass@k needs 0 <= c <= n and 1 <= k <= n, got n={n} c={c} k={k}")
    if n - c < k:
        return 1.0
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


def ks_for(n: int) -> list[int]:
    """k = 1, 2, 4, ... up to n, and n itself."""
    ks = [1 << j for j in range(n.bit_length()) if 1 << j <= n]
    return ks + ([n] if ks[-1] != n else [])


def pass_k_summary(rows: list[dict]) -> dict[str, float]:
    """pass@k for every k of ks_for(n) over problems {family, level, samples, correct}: overall, per
    family and per `<family>.<level>`, each with its standard error over problems, plus the
    headroom pass@n - pass@1 (what RL can gain by turning a sometimes-right answer into an
    always-right one) with the standard error of the per-problem differences."""
    if not rows:
        return {}
    n = rows[0]["samples"]
    ks = ks_for(n)
    groups: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        groups[""].append(r)
        groups[f"{r['family']}."].append(r)
        groups[f"{r['family']}.{r.get('level') or 'all'}."].append(r)
    out: dict[str, float] = {"samples": float(n)}
    for prefix, members in sorted(groups.items()):
        per_k = {k: [pass_at_k(n, r["correct"], k) for r in members] for k in ks}
        for k in ks:
            out.update(with_stderr(f"{prefix}pass@{k}", per_k[k]))
        out.update(with_stderr(f"{prefix}headroom", [b - a for a, b in zip(per_k[1], per_k[n])]))
    return out


GREEDY_FIELDS = {"task_accuracy": "correct", "task_format": "format"}
SAMPLED_FIELDS = {"sampled_accuracy": "sampled_accuracy", "sampled_reward": "sampled_reward"}


def paired_gains(start: list[dict], end: list[dict], fields: dict[str, str]) -> dict[str, float]:
    """`<metric>_gain` (end - start) and `<metric>_gain_stderr` for every {metric: per-item field}
    over the same held-out items: the paired standard error, sd of the per-item differences /
    sqrt(n), far smaller than the two accuracies' errors combined when the items agree mostly."""
    if [r["id"] for r in start] != [r["id"] for r in end]:
        raise ValueError("paired gains need the start and end scored on the same items in the same order")
    out = {}
    for name, f in fields.items():
        gain, se = paired([r[f] for r in start], [r[f] for r in end])
        out[f"{name}_gain"], out[f"{name}_gain_stderr"] = gain, se
    return out


def task_sampled(model, tok, examples: list[Example], *, n: int, temperature: float, top_p: float = 1.0,
                 seed: int, format_weight: float, max_new_tokens: int, batch_size: int, eos_ids: list[int],
                 pad_id: int, prompts: list[list[int]] | None = None, items: list | None = None) -> dict[str, float]:
    """Held-out scores of `n` samples per problem at the given temperature: what RL optimises,
    measured on problems it never trains on. `sampled_accuracy` is pass@1 averaged over the
    samples (lower variance than one greedy answer), `sampled_reward` the mean reward
    (correct + format_weight x format); standard errors over problems (the samples of one problem
    are not independent items). A list passed as `items` receives the per-problem means and
    correct counts (pass_k_summary turns them into pass@k)."""
    if not examples:
        return {}
    prompts = prompts if prompts is not None else task_prompts(tok, examples)
    outs = sample(model, prompts, n=n, max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p,
                  seed=seed, batch_size=batch_size, eos_ids=eos_ids, pad_id=pad_id)
    rows = []
    for ex, completions in zip(examples, outs):
        scores = [score(ex, tok.decode(c, skip_special_tokens=True)) for c in completions]
        rows.append({"id": ex.id, "family": ex.family, "level": ex.level, "samples": len(scores),
                     "correct": int(sum(s.correct for s in scores)),
                     "sampled_accuracy": sum(s.correct for s in scores) / len(scores),
                     "sampled_reward": sum(s.correct + format_weight * s.format for s in scores) / len(scores)})
    if items is not None:
        items[:] = rows
    return {**with_stderr("sampled_accuracy", [r["sampled_accuracy"] for r in rows]),
            **with_stderr("sampled_reward", [r["sampled_reward"] for r in rows])}
