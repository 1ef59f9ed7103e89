"""Reward-model ensembles (Coste et al., arXiv 2310.02743) and multi-objective rewards (HydroX arXiv 2503.21819,
MO-GRPO arXiv 2509.22047): hand-computed values, invariants, loop-vs-vectorised, the shaping entries."""

import statistics

import pytest
import torch

from grpolab.core.advantages import ADVANTAGES
from grpolab.core.reward_combination import (
    ensemble,
    ensemble_reward,
    ensemble_variance,
    multi_objective,
    multi_objective_reward,
    select_columns,
)
from grpolab.core.shaping import SHAPING
from grpolab.core.types import Rollout


def rollout(rewards, names, group=None, reward=None):
    rewards = torch.tensor(rewards, dtype=torch.float32)  # [B, K]
    B = rewards.shape[0]
    group = torch.zeros(B, dtype=torch.long) if group is None else torch.tensor(group)
    reward = rewards.sum(dim=1) if reward is None else torch.tensor(reward, dtype=torch.float32)
    return Rollout(
        group=group, mask=torch.ones(B, 2, dtype=torch.bool), reward=reward, rewards=rewards, reward_names=names
    )


# ---------------------------------------------------------------- ensemble_reward


def test_registered():
    assert {"ensemble", "multi_objective"} <= set(SHAPING)


def test_spec_hand_check_scores_1_2_3():
    r = torch.tensor([[1.0, 2.0, 3.0]])
    assert ensemble_reward(r, mode="mean").item() == pytest.approx(2.0)
    assert ensemble_reward(r, mode="wco").item() == pytest.approx(1.0)
    # unbiased variance: ((1-2)^2 + 0 + (3-2)^2) / (3 - 1) = 1 -> 2 - 0.5 * 1 = 1.5
    assert ensemble_reward(r, mode="uwo", uwo_weight=0.5).item() == pytest.approx(1.5)
    # population variance: 2 / 3 -> 2 - 0.5 * 2/3 = 1.6667
    assert ensemble_reward(r, mode="uwo", uwo_weight=0.5, unbiased=False).item() == pytest.approx(5 / 3)


def test_rows_are_independent_and_paper_default_lambda():
    r = torch.tensor([[1.0, 2.0, 3.0], [4.0, 0.0, 2.0]])
    # row 2: mean 2, unbiased var ((2)^2 + (-2)^2 + 0) / 2 = 4 -> UWO(0.1) = 2 - 0.4 = 1.6; WCO 0
    assert ensemble_reward(r, mode="uwo").tolist() == pytest.approx([2.0 - 0.1, 1.6])
    assert ensemble_reward(r, mode="wco").tolist() == [1.0, 0.0]


def test_one_member_is_the_member_in_every_mode():
    r = torch.tensor([[0.3], [-2.0]])
    for mode in ("mean", "wco", "uwo"):
        for unbiased in (True, False):
            out = ensemble_reward(r, mode=mode, uwo_weight=5.0, unbiased=unbiased)
            assert out.tolist() == pytest.approx([0.3, -2.0])
    assert ensemble_variance(r).tolist() == [0.0, 0.0]


def test_invariants_on_random_scores():
    torch.manual_seed(0)
    r = torch.randn(50, 5) * 3  # [B, M]
    mean = ensemble_reward(r, mode="mean")
    assert (ensemble_reward(r, mode="wco") <= mean + 1e-6).all()  # worst case never above the mean
    assert (ensemble_reward(r, mode="uwo", uwo_weight=0.3) <= mean + 1e-6).all()  # the penalty is >= 0
    torch.testing.assert_close(ensemble_reward(r, mode="uwo", uwo_weight=0.0), mean)  # λ = 0 is the mean
    for mode in ("mean", "wco", "uwo"):  # a shift of every member shifts the combination (the variance is unchanged)
        torch.testing.assert_close(ensemble_reward(r + 7.0, mode=mode), ensemble_reward(r, mode=mode) + 7.0)
    agree = r[:, :1].expand(-1, 5)  # members that agree: every mode is their common value
    for mode in ("mean", "wco", "uwo"):
        torch.testing.assert_close(ensemble_reward(agree, mode=mode), r[:, 0])


