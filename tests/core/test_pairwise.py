"""Tests for grpolab.core.pairwise (reward_levels, TRPA, P3O): hand-computed values, paper invariants,
loop-vs-vectorised equivalence, bad input."""

from __future__ import annotations

import math

import pytest
import torch

from grpolab.core.losses import POLICY_LOSSES
from grpolab.core.registry import UnknownNameError
from grpolab.core.shaping import SHAPING
from grpolab.core.types import Rollout

F64 = torch.float64
reward_levels = SHAPING["reward_levels"]
trpa = POLICY_LOSSES["trpa"]
p3o = POLICY_LOSSES["p3o"]


# ---------------------------------------------------------------------------------------------------- helpers
def random_batch(seed: int, group: list[int], T: int = 5, spread: float = 0.3):
    """(logp, rollout, advantages): unequal lengths, non-contiguous groups, garbage at padding; float64."""
    g = torch.Generator().manual_seed(seed)
    B = len(group)
    lengths = torch.randint(1, T + 1, (B,), generator=g)
    mask = torch.arange(T)[None, :] < lengths[:, None]  # [B, T]
    old = -torch.rand(B, T, generator=g, dtype=F64) * 2  # [B, T]
    ref = old - 0.3 * torch.rand(B, T, generator=g, dtype=F64)  # [B, T]
    logp = old + spread * torch.randn(B, T, generator=g, dtype=F64)  # [B, T]
    garbage = (torch.rand(B, T, generator=g, dtype=F64) - 0.5) * 1e4  # [B, T]
    logp, old, ref = (torch.where(mask, x, garbage) for x in (logp, old, ref))
    reward = torch.randn(B, generator=g, dtype=F64)  # [B]
    level = torch.randint(1, 5, (B,), generator=g)  # [B]
    r = Rollout(
        group=torch.tensor(group), mask=mask, reward=reward, old_logp=old, ref_logp=ref, extras={"level": level}
    )
    return logp, r, torch.zeros(B, T, dtype=F64)


def single_tokens(values, *, rewards=None, old=None, ref=None, levels=None, group=None):
    B = len(values)
    zeros = [0.0] * B
    return (
        torch.tensor(values, dtype=F64)[:, None],
        Rollout(
            group=torch.tensor(group if group is not None else [0] * B),
            mask=torch.ones(B, 1, dtype=torch.bool),
            reward=torch.tensor(rewards if rewards is not None else zeros, dtype=F64),
            old_logp=torch.tensor(old if old is not None else values, dtype=F64)[:, None],
            ref_logp=torch.tensor(ref if ref is not None else zeros, dtype=F64)[:, None],
            extras={} if levels is None else {"level": torch.tensor(levels)},
        ),
        torch.zeros(B, 1, dtype=F64),
    )


def value_and_grad(fn, logp, *args, **kw):
    lp = logp.detach().clone().requires_grad_(True)
    value, metrics = fn(lp, *args, **kw)
    value.backward()
    return value.detach(), lp.grad, metrics


def softplus(x: float) -> float:
    return math.log1p(math.exp(x))


# ---------------------------------------------------------------------------------------------------- levels
def test_reward_levels_default_mapping_and_boundaries():
    r = Rollout(
        group=torch.zeros(8, dtype=torch.long),
        mask=torch.ones(8, 1, dtype=torch.bool),
        reward=torch.tensor([1.0, 0.0, -0.5, -1.0, 0.5, -0.25, -0.75, 7.0]),
        extras={"other": 3},
    )
    out, metrics = reward_levels(r)
    # correct / wrong / unparseable / format error; a reward equal to a threshold takes the better level
    assert out.extras["level"].tolist() == [1, 2, 3, 4, 1, 2, 3, 1]
    assert out.extras["level"].dtype == torch.long
    assert out.extras["other"] == 3 and torch.equal(out.reward, r.reward)
    assert metrics == {"levels/frac_1": 3 / 8, "levels/frac_2": 2 / 8, "levels/frac_3": 2 / 8, "levels/frac_4": 1 / 8}
    assert "level" not in r.extras  # the input is not changed


