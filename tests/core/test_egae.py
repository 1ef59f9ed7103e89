"""Tests of grpolab.core.egae (T-PPO's Extended GAE, arXiv 2506.15050): hand values, the spec's invariants,
equality with standard GAE on finished responses, loop-vs-vectorised, window bookkeeping."""

from __future__ import annotations

import pytest
import torch

from grpolab.core.advantages import ADVANTAGES, compute_gae
from grpolab.core.egae import egae, egae_advantage, unfinished, window_length
from grpolab.core.types import Rollout

NAN = float("nan")


# ============================================================================================ hand values
def test_egae_hand_truncated_row():
    # γ = .9, λ = .8 (γλ = .72), r = [0, 0, .5], V = [.5, .4, .8], truncated: V after the end := V_last = .8
    # δ2 = .5 + .9·.8 − .8 = .42; δ1 = 0 + .9·.8 − .4 = .32; δ0 = 0 + .9·.4 − .5 = −.14
    # A2 = .42; A1 = .32 + .72·.42 = .6224; A0 = −.14 + .72·.6224 = .308128; returns = A + V
    adv, ret = egae(
        torch.tensor([[0.0, 0.0, 0.5]]),
        torch.tensor([[0.5, 0.4, 0.8]]),
        torch.ones(1, 3, dtype=torch.bool),
        torch.tensor([True]),
        gamma=0.9,
        lam=0.8,
    )
    torch.testing.assert_close(adv, torch.tensor([[0.308128, 0.6224, 0.42]]), atol=1e-6, rtol=0)
    torch.testing.assert_close(ret, torch.tensor([[0.808128, 1.0224, 1.22]]), atol=1e-6, rtol=0)


def test_egae_hand_truncated_row_with_a_gap():
    # mask [1, 0, 1]: the gap is skipped; γ = λ = 1, r = 0, V = [.3, ·, .7] truncated → δ2 = .7 − .7 = 0,
    # δ0 = .7 − .3 = .4 → A = [.4, 0, 0]
    adv, _ = egae(
        torch.zeros(1, 3),
        torch.tensor([[0.3, NAN, 0.7]]),
        torch.tensor([[True, False, True]]),
        torch.tensor([True]),
        gamma=1.0,
        lam=1.0,
    )
    torch.testing.assert_close(adv, torch.tensor([[0.4, 0.0, 0.0]]), atol=1e-6, rtol=0)


# ============================================================================================ spec invariants
def test_constant_value_over_a_truncated_window_with_zero_rewards_gives_exactly_zero():
    mask = torch.tensor([[1, 1, 1, 1], [1, 0, 1, 0], [1, 0, 0, 0]]).bool()
    values = torch.full((3, 4), 0.37).masked_fill(~mask, NAN)
    adv, _ = egae(torch.zeros(3, 4), values, mask, torch.ones(3, dtype=torch.bool), gamma=1.0, lam=1.0)
    assert torch.equal(adv, torch.zeros(3, 4))  # exactly 0: every δ is 0 + V − V


