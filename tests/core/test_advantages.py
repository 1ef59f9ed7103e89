"""Tests of grpolab.core.advantages: hand-computed values, paper invariants, loop-vs-vectorised, bad input."""

from __future__ import annotations

import math

import pytest
import torch

from grpolab.core.advantages import (
    ADVANTAGES,
    compute_gae,
    discounted_returns,
    dr_grpo,
    gae,
    grpo,
    outcome_token_rewards,
    reinforce_pp,
    remax,
    rloo,
)
from grpolab.core.types import Rollout

NAN = float("nan")
SEQ_LEVEL = ("grpo", "dr_grpo", "rloo", "remax")


def make(group, reward, mask=None, T=3, **kw) -> Rollout:
    group = torch.tensor(group)  # [B]
    reward = torch.as_tensor(reward, dtype=torch.get_default_dtype())  # [B]
    mask = torch.ones(len(group), T, dtype=torch.bool) if mask is None else torch.tensor(mask).bool()  # [B, T]
    return Rollout(group=group, mask=mask, reward=reward, **kw)


def random_rollout(seed: int = 0, T: int = 8, dtype=torch.float64) -> Rollout:
    """Unequal (1, 3, 5, 2), shuffled (non-contiguous) groups; random masks with gaps; NaN at masked positions."""
    gen = torch.Generator().manual_seed(seed)
    sizes = [1, 3, 5, 2]
    ids = torch.cat([torch.full((n,), p) for p, n in enumerate(sizes)])  # [B]
    group = ids[torch.randperm(len(ids), generator=gen)]  # [B]
    B = len(group)
    mask = torch.rand(B, T, generator=gen) < 0.6  # [B, T]
    mask[torch.arange(B), torch.randint(0, T, (B,), generator=gen)] = True  # every row has a valid token
    mask[0, :] = torch.tensor([True, False, False, True] + [False] * (T - 4))  # a sure gap
    reward = torch.randn(B, generator=gen, dtype=dtype)  # [B]
    token_reward = torch.randn(B, T, generator=gen, dtype=dtype).masked_fill(~mask, NAN)  # [B, T]
    value = torch.randn(B, T, generator=gen, dtype=dtype).masked_fill(~mask, NAN)  # [B, T]
    greedy = torch.randn(B, generator=gen, dtype=dtype)  # [B]
    return Rollout(
        group=group,
        mask=mask,
        reward=reward,
        token_reward=token_reward,
        value=value,
        extras={"greedy_reward": greedy},
    )


def call(name: str, r: Rollout) -> torch.Tensor:
    return ADVANTAGES[name](r)


# ============================================================================================ hand-computed
def test_grpo_hand_one_group():
    # mean 0.25; deviations [.75, -.25, -.25, -.25]; sample var = (.5625 + 3*.0625)/3 = .25, std .5
    out = grpo(make([0, 0, 0, 0], [1.0, 0.0, 0.0, 0.0], T=2))
    expected = torch.tensor([1.5, -0.5, -0.5, -0.5])[:, None].expand(4, 2)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)


# two interleaved groups: g0 = items 0, 2, 4, 5 with rewards [1, 0, 0, 0]; g1 = items 1, 3 with rewards [0, 5]
TWO_GROUPS = dict(group=[0, 1, 0, 1, 0, 0], reward=[1.0, 0.0, 0.0, 5.0, 0.0, 0.0], T=1)
# group means: g0 .25, g1 2.5 → deviations [.75, -2.5, -.25, 2.5, -.25, -.25]
TWO_GROUPS_DEV = [0.75, -2.5, -0.25, 2.5, -0.25, -0.25]


def test_grpo_hand_scale_group_two_groups():
    # g0 std .5 (above); g1 std = sqrt(((-2.5)^2 + 2.5^2)/1) = 2.5*sqrt(2) → ±1/sqrt(2)
    out = grpo(make(**TWO_GROUPS))[:, 0]
    s = 1 / math.sqrt(2)
    torch.testing.assert_close(out, torch.tensor([1.5, -s, -0.5, s, -0.5, -0.5]), atol=1e-5, rtol=0)