def test_reward_levels_other_scales():
    r = Rollout(group=torch.zeros(4, dtype=torch.long), mask=torch.ones(4, 1, dtype=torch.bool),
                reward=torch.tensor([3.0, -0.5, -1.0, -3.0]))  # fmt: skip
    assert reward_levels(r, thresholds=[1.0, -0.75, -2.0])[0].extras["level"].tolist() == [1, 2, 3, 4]
    binary = r.replace(reward=torch.tensor([1.0, 0.0, 1.0, 0.0]))
    assert reward_levels(binary)[0].extras["level"].tolist() == [1, 2, 1, 2]
    assert reward_levels(binary, thresholds=(0.5,))[0].extras["level"].tolist() == [1, 2, 1, 2]


@pytest.mark.parametrize("thresholds", [(), (0.0, 0.5), (0.5, 0.5), (0.5, math.nan), "0.5", (True,), None])
def test_reward_levels_bad_thresholds(thresholds):
    r = Rollout(group=torch.zeros(1, dtype=torch.long), mask=torch.ones(1, 1, dtype=torch.bool),
                reward=torch.zeros(1))  # fmt: skip
    with pytest.raises(ValueError, match="strictly decreasing"):
        reward_levels(r, thresholds=thresholds)


# ---------------------------------------------------------------------------------------------------- TRPA: loop
def trpa_loop(logp, r, *, beta, anisotropy, tr_coef, fallback, num_seqs=None, num_tokens=None):
    """TRPA written out with loops over groups, pairs and tokens (token_mean trust-region KL)."""
    B, T = r.mask.shape
    valid = [[t for t in range(T) if r.mask[i, t]] for i in range(B)]
    level = r.extras["level"].tolist()
    grp = r.group.tolist()
    h = [sum(logp[i, t] - r.ref_logp[i, t] for t in valid[i]) / len(valid[i]) for i in range(B)]
    terms, in_pair = [], [False] * B
    for i in range(B):
        for j in range(B):
            if grp[i] == grp[j] and level[i] < level[j]:
                b = anisotropy * beta if level[i] == 1 else beta
                terms.append(-torch.nn.functional.logsigmoid(b * (h[i] - h[j])))
                in_pair[i] = in_pair[j] = True
    singles = []
    if fallback == "batch" and not terms:
        singles = list(range(B))
    elif fallback == "group":
        singles = [i for i in range(B) if not in_pair[i]]
    for i in singles:
        sign = 1.0 if level[i] == 1 else -1.0
        terms.append(-torch.nn.functional.logsigmoid(sign * h[i]))
    policy = (sum(terms) / max(len(terms), 1)) * B / (num_seqs or B)
    kl = []
    for i in range(B):
        for t in valid[i]:
            x = r.old_logp[i, t] - logp[i, t]
            kl.append(torch.exp(x) - x - 1)
    return policy + tr_coef * sum(kl) / (num_tokens or len(kl))


# ---------------------------------------------------------------------------------------------------- TRPA
def test_trpa_pairs_and_level_one_logits():
    # levels [1, 2, 2, 4]: pairs (1,2), (1,2'), (1,4), (2,4), (2',4) = 5; h = [1, 0, 0, 0]
    logp, r, adv = single_tokens([1.0, 0.0, 0.0, 0.0], levels=[1, 2, 2, 4])
    value, grad, m = value_and_grad(trpa, logp, r, adv)
    assert m["trpa_pairs"] == 5.0 and m["trpa_fallback_frac"] == 0.0
    # level-1 pairs: z = 2.5 · 0.1 · (1 − 0) = 0.25; level-2 pairs: z = 0.1 · 0 = 0
    expected = (3 * softplus(-0.25) + 2 * math.log(2)) / 5  # = 0.622817...
    assert value.item() == pytest.approx(expected, rel=1e-12)
    # d/dh_0 = 3 · (−0.25 σ(−0.25)) / 5; d/dh_1 = 0.25 σ(−0.25)/5 − 0.1 · ½ / 5 (a (2, 4) pair with z = 0)
    sig = 1 / (1 + math.exp(0.25))
    assert grad[0, 0].item() == pytest.approx(-3 * 0.25 * sig / 5, rel=1e-12)
    assert grad[1, 0].item() == pytest.approx((0.25 * sig - 0.05) / 5, rel=1e-12)
    assert grad[3, 0].item() == pytest.approx((0.25 * sig + 2 * 0.05) / 5, rel=1e-12)  # loses 3 pairs
    assert m["h_win"] == pytest.approx(0.6) and m["h_lose"] == pytest.approx(0.0)


