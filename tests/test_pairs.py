"""How on-policy preference pairs are picked from one prompt's scored samples (dpo_pairs)."""

from lmbuild.posttrain.pairs import pick_pairs


def test_one_pair_is_best_against_worst():
    texts = ["a", "b", "c", "d"]
    assert pick_pairs(texts, [0.1, 1.1, 0.0, 1.1], 1) == [(1, 2)]


def test_ties_give_no_pair():
    assert pick_pairs(["a", "b"], [1.0, 1.0], 4) == []


def test_more_pairs_take_distinct_worse_answers_worst_first():
    texts = ["w1", "ok", "w1", "w2", "ok2", "half"]
    scores = [0.1, 1.1, 0.1, 0.0, 1.1, 0.5]
    # worse answers by score: w2 (0.0), w1 (0.1; its repeat skipped), half (0.5);
    # best answers cycle: ok, ok2, ok
    assert pick_pairs(texts, scores, 8) == [(1, 3), (4, 0), (1, 5)]
    assert pick_pairs(texts, scores, 2) == [(1, 3), (4, 0)]


def test_a_repeated_best_answer_is_not_paired_twice_as_different():
    assert pick_pairs(["ok", "ok", "x", "y"], [1.0, 1.0, 0.0, 0.0], 3) == [(0, 2), (0, 3)]