def test_ensemble_loop_equals_vectorised():
    torch.manual_seed(1)
    r = torch.randn(13, 4)
    for unbiased in (True, False):
        expected = []
        for row in r.tolist():
            var = statistics.variance(row) if unbiased else statistics.pvariance(row)
            expected.append(statistics.fmean(row) - 0.7 * var)
        got = ensemble_reward(r, mode="uwo", uwo_weight=0.7, unbiased=unbiased)
        assert got.tolist() == pytest.approx(expected, abs=1e-5)
    assert ensemble_reward(r, mode="wco").tolist() == pytest.approx([min(row) for row in r.tolist()])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [(dict(mode="min"), "mode must be one of"), (dict(mode="uwo", uwo_weight=-0.1), "uwo_weight")],
)
def test_ensemble_reward_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ensemble_reward(torch.ones(2, 3), **kwargs)


def test_ensemble_reward_bad_shape():
    with pytest.raises(ValueError, match=r"\[B, M\]"):
        ensemble_reward(torch.ones(3))


# ---------------------------------------------------------------- multi_objective_reward


def test_weighted_sum_hand_computed_and_default_equal_weights():
    r = torch.tensor([[1.0, 0.5, 0.0], [0.0, 1.0, 1.0]])
    # w = [2, 1, -1]: row 1: 2 + 0.5 - 0 = 2.5; row 2: 0 + 1 - 1 = 0
    assert multi_objective_reward(r, [2.0, 1.0, -1.0]).tolist() == pytest.approx([2.5, 0.0])
    # default w = 1/3 each: 1.5/3 = 0.5, 2/3
    assert multi_objective_reward(r).tolist() == pytest.approx([0.5, 2 / 3])


def test_normalize_then_sum_hand_computed():
    # one group of 3; objective A = [1, 0, 0.5] (mean 0.5, std ddof 1 = 0.5 -> z = [1, -1, 0]);
    # objective B = [0.1, 0.5, 0.2] (mean 0.26667, deviations -0.16667, 0.23333, -0.06667, var 0.086667 / 2 =
    # 0.043333, std 0.208167 -> z = [-0.80064, 1.12090, -0.32026]); sum with w = [1, 1]:
    r = torch.tensor([[1.0, 0.1], [0.0, 0.5], [0.5, 0.2]])
    got = multi_objective_reward(r, [1.0, 1.0], mode="normalize_then_sum", group=torch.tensor([0, 0, 0]))
    assert got.tolist() == pytest.approx([0.19936, 0.12090, -0.32026], abs=1e-4)


def test_scaling_one_aspect_by_10_changes_weighted_sum_ranking_but_not_normalize_then_sum():
    """The spec's unit test (MO-GRPO's motivation): a scale mismatch lets one aspect dominate a plain sum."""
    r = torch.tensor([[1.0, 0.1], [0.0, 0.5], [0.5, 0.2]])
    scaled = r * torch.tensor([1.0, 10.0])
    g, w = torch.tensor([0, 0, 0]), [1.0, 1.0]
    # weighted_sum: [1.1, 0.5, 0.7] ranks 0 > 2 > 1; scaled [2, 5, 2.5] ranks 1 > 2 > 0
    assert torch.argsort(multi_objective_reward(r, w), descending=True).tolist() == [0, 2, 1]
    assert torch.argsort(multi_objective_reward(scaled, w), descending=True).tolist() == [1, 2, 0]
    plain = multi_objective_reward(r, w, mode="normalize_then_sum", group=g)
    big = multi_objective_reward(scaled, w, mode="normalize_then_sum", group=g)
    assert torch.argsort(plain, descending=True).tolist() == torch.argsort(big, descending=True).tolist() == [0, 1, 2]
    torch.testing.assert_close(plain, big, atol=1e-4, rtol=0)  # scale invariant up to eps