def test_trpa_hand_computed_loss_with_trust_region():
    # two tokens per completion; levels [1, 3] in one group; old differs from logp so the trust region is active
    mask = torch.ones(2, 2, dtype=torch.bool)
    logp = torch.tensor([[-0.2, -0.4], [-1.0, -0.6]], dtype=F64)
    old = torch.tensor([[-0.3, -0.4], [-1.0, -0.4]], dtype=F64)
    ref = torch.tensor([[-0.5, -0.5], [-0.5, -0.5]], dtype=F64)
    r = Rollout(group=torch.zeros(2, dtype=torch.long), mask=mask, reward=torch.zeros(2, dtype=F64), old_logp=old,
                ref_logp=ref, extras={"level": torch.tensor([1, 3])})  # fmt: skip
    value, _, m = value_and_grad(trpa, logp, r, torch.zeros(2, 2, dtype=F64), tr_coef=0.5)
    # h = [mean(0.3, 0.1), mean(-0.5, -0.1)] = [0.2, -0.3]; z = 0.25 · 0.5 = 0.125
    pair = softplus(-0.125)
    # k3 with x = old − logp: t = (−0.1, 0, 0, 0.2): e^x − x − 1
    k3 = [math.exp(-0.1) + 0.1 - 1, 0.0, 0.0, math.exp(0.2) - 0.2 - 1]
    assert value.item() == pytest.approx(pair + 0.5 * sum(k3) / 4, rel=1e-12)
    assert m["tr_kl"] == pytest.approx(sum(k3) / 4, rel=1e-12)
    # ref KL (logged only): k3 with x = ref − logp
    xs = [-0.3, -0.1, 0.5, 0.1]
    assert m["ref_kl"] == pytest.approx(sum(math.exp(x) - x - 1 for x in xs) / 4, rel=1e-12)


def test_trpa_fallback_signs_when_no_pair_exists():
    # all completions of each group share a level: no pair anywhere; h = [0.4, -0.2, 0.1]
    logp, r, adv = single_tokens([0.4, -0.2, 0.1], levels=[1, 1, 2], group=[0, 0, 1])
    value, grad, m = value_and_grad(trpa, logp, r, adv)
    # −log σ(+h) for level 1, −log σ(−h) otherwise, no β: mean over completions
    expected = (softplus(-0.4) + softplus(0.2) + softplus(0.1)) / 3
    assert value.item() == pytest.approx(expected, rel=1e-12)
    assert m["trpa_pairs"] == 0.0 and m["trpa_fallback_frac"] == 1.0
    assert grad[0, 0] < 0 and grad[1, 0] < 0 and grad[2, 0] > 0  # level 1 pushed up, level 2 pushed down
    none, _, _ = value_and_grad(trpa, logp, r, adv, fallback="none")
    assert none.item() == 0.0