def rand_batch(seed, B=7, T=6, dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    mask = torch.rand(B, T, generator=gen) < 0.7
    mask[torch.arange(B), torch.randint(0, T, (B,), generator=gen)] = True
    rewards = torch.randn(B, T, generator=gen, dtype=dtype).masked_fill(~mask, NAN)
    values = torch.randn(B, T, generator=gen, dtype=dtype).masked_fill(~mask, NAN)
    truncated = torch.rand(B, generator=gen) < 0.5
    return rewards, values, mask, truncated


@pytest.mark.parametrize("seed", range(3))
def test_finished_rows_equal_standard_gae(seed):
    rewards, values, mask, truncated = rand_batch(seed)
    adv, ret = egae(rewards, values, mask, truncated, gamma=0.95, lam=0.9)
    ref_adv, ref_ret = compute_gae(rewards, values, mask, gamma=0.95, lam=0.9)
    done = ~truncated
    torch.testing.assert_close(adv[done], ref_adv[done], atol=0, rtol=0)
    torch.testing.assert_close(ret[done], ref_ret[done], atol=0, rtol=0)


def test_the_registered_entry_equals_gae_when_nothing_is_truncated():
    _, values, mask, _ = rand_batch(5)
    r = Rollout(
        group=torch.zeros(7, dtype=torch.long), mask=mask, reward=torch.randn(7, dtype=torch.float64), value=values
    )
    for whiten in (False, True):
        torch.testing.assert_close(
            ADVANTAGES["egae"](r, whiten=whiten), ADVANTAGES["gae"](r, whiten=whiten), atol=1e-12, rtol=0
        )


def slow_egae(rewards, values, mask, truncated, gamma, lam):
    B, T = mask.shape
    out = torch.zeros(B, T, dtype=rewards.dtype)
    for i in range(B):
        pos = [t for t in range(T) if mask[i, t]]
        adv = 0.0
        for k in reversed(range(len(pos))):
            t = pos[k]
            nxt = 0.0  # finished: V past the end is 0
            if k + 1 < len(pos):
                nxt = float(values[i, pos[k + 1]])
            elif truncated[i]:
                nxt = float(values[i, t])  # EGAE: V(s_l) := V(s_{l-1})
            delta = float(rewards[i, t]) + gamma * nxt - float(values[i, t])
            adv = delta + gamma * lam * adv
            out[i, t] = adv
    return out


@pytest.mark.parametrize("seed", range(4))
def test_egae_loop_equals_vectorised(seed):
    rewards, values, mask, truncated = rand_batch(seed)
    adv, _ = egae(rewards, values, mask, truncated, gamma=0.97, lam=0.93)
    torch.testing.assert_close(adv, slow_egae(rewards, values, mask, truncated, 0.97, 0.93), atol=1e-12, rtol=0)


# ============================================================================================ the entry
def test_an_unfinished_response_has_no_outcome_reward_but_keeps_dense_rewards():
    # γ = λ = 1, V = 0: finished row 0 gets its reward 1 on every token; truncated row 1 ignores its reward 5,
    # except with truncated_reward=True; its token reward .25 at t = 0 counts either way
    r = Rollout(
        group=torch.tensor([0, 1]),
        mask=torch.ones(2, 2, dtype=torch.bool),
        reward=torch.tensor([1.0, 5.0]),
        token_reward=torch.tensor([[0.0, 0.0], [0.25, 0.0]]),
        value=torch.zeros(2, 2),
        truncated=torch.tensor([False, True]),
    )
    out = egae_advantage(r, gamma=1.0, lam=1.0, whiten=False)
    assert out.tolist() == [[1.0, 1.0], [0.25, 0.0]]
    out = egae_advantage(r, gamma=1.0, lam=1.0, whiten=False, truncated_reward=True)
    assert out.tolist() == [[1.0, 1.0], [5.25, 5.0]]


def test_given_prefix_tokens_get_zero_and_leave_the_whitening():
    # row 0 finished, prefix 2 of 3 tokens; row 1 fresh. γ = λ = 1, V = 0, rewards [1, 3] → unwhitened A: row 0
    # [1, 1, 1], row 1 [3, 3, 3]. Trained tokens: row 0 t = 2 and row 1 all → values [1, 3, 3, 3]: mean 2.5,
    # var (ddof 1) = (2.25 + 3·.25)/3 = 1 → whitened [-1.5, .5, .5, .5]; prefix positions 0
    r = Rollout(
        group=torch.tensor([0, 1]),
        mask=torch.ones(2, 3, dtype=torch.bool),
        reward=torch.tensor([1.0, 3.0]),
        value=torch.zeros(2, 3),
        extras={"prefix_len": torch.tensor([2, 0])},
    )
    out = egae_advantage(r, gamma=1.0, lam=1.0, eps=0.0 + 1e-12)
    torch.testing.assert_close(out, torch.tensor([[0.0, 0.0, -1.5], [0.5, 0.5, 0.5]]), atol=1e-5, rtol=0)
    unwhitened = egae_advantage(r, gamma=1.0, lam=1.0, whiten=False, prefix_key=None)
    assert unwhitened.tolist() == [[1.0, 1.0, 1.0], [3.0, 3.0, 3.0]]


def test_egae_bad_input_raises():
    r = Rollout(group=torch.tensor([0]), mask=torch.ones(1, 2, dtype=torch.bool), reward=torch.zeros(1))
    with pytest.raises(ValueError, match=r"rollout\.value is None"):
        egae_advantage(r)
    with pytest.raises(ValueError, match="truncated must be bool"):
        egae(
            torch.zeros(1, 2),
            torch.zeros(1, 2),
            torch.ones(1, 2, dtype=torch.bool),
            torch.tensor([1]),
            gamma=1.0,
            lam=1.0,
        )
    with pytest.raises(ValueError, match="gamma"):
        egae(
            torch.zeros(1, 2),
            torch.zeros(1, 2),
            torch.ones(1, 2, dtype=torch.bool),
            torch.tensor([True]),
            gamma=1.5,
            lam=1.0,
        )


# ============================================================================================ windows
def test_window_length_and_unfinished():
    assert window_length(8, window=0.25) == 2
    assert window_length(4, window=0.25) == 1
    assert window_length(5, window=1.0) == 5
    assert window_length(3, window=0.01) == 1  # at least one token per step
    lengths, cut = torch.tensor([2, 8, 3, 8]), torch.tensor([True, True, False, False])
    assert unfinished(lengths, cut, max_len=8).tolist() == [True, False, False, False]  # 8 = max_len: over


@pytest.mark.parametrize("window", [0.0, 1.5, -0.1])
def test_bad_window_raises(window):
    with pytest.raises(ValueError, match="window"):
        window_length(8, window=window)
