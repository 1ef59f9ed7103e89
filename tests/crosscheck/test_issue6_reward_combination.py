"""Independent cross-check of reward-model ensembles (Coste et al., arXiv 2310.02743) and multi-objective rewards
(HydroX arXiv 2503.21819 weighted sum; MO-GRPO arXiv 2509.22047 per-objective group normalisation).

Facts used (read from the authors' code / the papers, not from grpolab):

- ``tlc4418/llm_optimization`` ``src/reward_modeling/scoring/ppo_reward_functions.py``: mean = ``torch.mean`` over
  members, WCO = ``torch.min`` over members, UWO = mean − coeff·``torch.var`` (unbiased, /(M−1)); ``score.py``
  stacks the M members' raw logits (no per-member normalisation) before the objective; the best-of-n code uses
  ``np.var`` (population). PPO config: ``uwo_weight`` 0.1, ``cliprange_reward`` 10.
- MO-GRPO: every reward function is normalised within the group by its own spread before the sum, so rescaling one
  objective does not change the result and a constant objective carries no signal.

References below are plain Python loops over rows / groups, in float64 unless a test is about float32.
"""

from __future__ import annotations

import math
import random

import pytest
import torch

from grpolab.algorithms import PRESETS
from grpolab.core.advantages import ADVANTAGES
from grpolab.core.reward_combination import ensemble_reward, multi_objective_reward, select_columns
from grpolab.core.shaping import SHAPING
from grpolab.core.types import Rollout


def mean(xs):
    return sum(xs) / len(xs)


def var(xs, ddof):
    m = mean(xs)
    n = len(xs)
    return sum((x - m) ** 2 for x in xs) / (n - ddof) if n > ddof else 0.0


def coste(scores: list[float], mode: str, coeff: float, unbiased: bool) -> float:
    if mode == "mean":
        return mean(scores)
    if mode == "wco":
        return min(scores)
    return mean(scores) - coeff * var(scores, 1 if unbiased else 0)


def random_scores(seed: int, B: int, M: int) -> list[list[float]]:
    rng = random.Random(seed)
    return [[rng.uniform(-12.0, 12.0) for _ in range(M)] for _ in range(B)]


# ------------------------------------------------------------------------------------------------ ensembles
@pytest.mark.parametrize("mode", ["mean", "wco", "uwo"])
@pytest.mark.parametrize("unbiased", [True, False])
@pytest.mark.parametrize("M", [2, 3, 5])
def test_ensemble_reward_equals_coste_objectives(mode, unbiased, M):
    scores = random_scores(M, 9, M)
    got = ensemble_reward(torch.tensor(scores, dtype=torch.float64), mode=mode, uwo_weight=0.3, unbiased=unbiased)
    expected = [coste(row, mode, 0.3, unbiased) for row in scores]
    torch.testing.assert_close(got, torch.tensor(expected, dtype=torch.float64))


def test_spec_numbers_and_wco_is_a_lower_bound():
    r = torch.tensor([[1.0, 2.0, 3.0], [-4.0, 4.0, 0.0]], dtype=torch.float64)
    assert ensemble_reward(r, mode="uwo", uwo_weight=0.5).tolist()[0] == 1.5  # 2 − 0.5·1
    assert ensemble_reward(r, mode="uwo", uwo_weight=0.5, unbiased=False).tolist()[0] == pytest.approx(2 - 1 / 3)
    assert ensemble_reward(r, mode="wco").tolist() == [1.0, -4.0]
    # UWO with λ = 0 is the mean; WCO ≤ mean always
    torch.testing.assert_close(ensemble_reward(r, mode="uwo", uwo_weight=0.0), ensemble_reward(r, mode="mean"))
    assert bool((ensemble_reward(r, mode="wco") <= ensemble_reward(r, mode="mean")).all())


def test_one_member_uwo_is_the_member_not_nan():
    """torch.var of one member is NaN in the authors' code; the library documents variance 0 instead."""
    r = torch.tensor([[2.5], [-1.0]], dtype=torch.float64)
    assert ensemble_reward(r, mode="uwo", uwo_weight=0.1).tolist() == [2.5, -1.0]


def test_ensemble_shaping_selects_rm_columns_clips_and_adds_others():
    names = ("exact", "rm_0", "rm_1", "rm_2", "fmt")
    rows = [[1.0, 30.0, 20.0, 25.0, 0.5], [0.0, -1.0, 3.0, 2.0, 1.0], [1.0, -40.0, -10.0, -12.0, 0.0]]
    r = Rollout(
        group=torch.tensor([0, 1, 0]),
        mask=torch.ones(3, 2, dtype=torch.bool),
        reward=torch.zeros(3, dtype=torch.float64),
        rewards=torch.tensor(rows, dtype=torch.float64),
        reward_names=names,
    )
    shaped, metrics = SHAPING["ensemble"](r, mode="uwo", uwo_weight=0.1, clip=10.0, others_weight=2.0)
    expected = []
    for row in rows:
        value = coste(row[1:4], "uwo", 0.1, True)
        value = max(-10.0, min(10.0, value))  # the authors' cliprange_reward
        expected.append(value + 2.0 * (row[0] + row[4]))
    torch.testing.assert_close(shaped.reward, torch.tensor(expected, dtype=torch.float64))
    assert metrics["ensemble/members"] == 3.0 and metrics["ensemble/clip_frac"] == pytest.approx(2 / 3)
    # a list of names picks exactly those columns, in that order; a prefix picks by name
    assert select_columns(names, ["rm_2", "exact"], part="x") == ([3, 0], [1, 2, 4])
    assert select_columns(names, "rm_", part="x") == ([1, 2, 3], [0, 4])
    with pytest.raises(ValueError):
        select_columns(names, ["rm_0", "rm_0"], part="x")


