"""OTC-PO (arXiv 2504.14870): f(m, n), r_tool, the "otc" shaping part and the otc_grpo / otc_ppo presets."""

import math
import random

import pytest
import torch

from grpolab.algorithms import PRESETS, Part
from grpolab.core.advantages import ADVANTAGES
from grpolab.core.otc import optimal_calls, otc, otc_mapping, otc_tool_reward
from grpolab.core.shaping import SHAPING
from grpolab.core.types import Rollout


def rollout(group, em, calls=None, *, reward=None, rows=None, names=("search_em",), T=3):
    """A rollout whose first reward column is ``em``; ``calls`` -> extras tool_calls, ``rows`` -> extras prompt_id."""
    B = len(group)
    extras = {}
    if calls is not None:
        extras["tool_calls"] = torch.tensor(calls, dtype=torch.long)
    if rows is not None:
        extras["prompt_id"] = torch.tensor(rows, dtype=torch.long)
    columns = [torch.tensor(em, dtype=torch.float64)] + [torch.zeros(B, dtype=torch.float64)] * (len(names) - 1)
    return Rollout(
        group=torch.tensor(group),
        mask=torch.ones(B, T, dtype=torch.bool),
        reward=torch.tensor(em if reward is None else reward, dtype=torch.float64),
        rewards=torch.stack(columns, dim=1),
        reward_names=names,
        extras=extras,
    )


def t(*values):
    return torch.tensor(values, dtype=torch.float64)


# ------------------------------------------------------------------------------------- the spec's unit tests
def test_spec_values():
    assert otc_tool_reward(t(2), t(2)).item() == pytest.approx(1.0)  # m = n = 2: sin(π/2)
    assert otc_tool_reward(t(1), t(0), c=1.0).item() == pytest.approx(0.5)  # n = 0, m = 1, c = 1: cos(π/3)
    assert otc_tool_reward(t(0), t(0)).item() == 1.0  # f = n = 0


def test_wrong_answers_get_zero():
    r = rollout([0, 0, 0], em=[0.0, 0.0, 1.0], calls=[0, 1, 3])
    shaped, _ = otc(r)
    assert shaped.reward[:2].tolist() == [0.0, 0.0]
    assert shaped.reward[2].item() == pytest.approx(1.0)  # the only correct one sets n = 3 = its m


@pytest.mark.parametrize("n", [1, 2, 3, 5])
def test_tool_reward_is_maximal_at_m_equals_n(n):
    m = torch.arange(0, 20, dtype=torch.float64)  # [20]
    r = otc_tool_reward(m, torch.full_like(m, n))  # [20]
    assert int(r.argmax()) == n and r[n].item() == pytest.approx(1.0)
    assert (r[:n].diff() > 0).all() and (r[n:].diff() < 0).all()  # rises to m = n, then falls


def test_mapping_hand_values():
    # f(0,0) = 0; f(3,0) = 3; f(2,2) = 2·2·2/4 = 2; f(1,3) = 2·3·1/4 = 1.5; f(6,2) = 24/8 = 3
    assert otc_mapping(t(0, 3, 2, 1, 6), t(0, 0, 2, 3, 2)).tolist() == [0.0, 3.0, 2.0, 1.5, 3.0]


def test_tool_reward_hand_values():
    # n = 0 branch, c = 1: cos(2π/5) = 0.309017, cos(3π/7) = 0.222521; c = 2, m = 1: cos(π/4) = 0.707107
    assert otc_tool_reward(t(2, 3), t(0, 0)).tolist() == pytest.approx([0.309017, 0.222521], abs=1e-6)
    assert otc_tool_reward(t(1), t(0), c=2.0).item() == pytest.approx(0.707107, abs=1e-6)
    # n = 2: m = 1 -> f = 4/3, sin(π/3) = 0.866025; m = 4 -> f = 8/3, sin(2π/3) = 0.866025; m = 0 -> sin 0 = 0
    assert otc_tool_reward(t(1, 4, 0), t(2, 2, 2)).tolist() == pytest.approx([0.866025, 0.866025, 0.0], abs=1e-6)


def test_optimal_calls_is_min_over_correct():
    m, correct = t(3, 1, 2, 0, 5), torch.tensor([True, False, True, False, True])
    # group 0 = rows 0, 1, 4 -> correct m {3, 5} -> 3; group 1 = rows 2, 3 -> correct m {2} -> 2; group 2 empty
    assert optimal_calls(m, correct, torch.tensor([0, 0, 1, 1, 0]), 3).tolist() == [3.0, 2.0, math.inf]


