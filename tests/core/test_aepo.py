"""Tests of grpolab.core.aepo (AEPO, arXiv 2510.08141): hand values, the code's rules, loop-vs-vectorised."""

from __future__ import annotations

import io
import math

import pytest
import torch

from grpolab.core.advantages import ADVANTAGES
from grpolab.core.aepo import (
    OVERWRITTEN_KEY,
    REINFORCE_KEY,
    aepo,
    aepo_overwritten,
    choose_temperature,
    regularizer_count,
    select_positives,
)
from grpolab.core.filters import FILTERS
from grpolab.core.types import Rollout


# ============================================================================================ temperature and count
def test_temperature_is_high_at_or_below_the_target_and_low_above_it():
    # code: `if entropy <= entropy_base: T = temperature_high else temperature_low`
    assert choose_temperature(0.1, target=0.5) == 1.2
    assert choose_temperature(0.5, target=0.5) == 1.2  # the boundary: <= as the code
    assert choose_temperature(0.51, target=0.5) == 0.8
    assert choose_temperature(0.6, target=0.75, t_high=1.5, t_low=0.5) == 1.5
    assert choose_temperature(None) == 1.2  # no measurement yet counts as entropy 0, as `entropy = 0` in the code


def test_the_temperature_state_survives_a_save_and_load():
    state = {"entropy": 0.9, "temperature": 1.2}
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=True)  # plain numbers: even the safe loader reads them
    assert loaded == state
    assert choose_temperature(loaded["entropy"]) == 0.8


def test_regularizer_count_caps_and_halves_above_the_target():
    assert regularizer_count(75, entropy=0.2, limit=60) == 60  # min(60, 75)
    assert regularizer_count(75, entropy=0.9, limit=60) == 30  # min(60, 75) // 2
    assert regularizer_count(7, entropy=0.9, limit=60) == 3  # 7 // 2
    assert regularizer_count(7, entropy=0.5, limit=60) == 7  # at the target: not halved
    assert regularizer_count(0, entropy=None, limit=60) == 0


@pytest.mark.parametrize("bad", [{"t_high": 0.0}, {"t_low": -1.0}])
def test_bad_temperatures_raise(bad):
    with pytest.raises(ValueError, match="temperatures must be > 0"):
        choose_temperature(0.1, **bad)


@pytest.mark.parametrize("limit", [-1, 2.5, True])
def test_bad_reinforce_sample_num_raises(limit):
    with pytest.raises(ValueError, match="reinforce_sample_num"):
        regularizer_count(3, entropy=0.1, limit=limit)


# ============================================================================================ positives
def test_positives_are_the_correct_answers_of_mixed_groups():
    # g0 = [1, 0, 0, 0] → A = [1.5, -.5, -.5, -.5]; g1 = [1, 1] all correct → A = 0; g2 = [0, 1] → A = [-.707, .707]
    reward = torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 0.0, 1.0])
    group = torch.tensor([0, 0, 0, 0, 1, 1, 2, 2])
    assert select_positives(reward, group).tolist() == [0, 7]
    assert bool((reward[select_positives(reward, group)] == 1).all())  # only r = 1 samples


def test_the_threshold_is_strict_and_on_the_advantage():
    # g0 = [0.6, 0.5, 0.4]: mean .5, std (ddof 1) .1 → A = [1, 0, -1] (up to eps)
    reward, group = torch.tensor([0.6, 0.5, 0.4]), torch.tensor([0, 0, 0])
    assert select_positives(reward, group, threshold=0.05).tolist() == [0]
    assert select_positives(reward, group, threshold=1.0).tolist() == []  # 0.99999 is not > 1
    assert select_positives(reward, group, threshold=-0.5).tolist() == [0, 1]


def test_a_failed_reward_is_neither_selected_nor_counted():
    # row 1 failed (reward 0 by convention): without it g0 = [1, 0, 0] → A = [1.15, -.58, -.58]; row 1 not selected
    reward = torch.tensor([1.0, 0.0, 0.0, 0.0])
    group = torch.tensor([0, 0, 0, 0])
    valid = torch.tensor([True, False, True, True])
    assert select_positives(reward, group, valid=valid).tolist() == [0]
    assert select_positives(reward, group, valid=torch.zeros(4, dtype=torch.bool)).tolist() == []


def slow_positives(reward, group, threshold, eps=1e-6):
    out = []
    for i in range(len(reward)):
        members = [float(reward[j]) for j in range(len(reward)) if group[j] == group[i]]
        n = len(members)
        mean = sum(members) / n
        std = math.sqrt(sum((x - mean) ** 2 for x in members) / (n - 1)) if n > 1 else 0.0
        if (float(reward[i]) - mean) / (std + eps) > threshold:
            out.append(i)
    return out


@pytest.mark.parametrize("seed", range(4))
def test_positives_loop_equals_vectorised(seed):
    gen = torch.Generator().manual_seed(seed)
    sizes = [1, 5, 3, 2]
    group = torch.cat([torch.full((n,), p) for p, n in enumerate(sizes)])
    group = group[torch.randperm(len(group), generator=gen)]  # non-contiguous groups
    reward = torch.randint(0, 2, (len(group),), generator=gen).double()
    assert select_positives(reward, group).tolist() == slow_positives(reward, group, 0.05)


# ============================================================================================ the advantage
def make(group, reward, flag, mask=None, T=2) -> Rollout:
    group = torch.tensor(group)
    mask = torch.ones(len(group), T, dtype=torch.bool) if mask is None else torch.tensor(mask).bool()
    return Rollout(group=group, mask=mask, reward=torch.tensor(reward), extras={REINFORCE_KEY: torch.tensor(flag)})


