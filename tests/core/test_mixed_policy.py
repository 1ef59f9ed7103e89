"""ICPO's mixed-policy loss (dual-clip PPO on-policy, f(π) = π/(π + λ) off-policy), its bonus and reject rule, and
the "icpo" preset composed on a toy mixed group against the paper's objective written out by hand."""

import math

import pytest
import torch

from grpolab.algorithms import PRESETS
from grpolab.core.advantages import ADVANTAGES
from grpolab.core.losses import POLICY_LOSSES
from grpolab.core.mixed_policy import (
    annealed_expert_bonus,
    expert_region_keep,
    mixed_policy,
    regularized_importance_weight,
)
from grpolab.core.regularizers import REGULARIZERS
from grpolab.core.types import Rollout

LN = math.log


def hand_batch(off=(True, False, False)):
    """Row 0 off-policy (π = 0.5, 0.1; A = 2; old log-probs that would give huge ratios: unused), row 1 on-policy
    with ratio 1.5 and A = 1 (one valid token; NaN padding), row 2 on-policy with ratios 5 and 0.5 and A = −1."""
    mask = torch.tensor([[True, True], [True, False], [True, True]])
    logp = torch.tensor([[LN(0.5), LN(0.1)], [LN(0.3), float("nan")], [LN(0.5), LN(0.05)]], dtype=torch.float64)
    old = torch.tensor([[-9.0, -9.0], [LN(0.2), float("nan")], [LN(0.1), LN(0.1)]], dtype=torch.float64)
    adv = torch.tensor([[2.0, 2.0], [1.0, float("nan")], [-1.0, -1.0]], dtype=torch.float64)
    rollout = Rollout(
        group=torch.tensor([0, 0, 0]),
        mask=mask,
        reward=torch.zeros(3, dtype=torch.float64),
        old_logp=old,
        extras={"off_policy": torch.tensor(off)},
    )
    return logp.requires_grad_(), rollout, adv


# ---------------------------------------------------------------------------------------------------- f(π)
def test_f_is_monotone_positive_and_bounded_below_one():
    logp = torch.linspace(-40.0, 0.0, 2001, dtype=torch.float64)
    for lam in (0.01, 0.1, 1.0):
        f = regularized_importance_weight(logp, lam=lam)
        assert (f[1:] > f[:-1]).all()  # strictly increasing in π
        assert (f > 0).all() and (f <= 1 / (1 + lam) + 1e-15).all() and (f < 1).all()
    # hand values, λ = 0.1: π = 0.5 → 0.5/0.6, π = 0.1 → 0.1/0.2, π = 1 → 1/1.1
    got = regularized_importance_weight(torch.tensor([LN(0.5), LN(0.1), 0.0], dtype=torch.float64), lam=0.1)
    assert got.tolist() == pytest.approx([0.5 / 0.6, 0.5, 1 / 1.1], rel=1e-12)


def test_gradient_of_the_off_policy_term_is_a_lambda_pi_over_pi_plus_lambda_squared():
    """l = −A·π/(π+λ) with π = e^logp: ∂l/∂logp = −A·∂π/∂logp·λ/(π+λ)² = −A·π·λ/(π+λ)²."""
    pi = torch.tensor([[0.9, 0.5, 0.1, 0.01, 1e-4]], dtype=torch.float64)
    adv = torch.tensor([[1.5, -2.0, 0.7, 3.0, -1.0]], dtype=torch.float64)
    lam = 0.1
    logp = pi.log().requires_grad_()
    r = Rollout(
        group=torch.tensor([0]),
        mask=torch.ones(1, 5, dtype=torch.bool),
        reward=torch.zeros(1, dtype=torch.float64),
        old_logp=torch.zeros(1, 5, dtype=torch.float64),
        extras={"off_policy": torch.tensor([True])},
    )
    loss, _ = mixed_policy(logp, r, adv, aggregation="token_mean", num_tokens=1.0, lam=lam)  # a sum over tokens
    loss.backward()
    expected = -adv * pi * lam / (pi + lam) ** 2
    assert torch.allclose(logp.grad, expected, rtol=1e-12)
    # the same from autograd of the plain formula
    x = pi.log().requires_grad_()
    (-(adv * x.exp() / (x.exp() + lam))).sum().backward()
    assert torch.allclose(logp.grad, x.grad, rtol=1e-12)
    # largest push at π = λ (the peak of π·λ/(π+λ)²): rare tokens learn more than likely ones
    grid = torch.logspace(-4, 0, 401, dtype=torch.float64)
    peak = grid[torch.argmax(grid * lam / (grid + lam) ** 2)]
    assert peak.item() == pytest.approx(lam, rel=0.03)


