"""Tests for grpolab.core.discriminative (DisCO, Reg-GRPO): hand-computed values, paper invariants,
loop-vs-vectorised equivalence, micro-batch sums, bad input."""

from __future__ import annotations

import math

import pytest
import torch

from grpolab.core.losses import POLICY_LOSSES
from grpolab.core.registry import UnknownNameError
from grpolab.core.types import Rollout

F64 = torch.float64
disco = POLICY_LOSSES["disco"]
reg_grpo = POLICY_LOSSES["reg_grpo"]


# ---------------------------------------------------------------------------------------------------- helpers
def single_tokens(scores, rewards, group=None, old=None):
    """A batch of one-token completions: logp = the scores (so log-L scores are the logp values)."""
    B = len(scores)
    logp = torch.tensor(scores, dtype=F64)[:, None].clone().requires_grad_(True)  # [B, 1]
    r = Rollout(
        group=torch.tensor(group if group is not None else [0] * B),
        mask=torch.ones(B, 1, dtype=torch.bool),
        reward=torch.tensor(rewards, dtype=F64),
        old_logp=(logp.detach().clone() if old is None else torch.tensor(old, dtype=F64)[:, None]),
    )
    return logp, r


def random_batch(seed: int, group: list[int], rewards: list[float] | None = None, T: int = 6, spread: float = 0.3):
    """Unequal lengths, non-contiguous groups, garbage at padding; float64."""
    g = torch.Generator().manual_seed(seed)
    B = len(group)
    lengths = torch.randint(1, T + 1, (B,), generator=g)
    mask = torch.arange(T)[None, :] < lengths[:, None]  # [B, T]
    old = -torch.rand(B, T, generator=g, dtype=F64) * 2  # [B, T]
    logp = old + spread * torch.randn(B, T, generator=g, dtype=F64)  # [B, T]
    garbage = (torch.rand(B, T, generator=g, dtype=F64) - 0.5) * 1e4  # [B, T]
    logp = torch.where(mask, logp, garbage)
    old = torch.where(mask, old, -garbage)
    if rewards is None:
        rewards = torch.randint(0, 2, (B,), generator=g).to(F64).tolist()
    adv = torch.randn(B, 1, generator=g, dtype=F64).expand(B, T).clone()  # [B, T]: per-sequence
    adv = torch.where(mask, adv, garbage)
    r = Rollout(group=torch.tensor(group), mask=mask, reward=torch.tensor(rewards, dtype=F64), old_logp=old)
    return logp, r, adv


def value_and_grad(fn, logp, *args, **kw):
    lp = logp.detach().clone().requires_grad_(True)
    value, metrics = fn(lp, *args, **kw)
    value.backward()
    return value.detach(), lp.grad, metrics


# ---------------------------------------------------------------------------------------------------- DisCO: loop
def disco_loop(logp, r, *, variant, score, tau, delta, beta, threshold, kl_estimator, num_seqs=None, num_tokens=None):
    """The DisCO objective written out with Python loops over groups, completions and tokens."""
    B, T = r.mask.shape
    valid = [[t for t in range(T) if r.mask[i, t]] for i in range(B)]
    old = r.old_logp
    s = []
    for i in range(B):
        if score == "log_l":
            s.append(sum(logp[i, t] for t in valid[i]) / len(valid[i]))
        else:
            s.append(sum(torch.exp(logp[i, t] - old[i, t]) for t in valid[i]) / len(valid[i]))
    total = 0.0
    for g in sorted(set(r.group.tolist())):
        members = [i for i in range(B) if r.group[i].item() == g]
        pos = [s[i] for i in members if r.reward[i].item() > threshold]
        neg = [s[i] for i in members if r.reward[i].item() <= threshold]
        if not pos or not neg:
            continue  # skipped, but still counted in the denominator
        pos_mean = sum(pos) / len(pos)
        if variant == "b":
            neg_term = sum(neg) / len(neg)
        else:
            neg_term = tau * torch.log(sum(torch.exp(x / tau) for x in neg) / len(neg))
        total = total + len(members) * (pos_mean - neg_term)
    policy = -total / (num_seqs or B)
    kls = []
    for i in range(B):
        for t in valid[i]:
            x = logp[i, t] - old[i, t]
            kls.append(-x if kl_estimator == "k1" else torch.exp(x) - x - 1)
    kl_local = sum(kls) / len(kls)
    kl_part = sum(kls) / (num_tokens or len(kls))
    coef = beta * max(kl_local.item() - delta, 0.0)
    return policy + coef * kl_part


