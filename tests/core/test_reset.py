"""DR-PO (arXiv 2404.08495): reset choice and roll-in lengths (hand-computed), and the "drpo" preset's objective:
PPO whose policy loss skips the rolled-in tokens, vanilla PPO when no token is rolled in."""

import math

import pytest
import torch

from grpolab.algorithms import PRESETS
from grpolab.algorithms.preset import with_run_arguments
from grpolab.core.advantages import ADVANTAGES, compute_gae, outcome_token_rewards
from grpolab.core.losses import POLICY_LOSSES, value_loss
from grpolab.core.reset import reset_groups, rollin_lengths
from grpolab.core.selection import SELECTORS
from grpolab.core.shaping import SHAPING
from grpolab.core.types import Rollout


# ------------------------------------------------------------------------------------------------- reset_groups
def test_reset_groups_by_hand():
    u = torch.tensor([0.0, 0.3, 0.5, 0.99])
    assert reset_groups(u, reset_prob=0.5).tolist() == [True, True, False, False]
    assert reset_groups(u).tolist() == [True] * 4  # the code's beta = 1.0: always reset
    assert reset_groups(u, reset_prob=0.0).tolist() == [False] * 4  # plain PPO
    assert reset_groups(torch.zeros(0)).tolist() == []


@pytest.mark.parametrize(
    ("u", "prob", "message"),
    [
        (torch.tensor([0.5]), 1.5, "reset_prob"),
        (torch.tensor([0.5]), True, "reset_prob"),
        (torch.tensor([1.0]), 0.5, r"\[0, 1\)"),
        (torch.tensor([1, 0]), 0.5, "float tensor"),
    ],
)
def test_reset_groups_rejects_bad_input(u, prob, message):
    with pytest.raises(ValueError, match=message):
        reset_groups(u, reset_prob=prob)


# ---------------------------------------------------------------------------------------------- rollin_lengths
def test_rollin_lengths_by_hand():
    # L = 5 (4 answer tokens + EOS): h = 1 + floor(4u) on {1, 2, 3, 4}; EOS (position 4) is never forced
    u = torch.tensor([0.0, 0.24, 0.25, 0.5, 0.74, 0.75, 0.999])
    assert rollin_lengths(torch.full((7,), 5), u).tolist() == [1, 1, 2, 3, 3, 4, 4]
    # L = 2: only h = 1; L = 1 (EOS alone) and L = 0: no roll-in (the code's `length < 2` branch)
    assert rollin_lengths(torch.tensor([2, 2, 1, 0]), torch.tensor([0.0, 0.9, 0.5, 0.5])).tolist() == [1, 1, 0, 0]
    # float32 u just below 1 times a long reference stays below L
    top = torch.tensor([1 - 2**-24], dtype=torch.float32)
    assert rollin_lengths(torch.tensor([10**7]), top).item() == 10**7 - 1


def test_rollin_lengths_from_zero_by_hand():
    # min_rollin = 0: h = floor(L·u) on {0, ..., L − 1}; the prompt itself is a reset state, EOS still never forced
    u = torch.tensor([0.0, 0.24, 0.25, 0.74, 0.75, 0.999])
    assert rollin_lengths(torch.full((6,), 4), u, min_rollin=0).tolist() == [0, 0, 1, 2, 3, 3]
    assert rollin_lengths(torch.tensor([1, 0]), torch.tensor([0.9, 0.9]), min_rollin=0).tolist() == [0, 0]
    # min_rollin = 2: uniform on {2, ..., L − 1}; a reference of L <= 2 cannot force 2 and leave one: no roll-in
    u = torch.tensor([0.0, 0.5, 0.99, 0.5, 0.5])
    assert rollin_lengths(torch.tensor([5, 5, 5, 3, 2]), u, min_rollin=2).tolist() == [2, 3, 4, 2, 0]


def test_rollin_lengths_are_exactly_uniform_on_1_to_L_minus_1():
    """On an evenly spaced grid of K·(L − 1) draws every length 1..L−1 appears K times (the code's rng.choice over
    the first L − 1 rows of a lower-triangular mask)."""
    L, K = 6, 7
    u = (torch.arange(K * (L - 1), dtype=torch.float64) + 0.5) / (K * (L - 1))
    h = rollin_lengths(torch.full((K * (L - 1),), L), u)
    assert torch.bincount(h, minlength=L).tolist() == [0] + [K] * (L - 1)