# ---------------------------------------------------------------------------------------------------- the loss
def test_hand_computed_token_example():
    logp, rollout, adv = hand_batch()
    loss, m = mixed_policy(logp, rollout, adv, aggregation="token_mean")
    # per-token losses (ε = 0.2, c = 3, λ = 0.1):
    #   row 0 (off): −2·0.5/0.6 = −5/3 and −2·0.1/0.2 = −1
    #   row 1 (on):  ρ = 1.5, A = 1 → max(−1.5, −1.2) = −1.2 (clipped)
    #   row 2 (on):  ρ = 5, A = −1 → max(5, 1.2) = 5, dual clip min(5, 3) = 3; ρ = 0.5 → max(0.5, 0.8) = 0.8
    # token mean over 5 tokens: (−5/3 − 1 − 1.2 + 3 + 0.8) / 5 = (−1/15) / 5 = −1/75
    assert loss.item() == pytest.approx(-1 / 75, rel=1e-12)
    assert m["off_policy_frac"] == pytest.approx(2 / 5)
    assert m["off_prob_mean"] == pytest.approx(0.3)
    assert m["off_weight_mean"] == pytest.approx((5 / 6 + 0.5) / 2)
    assert m["clip_frac"] == pytest.approx(2 / 3) and m["dual_clip_frac"] == pytest.approx(1 / 3)  # on tokens only
    assert m["ratio_max"] == pytest.approx(5.0) and m["ratio_min"] == pytest.approx(0.5)  # row 0's ρ not seen
    loss.backward()
    # off tokens: −A·πλ/(π+λ)² / 5; every on-policy token here is clipped (or dual-clipped): no gradient
    expected = torch.tensor([[-2 * 0.05 / 0.36 / 5, -2 * 0.01 / 0.04 / 5], [0.0, 0.0], [0.0, 0.0]])
    assert torch.allclose(logp.grad, expected.double(), atol=1e-12)


def test_without_off_policy_rows_it_is_exactly_dual_clip_ppo():
    g = torch.Generator().manual_seed(0)
    B, T = 6, 5
    mask = torch.arange(T)[None, :] < torch.tensor([5, 2, 4, 1, 3, 5])[:, None]
    old = -torch.rand(B, T, generator=g, dtype=torch.float64) - 0.2
    base = old + 0.8 * torch.randn(B, T, generator=g, dtype=torch.float64)  # ratios well outside [0.8, 1.2]
    adv = torch.randn(B, T, generator=g, dtype=torch.float64)
    group = torch.tensor([0, 0, 1, 1, 1, 2])
    plain = Rollout(group=group, mask=mask, reward=torch.zeros(B, dtype=torch.float64), old_logp=old)
    flags_false = plain.replace(extras={"off_policy": torch.zeros(B, dtype=torch.bool)})
    ref_logp = base.clone().requires_grad_()
    ref, ref_m = POLICY_LOSSES["ppo_clip"](ref_logp, plain, adv, epsilon=0.2, dual_clip=3.0)
    ref.backward()
    assert ref_m["dual_clip_frac"] > 0 and ref_m["clip_frac"] > 0  # both clips bind somewhere
    for rollout in (plain, flags_false):
        logp = base.clone().requires_grad_()
        loss, m = mixed_policy(logp, rollout, adv)
        loss.backward()
        assert loss.item() == ref.item()  # bit-identical
        assert torch.equal(logp.grad, ref_logp.grad)
        assert {k: m[k] for k in ref_m} == ref_m
        assert m["off_policy_frac"] == 0.0