# ----------------------------------------------------------------------------------------- the shaping part
def test_grpo_variant_hand_computed():
    # group 0: correct with m = 1, 2, 3 (n = 1) and a wrong one -> sin(π/2), sin(2π/3), sin(3π/4), 0
    # group 1: both correct with m = 0, 2 (n = 0) -> 1, cos(2π/5); group 2: all wrong, m = 1 -> 0
    r = rollout([0, 0, 1, 0, 1, 0, 2], em=[1, 1, 1, 1, 1, 0, 0], calls=[1, 2, 0, 3, 2, 0, 1])
    shaped, metrics = otc(r, alpha=2.0)
    expected = [2 * 1.0, 2 * 0.866025, 2 * 1.0, 2 * 0.707107, 2 * 0.309017, 0.0, 0.0]
    assert shaped.reward.tolist() == pytest.approx(expected, abs=1e-6)
    assert metrics["otc/tool_calls"] == pytest.approx(9 / 7)
    assert metrics["otc/correct_frac"] == pytest.approx(5 / 7)
    assert r.reward.tolist() == [1, 1, 1, 1, 1, 0, 0]  # the input is untouched


def test_ppo_variant_ignores_the_group():
    # n = 0 for all: cos(mπ/(2m+1)) · r_φ -> m = 0: 1, m = 1: 0.5, m = 2: cos(2π/5) = 0.309017
    r = rollout([0, 0, 0, 1], em=[1, 1, 1, 0], calls=[0, 1, 2, 0])
    shaped, _ = otc(r, variant="ppo")
    assert shaped.reward.tolist() == pytest.approx([1.0, 0.5, 0.309017, 0.0], abs=1e-6)


def test_without_tool_calls_m_is_zero_and_the_reward_is_alpha_times_correctness():
    r = rollout([0, 0, 1], em=[1.0, 0.0, 0.25], reward=[5.0, 5.0, 5.0])  # a single-turn rollout: no extras
    for variant in ("grpo", "ppo"):
        shaped, metrics = otc(r, variant=variant, alpha=0.5)
        assert shaped.reward.tolist() == [0.5, 0.0, 0.125]
        assert metrics["otc/tool_calls"] == 0.0


def test_reward_name_selects_the_column_and_the_combined_reward_is_replaced():
    r = rollout([0, 0], em=[0.0, 0.0], calls=[1, 2], names=("fmt", "em"))
    r = r.replace(rewards=torch.tensor([[0.0, 1.0], [0.0, 1.0]], dtype=torch.float64), reward=t(9, 9))
    shaped, _ = otc(r, reward_name="em")  # n = 1: rewards 1 and sin(2π/3)
    assert shaped.reward.tolist() == pytest.approx([1.0, 0.866025], abs=1e-6)
    shaped, _ = otc(r)  # the first column, "fmt", is 0 -> 0
    assert shaped.reward.tolist() == [0.0, 0.0]
    no_columns = Rollout(group=torch.tensor([0]), mask=torch.ones(1, 2, dtype=torch.bool), reward=t(1.0))
    assert otc(no_columns)[0].reward.tolist() == [1.0]  # falls back to the combined reward


def test_memory_keeps_the_smallest_n_per_question():
    state = {}
    # step 1: question 7's group: correct with m = 2, 3 -> n = 2 (stored); question 4: correct with m = 1
    first = rollout([0, 0, 1], em=[1, 1, 1], calls=[2, 3, 1], rows=[7, 7, 4])
    otc(first, state=state)
    assert state["n"] == {7: 2.0, 4: 1.0}
    # step 2 (question 7 again, as group 1 now): correct m = 3, 4 -> group n 3, but the stored 2 is smaller
    # m = 3: f = 12/5 = 2.4, sin(2.4π/4) = sin(0.6π) = 0.951057; m = 4: f = 16/6, sin(2π/3) = 0.866025
    second = rollout([1, 1, 0], em=[1, 1, 1], calls=[3, 4, 0], rows=[7, 7, 9])
    shaped, metrics = otc(second, state=state)
    assert shaped.reward.tolist() == pytest.approx([0.951057, 0.866025, 1.0], abs=1e-6)
    assert state["n"] == {7: 2.0, 4: 1.0, 9: 0.0}
    assert metrics["otc/questions_remembered"] == 3.0
    # without memory (or without the row ids) n is the group's own: m = 3 is then optimal
    assert otc(second, state={}, memory=False)[0].reward[0].item() == pytest.approx(1.0)
    no_rows = rollout([1, 1, 0], em=[1, 1, 1], calls=[3, 4, 0])
    assert otc(no_rows, state=state)[0].reward[0].item() == pytest.approx(1.0)