def test_rollin_lengths_loop_equals_vectorised():
    g = torch.Generator().manual_seed(0)
    ref_len = torch.randint(0, 9, (200,), generator=g)
    u = torch.rand(200, generator=g, dtype=torch.float64)
    for low in (0, 1, 3):
        expected = [
            0 if n < low + 1 else low + int(x * (n - low)) for n, x in zip(ref_len.tolist(), u.tolist(), strict=True)
        ]
        assert rollin_lengths(ref_len, u, min_rollin=low).tolist() == expected


@pytest.mark.parametrize(
    ("ref_len", "u", "message"),
    [
        (torch.tensor([3.0]), torch.tensor([0.5]), "integer tensor"),
        (torch.tensor([3, 4]), torch.tensor([0.5]), "must match"),
        (torch.tensor([-1]), torch.tensor([0.5]), ">= 0"),
        (torch.tensor([3]), torch.tensor([-0.1]), r"\[0, 1\)"),
    ],
)
def test_rollin_lengths_rejects_bad_input(ref_len, u, message):
    with pytest.raises(ValueError, match=message):
        rollin_lengths(ref_len, u)
    with pytest.raises(ValueError, match="min_rollin"):
        rollin_lengths(torch.tensor([3]), torch.tensor([0.5]), min_rollin=-1)


# ------------------------------------------------------------------------------- the "drpo" preset's objective
T = 4  # the toy batch's generation limit


def toy_batch(prefix):
    """Two prompts, three completions each, unequal lengths; float64; ``prefix`` = rolled-in tokens per row."""
    g = torch.Generator().manual_seed(11)
    lengths = [4, 2, 3, 4, 1, 3]
    mask = torch.arange(T)[None, :] < torch.tensor(lengths)[:, None]  # [B, T]
    old = -torch.rand(6, T, generator=g, dtype=torch.float64) - 0.1  # [B, T]
    logp = (old + 0.3 * torch.randn(6, T, generator=g, dtype=torch.float64)).requires_grad_()  # [B, T]
    rollout = Rollout(
        group=torch.tensor([0, 0, 0, 1, 1, 1]),
        mask=mask,
        reward=torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0, 0.0], dtype=torch.float64),
        old_logp=old,
        ref_logp=old - 0.2 * torch.rand(6, T, generator=g, dtype=torch.float64),
        value=torch.randn(6, T, generator=g, dtype=torch.float64),
        truncated=torch.tensor([True, False, False, True, False, False]),
        extras={"prefix_len": torch.tensor(prefix), "off_policy": torch.zeros(6, dtype=torch.bool)},
    )
    values = (rollout.value + 0.1 * torch.randn(6, T, generator=g, dtype=torch.float64)).requires_grad_()
    return rollout, logp, values, lengths


def compose(preset, rollout, logp, values):
    """The trainer's pipeline (Trainer.rollout_batch / _micro_loss) driven by the preset's data: shaping,
    advantage, selectors narrowing the policy's mask, policy loss, and the value loss on the unnarrowed mask."""
    for part in preset.shaping:
        fn = SHAPING[part.name]
        rollout, _ = fn(rollout, **with_run_arguments(fn, part.params, {"max_len": T}))
    adv = ADVANTAGES[preset.advantage.name](rollout, **preset.advantage.params)  # [B, T]
    keep = rollout.mask  # [B, T]
    for part in preset.selectors:
        adv, kept, _ = SELECTORS[part.name](rollout, adv, **part.params)
        keep = keep & kept  # [B, T]
    policy_rollout = rollout.replace(mask=keep)
    agg = dict(aggregation=preset.aggregation, norm_constant=T)
    loss, _ = POLICY_LOSSES[preset.loss.name](logp, policy_rollout, adv * keep, **agg, **preset.loss.params)
    gamma, lam = preset.advantage.params["gamma"], preset.advantage.params["lam"]
    _, returns = compute_gae(outcome_token_rewards(rollout), rollout.value, rollout.mask, gamma=gamma, lam=lam)
    vf, _ = value_loss(values, rollout, returns, aggregation="token_mean", **preset.value_loss)
    return loss + preset.trainer["vf_coef"] * vf


def clipped(ratio, a, eps=0.2):
    return -min(ratio * a, min(max(ratio, 1 - eps), 1 + eps) * a)