def test_trpa_fallback_modes_with_one_single_level_group():
    # group 0 has levels (1, 2): one pair; group 1 has only level 2: no pair
    logp, r, adv = single_tokens([0.5, 0.0, 0.3], levels=[1, 2, 2], group=[0, 0, 1])
    batch, _, mb = value_and_grad(trpa, logp, r, adv)  # the code: a pair exists, so no fallback
    assert batch.item() == pytest.approx(softplus(-0.25 * 0.5), rel=1e-12) and mb["trpa_fallback_frac"] == 0.0
    group, _, mg = value_and_grad(trpa, logp, r, adv, fallback="group")
    assert group.item() == pytest.approx((softplus(-0.125) + softplus(0.3)) / 2, rel=1e-12)
    assert mg["trpa_fallback_frac"] == 0.5


@pytest.mark.parametrize("fallback", ["batch", "group", "none"])
def test_trpa_loop_equals_vectorised(fallback):
    group = [0, 1, 0, 2, 1, 0, 3, 1, 2]  # unequal, non-contiguous, a singleton
    logp, r, adv = random_batch(11, group)
    kw = dict(beta=0.2, anisotropy=3.0, tr_coef=0.05, fallback=fallback)
    value, grad, _ = value_and_grad(trpa, logp, r, adv, **kw, num_seqs=12, num_tokens=30)
    lp = torch.where(r.mask, logp, torch.zeros_like(logp)).requires_grad_(True)
    expected = trpa_loop(lp, r, **kw, num_seqs=12, num_tokens=30)
    expected.backward()
    assert value.item() == pytest.approx(expected.item(), rel=1e-12)
    torch.testing.assert_close(grad, lp.grad, rtol=1e-12, atol=1e-14)
    assert (grad[~r.mask] == 0).all()
    # a batch whose groups are all single-level exercises the batch fallback in the loop too
    flat = r.replace(extras={"level": torch.full((len(group),), 2)})
    value, grad, _ = value_and_grad(trpa, logp, flat, adv, **kw)
    lp = torch.where(r.mask, logp, torch.zeros_like(logp)).requires_grad_(True)
    expected = trpa_loop(lp, flat, **kw)
    expected.backward()
    assert value.item() == pytest.approx(expected.item(), rel=1e-12)
    torch.testing.assert_close(grad, lp.grad, rtol=1e-12, atol=1e-14)


def test_trpa_padding_nan_is_ignored():
    logp, r, adv = random_batch(12, [0, 0, 1, 1, 1])
    nan = torch.full_like(logp, math.nan)
    clean = value_and_grad(trpa, torch.where(r.mask, logp, 0 * logp), r, adv)
    dirty_r = r.replace(old_logp=torch.where(r.mask, r.old_logp, nan), ref_logp=torch.where(r.mask, r.ref_logp, nan))
    dirty = value_and_grad(trpa, torch.where(r.mask, logp, nan), dirty_r, adv)
    assert clean[0].item() == dirty[0].item() and torch.equal(clean[1], dirty[1]) and clean[2] == dirty[2]


def test_trpa_bad_inputs():
    logp, r, adv = random_batch(0, [0, 0, 0])
    with pytest.raises(ValueError, match=r"extras\['level'\].*reward_levels"):
        trpa(logp, r.replace(extras={}), adv)
    with pytest.raises(ValueError, match="level"):
        trpa(logp, r.replace(extras={"level": torch.tensor([1.0, 2.0, 3.0])}), adv)
    with pytest.raises(ValueError, match=">= 1"):
        trpa(logp, r.replace(extras={"level": torch.tensor([0, 1, 2])}), adv)
    with pytest.raises(ValueError, match="ref_logp"):
        trpa(logp, r.replace(ref_logp=None), adv)
    with pytest.raises(ValueError, match=r"needs rollout\.old_logp"):
        trpa(logp, r.replace(old_logp=None), adv)
    for kw, match in (({"beta": 0.0}, "beta"), ({"anisotropy": -1.0}, "anisotropy"), ({"tr_coef": -0.1}, "tr_coef"),
                      ({"fallback": "prompt"}, "fallback")):  # fmt: skip
        with pytest.raises(ValueError, match=match):
            trpa(logp, r, adv, **kw)
    with pytest.raises(UnknownNameError, match="token_mean"):
        trpa(logp, r, adv, aggregation="mean")