def test_grpo_hand_scale_batch_two_groups():
    # batch [1, 0, 0, 5, 0, 0]: mean 1, squared deviations 0+1+1+16+1+1 = 20, var 20/5 = 4, std 2
    out = grpo(make(**TWO_GROUPS), scale="batch")[:, 0]
    expected = torch.tensor([0.375, -1.25, -0.125, 1.25, -0.125, -0.125])
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)
    # ddof 0: var 20/6, std sqrt(10/3)
    out0 = grpo(make(**TWO_GROUPS), scale="batch", ddof=0)[:, 0]
    torch.testing.assert_close(out0, torch.tensor(TWO_GROUPS_DEV) / math.sqrt(10 / 3), atol=1e-5, rtol=0)


def test_grpo_hand_scale_none_two_groups():
    out = grpo(make(**TWO_GROUPS), scale="none")[:, 0]
    torch.testing.assert_close(out, torch.tensor(TWO_GROUPS_DEV))


def test_dr_grpo_and_rloo_hand():
    r = make([0, 0, 0, 0], [1.0, 0.0, 0.0, 0.0], T=2)
    # dr_grpo: r - mean = r - .25
    torch.testing.assert_close(dr_grpo(r)[:, 1], torch.tensor([0.75, -0.25, -0.25, -0.25]))
    # rloo: 1 - mean(0,0,0) = 1; 0 - mean(1,0,0) = -1/3
    torch.testing.assert_close(rloo(r)[:, 1], torch.tensor([1.0, -1 / 3, -1 / 3, -1 / 3]))


def test_remax_hand_two_prompts():
    # one sample per prompt; greedy rewards [0.5, 1.0] → A = [1 - .5, .2 - 1] = [.5, -.8]
    r = make([0, 1], [1.0, 0.2], mask=[[1, 1, 0], [1, 0, 0]], extras={"greedy_reward": torch.tensor([0.5, 1.0])})
    torch.testing.assert_close(remax(r), torch.tensor([[0.5, 0.5, 0.0], [-0.8, 0.0, 0.0]]))
    r2 = r.replace(extras={"g": torch.tensor([1.0, 0.0])})
    torch.testing.assert_close(remax(r2, baseline_key="g"), torch.tensor([[0.0, 0.0, 0.0], [0.2, 0.0, 0.0]]))


def _pp_rollout() -> Rollout:
    return make(
        [0, 0],
        [1.0, 0.0],
        mask=[[1, 0, 1, 1], [1, 1, 0, 0]],
        token_reward=torch.tensor([[0.5, NAN, 0.0, 0.5], [0.0, 1.0, NAN, NAN]]),
    )


def test_outcome_token_rewards_hand():
    # reward on the last valid token (3 and 1) plus token_reward (row 1: 0 + 1); 0 at masked positions (NaN ignored)
    r = _pp_rollout()
    torch.testing.assert_close(outcome_token_rewards(r), torch.tensor([[0.5, 0.0, 0.0, 1.5], [0.0, 1.0, 0.0, 0.0]]))
    over = outcome_token_rewards(r, torch.tensor([0.5, -0.5]))
    torch.testing.assert_close(over, torch.tensor([[0.5, 0.0, 0.0, 1.0], [0.0, 0.5, 0.0, 0.0]]))


def test_reinforce_pp_hand_baseline_none_unwhitened():
    # γ = .5. row 0: token rewards [.5, ·, 0, .5 + 1] → G3 = 1.5, G2 = 0 + .5*1.5 = .75, G0 = .5 + .5*.75 = .875
    # (the masked position 1 is skipped: G0 discounts G2 once). row 1: [0, 1 + 0] → G1 = 1, G0 = .5
    out = reinforce_pp(_pp_rollout(), gamma=0.5, whiten=False)
    torch.testing.assert_close(out, torch.tensor([[0.875, 0.0, 0.75, 1.5], [0.5, 1.0, 0.0, 0.0]]))


def test_reinforce_pp_hand_baseline_group_whitened():
    # baseline "group": group mean .5 → r' = [.5, -.5]
    # row 0: [.5, ·, 0, .5 + .5] → G = [.75, 0, .5, 1.0]; row 1: [0, 1 - .5] → G = [.25, .5, 0, 0]
    unwhite = torch.tensor([[0.75, 0.0, 0.5, 1.0], [0.25, 0.5, 0.0, 0.0]])
    torch.testing.assert_close(reinforce_pp(_pp_rollout(), gamma=0.5, baseline="group", whiten=False), unwhite)
    # valid [.75, .5, 1, .25, .5]: mean .6, deviations [.15, -.1, .4, -.35, -.1],
    # squared sum .0225 + .01 + .16 + .1225 + .01 = .325, unbiased var .325/4 = .08125
    dev = torch.tensor([[0.15, 0.0, -0.1, 0.4], [-0.35, -0.1, 0.0, 0.0]])
    expected = dev / math.sqrt(0.08125 + 1e-8)
    torch.testing.assert_close(reinforce_pp(_pp_rollout(), gamma=0.5, baseline="group"), expected)