def test_weighted_sum_with_unit_weights_gives_grpo_of_the_summed_reward():
    """The spec's unit test: w = [1, 1, 1, 1], one group: advantages equal GRPO's advantages of Σ_k R_k."""
    torch.manual_seed(2)
    rewards = torch.rand(6, 4)  # [B, K]
    names = ("rm_x_politeness", "rm_x_meaningfulness", "rm_x_actionability", "rm_x_safety")
    r = Rollout(
        group=torch.zeros(6, dtype=torch.long),
        mask=torch.ones(6, 3, dtype=torch.bool),
        reward=torch.zeros(6),
        rewards=rewards,
        reward_names=names,
    )
    shaped, _ = multi_objective(r, weights=[1.0, 1.0, 1.0, 1.0])
    direct = r.replace(reward=rewards.sum(dim=1))
    torch.testing.assert_close(ADVANTAGES["grpo"](shaped), ADVANTAGES["grpo"](direct))


def test_normalize_then_sum_loop_equals_vectorised_on_unequal_groups():
    torch.manual_seed(3)
    group = torch.tensor([2, 0, 1, 2, 0, 2, 3, 1, 2, 0])  # unequal, non-contiguous, group 3 of size 1
    r = torch.randn(10, 3) * torch.tensor([1.0, 10.0, 0.1])
    w = [0.5, 1.0, 2.0]
    got = multi_objective_reward(r, w, mode="normalize_then_sum", group=group)
    expected = []
    for b in range(10):
        members = [i for i in range(10) if group[i] == group[b]]
        total = 0.0
        for k in range(3):
            values = [r[i, k].item() for i in members]
            std = statistics.stdev(values) if len(values) > 1 else 0.0
            total += w[k] * (r[b, k].item() - statistics.fmean(values)) / (std + 1e-6)
        expected.append(total)
    assert got.tolist() == pytest.approx(expected, abs=1e-4)
    assert got[6].item() == 0.0  # a lone completion has nothing to be compared with


def test_constant_objective_contributes_nothing():
    r = torch.tensor([[1.0, 3.0], [0.0, 3.0]])  # objective 2 constant in the group
    got = multi_objective_reward(r, [1.0, 1.0], mode="normalize_then_sum", group=torch.tensor([0, 0]))
    # objective 1: mean 0.5, std (ddof 1) 0.7071 -> z = ±0.7071
    assert got.tolist() == pytest.approx([0.70711, -0.70711], abs=1e-4)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(mode="sum"), "mode must be one of"),
        (dict(weights=[1.0]), "weights must be 2 finite numbers"),
        (dict(weights=[1.0, float("nan")]), "weights must be 2 finite numbers"),
        (dict(mode="normalize_then_sum"), "needs group"),
        (dict(mode="normalize_then_sum", group=torch.tensor([0, 0]), eps=0.0), "eps"),
        (dict(ddof=2), "ddof"),
    ],
)
def test_multi_objective_reward_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        multi_objective_reward(torch.ones(2, 2), **kwargs)


# ---------------------------------------------------------------- the shaping entries


def test_select_columns_default_prefix_and_names():
    names = ["exact", "rm_a", "rm_b"]
    assert select_columns(names, None, part="p") == ([1, 2], [0])
    assert select_columns(["digit_fraction"], None, part="p") == ([0], [])  # no rm_ column: every column
    assert select_columns(names, "", part="p") == ([0, 1, 2], [])
    assert select_columns(names, "rm_b", part="p") == ([2], [0, 1])
    assert select_columns(names, ["rm_b", "exact"], part="p") == ([2, 0], [1])
    with pytest.raises(ValueError, match="no reward column starts with 'judge'"):
        select_columns(names, "judge", part="p")
    with pytest.raises(ValueError, match="columns must be distinct names"):
        select_columns(names, ["rm_c"], part="p")
    with pytest.raises(ValueError, match="columns must be distinct names"):
        select_columns(names, ["rm_a", "rm_a"], part="p")