def test_aepo_advantage_hand_values():
    # rows 0-2 (group 0) = [1, 0, 0]: mean 1/3, deviations [2/3, -1/3, -1/3], var (ddof 1) = (6/9)/2 = 1/3,
    # std .57735 → A = [1.1547, -.57735, -.57735]; row 3 is a regulariser row → 1 (its group is not used)
    r = make([0, 0, 0, 1], [1.0, 0.0, 0.0, 1.0], [False, False, False, True], mask=[[1, 1], [1, 1], [1, 0], [1, 0]])
    out = ADVANTAGES["aepo"](r)
    expected = torch.tensor([[1.1547, 1.1547], [-0.57735, -0.57735], [-0.57735, 0.0], [1.0, 0.0]])
    torch.testing.assert_close(out, expected, atol=1e-4, rtol=0)


def test_regulariser_rows_take_no_part_in_the_group_statistics():
    # the regulariser row shares group 0 with the main rows; its reward must not move their advantages
    base = make([0, 0, 0], [1.0, 0.0, 5.0], [False, False, True])
    moved = make([0, 0, 0], [1.0, 0.0, -7.0], [False, False, True])
    torch.testing.assert_close(aepo(base), aepo(moved))
    # main rows [1, 0]: mean .5, std .7071 → ±.7071
    torch.testing.assert_close(aepo(base)[:, 0], torch.tensor([0.70711, -0.70711, 1.0]), atol=1e-4, rtol=0)


def test_overwritten_rows_complete_their_group_statistics_then_leave():
    # code: _compute_adv(batch) on the full batch, then concat([positives[:k], batch[k:]]). Group 0 = [1, 0, 0, 0]
    # with its first row overwritten by a regulariser row: the survivors keep mean .25, std (ddof 1) .5 → -.5 each
    # (normalised among themselves, [0, 0, 0], they would get 0); the overwritten row gets 0 and is filtered out.
    r = make([0, 0, 0, 0, 1], [1.0, 0.0, 0.0, 0.0, 1.0], [False, False, False, False, True])
    r = r.replace(extras={**r.extras, OVERWRITTEN_KEY: torch.tensor([True, False, False, False, False])})
    torch.testing.assert_close(aepo(r)[:, 0], torch.tensor([0.0, -0.5, -0.5, -0.5, 1.0]), atol=1e-5, rtol=0)
    keep, metrics = FILTERS["aepo_overwritten"](r)
    assert keep.tolist() == [False, True, True, True, True]
    assert metrics["filter/aepo_overwritten_frac"] == pytest.approx(0.2)
    with pytest.raises(ValueError, match="aepo_overwritten"):
        aepo_overwritten(make([0], [1.0], [False]))


def test_all_regulariser_rows_get_the_reinforce_advantage():
    out = aepo(make([0, 1], [0.0, 1.0], [True, True]), reinforce_advantage=0.5)
    assert out.tolist() == [[0.5, 0.5], [0.5, 0.5]]


def slow_aepo(r: Rollout, eps=1e-6):
    B, T = r.mask.shape
    flag = r.extras[REINFORCE_KEY]
    gone = r.extras.get(OVERWRITTEN_KEY, torch.zeros(B, dtype=torch.bool))
    out = torch.zeros(B, T, dtype=torch.float64)
    for i in range(B):
        if flag[i]:
            a = 1.0
        elif gone[i]:
            a = 0.0
        else:
            members = [float(r.reward[j]) for j in range(B) if r.group[j] == r.group[i] and not flag[j]]
            n = len(members)
            mean = sum(members) / n
            std = math.sqrt(sum((x - mean) ** 2 for x in members) / (n - 1)) if n > 1 else 0.0
            a = (float(r.reward[i]) - mean) / (std + eps)
        for t in range(T):
            out[i, t] = a if r.mask[i, t] else 0.0
    return out


@pytest.mark.parametrize("seed", range(4))
def test_aepo_advantage_loop_equals_vectorised(seed):
    gen = torch.Generator().manual_seed(seed)
    sizes = [1, 4, 3, 2]
    group = torch.cat([torch.full((n,), p) for p, n in enumerate(sizes)])
    group = group[torch.randperm(len(group), generator=gen)]
    B, T = len(group), 5
    mask = torch.rand(B, T, generator=gen) < 0.6
    mask[:, 0] = True
    reward = torch.randn(B, generator=gen, dtype=torch.float64)
    flag = torch.rand(B, generator=gen) < 0.3
    gone = (torch.rand(B, generator=gen) < 0.3) & ~flag  # overwritten main rows still count in their groups
    r = Rollout(group=group, mask=mask, reward=reward, extras={REINFORCE_KEY: flag, OVERWRITTEN_KEY: gone})
    torch.testing.assert_close(aepo(r), slow_aepo(r), atol=1e-9, rtol=1e-9)


def test_aepo_advantage_bad_input_raises():
    r = Rollout(group=torch.tensor([0]), mask=torch.ones(1, 1, dtype=torch.bool), reward=torch.zeros(1))
    with pytest.raises(ValueError, match="aepo_reinforce"):
        aepo(r)
    r = r.replace(extras={REINFORCE_KEY: torch.tensor([True, False])})
    with pytest.raises(ValueError, match=r"bool tensor \[B\]"):
        aepo(r)