def _gae_rollout() -> Rollout:
    # row 0: a tool-output gap at position 2 (masked, NaN value) and padding at 4; row 1: padding at 3, 4
    return make(
        [0, 1],
        [1.0, 0.5],
        mask=[[1, 1, 0, 1, 0], [1, 1, 1, 0, 0]],
        token_reward=torch.tensor([[0.0, 0.0, NAN, 0.0, NAN], [0.1, 0.0, 0.0, NAN, NAN]]),
        value=torch.tensor([[0.5, 0.4, NAN, 0.8, NAN], [0.2, 0.0, 0.1, NAN, NAN]]),
    )


# γ = .9, λ = .8, γλ = .72
# row 0, valid t = 0, 1, 3 with r = [0, 0, 1], V = [.5, .4, .8] (the next of t=1 is t=3):
#   δ3 = 1 + 0 - .8 = .2;  δ1 = 0 + .9*.8 - .4 = .32;  δ0 = 0 + .9*.4 - .5 = -.14
#   A3 = .2;  A1 = .32 + .72*.2 = .464;  A0 = -.14 + .72*.464 = .19408
# row 1, r = [.1, 0, 0 + .5], V = [.2, 0, .1]:
#   δ2 = .5 - .1 = .4;  δ1 = 0 + .9*.1 - 0 = .09;  δ0 = .1 + .9*0 - .2 = -.1
#   A2 = .4;  A1 = .09 + .72*.4 = .378;  A0 = -.1 + .72*.378 = .17216
GAE_HAND = torch.tensor([[0.19408, 0.464, 0.0, 0.2, 0.0], [0.17216, 0.378, 0.4, 0.0, 0.0]])
GAE_VALUES = torch.tensor([[0.5, 0.4, 0.0, 0.8, 0.0], [0.2, 0.0, 0.1, 0.0, 0.0]])


def test_gae_hand_with_gap():
    r = _gae_rollout()
    torch.testing.assert_close(gae(r, gamma=0.9, lam=0.8, whiten=False), GAE_HAND)
    adv, ret = compute_gae(outcome_token_rewards(r), r.value, r.mask, gamma=0.9, lam=0.8)
    torch.testing.assert_close(adv, GAE_HAND)
    # returns = A + V at valid positions, 0 elsewhere: row 0 [.69408, .864, 0, 1.0, 0]
    torch.testing.assert_close(ret, GAE_HAND + GAE_VALUES)
    torch.testing.assert_close(ret[0], torch.tensor([0.69408, 0.864, 0.0, 1.0, 0.0]))
    # whitened over the 6 valid hand values (unbiased var, eps 1e-8 inside the root)
    valid = GAE_HAND[r.mask]
    white = (GAE_HAND - valid.mean()) / torch.sqrt(valid.var() + 1e-8) * r.mask
    torch.testing.assert_close(gae(r, gamma=0.9, lam=0.8), white)


def test_discounted_returns_hand():
    # gap at 1 skipped: G3 = 2, G2 = 0 + .5*2 = 1, G0 = 1 + .5*1 = 1.5
    out = discounted_returns(torch.tensor([[1.0, 9.0, 0.0, 2.0]]), torch.tensor([[1, 0, 1, 1]]).bool(), gamma=0.5)
    torch.testing.assert_close(out, torch.tensor([[1.5, 0.0, 1.0, 2.0]]))


# ============================================================================================ invariants
@pytest.mark.parametrize("name", ["grpo", "dr_grpo", "rloo"])
def test_zero_variance_and_singleton_groups_give_zero(name):
    # g0: all 0.7 (zero variance), g1: a single completion, g2: informative
    r = make([0, 1, 0, 2, 0, 2], [0.7, 3.0, 0.7, 1.0, 0.7, 0.0], T=2)
    out = call(name, r)
    assert torch.equal(out[[0, 1, 2, 4]], torch.zeros(4, 2))
    assert bool((out[[3, 5]] != 0).all())
    if name == "grpo":
        for scale in ("batch", "none"):
            assert torch.equal(grpo(r, scale=scale)[[0, 1, 2, 4]], torch.zeros(4, 2))


