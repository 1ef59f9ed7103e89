"""Tests of grpolab.core.difficulty (GRPO-S reward scaling): hand values, the cancellation invariant under
std-normalised GRPO, the scaling of a mean-only advantage, loop-vs-vectorised, bad input."""

from __future__ import annotations

import pytest
import torch

from grpolab.core.advantages import dr_grpo, grpo
from grpolab.core.difficulty import difficulty_scale
from grpolab.core.shaping import SHAPING
from grpolab.core.types import Rollout


def make(group, reward, **kw) -> Rollout:
    group = torch.tensor(group)  # [B]
    reward = torch.as_tensor(reward, dtype=torch.float64)  # [B]
    return Rollout(group=group, mask=torch.ones(len(group), 2, dtype=torch.bool), reward=reward, **kw)


def random_rollout(seed: int, sizes=(3, 1, 4, 2, 5)) -> Rollout:
    """Unequal shuffled groups, rewards in [0, 1], a per-prompt hardness repeated on each completion."""
    gen = torch.Generator().manual_seed(seed)
    ids = torch.cat([torch.full((n,), p) for p, n in enumerate(sizes)])  # [B]
    group = ids[torch.randperm(len(ids), generator=gen)]  # [B]
    hardness = torch.rand(len(sizes), generator=gen, dtype=torch.float64)[group]  # [B]
    reward = torch.rand(len(group), generator=gen, dtype=torch.float64)  # [B]
    acc = (reward > 0.5).double()  # [B]
    return make(group.tolist(), reward, rewards=torch.stack([acc, reward], 1), reward_names=("accuracy", "rm"),
                extras={"hardness": hardness})  # fmt: skip


def scale_loop(r: Rollout, *, a=1.0, b=1.0, reference=1.0, lo=0.5, hi=2.0, objective=None) -> list[float]:
    """s(x)·r by hand: per-prompt means, mean-1 normalisation over prompts, clip."""
    grp = r.group.tolist()
    vals = r.reward.tolist() if objective is None else r.rewards[:, r.reward_names.index(objective)].tolist()
    hard = r.extras.get("hardness", torch.zeros(len(grp))).tolist()
    P = max(grp) + 1
    raw = []
    for q in range(P):
        idx = [i for i in range(len(grp)) if grp[i] == q]
        h = sum(hard[i] for i in idx) / len(idx)
        gap = max(0.0, reference - sum(vals[i] for i in idx) / len(idx))
        raw.append(1 + a * h + b * gap)
    mean = sum(raw) / P
    s = [min(max(x / mean, lo), hi) for x in raw]
    return [s[grp[i]] * x for i, x in enumerate(r.reward.tolist())]


def test_hand_values_with_hardness_and_gap():
    # prompt 0: rewards [1, 0] (gap 0.5), h 0.2; prompt 1: rewards [1, 1] (gap 0), h 0.4; a = 1, b = 2
    # raw = [1 + 0.2 + 1.0, 1 + 0.4 + 0] = [2.2, 1.4], mean 1.8 → s = [1.2222, 0.7778]
    r = make([0, 0, 1, 1], [1.0, 0.0, 1.0, 1.0], extras={"hardness": torch.tensor([0.2, 0.2, 0.4, 0.4])})
    shaped, metrics = difficulty_scale(r, hardness_weight=1.0, gap_weight=2.0)
    assert shaped.reward.tolist() == pytest.approx([2.2 / 1.8, 0.0, 1.4 / 1.8, 1.4 / 1.8])
    assert metrics["difficulty/scale_mean"] == pytest.approx(1.0)
    assert metrics["difficulty/gap_mean"] == pytest.approx(0.25)
    assert metrics["difficulty/hardness_mean"] == pytest.approx(0.3)


def test_scale_is_clipped_after_normalising():
    # gaps [0, 1, 1, 1] (b = 10): raw [1, 11, 11, 11], mean 8.5 → [0.1176, 1.294, ...] → clipped low to 0.5
    r = make([0, 1, 2, 3], [1.0, 0.0, 0.0, 0.0])
    shaped, m = difficulty_scale(r, gap_weight=10.0)
    assert m["difficulty/scale_min"] == 0.5
    assert m["difficulty/scale_max"] == pytest.approx(11 / 8.5)
    assert shaped.reward.tolist() == pytest.approx([0.5, 0.0, 0.0, 0.0])


def test_std_normalised_grpo_is_unchanged_by_a_per_prompt_scale():
    # spec invariant: s constant within a group cancels in (s·r − s·μ)/(s·σ) (eps aside)
    r = random_rollout(0)
    shaped, _ = difficulty_scale(r, hardness_weight=2.0, gap_weight=1.5)
    assert torch.allclose(grpo(shaped), grpo(r), atol=1e-5)


def test_mean_only_advantage_scales_by_s():
    r = random_rollout(1)
    shaped, _ = difficulty_scale(r)
    s = shaped.reward / r.reward  # [B]: the factor of each completion (rewards are > 0 here)
    assert torch.allclose(dr_grpo(shaped), dr_grpo(r) * s[:, None])
    # and s really varies across prompts, so the check is not vacuous
    assert s.max() - s.min() > 0.05


def test_absent_hardness_counts_as_zero_and_input_is_not_changed():
    r = random_rollout(2)
    bare = r.replace(extras={})
    shaped, _ = difficulty_scale(bare)
    assert shaped.reward.tolist() == pytest.approx(scale_loop(bare))
    before = r.reward.clone()
    difficulty_scale(r)
    assert torch.equal(r.reward, before)


@pytest.mark.parametrize(
    "kw",
    [dict(), dict(hardness_weight=0.5, gap_weight=2.0), dict(objective="accuracy", reference=0.8),
     dict(min_scale=0.9, max_scale=1.1)],
)  # fmt: skip
def test_matches_the_loop_reference(kw):
    r = random_rollout(3)
    names = dict(hardness_weight="a", gap_weight="b", min_scale="lo", max_scale="hi")
    expected = scale_loop(r, **{names.get(k, k): v for k, v in kw.items()})
    assert difficulty_scale(r, **kw)[0].reward.tolist() == pytest.approx(expected, rel=1e-12)


def test_registered_as_shaping():
    assert SHAPING["difficulty_scale"] is difficulty_scale


@pytest.mark.parametrize(
    ("kw", "extras", "message"),
    [
        (dict(hardness_weight=-1.0), {}, "must be >= 0"),
        (dict(min_scale=1.5), {}, "0 < min_scale <= 1 <= max_scale"),
        (dict(max_scale=0.9), {}, "0 < min_scale <= 1 <= max_scale"),
        (dict(objective="accuracy"), {}, "not in reward_names"),
        ({}, {"hardness": torch.ones(3)}, "must be a float tensor \\[B\\]"),
        ({}, {"hardness": torch.tensor([0.1, -0.2])}, "finite and >= 0"),
    ],
)
def test_bad_input_raises(kw, extras, message):
    with pytest.raises(ValueError, match=message):
        difficulty_scale(make([0, 1], [1.0, 0.0], extras=extras), **kw)