def test_a_group_with_no_correct_response_stores_nothing():
    state = {}
    otc(rollout([0, 0], em=[0, 0], calls=[1, 2], rows=[3, 3]), state=state)
    assert state["n"] == {}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(variant="reinforce"), "variant must be one of"),
        (dict(alpha=-1.0), "alpha"),
        (dict(c=0.0), "c must be"),
        (dict(reward_name="nope"), "not a reward of this task"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        otc(rollout([0, 0], em=[1, 0], calls=[0, 1]), **kwargs)


def test_bad_tool_calls():
    r = rollout([0, 0], em=[1, 0])
    with pytest.raises(ValueError, match="shape"):
        otc(r.replace(extras={"tool_calls": torch.tensor([1, 2, 3])}))
    with pytest.raises(ValueError, match=">= 0"):
        otc(r.replace(extras={"tool_calls": torch.tensor([1, -1])}))


def reference(group, em, calls, *, variant, alpha, c, threshold=0.5):
    """The paper's formulas one response at a time, in plain Python (no tensors)."""
    out = []
    for i in range(len(group)):
        if variant == "ppo":
            n = 0
        else:
            mates = [calls[j] for j in range(len(group)) if group[j] == group[i] and em[j] >= threshold]
            n = min(mates) if mates else 0
        m = calls[i]
        if m == 0 and n == 0:
            f = 0.0
        elif n == 0:
            f = float(m)
        else:
            f = 2 * n * m / (m + n)
        if f == 0 and n == 0:
            r_tool = 1.0
        elif n == 0:
            r_tool = math.cos(m * math.pi / (2 * m + c))
        else:
            r_tool = math.sin(f * math.pi / (2 * n))
        out.append(alpha * r_tool * em[i])
    return out


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("variant", ["grpo", "ppo"])
def test_loop_equals_vectorised_on_unequal_groups(seed, variant):
    rng = random.Random(seed)
    P = rng.randint(1, 5)
    group = list(range(P)) + [rng.randrange(P) for _ in range(rng.randint(0, 12))]
    rng.shuffle(group)  # unequal, non-contiguous groups; size-1 groups happen
    em = [float(rng.random() < 0.6) for _ in group]
    calls = [rng.randint(0, 4) for _ in group]
    alpha, c = rng.choice([1.0, 0.5, 2.0]), rng.choice([1.0, 0.5, 3.0])
    shaped, _ = otc(rollout(group, em, calls), variant=variant, alpha=alpha, c=c)
    assert shaped.reward.tolist() == pytest.approx(reference(group, em, calls, variant=variant, alpha=alpha, c=c))


# ------------------------------------------------------------------------------------------------- presets
def test_registered_with_no_required_inputs():
    assert "otc" in SHAPING and SHAPING.requires("otc") == set()


def test_otc_presets_are_grpo_and_ppo_with_the_otc_reward():
    otc_grpo, grpo = PRESETS["otc_grpo"], PRESETS["grpo"]
    assert otc_grpo.arxiv == otc_ppo_arxiv() == "2504.14870"
    assert otc_grpo.shaping == (Part("otc", {"variant": "grpo", "alpha": 1.0, "c": 1.0}),)
    for slot in ("advantage", "loss", "aggregation", "regularizers", "filters", "selectors", "rollout", "value_loss"):
        assert getattr(otc_grpo, slot) == getattr(grpo, slot), slot
    otc_ppo, ppo = PRESETS["otc_ppo"], PRESETS["ppo"]
    assert otc_ppo.shaping == (Part("otc", {"variant": "ppo", "alpha": 1.0, "c": 1.0}), *ppo.shaping)
    for slot in ("advantage", "loss", "aggregation", "regularizers", "value_loss", "trainer"):
        assert getattr(otc_ppo, slot) == getattr(ppo, slot), slot


def otc_ppo_arxiv():
    return PRESETS["otc_ppo"].arxiv


def test_otc_grpo_advantages_hand_computed():
    # one group: correct m = 1, 2 and a wrong m = 0 -> n = 1, rewards [1, sin(2π/3) = 0.866025, 0]
    # mean 0.622008; deviations 0.377992, 0.244017, -0.622008; var (ddof 1) = (0.142878 + 0.059544 + 0.386894)/2
    # = 0.294658, std 0.542824 -> advantages 0.696344, 0.449533, -1.145877
    r = rollout([0, 0, 0], em=[1, 1, 0], calls=[1, 2, 0])
    preset = PRESETS["otc_grpo"]
    part = preset.shaping[0]
    shaped, _ = SHAPING[part.name](r, **part.params, state={})
    adv = ADVANTAGES[preset.advantage.name](shaped, **preset.advantage.params)  # [B, T]
    assert adv[:, 0].tolist() == pytest.approx([0.696344, 0.449533, -1.145877], abs=1e-5)