# the baseline estimators of this file (newer methods test the same invariants in their own files)
BASELINES = ["dr_grpo", "gae", "grpo", "reinforce_pp", "remax", "rloo"]


@pytest.mark.parametrize("name", BASELINES)
def test_masked_positions_are_zero(name):
    r = random_rollout(1)
    out = call(name, r)
    assert out.shape == r.mask.shape and out.dtype == r.reward.dtype
    assert torch.equal(out[~r.mask], torch.zeros(int((~r.mask).sum()), dtype=out.dtype))
    assert bool(torch.isfinite(out).all())


@pytest.mark.parametrize("name", SEQ_LEVEL)
def test_sequence_level_constant_over_valid_tokens(name):
    r = random_rollout(2)
    out = call(name, r)
    first = out.gather(1, r.mask.long().argmax(dim=1, keepdim=True))  # [B, 1]: value at the first valid token
    torch.testing.assert_close(out, torch.where(r.mask, first, torch.zeros_like(out)))


@pytest.mark.parametrize(("name", "kw"), [("grpo", {}), ("grpo", {"scale": "none"}), ("dr_grpo", {}), ("rloo", {})])
def test_per_group_shift_invariance(name, kw):
    r = random_rollout(3)
    shift = torch.tensor([10.0, -3.0, 0.5, 7.0], dtype=r.reward.dtype)[r.group]  # [B]: one constant per group
    torch.testing.assert_close(ADVANTAGES[name](r.replace(reward=r.reward + shift), **kw), ADVANTAGES[name](r, **kw))


def test_grpo_batch_scale_invariant_to_a_global_shift():
    r = random_rollout(3)
    torch.testing.assert_close(grpo(r.replace(reward=r.reward + 4.0), scale="batch"), grpo(r, scale="batch"))


def test_rloo_baseline_excludes_self():
    r = random_rollout(4)
    a = rloo(r).sum(1) / r.lengths  # [B]: the sequence advantage
    for i in range(r.batch_size):
        others = [r.reward[j].item() for j in range(r.batch_size) if j != i and r.group[j] == r.group[i]]
        if others:  # A_i + mean of the others recovers r_i
            assert a[i].item() + sum(others) / len(others) == pytest.approx(r.reward[i].item(), abs=1e-12)
        else:
            assert a[i].item() == 0.0


def test_grpo_scale_none_equals_dr_grpo():
    r = random_rollout(5)
    torch.testing.assert_close(grpo(r, scale="none"), dr_grpo(r))


@pytest.mark.parametrize("fn", [reinforce_pp, gae])
@pytest.mark.parametrize("seed", [0, 6])
def test_whitened_mean_zero_std_one(fn, seed):
    r = random_rollout(seed)
    valid = fn(r)[r.mask]
    assert valid.mean().item() == pytest.approx(0.0, abs=1e-10)
    assert valid.std().item() == pytest.approx(1.0, abs=1e-6)


def _hand_token_rewards(r: Rollout) -> torch.Tensor:
    tok = torch.where(r.mask, r.token_reward, torch.zeros_like(r.token_reward))  # [B, T]
    tok[torch.arange(r.batch_size), r.last_index] += r.reward
    return tok


def test_gae_lambda_one_is_monte_carlo_minus_value():
    r = random_rollout(7)
    tok = _hand_token_rewards(r)  # [B, T]
    future = tok.flip(1).cumsum(1).flip(1)  # [B, T]: Σ_{s ≥ t} r_s (masked are 0, so they add nothing)
    expected = torch.where(r.mask, future - r.value, torch.zeros_like(tok))
    torch.testing.assert_close(gae(r, gamma=1.0, lam=1.0, whiten=False), expected)


def test_gae_lambda_zero_is_td_error():
    r = random_rollout(8)
    tok = _hand_token_rewards(r)
    expected = torch.zeros_like(tok)
    for b in range(r.batch_size):
        idx = r.mask[b].nonzero().flatten().tolist()
        for k, t in enumerate(idx):
            v_next = r.value[b, idx[k + 1]] if k + 1 < len(idx) else 0.0
            expected[b, t] = tok[b, t] + 0.9 * v_next - r.value[b, t]
    torch.testing.assert_close(gae(r, gamma=0.9, lam=0.0, whiten=False), expected)


