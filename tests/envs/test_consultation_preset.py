"""The "rubric_env" preset (Baichuan-M2's improved GRPO): its length reward by hand and in a loop, and the composed
objective equal to the objective written out by hand on a toy batch."""

import math
import random

import pytest
import torch

from grpolab.algorithms import PRESETS
from grpolab.algorithms.preset import with_run_arguments
from grpolab.core.advantages import ADVANTAGES
from grpolab.core.losses import POLICY_LOSSES
from grpolab.core.regularizers import REGULARIZERS
from grpolab.core.shaping import SHAPING, group_length_reward
from grpolab.core.types import Rollout

T = 4


def rollout_of(rewards, lengths, group, **fields):
    mask = torch.arange(T)[None, :] < torch.tensor(lengths)[:, None]  # [B, T]
    return Rollout(group=torch.tensor(group), mask=mask, reward=torch.tensor(rewards, dtype=torch.float64), **fields)


def test_length_reward_by_hand():
    # group 0: rewards (1, 1, 0), lengths (2, 4, 4): λ = (0.5, -0.5, -0.5); mean 2/3 -> the first two are "good"
    #   -> 1 + 0.1·0.5, 1 + 0.1·(-0.5), 0 + 0.1·min(0, -0.5)
    # group 1 (non-contiguous): rewards (0.2, 0.6), lengths (3, 1): λ = (-0.5, 0.5); mean 0.4
    #   -> 0.2 + 0.1·min(0, -0.5) = 0.15, 0.6 + 0.1·0.5 = 0.65
    # group 2: one completion: λ = 0 -> unchanged
    r = rollout_of([1.0, 0.2, 1.0, 0.0, 0.6, 0.7], [2, 3, 4, 4, 1, 2], [0, 1, 0, 0, 1, 2])
    shaped, metrics = group_length_reward(r, coef=0.1)
    assert shaped.reward.tolist() == pytest.approx([1.05, 0.15, 0.95, -0.05, 0.65, 0.7])
    assert metrics["length_reward/frac_penalised"] == pytest.approx(3 / 6)
    # equal lengths in a group: no length reward at all
    same = rollout_of([1.0, 0.0], [3, 3], [0, 0])
    assert group_length_reward(same)[0].reward.tolist() == [1.0, 0.0]
    with pytest.raises(ValueError, match="coef"):
        group_length_reward(same, coef=-1.0)


def test_length_reward_equals_a_python_loop_on_random_unequal_groups():
    rng = random.Random(3)
    for _ in range(20):
        B = rng.randint(1, 9)
        group = [rng.randint(0, 2) for _ in range(B)]
        present = sorted(set(group))
        group = [present.index(g) for g in group]  # ids 0..P-1, every id present, any order
        rewards = [rng.choice([0.0, 0.25, 0.5, 1.0]) for _ in range(B)]
        lengths = [rng.randint(1, T) for _ in range(B)]
        got = group_length_reward(rollout_of(rewards, lengths, group), coef=0.3)[0].reward.tolist()
        for i in range(B):
            members = [j for j in range(B) if group[j] == group[i]]
            lo, hi = min(lengths[j] for j in members), max(lengths[j] for j in members)
            lam = 0.0 if hi == lo else 0.5 - (lengths[i] - lo) / (hi - lo)
            good = rewards[i] >= sum(rewards[j] for j in members) / len(members)
            assert got[i] == pytest.approx(rewards[i] + 0.3 * (lam if good else min(0.0, lam)))


def test_rubric_env_equals_its_objective_written_by_hand():
    preset = PRESETS["rubric_env"]
    assert preset.regularizers == () and preset.aggregation == "token_mean"  # no KL; token-level normalisation
    g = torch.Generator().manual_seed(11)
    lengths, group = [4, 2, 3, 1, 4, 3], [0, 0, 0, 1, 1, 1]
    old = -torch.rand(6, T, generator=g, dtype=torch.float64) - 0.1  # [B, T]
    logp = (old + 0.3 * torch.randn(6, T, generator=g, dtype=torch.float64)).requires_grad_()  # [B, T]
    rollout = rollout_of([0.8, 0.2, -0.3, 1.0, 0.5, 0.5], lengths, group, old_logp=old)

    # the trainer's composition, driven only by the preset's data
    shaped = rollout
    for part in preset.shaping:
        fn = SHAPING[part.name]
        shaped, _ = fn(shaped, **with_run_arguments(fn, part.params, {"max_len": T}))
    adv = ADVANTAGES[preset.advantage.name](shaped, **preset.advantage.params)  # [B, T]
    agg = dict(aggregation=preset.aggregation, norm_constant=T)
    loss, _ = POLICY_LOSSES[preset.loss.name](logp, shaped, adv, **agg, **preset.loss.params)
    for part in preset.regularizers:
        loss = loss + REGULARIZERS[part.name](logp, shaped, **agg, **part.params)[0]

    # by hand: length reward (coef 0.1), A = r' - mean_g r', clip-higher (0.2, 0.28), Σ tokens / Σ lengths
    r = rollout.reward.tolist()
    shaped_r = []
    for i in range(6):
        members = [j for j in range(6) if group[j] == group[i]]
        lo, hi = min(lengths[j] for j in members), max(lengths[j] for j in members)
        lam = 0.0 if hi == lo else 0.5 - (lengths[i] - lo) / (hi - lo)
        good = r[i] >= sum(r[j] for j in members) / len(members)
        shaped_r.append(r[i] + 0.1 * (lam if good else min(0.0, lam)))
    lp, o = logp.tolist(), old.tolist()
    total = 0.0
    for i in range(6):
        members = [j for j in range(6) if group[j] == group[i]]
        a = shaped_r[i] - sum(shaped_r[j] for j in members) / len(members)
        for t in range(lengths[i]):
            ratio = math.exp(lp[i][t] - o[i][t])
            total += -min(ratio * a, min(max(ratio, 1 - 0.2), 1 + 0.28) * a)
    expected = total / sum(lengths)
    assert loss.item() == pytest.approx(expected, rel=1e-9, abs=1e-12)
    loss.backward()
    assert torch.isfinite(logp.grad).all() and (logp.grad[~rollout.mask] == 0).all()