# ---------------------------------------------------------------------------------------------------- DisCO
def test_disco_hand_example_b_and_dro():
    # one group: s = [-1, -2, -0.5], rewards [1, 0, 0]; on-policy (KL = 0)
    logp, r = single_tokens([-1.0, -2.0, -0.5], [1.0, 0.0, 0.0])
    value, grad, m = value_and_grad(disco, logp, r, torch.zeros(3, 1, dtype=F64))
    # DisCO-b: J = -1 - (-2 - 0.5)/2 = 0.25; loss = -(3/3) J
    assert value.item() == pytest.approx(-0.25, abs=1e-15)
    # d loss / d s+ = -1, d loss / d s- = +1/2 each
    torch.testing.assert_close(grad, torch.tensor([[-1.0], [0.5], [0.5]], dtype=F64))
    assert m["score_pos"] == pytest.approx(-1.0) and m["score_neg"] == pytest.approx(-1.25)
    assert m["disco_valid_frac"] == 1.0 and m["kl_penalty"] == 0.0

    value, grad, _ = value_and_grad(disco, logp, r, torch.zeros(3, 1, dtype=F64), variant="dro", tau=1.0)
    # τ log mean exp(s-/τ) = log((e^-2 + e^-0.5)/2) = log(0.370932971) = -0.991734...; J = -1 + 0.991734
    lme = math.log((math.exp(-2.0) + math.exp(-0.5)) / 2)
    assert value.item() == pytest.approx(-(-1.0 - lme), rel=1e-12)
    # gradient on the negatives is the softmax weight of each: e^s_j / Σ e^s
    w = [math.exp(-2.0) / (math.exp(-2.0) + math.exp(-0.5)), math.exp(-0.5) / (math.exp(-2.0) + math.exp(-0.5))]
    torch.testing.assert_close(grad, torch.tensor([[-1.0], [w[0]], [w[1]]], dtype=F64))


def test_disco_dro_tends_to_disco_b_as_tau_grows():
    # 1 positive, 3 negatives (the spec's check)
    logp, r = single_tokens([-0.7, -1.9, -0.4, -1.1], [1.0, 0.0, 0.0, 0.0])
    adv = torch.zeros(4, 1, dtype=F64)
    vb, gb, _ = value_and_grad(disco, logp, r, adv, variant="b")
    for tau, tol in ((1e3, 1e-3), (1e6, 1e-6)):
        vd, gd, _ = value_and_grad(disco, logp, r, adv, variant="dro", tau=tau)
        assert vd.item() == pytest.approx(vb.item(), abs=tol)
        torch.testing.assert_close(gd, gb, atol=tol, rtol=0)
    # at small τ the DRO form is the max over negatives (a hard negative)
    vd, _, _ = value_and_grad(disco, logp, r, adv, variant="dro", tau=1e-3)
    assert vd.item() == pytest.approx(-(-0.7 - (-0.4)), abs=2e-3)


def test_disco_penalty_gradient_is_zero_inside_the_budget():
    logp, r, adv = random_batch(1, [0, 1, 0, 1, 2, 2], [1, 0, 0, 1, 1, 0], spread=1e-3)
    old = r.old_logp
    # move every valid logp by a tiny amount: k1 KL = 2e-5 < δ = 1e-4
    logp = torch.where(r.mask, old - 2e-5, logp)
    with_penalty = value_and_grad(disco, logp, r, adv, beta=1e3, delta=1e-4)
    without = value_and_grad(disco, logp, r, adv, beta=0.0)
    assert with_penalty[2]["kl_old"] == pytest.approx(2e-5, rel=1e-6)
    assert with_penalty[2]["kl_coef"] == 0.0 and with_penalty[2]["kl_penalty"] == 0.0
    assert with_penalty[0].item() == without[0].item()
    assert torch.equal(with_penalty[1], without[1])