def test_reinforce_pp_group_baseline_gamma_one_broadcasts_centred_reward():
    # no token_reward, γ = 1: G_t = r_i - mean_g r on every valid token, i.e. dr_grpo
    r = random_rollout(9).replace(token_reward=None)
    torch.testing.assert_close(reinforce_pp(r, baseline="group", whiten=False), dr_grpo(r))


# ============================================================================================ loop references
def _members(r: Rollout, i: int) -> list[float]:
    return [r.reward[j].item() for j in range(r.batch_size) if r.group[j] == r.group[i]]


def _std(xs: list[float], ddof: int) -> float:
    if len(xs) <= ddof:
        return 0.0
    m = sum(xs) / len(xs)
    return math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - ddof))


def _broadcast_loop(r: Rollout, seq: list[float]) -> torch.Tensor:
    out = torch.zeros(r.mask.shape, dtype=r.reward.dtype)
    for b in range(r.batch_size):
        for t in range(r.seq_len):
            if r.mask[b, t]:
                out[b, t] = seq[b]
    return out


def _whiten_loop(x: torch.Tensor, mask: torch.Tensor, ddof: int, eps: float) -> torch.Tensor:
    vals = [x[b, t].item() for b in range(x.shape[0]) for t in range(x.shape[1]) if mask[b, t]]
    m = sum(vals) / len(vals)
    var = sum((v - m) ** 2 for v in vals) / (len(vals) - ddof)
    out = torch.zeros_like(x)
    for b in range(x.shape[0]):
        for t in range(x.shape[1]):
            if mask[b, t]:
                out[b, t] = (x[b, t] - m) / math.sqrt(var + eps)
    return out


def _token_rewards_loop(r: Rollout, outcome: list[float]) -> list[list[tuple[int, float]]]:
    """Per row, the (position, reward) of valid tokens; the outcome goes on the last one."""
    rows = []
    for b in range(r.batch_size):
        idx = [t for t in range(r.seq_len) if r.mask[b, t]]
        rew = [r.token_reward[b, t].item() for t in idx]
        rew[-1] += outcome[b]
        rows.append(list(zip(idx, rew, strict=True)))
    return rows


@pytest.mark.parametrize("scale", ["group", "batch", "none"])
@pytest.mark.parametrize("ddof", [0, 1])
def test_grpo_matches_loop(scale, ddof):
    r = random_rollout(10)
    all_r = r.reward.tolist()
    seq = []
    for i in range(r.batch_size):
        mem = _members(r, i)
        dev = r.reward[i].item() - sum(mem) / len(mem)
        s = {"group": _std(mem, ddof), "batch": _std(all_r, ddof), "none": None}[scale]
        seq.append(dev if s is None else dev / (s + 1e-6))
    torch.testing.assert_close(grpo(r, scale=scale, ddof=ddof), _broadcast_loop(r, seq))


def test_dr_grpo_and_rloo_match_loop():
    r = random_rollout(11)
    dr, lo = [], []
    for i in range(r.batch_size):
        mem = _members(r, i)
        ri = r.reward[i].item()
        dr.append(ri - sum(mem) / len(mem))
        others = list(mem)
        others.remove(ri)
        lo.append(ri - sum(others) / len(others) if others else 0.0)
    torch.testing.assert_close(dr_grpo(r), _broadcast_loop(r, dr))
    torch.testing.assert_close(rloo(r), _broadcast_loop(r, lo))


@pytest.mark.parametrize("baseline", ["none", "group"])
@pytest.mark.parametrize("whiten", [False, True])
def test_reinforce_pp_matches_loop(baseline, whiten):
    r = random_rollout(12)
    gamma = 0.8
    outcome = []
    for i in range(r.batch_size):
        mem = _members(r, i)
        outcome.append(r.reward[i].item() - (sum(mem) / len(mem) if baseline == "group" else 0.0))
    expected = torch.zeros(r.mask.shape, dtype=r.reward.dtype)
    for b, row in enumerate(_token_rewards_loop(r, outcome)):
        for k, (t, _) in enumerate(row):  # G at the k-th valid token: Σ over later valid tokens, γ^(valid steps)
            expected[b, t] = sum(gamma ** (j - k) * row[j][1] for j in range(k, len(row)))
    if whiten:
        expected = _whiten_loop(expected, r.mask, 1, 1e-8)
    torch.testing.assert_close(reinforce_pp(r, gamma=gamma, baseline=baseline, whiten=whiten), expected)


