import math

import pytest
import torch

from grpolab.core.shaping import SHAPING, kl_reward, overlong
from grpolab.core.types import Rollout


def rollout_with_lengths(lengths, T=24, **fields):
    mask = torch.arange(T)[None, :] < torch.tensor(lengths)[:, None]  # [B, T]
    B = len(lengths)
    return Rollout(group=torch.zeros(B, dtype=torch.long), mask=mask, reward=torch.ones(B), **fields)


def test_registry_names():
    assert {"kl_reward", "overlong"} <= set(SHAPING)


def test_overlong_hand_computed():
    # L_max 20, L_cache 4 -> L_exp 16. Penalty: 0 up to 16, (16 - L)/4 inside the cache, -1 beyond 20.
    r = rollout_with_lengths([10, 16, 17, 18, 20, 21])
    shaped, metrics = overlong(r, max_len=20, cache_len=4)
    assert shaped.reward.tolist() == [1.0, 1.0, 0.75, 0.5, 0.0, 0.0]
    assert metrics["overlong/frac_penalised"] == pytest.approx(4 / 6)
    assert r.reward.tolist() == [1.0] * 6  # the input is untouched


def test_overlong_factor_and_cache_fraction():
    r = rollout_with_lengths([18, 22])
    # cache_fraction 0.2 of max_len 20 -> cache_len 4; factor 0.5 halves every penalty, -0.5 beyond the limit
    shaped, _ = overlong(r, max_len=20, cache_fraction=0.2, factor=0.5)
    assert shaped.reward.tolist() == [0.75, 0.5]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(max_len=0), "max_len"),
        (dict(max_len=20, cache_len=21), "cache_len"),
        (dict(max_len=20, cache_fraction=0), "cache_fraction"),
    ],
)
def test_overlong_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        overlong(rollout_with_lengths([3]), **kwargs)


def test_kl_reward_token_and_sequence_level():
    old = torch.log(torch.tensor([[0.5, 0.25, 0.5], [0.5, 0.5, 0.5]]))  # [B, T]
    ref = torch.log(torch.tensor([[0.25, 0.25, 0.5], [0.5, 0.125, 0.5]]))  # [B, T]
    mask = torch.tensor([[True, True, False], [True, True, True]])
    r = Rollout(
        group=torch.tensor([0, 0]),
        mask=mask,
        reward=torch.tensor([1.0, 0.0]),
        old_logp=old,
        ref_logp=ref,
        token_reward=torch.tensor([[0.0, 0.5, 0.0], [0.0, 0.0, 0.0]]),
    )
    # k1 = old - ref: row 0 -> (ln 2, 0, [pad]); row 1 -> (0, ln 4, 0)
    ln2 = math.log(2)
    shaped, metrics = kl_reward(r, coef=0.1, estimator="k1", level="token")
    expected = torch.tensor([[-0.1 * ln2, 0.5, 0.0], [0.0, -0.1 * 2 * ln2, 0.0]])
    torch.testing.assert_close(shaped.token_reward, expected)
    assert shaped.reward.tolist() == [1.0, 0.0]
    assert metrics["kl_reward/kl_token_mean"] == pytest.approx(3 * ln2 / 5)

    shaped, _ = kl_reward(r, coef=0.1, estimator="k1", level="sequence")
    torch.testing.assert_close(shaped.reward, torch.tensor([1.0 - 0.1 * ln2, -0.1 * 2 * ln2]))
    assert shaped.token_reward is r.token_reward


def test_kl_reward_errors():
    r = rollout_with_lengths([2])
    with pytest.raises(ValueError, match=r"old_logp and rollout\.ref_logp"):
        kl_reward(r, coef=0.1)
    r = rollout_with_lengths([2], old_logp=torch.zeros(1, 24), ref_logp=torch.zeros(1, 24))
    with pytest.raises(ValueError, match="level"):
        kl_reward(r, coef=0.1, level="sentence")
    with pytest.raises(ValueError, match="coef"):
        kl_reward(r, coef=-1.0)