def test_disco_penalty_outside_the_budget_has_the_squared_hinge_gradient():
    # two completions of 2 tokens, one group (1 positive, 1 negative); old - logp = 0.1 at every token
    mask = torch.ones(2, 2, dtype=torch.bool)
    old = torch.tensor([[-1.0, -0.5], [-2.0, -0.3]], dtype=F64)
    logp = old - 0.1
    r = Rollout(group=torch.zeros(2, dtype=torch.long), mask=mask, reward=torch.tensor([1.0, 0.0], dtype=F64),
                old_logp=old)  # fmt: skip
    adv = torch.zeros(2, 2, dtype=F64)
    v1, g1, m = value_and_grad(disco, logp, r, adv, beta=10.0, delta=0.01)
    v0, g0, _ = value_and_grad(disco, logp, r, adv, beta=0.0, delta=0.01)
    # KL = 0.1; coefficient β(KL - δ) = 10 * 0.09 = 0.9; value of the code's penalty: 0.9 * 0.1 = 0.09
    assert m["kl_coef"] == pytest.approx(0.9, rel=1e-12)
    assert (v1 - v0).item() == pytest.approx(0.09, rel=1e-12)
    assert m["kl_hinge"] == pytest.approx(0.5 * 10 * 0.09**2, rel=1e-12)
    # gradient: coef * d KL / d logp = 0.9 * (-1/4) at every token = d/dlogp of (β/2)[KL - δ]_+²
    torch.testing.assert_close(g1 - g0, torch.full((2, 2), -0.9 / 4, dtype=F64))
    lp = logp.clone().requires_grad_(True)
    kl = (old - lp).mean()
    (0.5 * 10 * torch.clamp(kl - 0.01, min=0) ** 2).backward()
    torch.testing.assert_close(g1 - g0, lp.grad)


@pytest.mark.parametrize("variant", ["b", "dro"])
@pytest.mark.parametrize("score", ["log_l", "l_ratio"])
@pytest.mark.parametrize("kl_estimator", ["k1", "k3"])
def test_disco_loop_equals_vectorised(variant, score, kl_estimator):
    # groups: 0 mixed, 1 mixed, 2 all positive (skipped), 3 single completion (skipped), 4 all negative (skipped)
    group = [0, 1, 0, 2, 1, 3, 0, 2, 4, 1, 4]
    rewards = [1, 0, 0, 1, 1, 1, 1, 1, 0, 0, 0]
    logp, r, adv = random_batch(3, group, rewards)
    kw = dict(variant=variant, score=score, tau=0.7, delta=1e-4, beta=5.0, threshold=0.5, kl_estimator=kl_estimator)
    value, grad, m = value_and_grad(disco, logp, r, adv, **kw)
    lp = torch.where(r.mask, logp, torch.zeros_like(logp)).requires_grad_(True)
    expected = disco_loop(lp, r, **kw)
    expected.backward()
    assert value.item() == pytest.approx(expected.item(), rel=1e-12)
    torch.testing.assert_close(grad, lp.grad, rtol=1e-12, atol=1e-14)
    assert (grad[~r.mask] == 0).all()
    assert m["disco_valid_frac"] == pytest.approx(2 / 5)


def test_disco_threshold_for_plus_minus_one_rewards():
    logp, r, adv = random_batch(4, [0, 0, 1, 1, 0], [1, 0, 0, 1, 1])
    binary = value_and_grad(disco, logp, r, adv)
    pm = r.replace(reward=2 * r.reward - 1)  # ±1 rewards
    signed = value_and_grad(disco, logp, pm, adv, threshold=0.0)
    assert binary[0].item() == signed[0].item()
    assert torch.equal(binary[1], signed[1])


