"""Temporal-RLT's variance-aware selection statistic (arXiv 2506.01908): per-prompt reward variance and keep rule."""

import math

import pytest
import torch

from grpolab.core.variance_select import group_reward_variance, variance_keep


def test_variance_by_hand_on_unequal_non_contiguous_groups():
    # group 0: rewards (1, 0, 0, 0) at positions 0, 2, 4, 6 → mean 0.25, var (0.75² + 3·0.25²)/4 = 0.1875
    # group 1: (0.5, 0.5) → all equal, exactly 0
    # group 2: (0.2,) → a single rollout: 0
    # group 3: (2, 4, 6) → mean 4, var (4 + 0 + 4)/3 = 8/3
    reward = torch.tensor([1.0, 0.5, 0.0, 0.5, 0.0, 0.2, 0.0, 2.0, 4.0, 6.0])
    group = torch.tensor([0, 1, 0, 1, 0, 2, 0, 3, 3, 3])
    var = group_reward_variance(reward, group, 4)
    assert var.dtype == torch.float64 and var.shape == (4,)
    assert var.tolist() == pytest.approx([0.1875, 0.0, 0.0, 8 / 3], abs=1e-12)
    assert variance_keep(var).tolist() == [True, False, False, True]
    assert variance_keep(var, min_variance=0.2).tolist() == [False, False, False, True]
    assert variance_keep(var, min_variance=0.1, max_variance=1.0).tolist() == [True, False, False, False]


def test_all_equal_rewards_have_exactly_zero_variance_despite_rounding():
    reward = torch.full((7,), 0.1)  # the float mean of seven 0.1s is not exactly 0.1
    var = group_reward_variance(reward, torch.zeros(7, dtype=torch.long), 1)
    assert var.tolist() == [0.0]
    assert variance_keep(var).tolist() == [False]


def test_binary_rewards_give_p_times_one_minus_p():
    # p = k/8 correct out of 8 → variance p(1 − p), largest (0.25) at p = 0.5
    reward = torch.tensor([1.0] * 3 + [0.0] * 5 + [1.0] * 4 + [0.0] * 4)
    group = torch.tensor([0] * 8 + [1] * 8)
    assert group_reward_variance(reward, group, 2).tolist() == pytest.approx([3 / 8 * 5 / 8, 0.25])


def test_matches_a_python_loop_on_random_unequal_groups():
    g = torch.Generator().manual_seed(0)
    for trial in range(20):
        num_groups = 1 + trial % 6
        sizes = torch.randint(1, 7, (num_groups,), generator=g)
        group = torch.repeat_interleave(torch.arange(num_groups), sizes)
        group = group[torch.randperm(group.numel(), generator=g)]  # non-contiguous
        reward = torch.randint(0, 3, (group.numel(),), generator=g).float() / 2  # many ties
        var = group_reward_variance(reward, group, num_groups)
        for p in range(num_groups):
            members = [r for r, q in zip(reward.tolist(), group.tolist(), strict=True) if q == p]
            mean = sum(members) / len(members)
            expected = sum((r - mean) ** 2 for r in members) / len(members)
            assert var[p].item() == pytest.approx(expected, abs=1e-12)
            assert (var[p].item() == 0.0) == (len(set(members)) == 1)


@pytest.mark.parametrize(
    ("reward", "group", "num_groups", "match"),
    [
        (torch.ones(2, 2), torch.zeros(2, 2, dtype=torch.long), 1, r"\[N\]"),
        (torch.ones(0), torch.zeros(0, dtype=torch.long), 1, "no rewards"),
        (torch.tensor([1.0, math.nan]), torch.tensor([0, 0]), 1, "finite"),
        (torch.ones(2), torch.tensor([0, 2]), 2, "group ids"),
        (torch.ones(2), torch.tensor([0, 2]), 3, "at least one reward"),
    ],
)
def test_bad_inputs_raise(reward, group, num_groups, match):
    with pytest.raises(ValueError, match=match):
        group_reward_variance(reward, group, num_groups)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"min_variance": -0.1}, "min_variance"),
        ({"min_variance": math.nan}, "min_variance"),
        ({"min_variance": 0.2, "max_variance": 0.1}, "max_variance"),
    ],
)
def test_bad_thresholds_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        variance_keep(torch.zeros(2), **kwargs)
