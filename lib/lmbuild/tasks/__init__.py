"""Verifiable tasks: seeded generators of (prompt, reference answer) pairs with a verifier.

One source of checkable problems for every post-training and evaluation step: SFT demonstrations
(`Example.solution`), preference scoring (best/worst of K samples by `reward`), RL rewards
(`reward`) and held-out accuracy (`score` on the "test" split). Train and test never overlap:
a problem's split is a hash of its family and canonical form, never of the seed.

    from lmbuild.tasks import generate, score
    ex = generate("sort", "train", 1, seed=0)[0]   # Sort: 7 2 9 4 -> Answer: 2 4 7 9
    score(ex, model_reply)                          # Score(format=1.0, correct=0.0)

Problems come in difficulty levels within a family (sort lists of 3 to 6 numbers), drawn in equal
shares and reported per level; the train split has disjoint parts so that sft, dpo and rl never
draw the same problem.

Modules: errors (TaskError), difficulty (typed knobs), example (Example, hashing), splits
(train/test membership, train parts), answers (extraction, scoring, reward), sampling (generate,
generate_mix), families/ (arithmetic, word_problems, sorting: sort, strings: reverse and count).
"""

from .answers import Score, answers_match, extract_answer, normalise, reward, score
from .errors import TaskError
from .example import Example
from .families import DEFAULT_DIFFICULTY, FAMILIES, validate_difficulty
from .sampling import generate, generate_mix, level_sizes, space_size, split_size
from .splits import TEST_FRACTION

__all__ = [
    "DEFAULT_DIFFICULTY", "FAMILIES", "TEST_FRACTION", "Example", "Score", "TaskError",
    "answers_match", "extract_answer", "generate", "generate_mix", "level_sizes", "normalise", "reward", "score",
    "space_size", "split_size", "validate_difficulty",
]
