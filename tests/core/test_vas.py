"""MMR1's Variance Promotion Score (arXiv 2509.21268): OVS, TDS, VPS, min-max weights and momentum, by hand."""

import math
import random

import pytest
import torch

from grpolab.core.vas import (
    min_max_normalize,
    momentum_update,
    outcome_variance,
    trajectory_diversity,
    variance_promotion_score,
)


def random_ids(rng, vocab, max_len):
    """A random completion of 0..max_len token ids below ``vocab`` (few ids, so completions share tokens)."""
    return [rng.randint(0, vocab) for _ in range(rng.randint(0, max_len))]


def test_ovs_is_the_bernoulli_variance_of_the_pass_rate():
    # The spec's unit test: 4 of 8 correct -> p = 0.5 -> 0.25; all correct / all wrong -> 0.
    acc = torch.tensor([1.0, 0, 1, 0, 1, 0, 1, 0] + [1.0] * 8 + [0.0] * 8)
    group = torch.arange(3).repeat_interleave(8)
    assert outcome_variance(acc, group).tolist() == [0.25, 0.0, 0.0]


def test_ovs_on_unequal_non_contiguous_groups():
    # group 0: [1, 0, 0] -> p = 1/3 -> 2/9; group 1: [1, 0] -> 1/4; group 2: a single completion -> 0.
    acc = torch.tensor([1.0, 1.0, 0.0, 0.0, 0.0, 1.0])
    group = torch.tensor([0, 1, 0, 1, 0, 2])
    assert outcome_variance(acc, group).tolist() == pytest.approx([2 / 9, 0.25, 0.0])


def test_edit_distance_tds_by_hand():
    # "kitten" vs "sitting" as token ids: Levenshtein 3 (k->s, e->i, insert g), longer length 7 -> 3/7.
    kitten, sitting = [10, 8, 19, 19, 4, 13], [18, 8, 19, 19, 8, 13, 6]
    # [1, 2, 3] twice and [4, 5]: pairs 0/3, 3/3 (two substitutions and a deletion), 3/3 -> mean 2/3.
    # [1, 2] and [] : two insertions over the longer length 2 -> 1; two empty completions -> 0.
    groups = [[kitten, sitting], [[1, 2, 3], [1, 2, 3], [4, 5]], [[1, 2], []], [[], []]]
    assert trajectory_diversity(groups).tolist() == pytest.approx([3 / 7, 2 / 3, 1.0, 0.0])


def test_distinct_n_tds_by_hand():
    # 3-grams (1,2,3) (2,3,4) (1,2,3) (2,3,5): 3 distinct of 4; [7, 8] has no 3-gram and adds nothing.
    group = [[1, 2, 3, 4], [1, 2, 3, 5], [7, 8]]
    assert trajectory_diversity([group], measure="distinct_n").tolist() == pytest.approx([0.75])
    # 2-grams (1,2) (2,3) (3,4) (1,2) (2,3) (3,5) (7,8): 5 distinct of 7.
    assert trajectory_diversity([group], measure="distinct_n", n=2).tolist() == pytest.approx([5 / 7])
    # No completion reaches 3 tokens: no 3-gram at all -> 0.
    assert trajectory_diversity([[[1, 2], [3]]], measure="distinct_n").tolist() == [0.0]


def test_self_bleu_tds_is_one_minus_self_bleu_123():
    # Hand-computed sentence BLEU with uniform 1/2/3-gram weights and nltk's method1 smoothing (eps 0.1); the
    # implementation was also checked against nltk.translate.bleu_score.sentence_bleu on 500 random groups.
    identical = [[1, 2, 3, 4], [1, 2, 3, 4]]  # BLEU 1 -> TDS 0
    disjoint = [[1, 2, 3], [4, 5, 6]]  # no unigram match -> BLEU 0 -> TDS 1
    # [1,2,3,4] vs [1,2,3,5]: p1 = 3/4, p2 = 2/3, p3 = 1/2, equal lengths (BP 1), symmetric.
    partial = [[1, 2, 3, 4], [1, 2, 3, 5]]
    # [1,2,3] vs [1,3,2]: p1 = 1, p2 = 0 -> 0.1/2, p3 = 0 -> 0.1/1, BP 1, symmetric.
    smoothed = [[1, 2, 3], [1, 3, 2]]
    # [1,2] vs [1,2,3]: hyp [1,2]: p1 = 1, p2 = 1, p3 = 0.1/max(1, 0), BP = exp(1 - 3/2);
    # hyp [1,2,3]: p1 = 2/3, p2 = 1/2, p3 = 0.1/1, BP 1 (longer than its reference).
    short = [[1, 2], [1, 2, 3]]
    expected = [
        0.0,
        1.0,
        1 - (3 / 4 * 2 / 3 * 1 / 2) ** (1 / 3),
        1 - (1 * 0.05 * 0.1) ** (1 / 3),
        1 - (math.exp(-0.5) * 0.1 ** (1 / 3) + (2 / 3 * 1 / 2 * 0.1) ** (1 / 3)) / 2,
    ]
    got = trajectory_diversity([identical, disjoint, partial, smoothed, short], measure="self_bleu")
    assert got.tolist() == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("measure", ["edit_distance", "distinct_n", "self_bleu"])