# ---------------------------------------------------------------------------------------------------- P3O: loop
def p3o_loop(logp, r, *, epsilon, clip, num_seqs=None):
    """P3O written out: per group all pairs i < j, A = (r_i − r_j)/2, sequence ratios, per-group pair mean."""
    B, T = r.mask.shape
    s = [sum(logp[i, t] - r.old_logp[i, t] for t in range(T) if r.mask[i, t]) for i in range(B)]
    rew = r.reward.tolist()

    def ppo(ratio, a):
        return -torch.minimum(a * ratio, a * torch.clamp(ratio, 1 - epsilon, 1 + epsilon))

    total = 0.0
    for g in sorted(set(r.group.tolist())):
        members = [i for i in range(B) if r.group[i].item() == g]
        pairs = [(i, j) for k, i in enumerate(members) for j in members[k + 1 :]]
        if not pairs:
            continue
        acc = 0.0
        for i, j in pairs:
            a = (rew[i] - rew[j]) / 2
            if clip == "separate":
                acc = acc + ppo(torch.exp(s[i]), a) + ppo(torch.exp(s[j]), -a)
            else:
                w, lo = (i, j) if a >= 0 else (j, i)
                acc = acc + ppo(torch.exp(s[w] - s[lo]), abs(a))
        total = total + len(members) * acc / len(pairs)
    return total / (num_seqs or B)


# ---------------------------------------------------------------------------------------------------- P3O
def test_p3o_hand_example_clipped_values():
    # rewards (1, 0): A = 0.5; sequence log-ratios s = (0.3, −0.1)
    logp, r, adv = single_tokens([0.3, -0.1], rewards=[1.0, 0.0], old=[0.0, 0.0])
    value, grad, m = value_and_grad(p3o, logp, r, adv)  # joint (V2), ε = 0.2
    # R_w/R_l = e^0.4 = 1.4918 > 1.2: clipped, −0.5 · 1.2 = −0.6, no gradient
    assert value.item() == pytest.approx(-0.6, rel=1e-12)
    assert torch.equal(grad, torch.zeros(2, 1, dtype=F64)) and m["clip_frac"] == 1.0
    value, grad, m = value_and_grad(p3o, logp, r, adv, clip="separate")  # V1
    # y1: A = 0.5, R = e^0.3 = 1.3499 > 1.2: −0.5 · 1.2 = −0.6 (clipped); y2: A = −0.5, R = e^−0.1 = 0.9048
    # inside [0.8, 1.2]: +0.5 · 0.9048 = 0.4524
    assert value.item() == pytest.approx(-0.6 + 0.5 * math.exp(-0.1), rel=1e-12)
    torch.testing.assert_close(grad, torch.tensor([[0.0], [0.5 * math.exp(-0.1)]], dtype=F64))
    assert m["clip_frac"] == 0.5 and m["pair_adv_abs_mean"] == 0.5


def test_p3o_on_policy_gradient_is_the_pairwise_policy_gradient():
    # θ = θ_old: both versions give −(r1 − r2)/2 · ∇(log π(y1) − log π(y2)) (Theorem 1), per prompt
    logp, r, adv = random_batch(13, [0, 1, 0, 1, 2, 2])
    r = r.replace(old_logp=logp.clone())
    rew = r.reward
    expected = torch.zeros(6, dtype=F64)
    for i, j in ((0, 2), (1, 3), (4, 5)):
        a = (rew[i] - rew[j]) / 2
        expected[i], expected[j] = -a * 2 / 6, a * 2 / 6  # group weight n_g / N_seq = 2 / 6
    for clip in ("joint", "separate"):
        _, grad, _ = value_and_grad(p3o, logp, r, adv, clip=clip)
        torch.testing.assert_close(grad, torch.where(r.mask, expected[:, None].expand_as(grad), 0 * grad))