def test_disco_micro_batches_sum_when_groups_are_whole_and_the_hinge_inactive():
    group = [0, 1, 2, 0, 1, 2, 0]
    logp, r, adv = random_batch(5, group, [1, 0, 1, 0, 1, 0, 0], spread=0.5)
    counts = dict(num_tokens=int(r.mask.sum()), num_seqs=r.batch_size)
    kw = dict(variant="dro", tau=2.0, delta=10.0)  # a budget the KL never reaches
    full, full_grad, _ = value_and_grad(disco, logp, r, adv, **kw)
    lp = logp.detach().clone().requires_grad_(True)
    total = 0.0
    for members in ([0, 3, 6], [1, 4], [2, 5]):  # whole groups per micro-batch
        keep = torch.zeros(7, dtype=torch.bool)
        keep[members] = True
        part, _ = disco(lp[keep], r.select(keep), adv[keep], **kw, **counts)
        total = total + part
    total.backward()
    assert total.item() == pytest.approx(full.item(), rel=1e-12)
    torch.testing.assert_close(lp.grad, full_grad, rtol=1e-12, atol=1e-15)


def test_disco_padding_garbage_and_nan_are_ignored():
    logp, r, adv = random_batch(6, [0, 0, 1, 1], [1, 0, 0, 1])
    results = []
    for fill in (0.0, math.nan):
        lp = torch.where(r.mask, logp, torch.full_like(logp, fill))
        old = torch.where(r.mask, r.old_logp, torch.full_like(logp, fill))
        results.append(value_and_grad(disco, lp, r.replace(old_logp=old), adv, variant="dro", score="l_ratio"))
    (v0, g0, m0), (v1, g1, m1) = results
    assert v0.item() == v1.item() and torch.equal(g0, g1) and m0 == m1
    assert (g0[~r.mask] == 0).all() and math.isfinite(v0.item())


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"variant": "c"}, "variant"),
        ({"score": "loglik"}, "score"),
        ({"tau": 0.0}, "tau"),
        ({"delta": -1.0}, "delta"),
        ({"beta": math.nan}, "beta"),
        ({"threshold": math.inf}, "threshold"),
        ({"kl_estimator": "k2"}, "kl_estimator"),
        ({"num_seqs": 0}, "num_seqs"),
    ],
)
def test_disco_bad_hyper_parameters(kw, match):
    logp, r, adv = random_batch(0, [0, 0], [1, 0])
    with pytest.raises(ValueError, match=match):
        disco(logp, r, adv, **kw)


def test_disco_bad_inputs():
    logp, r, adv = random_batch(0, [0, 0], [1, 0])
    with pytest.raises(ValueError, match=r"needs rollout\.old_logp"):
        disco(logp, r.replace(old_logp=None), adv)
    with pytest.raises(UnknownNameError, match="token_mean"):
        disco(logp, r, adv, aggregation="mean")
    with pytest.raises(ValueError, match="expand_as"):
        disco(logp, r, adv[:, 0])


# ---------------------------------------------------------------------------------------------------- Reg-GRPO
def reg_loop(logp, r, adv, *, eps=1e-6, ddof=1, num_seqs=None):
    """Reg-GRPO written out with loops: ρ_i = Σ_t log ratio, group z-score with std + ε, squared error."""
    B, T = r.mask.shape
    valid = [[t for t in range(T) if r.mask[i, t]] for i in range(B)]
    rho = [sum(logp[i, t] - r.old_logp[i, t] for t in valid[i]) for i in range(B)]
    target = [sum(adv[i, t].item() for t in valid[i]) / len(valid[i]) for i in range(B)]
    total = 0.0
    for g in sorted(set(r.group.tolist())):
        members = [i for i in range(B) if r.group[i].item() == g]
        mean = sum(rho[i] for i in members) / len(members)
        if len(members) <= max(ddof, 1):
            std = 0.0  # a single completion: ρ − mean = 0 and std = 0
        else:
            std = torch.sqrt(sum((rho[i] - mean) ** 2 for i in members) / (len(members) - ddof))
        for i in members:
            total = total + (target[i] - (rho[i] - mean) / (std + eps)) ** 2
    return total / (num_seqs or B)


