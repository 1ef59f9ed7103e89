import pytest
import torch

from grpolab.core.selection import SELECTORS, mask_prefix
from grpolab.core.types import Rollout


def rollout(prefix, lengths, T=5):
    mask = torch.arange(T)[None, :] < torch.tensor(lengths)[:, None]
    extras = {} if prefix is None else {"prefix_len": torch.tensor(prefix)}
    return Rollout(
        group=torch.zeros(len(lengths), dtype=torch.long), mask=mask, reward=torch.zeros(len(lengths)), extras=extras
    )


def test_mask_prefix_keeps_only_sampled_tokens_and_leaves_advantages_alone():
    r = rollout([0, 2, 3], [3, 5, 4])
    adv = torch.arange(15.0).view(3, 5)
    out, keep, metrics = SELECTORS["mask_prefix"](r, adv)
    assert torch.equal(out, adv)
    assert keep.tolist() == [
        [True, True, True, False, False],
        [False, False, True, True, True],
        [False, False, False, True, False],
    ]
    assert metrics["prefix_token_frac"] == pytest.approx(5 / 12)


def test_mask_prefix_reads_a_missing_key_as_no_given_token():
    # no strategy wrote prefixes (a part used outside the trainer): prefix 0 everywhere, every valid token kept,
    # exactly as with an explicit all-zero prefix_len
    r = rollout(None, [3, 5, 1])
    adv = torch.arange(15.0).view(3, 5)
    out, keep, metrics = mask_prefix(r, adv)
    assert torch.equal(out, adv) and torch.equal(keep, r.mask) and metrics == {"prefix_token_frac": 0.0}
    assert torch.equal(keep, mask_prefix(rollout([0, 0, 0], [3, 5, 1]), adv)[1])


def test_mask_prefix_explains_a_misshaped_key():
    with pytest.raises(ValueError, match="long"):
        mask_prefix(rollout([[1], [1]], [2, 2]), torch.zeros(2, 5))