def test_a_single_completion_has_no_diversity_and_scores_lie_in_0_1(measure):
    assert trajectory_diversity([[[1, 2, 3, 4]], [[]]], measure=measure).tolist() == [0.0, 0.0]
    rng = random.Random(1)
    groups = [
        [[rng.randint(0, 5) for _ in range(rng.randint(0, 7))] for _ in range(rng.randint(1, 6))] for _ in range(20)
    ]
    tds = trajectory_diversity(groups, measure=measure)
    assert tds.shape == (20,) and bool((tds >= 0).all()) and bool((tds <= 1 + 1e-6).all())


def _levenshtein(a, b):
    """The textbook O(len a · len b) dynamic programme."""
    table = [[i + j if i * j == 0 else 0 for j in range(len(b) + 1)] for i in range(len(a) + 1)]
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            table[i][j] = min(table[i - 1][j] + 1, table[i][j - 1] + 1, table[i - 1][j - 1] + (a[i - 1] != b[j - 1]))
    return table[len(a)][len(b)]


def test_vectorised_edit_distance_equals_a_python_loop_on_random_unequal_groups():
    rng = random.Random(0)
    groups = [
        [[rng.randint(0, 3) for _ in range(rng.randint(0, 10))] for _ in range(rng.randint(1, 6))] for _ in range(30)
    ]
    expected = []
    for group in groups:
        pairs = [(a, b) for i, a in enumerate(group) for b in group[i + 1 :]]
        norm = [_levenshtein(a, b) / max(len(a), len(b)) if max(len(a), len(b)) else 0.0 for a, b in pairs]
        expected.append(sum(norm) / len(norm) if norm else 0.0)
    assert trajectory_diversity(groups).tolist() == pytest.approx(expected, abs=1e-6)


def test_vps_is_the_weighted_sum():
    ovs, tds = torch.tensor([0.25, 0.0, 0.1875]), torch.tensor([0.5, 1.0, 0.0])
    # 0.8 * 0.25 + 0.2 * 0.5 = 0.3; 0.2 * 1 = 0.2; 0.8 * 0.1875 = 0.15
    assert variance_promotion_score(ovs, tds).tolist() == pytest.approx([0.3, 0.2, 0.15])
    assert variance_promotion_score(ovs, tds, ovs_weight=0.7, tds_weight=0.3).tolist() == pytest.approx(
        [0.325, 0.3, 0.13125]
    )


def test_min_max_weights_lie_in_0_1():
    # (v - 0.1) / (0.2 + 1e-8): 0, ~1, ~0.5
    assert min_max_normalize(torch.tensor([0.1, 0.3, 0.2])).tolist() == pytest.approx([0.0, 1.0, 0.5], abs=1e-6)
    w = min_max_normalize(torch.rand(50, generator=torch.Generator().manual_seed(0)) * 7 - 3)
    assert float(w.min()) == 0.0 and 0.999 < float(w.max()) <= 1.0
    # Equal scores: every weight 0 (no NaN); a single prompt: 0.
    assert min_max_normalize(torch.full((4,), 0.2)).tolist() == [0.0] * 4
    assert min_max_normalize(torch.tensor([5.0])).tolist() == [0.0]


def test_momentum_replaces_mixes_or_freezes():
    old, new = torch.tensor([1.0, 0.0, 0.4]), torch.tensor([0.0, 1.0, 0.8])
    assert momentum_update(old, new).tolist() == pytest.approx([0.0, 1.0, 0.8])  # m = 0 (the yaml): replace
    assert momentum_update(old, new, momentum=1.0).tolist() == pytest.approx([1.0, 0.0, 0.4])  # frozen
    assert momentum_update(old, new, momentum=0.25).tolist() == pytest.approx([0.25, 0.75, 0.7])


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: outcome_variance(torch.tensor([1.0, 2.0]), torch.tensor([0, 0])), r"\[0, 1\]"),
        (lambda: outcome_variance(torch.tensor([1.0, 0.0]), torch.tensor([0, 2])), "every id present"),
        (lambda: outcome_variance(torch.tensor([1, 0]), torch.tensor([0, 0])), "float tensor"),
        (lambda: trajectory_diversity([[[1]]], measure="bleu"), "measure must be one of"),
        (lambda: trajectory_diversity([[[1]], []]), "group 1 has no completions"),
        (lambda: trajectory_diversity([[[1]]], measure="distinct_n", n=0), "positive integer"),
        (lambda: variance_promotion_score(torch.zeros(2), torch.zeros(2), ovs_weight=-1), "ovs_weight"),
        (lambda: variance_promotion_score(torch.zeros(2), torch.zeros(2), ovs_weight=0, tds_weight=0), "both be 0"),
        (lambda: variance_promotion_score(torch.zeros(2), torch.zeros(3)), "same shape"),
        (lambda: min_max_normalize(torch.zeros(0)), "non-empty"),
        (lambda: momentum_update(torch.zeros(2), torch.zeros(2), momentum=1.5), r"\[0, 1\]"),
    ],
)
def test_bad_input_raises(call, match):
    with pytest.raises(ValueError, match=match):
        call()