def test_reg_grpo_hand_example():
    # one group of 3 single-token completions, ρ = logp - old = [0.3, 0.0, -0.3]; targets Â = [1, 0, -1]
    logp, r = single_tokens([0.3, 0.0, -0.3], [1.0, 0.5, 0.0], old=[0.0, 0.0, 0.0])
    adv = torch.tensor([[1.0], [0.0], [-1.0]], dtype=F64)
    value, grad, m = value_and_grad(reg_grpo, logp, r, adv, eps=0.0 + 1e-12)
    # mean ρ = 0, std (ddof 1) = sqrt((0.09 + 0 + 0.09)/2) = 0.3: Â_θ = [1, 0, -1] = Â: loss 0, gradient 0
    assert value.item() == pytest.approx(0.0, abs=1e-18)
    torch.testing.assert_close(grad, torch.zeros(3, 1, dtype=F64), atol=1e-9, rtol=0)
    # targets [1, 0, -1] but ρ = [0.3, 0.3, -0.3]: mean 0.1, std sqrt((0.04+0.04+0.16)/2) = sqrt(0.12)
    logp, r = single_tokens([0.3, 0.3, -0.3], [1.0, 0.5, 0.0], old=[0.0, 0.0, 0.0])
    value, _, m = value_and_grad(reg_grpo, logp, r, adv, eps=1e-12)
    pred = [0.2 / math.sqrt(0.12), 0.2 / math.sqrt(0.12), -0.4 / math.sqrt(0.12)]  # [0.577, 0.577, -1.155]
    expected = ((1 - pred[0]) ** 2 + (0 - pred[1]) ** 2 + (-1 - pred[2]) ** 2) / 3
    assert value.item() == pytest.approx(expected, rel=1e-9)
    assert m["rho_std_mean"] == pytest.approx(math.sqrt(0.12))


def test_reg_grpo_invariant_to_a_constant_added_to_every_rho_of_a_group():
    group = [0, 1, 0, 1, 0, 2, 1]
    logp, r, adv = random_batch(7, group)
    base = value_and_grad(reg_grpo, logp, r, adv)
    shift = torch.tensor([0.7, -1.3, 5.0], dtype=F64)[r.group]  # [B]: one constant per group
    first = r.mask & (r.mask.cumsum(dim=1) == 1)  # [B, T]: the first valid token of each row
    shifted = logp + torch.where(first, shift[:, None].expand_as(logp), torch.zeros_like(logp))
    moved = value_and_grad(reg_grpo, shifted, r, adv)
    assert moved[0].item() == pytest.approx(base[0].item(), rel=1e-10)
    torch.testing.assert_close(moved[1], base[1], rtol=1e-8, atol=1e-10)


def test_reg_grpo_gradient_pushes_rho_ranking_toward_the_reward_ranking():
    # Σ Â_θ² = Σ Â² = n − 1 (up to ε), so the loss is 2(n − 1)(1 − corr(ρ, Â)): descent raises the correlation
    # between ρ and the reward, and ρ ends up ranked like the rewards.
    rewards = [1.0, 0.75, 0.25, 0.0]
    mean = sum(rewards) / 4
    std = math.sqrt(sum((x - mean) ** 2 for x in rewards) / 3)
    adv = torch.tensor([[(x - mean) / (std + 1e-6)] for x in rewards], dtype=F64)
    logp, r = single_tokens([0.0, 0.2, 0.3, -0.1], rewards, old=[0.0] * 4)  # ρ ranked 2, 1, 0, 3

    def corr(x):
        a, b = x[:, 0] - x[:, 0].mean(), adv[:, 0] - adv[:, 0].mean()
        return (a * b).sum() / (a.norm() * b.norm())

    _, grad, _ = value_and_grad(reg_grpo, logp, r, adv)
    assert corr(logp.detach() - 1e-3 * grad) > corr(logp.detach())
    x = logp.detach().clone()
    for _ in range(300):
        _, g, _ = value_and_grad(reg_grpo, x, r, adv)
        x = x - 0.01 * g
    assert torch.argsort(x[:, 0], descending=True).tolist() == [0, 1, 2, 3]
    assert corr(x) > 0.999