def test_presets_carry_the_papers_settings():
    wco = PRESETS["ensemble_wco"].shaping[0]
    uwo = PRESETS["ensemble_uwo"].shaping[0]
    assert (wco.name, wco.params["mode"], wco.params["clip"]) == ("ensemble", "wco", 10.0)
    assert (uwo.params["mode"], uwo.params["uwo_weight"], uwo.params["unbiased"]) == ("uwo", 0.1, True)
    assert uwo.params["clip"] == 10.0


# ------------------------------------------------------------------------------------------------ multi-objective
def mo_reference(rewards: list[list[float]], weights: list[float], group: list[int], ddof: int, eps: float):
    out = []
    K = len(weights)
    for i, row in enumerate(rewards):
        members = [j for j in range(len(rewards)) if group[j] == group[i]]
        total = 0.0
        for k in range(K):
            col = [rewards[j][k] for j in members]
            sd = math.sqrt(var(col, ddof))
            total += weights[k] * (row[k] - mean(col)) / (sd + eps)
        out.append(total)
    return out


@pytest.mark.parametrize("ddof", [0, 1])
def test_normalize_then_sum_equals_the_loop_on_shuffled_unequal_groups(ddof):
    rng = random.Random(5 + ddof)
    sizes = [1, 2, 5, 3]
    group = [g for g, s in enumerate(sizes) for _ in range(s)]
    rng.shuffle(group)
    rewards = [[rng.uniform(0, 1), rng.uniform(-50, 50), float(rng.randint(0, 1))] for _ in group]
    weights = [0.5, 1.5, -0.25]
    got = multi_objective_reward(
        torch.tensor(rewards, dtype=torch.float64),
        weights,
        mode="normalize_then_sum",
        group=torch.tensor(group),
        ddof=ddof,
        eps=1e-6,
    )
    torch.testing.assert_close(
        got, torch.tensor(mo_reference(rewards, weights, group, ddof, 1e-6), dtype=torch.float64)
    )


def test_weighted_sum_and_default_equal_weights():
    r = torch.tensor([[1.0, 10.0, -2.0], [0.0, 4.0, 2.0]], dtype=torch.float64)
    assert multi_objective_reward(r, [1.0, 0.5, 2.0]).tolist() == [2.0, 6.0]
    torch.testing.assert_close(multi_objective_reward(r), torch.tensor([3.0, 2.0], dtype=torch.float64))  # 1/K


def test_normalize_then_sum_is_invariant_to_affine_rescaling_of_one_objective():
    """MO-GRPO's point: r_k → a·r_k + b (a > 0) changes nothing (up to eps), while the weighted sum's ranking flips."""
    group = torch.tensor([0, 0, 0, 1, 1, 1])
    r = torch.tensor([[1.0, 0.2], [0.0, 0.9], [1.0, 0.5], [0.0, 0.1], [1.0, 0.0], [0.0, 0.8]], dtype=torch.float64)
    scaled = r.clone()
    scaled[:, 1] = 100.0 * r[:, 1] - 7.0
    a = multi_objective_reward(r, [1.0, 1.0], mode="normalize_then_sum", group=group)
    b = multi_objective_reward(scaled, [1.0, 1.0], mode="normalize_then_sum", group=group)
    torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
    assert multi_objective_reward(r, [1.0, 1.0]).argmax().item() != multi_objective_reward(scaled, [1.0, 1.0]).argmax()


def test_constant_objective_carries_no_signal_in_float64():
    group = torch.tensor([0] * 7 + [1] * 5)
    r = torch.tensor([[0.7, float(i)] for i in range(7)] + [[123.456, float(i)] for i in range(5)], dtype=torch.float64)
    only_constant = multi_objective_reward(r, [1.0, 0.0], mode="normalize_then_sum", group=group)
    assert only_constant.abs().max().item() < 1e-6


def test_constant_objective_carries_no_signal_in_float32():
    """The trainer's rewards are float32 (rewards/scoring.py). The docstring promises an objective constant within a
    group contributes 0 to that group."""
    group = torch.tensor([0] * 7 + [1] * 5)
    r = torch.tensor([[0.7, float(i)] for i in range(7)] + [[123.456, float(i)] for i in range(5)])
    only_constant = multi_objective_reward(r, [1.0, 0.0], mode="normalize_then_sum", group=group)
    assert only_constant.abs().max().item() < 1e-3


def test_identical_ensemble_scores_give_zero_grpo_advantage():
    """G identical completions get identical RM-ensemble rewards; GRPO must give them advantage 0 (its docstring:
    'A zero-variance group has r_i − mean = 0 exactly, so its advantage is 0 for any eps')."""
    members = torch.tensor([[123.456, 120.0, 126.0]] * 5 + [[0.7, 0.7, 0.7]] * 7)  # float32 like the trainer
    r = Rollout(
        group=torch.tensor([0] * 5 + [1] * 7),
        mask=torch.ones(12, 1, dtype=torch.bool),
        reward=torch.zeros(12),
        rewards=members,
        reward_names=("rm_a", "rm_b", "rm_c"),
    )
    shaped, _ = SHAPING["ensemble"](r, mode="mean")
    advantages = ADVANTAGES["grpo"](shaped)
    assert advantages.abs().max().item() < 1e-3