def slow_mixed(logp, old, adv, mask, off, *, lo=0.2, hi=0.2, c=3.0, lam=0.1):
    """Per-token loss written out with Python loops."""
    out = [[0.0] * len(mask[0]) for _ in mask]
    for i, row in enumerate(mask):
        for t, valid in enumerate(row):
            if not valid:
                continue
            a = adv[i][t]
            if off[i]:
                p = math.exp(logp[i][t])
                out[i][t] = -a * p / (p + lam)
            else:
                rho = math.exp(logp[i][t] - old[i][t])
                loss = max(-a * rho, -a * min(max(rho, 1 - lo), 1 + hi))
                out[i][t] = min(loss, -c * a) if a < 0 else loss
    return out


@pytest.mark.parametrize("aggregation", ["token_mean", "seq_mean_token_mean", "seq_mean_token_sum"])
def test_loop_equals_vectorised_on_random_mixed_batches(aggregation):
    g = torch.Generator().manual_seed(3)
    for _ in range(5):
        B, T = 7, 6
        lengths = torch.randint(1, T + 1, (B,), generator=g)
        mask = torch.arange(T)[None, :] < lengths[:, None]
        old = -torch.rand(B, T, generator=g, dtype=torch.float64) * 3
        logp = (old + torch.randn(B, T, generator=g, dtype=torch.float64)).clamp(max=0.0)
        adv = torch.randn(B, T, generator=g, dtype=torch.float64)
        off = torch.rand(B, generator=g) < 0.4
        group = torch.tensor([0, 1, 0, 2, 1, 0, 2])  # unequal, non-contiguous
        r = Rollout(group=group, mask=mask, reward=torch.zeros(B, dtype=torch.float64), old_logp=old,
                    extras={"off_policy": off})  # fmt: skip
        loss, _ = mixed_policy(logp, r, adv, aggregation=aggregation, lam=0.05, epsilon_high=0.28)
        per = slow_mixed(logp.tolist(), old.tolist(), adv.tolist(), mask.tolist(), off.tolist(), hi=0.28, lam=0.05)
        n = lengths.tolist()
        if aggregation == "token_mean":
            expected = sum(map(sum, per)) / sum(n)
        elif aggregation == "seq_mean_token_mean":
            expected = sum(sum(row) / k for row, k in zip(per, n, strict=True)) / B
        else:
            expected = sum(map(sum, per)) / B
        assert loss.item() == pytest.approx(expected, rel=1e-10, abs=1e-12)


def test_micro_batches_with_global_counts_sum_to_the_full_loss():
    logp, rollout, adv = hand_batch(off=(True, False, True))
    full, _ = mixed_policy(logp, rollout, adv, aggregation="token_mean")
    parts = 0.0
    for rows in ([0], [1, 2]):
        keep = torch.zeros(3, dtype=torch.bool)
        keep[rows] = True
        part, _ = mixed_policy(logp[keep], rollout.select(keep), adv[keep], aggregation="token_mean", num_tokens=5)
        parts = parts + part
    assert parts.item() == pytest.approx(full.item(), rel=1e-12)


def test_masked_positions_have_no_influence():
    logp, rollout, adv = hand_batch()
    loss, m = mixed_policy(logp, rollout, adv)
    loss.backward()
    grad = logp.grad.clone()
    mask = rollout.mask
    junk = torch.tensor([[0.0, 0.0], [1e30, 0.0], [0.0, 0.0]], dtype=torch.float64)
    logp2 = torch.where(mask, logp.detach(), torch.full_like(junk, 50.0)).requires_grad_()
    r2 = rollout.replace(old_logp=torch.where(mask, rollout.old_logp, -1e30 + junk))
    adv2 = torch.where(mask, adv, torch.full_like(adv, float("inf")))
    loss2, m2 = mixed_policy(logp2, r2, adv2)
    loss2.backward()
    assert loss2.item() == loss.item() and m2 == m
    assert torch.equal(logp2.grad, grad) and (logp2.grad[~mask] == 0).all()
    # an off-policy row's padding too: mark row 1 off-policy, its NaN padding stays out
    logp3 = logp.detach().clone().requires_grad_()
    r3 = rollout.replace(extras={"off_policy": torch.tensor([True, True, False])})
    loss3, _ = mixed_policy(logp3, r3, adv)
    loss3.backward()
    assert torch.isfinite(loss3) and (logp3.grad[~mask] == 0).all()