def test_ensemble_shaping_replaces_the_reward_and_logs_disagreement():
    r = rollout([[1.0, 0.2, 0.6], [0.0, 0.9, 0.5]], ("exact", "rm_a", "rm_b"))
    shaped, m = ensemble(r, mode="wco")
    assert shaped.reward.tolist() == pytest.approx([0.2, 0.5])  # min over rm_a, rm_b; exact left out
    assert r.reward.tolist() == pytest.approx([1.8, 1.4])  # the input is untouched
    assert m["ensemble/members"] == 2.0
    assert m["ensemble/spread"] == pytest.approx((0.4 + 0.4) / 2)
    # unbiased variance of two members = (a - b)^2 / 2: 0.16 / 2 = 0.08 each
    assert m["ensemble/variance"] == pytest.approx(0.08)
    assert m["ensemble/member_mean"] == pytest.approx((0.4 + 0.7) / 2)
    assert m["ensemble/penalty"] == pytest.approx(((0.4 - 0.2) + (0.7 - 0.5)) / 2)
    assert m["ensemble/reward"] == pytest.approx(0.35)
    uwo, _ = ensemble(r, mode="uwo", uwo_weight=0.5)
    assert uwo.reward.tolist() == pytest.approx([0.4 - 0.04, 0.7 - 0.04])
    mean_plus, _ = ensemble(r, mode="mean", others_weight=1.0)  # the verifier column added unweighted
    assert mean_plus.reward.tolist() == pytest.approx([1.4, 0.7])


def test_ensemble_shaping_clip():
    r = rollout([[30.0, 12.0], [-20.0, -40.0], [1.0, 2.0]], ("rm_a", "rm_b"))
    shaped, m = ensemble(r, mode="mean", clip=10.0)  # means 21, -30, 1.5 -> clipped 10, -10, 1.5
    assert shaped.reward.tolist() == pytest.approx([10.0, -10.0, 1.5])
    assert m["ensemble/clip_frac"] == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="clip"):
        ensemble(r, clip=0.0)


def test_one_column_task_keeps_its_reward_so_presets_train_as_grpo():
    r = rollout([[0.25], [0.75], [0.5]], ("digit_fraction",), group=[0, 0, 1])
    for mode in ("mean", "wco", "uwo"):
        shaped, _ = ensemble(r, mode=mode, clip=10.0)
        assert shaped.reward.tolist() == pytest.approx([0.25, 0.75, 0.5])
    shaped, m = multi_objective(r)
    assert shaped.reward.tolist() == pytest.approx([0.25, 0.75, 0.5])
    assert m["multi_objective/digit_fraction"] == pytest.approx(0.5)


def test_multi_objective_shaping_heads_and_metrics():
    names = ("exact", "rm_m_correct", "rm_m_brevity")
    r = rollout([[1.0, 0.8, 10.0], [0.0, 0.2, 30.0], [1.0, 0.9, 20.0]], names, group=[0, 0, 1])
    shaped, m = multi_objective(r, weights=[1.0, 0.1])
    assert shaped.reward.tolist() == pytest.approx([0.8 + 1.0, 0.2 + 3.0, 0.9 + 2.0])
    assert m["multi_objective/rm_m_brevity"] == pytest.approx(20.0)
    # group std (ddof 1) of brevity: group 0 [10, 30] -> 14.142; group 1 lone -> 0; mean over groups 7.071
    assert m["multi_objective/rm_m_brevity_group_std"] == pytest.approx(7.0711, abs=1e-3)
    norm, _ = multi_objective(r, mode="normalize_then_sum", weights=[1.0, 1.0])
    # group 0: correct z = ±0.7071, brevity z = ∓0.7071 -> 0, 0; group 1 (one completion) -> 0
    assert norm.reward.tolist() == pytest.approx([0.0, 0.0, 0.0], abs=1e-4)
    chosen, _ = multi_objective(r, columns=["exact"], others_weight=0.5, weights=[2.0])
    assert chosen.reward.tolist() == pytest.approx([2.0 + 5.4, 0.0 + 15.1, 2.0 + 10.45])


def test_shaping_without_per_function_rewards_fails_clearly():
    r = Rollout(group=torch.tensor([0, 0]), mask=torch.ones(2, 1, dtype=torch.bool), reward=torch.ones(2))
    for part in (ensemble, multi_objective):
        with pytest.raises(ValueError, match="no per-function rewards"):
            part(r)


def test_shaping_bad_options():
    r = rollout([[1.0, 2.0]], ("rm_a", "rm_b"))
    with pytest.raises(ValueError, match="mode must be one of"):
        ensemble(r, mode="worst")
    with pytest.raises(ValueError, match="weights must be 2"):
        multi_objective(r, weights=[1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="others_weight"):
        ensemble(r, others_weight=float("inf"))