def test_reg_grpo_first_step_all_rho_zero_is_finite():
    # π_θ = π_old: every ρ = 0 and std_g ρ = 0
    group = [0, 0, 0, 1, 1]
    rewards = [1.0, 0.0, 0.0, 1.0, 0.0]
    logp, r, _ = random_batch(8, group, rewards)
    r = r.replace(old_logp=logp.detach().clone())
    adv_seq = torch.tensor([1.1547, -0.5774, -0.5774, 0.7071, -0.7071], dtype=F64)  # zero group means
    adv = adv_seq[:, None].expand_as(logp).clone()
    value, grad, m = value_and_grad(reg_grpo, logp, r, adv, eps=1e-6)
    assert m["rho_std_mean"] == 0.0
    assert value.item() == pytest.approx((adv_seq**2).sum().item() / 5, rel=1e-12)  # Â_θ = 0
    assert torch.isfinite(grad).all()
    # d loss / d ρ_i = -2 (Â_i - mean_g Â) / (ε N), the same at every valid token of row i
    centred = adv_seq - torch.tensor([adv_seq[:3].mean(), adv_seq[3:].mean()], dtype=F64)[r.group]  # Â - mean_g Â
    expected = -2 * centred / (1e-6 * 5)
    torch.testing.assert_close(grad, torch.where(r.mask, expected[:, None].expand_as(grad), torch.zeros_like(grad)))


def test_reg_grpo_loop_equals_vectorised():
    group = [0, 1, 0, 2, 1, 0, 3, 1]  # unequal, non-contiguous, a singleton group
    logp, r, adv = random_batch(9, group, spread=0.6)
    for ddof in (0, 1):
        value, grad, _ = value_and_grad(reg_grpo, logp, r, adv, eps=1e-4, ddof=ddof, num_seqs=11)
        lp = torch.where(r.mask, logp, torch.zeros_like(logp)).requires_grad_(True)
        expected = reg_loop(lp, r, adv, eps=1e-4, ddof=ddof, num_seqs=11)
        expected.backward()
        assert value.item() == pytest.approx(expected.item(), rel=1e-12)
        torch.testing.assert_close(grad, lp.grad, rtol=1e-10, atol=1e-12)
        assert (grad[~r.mask] == 0).all()


def test_reg_grpo_micro_batches_sum_with_whole_groups():
    group = [0, 1, 0, 1, 2, 2]
    logp, r, adv = random_batch(10, group)
    full, full_grad, _ = value_and_grad(reg_grpo, logp, r, adv)
    lp = logp.detach().clone().requires_grad_(True)
    total = 0.0
    for members in ([0, 2, 4, 5], [1, 3]):
        keep = torch.zeros(6, dtype=torch.bool)
        keep[members] = True
        part, _ = reg_grpo(lp[keep], r.select(keep), adv[keep], num_seqs=6, num_tokens=int(r.mask.sum()))
        total = total + part
    total.backward()
    assert total.item() == pytest.approx(full.item(), rel=1e-12)
    torch.testing.assert_close(lp.grad, full_grad, rtol=1e-12, atol=1e-14)


def test_reg_grpo_bad_inputs():
    logp, r, adv = random_batch(0, [0, 0], [1, 0])
    for kw, match in (({"eps": 0.0}, "eps"), ({"ddof": 2}, "ddof"), ({"ddof": True}, "ddof")):
        with pytest.raises(ValueError, match=match):
            reg_grpo(logp, r, adv, **kw)
    with pytest.raises(ValueError, match=r"needs rollout\.old_logp"):
        reg_grpo(logp, r.replace(old_logp=None), adv)
    with pytest.raises(UnknownNameError):
        reg_grpo(logp, r, adv, aggregation="sum")