@pytest.mark.parametrize("whiten", [False, True])
def test_gae_matches_loop(whiten):
    r = random_rollout(13)
    gamma, lam = 0.95, 0.7
    expected = torch.zeros(r.mask.shape, dtype=r.reward.dtype)
    for b, row in enumerate(_token_rewards_loop(r, r.reward.tolist())):
        vals = [r.value[b, t].item() for t, _ in row]
        deltas = [rew + gamma * (vals[k + 1] if k + 1 < len(row) else 0.0) - vals[k] for k, (_, rew) in enumerate(row)]
        for k, (t, _) in enumerate(row):
            expected[b, t] = sum((gamma * lam) ** (j - k) * deltas[j] for j in range(k, len(row)))
    if whiten:
        expected = _whiten_loop(expected, r.mask, 1, 1e-8)
    torch.testing.assert_close(gae(r, gamma=gamma, lam=lam, whiten=whiten), expected)


# ============================================================================================ bad input
def test_gae_needs_value():
    with pytest.raises(ValueError, match=r"gae: rollout\.value is None"):
        gae(random_rollout(0).replace(value=None))


def test_remax_missing_or_bad_extra():
    r = make([0, 1], [1.0, 0.0])
    with pytest.raises(ValueError, match=r"extras\['greedy_reward'\] is missing.*\[B\] = \[2\]"):
        remax(r)
    with pytest.raises(ValueError, match=r"extras\['greedy_reward'\] must be a float tensor \[B\] = \[2\]"):
        remax(r.replace(extras={"greedy_reward": torch.zeros(3)}))
    with pytest.raises(ValueError, match=r"extras\['base'\] must be a float tensor \[B\] = \[2\]"):
        remax(r.replace(extras={"base": torch.zeros(2, 1)}), baseline_key="base")
    with pytest.raises(ValueError, match=r"must be a float tensor"):
        remax(r.replace(extras={"greedy_reward": [0.0, 1.0]}))


@pytest.mark.parametrize(
    ("fn", "kw", "match"),
    [
        (grpo, {"scale": "std"}, r"grpo: scale must be one of \['group', 'batch', 'none'\], got 'std'"),
        (grpo, {"eps": 0.0}, r"grpo: eps must be > 0"),
        (grpo, {"ddof": 2}, r"grpo: ddof must be one of \[0, 1\]"),
        (grpo, {"ddof": -1}, r"grpo: ddof must be a non-negative int"),
        (reinforce_pp, {"baseline": "rloo"}, r"reinforce_pp: baseline must be one of \['none', 'group'\]"),
        (reinforce_pp, {"gamma": 1.5}, r"reinforce_pp: gamma must be in \[0, 1\]"),
        (reinforce_pp, {"eps": -1e-8}, r"reinforce_pp: eps must be > 0"),
        (gae, {"lam": -0.1}, r"gae: lam must be in \[0, 1\]"),
        (gae, {"gamma": 2.0}, r"gae: gamma must be in \[0, 1\]"),
    ],
)
def test_bad_hyperparameters(fn, kw, match):
    with pytest.raises(ValueError, match=match):
        fn(random_rollout(0), **kw)


def test_helpers_bad_shapes():
    r = make([0, 0], [1.0, 0.0])
    with pytest.raises(ValueError, match=r"reward must be float \[B\] = \[2\]"):
        outcome_token_rewards(r, torch.zeros(3))
    with pytest.raises(ValueError, match=r"values must be \[B, T\] = \[2, 3\]"):
        compute_gae(torch.zeros(2, 3), torch.zeros(2, 4), r.mask, gamma=1.0, lam=0.95)
    with pytest.raises(ValueError, match=r"mask must be bool"):
        discounted_returns(torch.zeros(2, 3), r.mask.float(), gamma=1.0)


# ============================================================================================ registry
def test_registry_names():
    assert set(BASELINES) <= set(ADVANTAGES)