@pytest.mark.parametrize("clip", ["joint", "separate"])
def test_p3o_invariant_to_a_reward_shift(clip):
    logp, r, adv = random_batch(14, [0, 1, 2, 0, 1, 2], spread=0.2)
    base = value_and_grad(p3o, logp, r, adv, clip=clip)
    shift = torch.tensor([3.0, -7.0, 0.25], dtype=F64)[r.group]  # δ(x): one constant per prompt
    moved = value_and_grad(p3o, logp, r.replace(reward=r.reward + shift), adv, clip=clip)
    assert moved[0].item() == pytest.approx(base[0].item(), rel=1e-12)
    torch.testing.assert_close(moved[1], base[1], rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("clip", ["joint", "separate"])
def test_p3o_swapping_the_two_responses_leaves_the_loss_unchanged(clip):
    logp, r, adv = random_batch(15, [0, 0, 1, 1, 2, 2], spread=0.4)  # spread large enough to clip some terms
    value, grad, m = value_and_grad(p3o, logp, r, adv, clip=clip)
    swap = torch.tensor([1, 0, 3, 2, 5, 4])
    keep = torch.ones(6, dtype=torch.bool)
    swapped_r = r.select(keep).replace(
        mask=r.mask[swap], reward=r.reward[swap], old_logp=r.old_logp[swap], ref_logp=r.ref_logp[swap]
    )
    v2, g2, m2 = value_and_grad(p3o, logp[swap], swapped_r, adv, clip=clip)
    assert v2.item() == pytest.approx(value.item(), rel=1e-12)
    torch.testing.assert_close(g2, grad[swap], rtol=1e-12, atol=1e-15)
    assert m["clip_frac"] == m2["clip_frac"]


@pytest.mark.parametrize("clip", ["joint", "separate"])
def test_p3o_loop_equals_vectorised_with_groups_of_any_size(clip):
    group = [0, 1, 0, 2, 1, 0, 3, 1, 0]  # sizes 4, 3, 1, 1: all pairs within each group
    logp, r, adv = random_batch(16, group, spread=0.15)
    value, grad, m = value_and_grad(p3o, logp, r, adv, clip=clip, epsilon=0.1, num_seqs=10)
    lp = torch.where(r.mask, logp, torch.zeros_like(logp)).requires_grad_(True)
    expected = p3o_loop(lp, r, epsilon=0.1, clip=clip, num_seqs=10)
    expected.backward()
    assert value.item() == pytest.approx(expected.item(), rel=1e-12)
    torch.testing.assert_close(grad, lp.grad, rtol=1e-12, atol=1e-14)
    assert (grad[~r.mask] == 0).all() and m["p3o_pairs"] == 6 + 3


def test_p3o_single_completions_and_ties_contribute_nothing():
    logp, r, adv = single_tokens([0.3, -0.2, 0.1], rewards=[1.0, 0.5, 0.5], old=[0.0, 0.0, 0.0], group=[0, 1, 1])
    value, grad, _ = value_and_grad(p3o, logp, r, adv)
    assert value.item() == 0.0 and torch.equal(grad, torch.zeros(3, 1, dtype=F64))


def test_p3o_huge_log_ratio_stays_finite():
    logp, r, adv = single_tokens([500.0, -500.0], rewards=[1.0, 0.0], old=[0.0, 0.0])
    for clip in ("joint", "separate"):
        value, grad, _ = value_and_grad(p3o, logp, r, adv, clip=clip)
        assert math.isfinite(value.item()) and torch.isfinite(grad).all()


def test_p3o_bad_inputs():
    logp, r, adv = random_batch(0, [0, 0])
    for kw, match in (({"epsilon": 0.0}, "epsilon"), ({"epsilon": 1.0}, "epsilon"), ({"clip": "both"}, "clip")):
        with pytest.raises(ValueError, match=match):
            p3o(logp, r, adv, **kw)
    with pytest.raises(ValueError, match=r"needs rollout\.old_logp"):
        p3o(logp, r.replace(old_logp=None), adv)
    with pytest.raises(UnknownNameError):
        p3o(logp, r, adv, aggregation="mean")
