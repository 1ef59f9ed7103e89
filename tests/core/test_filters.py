import pytest
import torch

from grpolab.core.filters import FILTERS, truncated, zero_variance
from grpolab.core.types import Rollout


def make(reward, group, **fields):
    B = len(reward)
    return Rollout(
        group=torch.tensor(group), mask=torch.ones(B, 2, dtype=torch.bool), reward=torch.tensor(reward), **fields
    )


def test_registry_names():
    assert {"truncated", "zero_variance"} <= set(FILTERS)


def test_zero_variance_drops_all_equal_groups_and_singletons():
    # group 0: (1, 1) all correct; group 1: (0, 1) varied; group 2: (0, 0, 0) all wrong; group 3: a singleton
    r = make([1.0, 0.0, 1.0, 0.0, 0.0, 1.0, 0.0, 0.5], [0, 1, 0, 2, 2, 1, 2, 3])
    keep, metrics = zero_variance(r)
    assert keep.tolist() == [False, True, False, False, False, True, False, False]
    assert metrics["filter/zero_variance_group_frac"] == 0.75
    assert r.select(keep).group.tolist() == [0, 0]


def test_zero_variance_on_a_named_objective_and_tolerance():
    rewards = torch.tensor([[1.0, 0.2], [1.0, 0.9], [0.0, 0.5], [1.0, 0.5]])  # columns: accuracy, format
    r = make([1.2, 1.9, 0.5, 1.5], [0, 0, 1, 1], rewards=rewards, reward_names=("accuracy", "format"))
    assert zero_variance(r)[0].tolist() == [True] * 4  # the combined reward varies in both groups
    assert zero_variance(r, objective="accuracy")[0].tolist() == [False, False, True, True]
    assert zero_variance(r, tol=0.75)[0].tolist() == [False, False, True, True]  # 0.7 <= tol < 1.0
    with pytest.raises(ValueError, match="not in reward_names"):
        zero_variance(r, objective="length")


def test_truncated_drops_completions_that_hit_the_limit():
    r = make([1.0, 0.0, 1.0], [0, 0, 0], truncated=torch.tensor([False, True, False]))
    keep, metrics = truncated(r)
    assert keep.tolist() == [True, False, True]
    assert metrics["filter/truncated_frac"] == pytest.approx(1 / 3)