def test_all_rows_off_policy_never_reads_old_logp_and_logs_no_infinite_ratio():
    logp, rollout, adv = hand_batch(off=(True, True, True))
    r = rollout.replace(old_logp=torch.full_like(rollout.old_logp, 1e6))  # absurd, unused
    loss, m = mixed_policy(logp, r, adv)
    pis = [[0.5, 0.1], [0.3], [0.5, 0.05]]
    advs = [[2.0, 2.0], [1.0], [-1.0, -1.0]]
    expected = sum(-a * p / (p + 0.1) for ps, as_ in zip(pis, advs, strict=True) for p, a in zip(ps, as_, strict=True))
    assert loss.item() == pytest.approx(expected / 5, rel=1e-12)
    assert math.isnan(m["ratio_min"]) and math.isnan(m["ratio_max"]) and m["off_policy_frac"] == 1.0


@pytest.mark.parametrize(
    ("kwargs", "extras", "message"),
    [
        (dict(lam=0.0), None, "lam"),
        (dict(lam=-0.1), None, "lam"),
        (dict(dual_clip=1.0), None, "dual_clip"),
        (dict(epsilon_low=1.0), None, "epsilon_low"),
        ({}, {"off_policy": torch.tensor([True, False])}, r"off_policy'\] must be a bool tensor \[B\]"),
        ({}, {"off_policy": torch.tensor([0.5, 0.0, 1.0])}, "must be bool"),
        ({}, {"off_policy": [True, False, False]}, "must be a bool tensor"),
    ],
)
def test_bad_input_raises(kwargs, extras, message):
    logp, rollout, adv = hand_batch()
    if extras is not None:
        rollout = rollout.replace(extras=extras)
    with pytest.raises(ValueError, match=message):
        mixed_policy(logp, rollout, adv, **kwargs)


def test_integer_flags_and_missing_old_logp():
    logp, rollout, adv = hand_batch()
    as_int = rollout.replace(extras={"off_policy": torch.tensor([1, 0, 0])})
    assert mixed_policy(logp, as_int, adv)[0].item() == mixed_policy(logp, rollout, adv)[0].item()
    with pytest.raises(ValueError, match="old_logp"):
        mixed_policy(logp, rollout.replace(old_logp=None), adv)


def test_registered_with_what_it_reads():
    assert POLICY_LOSSES["mixed_policy"] is mixed_policy
    assert POLICY_LOSSES.requires("mixed_policy") == {"old_logp", "off_policy"}


# ---------------------------------------------------------------------------------------------------- bonus, reject
def test_annealed_bonus_schedule():
    # β·max(0, 1 − t/T), β = 1, T = 400
    assert [annealed_expert_bonus(t) for t in (0, 100, 200, 399, 400, 401, 10_000)] == pytest.approx(
        [1.0, 0.75, 0.5, 1 / 400, 0.0, 0.0, 0.0]
    )
    assert annealed_expert_bonus(50, beta=0.5, anneal_steps=100) == pytest.approx(0.25)
    assert annealed_expert_bonus(3, beta=0.0) == 0.0
    for bad in (dict(step=-1), dict(step=1.5), dict(step=0, beta=-1.0), dict(step=0, anneal_steps=0)):
        with pytest.raises(ValueError):
            annealed_expert_bonus(**bad)


def test_expert_region_reject_sampling():
    reward = torch.tensor([1.0, 0.0, 0.999, 2.0, float("nan"), 1.0])
    valid = torch.tensor([True, True, True, True, True, False])
    assert expert_region_keep(reward, valid).tolist() == [True, False, False, True, False, False]
    assert expert_region_keep(reward, delta=0.5).tolist() == [True, False, True, True, False, True]
    with pytest.raises(ValueError, match="delta"):
        expert_region_keep(reward, delta=float("nan"))