def expected_drpo(batch, prefix):
    """DR-PO's code (src/tldr/drpo.py), written out: r_t = 1[last]·score − 0.05·(old − ref) on EVERY token, GAE
    (γ 1, λ 0.95) on every token, whitened over every token (unbiased, eps 1e-8 in the root); policy loss
    Σ max(pg1, pg2)·~rollin / Σ ~rollin (tokens t ≥ h only); value loss ½·max((V − R)², (clip(V) − R)²) averaged
    over every token; loss = pg + 0.5·vf."""
    rollout, logp, values, lengths = batch
    lp, old, ref, v_old, v = (x.tolist() for x in (logp, rollout.old_logp, rollout.ref_logp, rollout.value, values))
    advs, rets, vf, where = [], [], [], []
    for i in range(6):
        n = lengths[i]
        rew = [-0.05 * (old[i][t] - ref[i][t]) for t in range(n)]
        rew[-1] += rollout.reward[i].item()
        a_next, row = 0.0, [0.0] * n
        for t in reversed(range(n)):
            a_next = rew[t] + (v_old[i][t + 1] if t + 1 < n else 0.0) - v_old[i][t] + 0.95 * a_next
            row[t] = a_next
        advs += row
        rets += [row[t] + v_old[i][t] for t in range(n)]
        vf += [(v[i][t], v_old[i][t]) for t in range(n)]
        where += [(i, t) for t in range(n)]
    mean = sum(advs) / len(advs)
    std = math.sqrt(sum((a - mean) ** 2 for a in advs) / (len(advs) - 1) + 1e-8)
    pg = [
        clipped(math.exp(lp[i][t] - old[i][t]), (a - mean) / std)
        for a, (i, t) in zip(advs, where, strict=True)
        if t >= prefix[i]  # the code's ~rollin_mask
    ]
    vloss = [
        0.5 * max((val - R) ** 2, (min(max(val, vo - 0.2), vo + 0.2) - R) ** 2)
        for (val, vo), R in zip(vf, rets, strict=True)
    ]
    return sum(pg) / len(pg) + 0.5 * sum(vloss) / len(vloss)


def test_drpo_is_ppo_with_reset_rollouts_and_the_prefix_mask():
    drpo, ppo = PRESETS["drpo"], PRESETS["ppo"]
    assert [p.name for p in drpo.rollout] == ["dataset_reset"] and drpo.rollout[0].params["reset_prob"] == 1.0
    assert [p.name for p in drpo.selectors] == ["mask_prefix"]
    for field in ("shaping", "advantage", "loss", "aggregation", "regularizers", "filters", "value_loss", "trainer"):
        assert getattr(drpo, field) == getattr(ppo, field), field
    assert drpo.requires == ppo.requires | {"prefix_len"}


def test_with_no_rollin_drpo_is_vanilla_ppo():
    """Spec §14e: with h = 0 it is vanilla PPO (same loss, same gradients)."""
    prefix = [0] * 6
    a, b = toy_batch(prefix), toy_batch(prefix)
    loss_drpo = compose(PRESETS["drpo"], *a[:3])
    loss_ppo = compose(PRESETS["ppo"], *b[:3])
    assert loss_drpo.item() == loss_ppo.item()
    assert loss_drpo.item() == pytest.approx(expected_drpo(a, prefix), rel=1e-9, abs=1e-12)
    loss_drpo.backward()
    loss_ppo.backward()
    assert torch.equal(a[1].grad, b[1].grad) and torch.equal(a[2].grad, b[2].grad)


def test_drpo_objective_by_hand_and_rolled_in_tokens_get_no_policy_gradient():
    prefix = [2, 1, 0, 3, 0, 2]  # h <= L − 1: each completion keeps at least one sampled token
    batch = toy_batch(prefix)
    rollout, logp, values, _ = batch
    loss = compose(PRESETS["drpo"], rollout, logp, values)
    assert loss.item() == pytest.approx(expected_drpo(batch, prefix), rel=1e-9, abs=1e-12)
    assert loss.item() != pytest.approx(expected_drpo(batch, [0] * 6), rel=1e-6)  # the mask matters
    loss.backward()
    t = torch.arange(T)
    rolled_in = (t[None, :] < torch.tensor(prefix)[:, None]) & rollout.mask  # [B, T]
    sampled = (t[None, :] >= torch.tensor(prefix)[:, None]) & rollout.mask  # [B, T]
    assert rolled_in.sum() == 8 and (logp.grad[rolled_in] == 0).all()  # spec §14e: zero gradient on the roll-in
    # sampled tokens carry the gradient (some are clipped to 0 by PPO's clip, as in plain PPO)
    assert (logp.grad[sampled] != 0).sum() >= 5 and (logp.grad[~rollout.mask] == 0).all()
    # the critic still learns on the roll-in tokens (the code's value loss covers every token)
    assert (values.grad[rolled_in] != 0).all()