# ---------------------------------------------------------------------------------------------------- preset
def test_icpo_preset_equals_the_mixed_group_objective_by_hand():
    """The "icpo" preset composed as the trainer does on one mixed group (3 on-policy + 1 kept IEF completion with
    reward 1 + β·(1 − t/T) at t = 100) and a group whose IEF completion was rejected (3 on-policy only)."""
    preset = PRESETS["icpo"]
    ief = dict(preset.rollout[0].params)
    assert preset.rollout[0].name == "icpo_expert" and preset.loss.name == "mixed_policy"
    assert preset.trainer["num_generations"] + ief["n_off"] == 8  # the paper's 7 + 1
    assert (ief["delta"], ief["beta"], ief["anneal_steps"], ief["n_demo"], ief["cache_size"]) == (1, 1, 400, 1, 75_000)
    assert preset.aggregation == "token_mean" and preset.loss.params["lam"] == 0.1
    g = torch.Generator().manual_seed(11)
    bonus = annealed_expert_bonus(100, beta=ief["beta"], anneal_steps=ief["anneal_steps"])  # 0.75
    reward = torch.tensor([1.0, 0.0, 0.0, 1.0 + bonus, 1.0, 1.0, 0.0], dtype=torch.float64)
    group = torch.tensor([0, 0, 0, 0, 1, 1, 1])
    off = torch.tensor([False, False, False, True, False, False, False])
    lengths = [3, 1, 2, 3, 2, 3, 1]
    mask = torch.arange(3)[None, :] < torch.tensor(lengths)[:, None]
    old = -torch.rand(7, 3, generator=g, dtype=torch.float64) - 0.1
    logp = (old + 0.4 * torch.randn(7, 3, generator=g, dtype=torch.float64)).clamp(max=-1e-3).requires_grad_()
    ref = old - 0.3 * torch.rand(7, 3, generator=g, dtype=torch.float64)
    rollout = Rollout(group=group, mask=mask, reward=reward, old_logp=old, ref_logp=ref, extras={"off_policy": off})
    adv = ADVANTAGES[preset.advantage.name](rollout, **preset.advantage.params)
    agg = dict(aggregation=preset.aggregation, norm_constant=3)
    loss, _ = POLICY_LOSSES[preset.loss.name](logp, rollout, adv, **agg, **preset.loss.params)
    for part in preset.regularizers:
        loss = loss + REGULARIZERS[part.name](logp, rollout, **agg, **part.params)[0]

    # by hand: GRPO advantage (ddof 1, ε = 1e-6) per group, then token mean of the mixed per-token loss + 0.001·k3
    r = reward.tolist()
    A = []
    for i in range(7):
        members = [r[j] for j in range(7) if group[j] == group[i]]
        mean = sum(members) / len(members)
        std = math.sqrt(sum((x - mean) ** 2 for x in members) / (len(members) - 1))
        A.append((r[i] - mean) / (std + 1e-6))
    total = 0.0
    for i in range(7):
        for t in range(lengths[i]):
            lp, o, rf = logp[i, t].item(), old[i, t].item(), ref[i, t].item()
            if off[i]:
                pol = -A[i] * math.exp(lp) / (math.exp(lp) + 0.1)
            else:
                rho = math.exp(lp - o)
                pol = max(-A[i] * rho, -A[i] * min(max(rho, 0.8), 1.2))
                pol = min(pol, -3.0 * A[i]) if A[i] < 0 else pol
            k3 = math.exp(rf - lp) - (rf - lp) - 1
            total += pol + 0.001 * k3
    assert loss.item() == pytest.approx(total / sum(lengths), rel=1e-10)
    loss.backward()
    assert torch.isfinite(logp.grad).all() and (logp.grad[~mask] == 0).all() and logp.grad[3].abs().sum() > 0
    # the bonus makes the IEF completion the group's best: its advantage exceeds the on-policy correct one's
    assert A[3] > A[0] > 0
