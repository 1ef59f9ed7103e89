import pytest
import torch

from grpolab.core.types import Rollout, RolloutError


def make(**overrides):
    fields = dict(
        group=torch.tensor([1, 0, 1, 2, 0]),  # unequal, non-contiguous groups: sizes 2, 2, 1
        mask=torch.tensor([[1, 1, 0], [1, 0, 0], [1, 1, 1], [1, 0, 1], [0, 1, 0]]).bool(),
        reward=torch.tensor([1.0, 0.0, 0.5, 2.0, 1.0]),
    )
    fields.update(overrides)
    return Rollout(**fields)


def test_derived_sizes():
    r = make()
    assert (r.batch_size, r.seq_len, r.num_groups) == (5, 3, 3)
    assert r.group_sizes.tolist() == [2, 2, 1]
    assert r.lengths.tolist() == [2, 1, 3, 2, 1]
    assert r.last_index.tolist() == [1, 0, 2, 2, 1]
    assert r.truncated.tolist() == [False] * 5


def test_select_renumbers_groups_and_slices_per_completion_extras():
    r = make(
        old_logp=torch.arange(15.0).reshape(5, 3),
        extras={"tool_calls": torch.tensor([3, 1, 4, 1, 5]), "note": "kept", "scalar": torch.tensor(7)},
    )
    sub = r.select(torch.tensor([True, False, True, True, False]))  # drops group 0 entirely
    assert sub.group.tolist() == [0, 0, 1]  # old ids 1, 1, 2 renumbered in order
    assert sub.reward.tolist() == [1.0, 0.5, 2.0]
    assert sub.old_logp[:, 0].tolist() == [0.0, 6.0, 9.0]
    assert sub.extras["tool_calls"].tolist() == [3, 4, 1]
    assert sub.extras["note"] == "kept" and int(sub.extras["scalar"]) == 7


def test_select_rejects_empty_and_bad_keep():
    r = make()
    with pytest.raises(RolloutError, match="all False"):
        r.select(torch.zeros(5, dtype=torch.bool))
    with pytest.raises(RolloutError, match="bool"):
        r.select(torch.ones(5))


def test_replace_validates_again():
    r = make()
    assert r.replace(reward=torch.zeros(5)).reward.sum() == 0
    with pytest.raises(RolloutError, match="NaN or inf"):
        r.replace(reward=torch.tensor([0.0, float("nan"), 0.0, 0.0, 0.0]))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (dict(reward=torch.zeros(4)), r"reward must be \[B\] = \[5\]"),
        (dict(reward=torch.tensor([0.0, float("inf"), 0, 0, 0])), r"NaN or inf at completions \[1\]"),
        (dict(reward=torch.tensor([0.0, float("nan"), 0, 0, 0])), "NaN or inf"),
        (dict(reward=torch.tensor([0, 1, 0, 1, 0])), "floating point"),
        (dict(mask=torch.ones(5, 3)), "mask must be bool"),
        (dict(mask=torch.ones(4, 3, dtype=torch.bool)), r"mask must be \[B, T\] with B = 5"),
        (dict(mask=torch.tensor([[1, 1, 0], [0, 0, 0], [1, 1, 1], [1, 0, 1], [0, 1, 0]]).bool()), r"completions \[1\]"),
        (dict(group=torch.tensor([1, 0, 1, 3, 0])), r"ids \[2\] of 0..3 are missing"),
        (dict(group=torch.tensor([1, 2, 1, 2, 1])), r"ids \[0\]"),
        (dict(group=torch.tensor([1, 0, -1, 2, 0])), "negative"),
        (dict(group=torch.tensor([1.0, 0, 1, 2, 0])), "integer"),
        (dict(group=torch.tensor([[1, 0, 1, 2, 0]])), "1-D"),
        (dict(old_logp=torch.zeros(5, 4)), r"old_logp must be \[B, T\] = \[5, 3\]"),
        (dict(ref_logp=torch.zeros(5, 3, dtype=torch.long)), "floating point"),
        (dict(value=torch.tensor([[float("nan"), 0, 0]] + [[0.0] * 3] * 4)), "value holds NaN"),
        (dict(truncated=torch.zeros(5)), "truncated must be bool"),
        (dict(rewards=torch.zeros(5, 2)), "reward_names must name the 2 columns"),
        (dict(rewards=torch.zeros(5, 2), reward_names=("a",)), "reward_names"),
        (dict(reward_names=("a",)), "without rewards"),
        (dict(rewards=torch.full((5, 1), float("nan")), reward_names=("a",)), "NaN"),
        (dict(extras=[1, 2]), "extras must be a dict"),
        (dict(reward=[1.0, 0, 0, 0, 0]), "must be a torch.Tensor"),
        (
            dict(
                group=torch.zeros(0, dtype=torch.long), mask=torch.zeros(0, 3, dtype=torch.bool), reward=torch.zeros(0)
            ),
            "empty",
        ),
    ],
)
def test_bad_input_raises_a_clear_error(overrides, message):
    with pytest.raises(RolloutError, match=message):
        make(**overrides)


def test_non_finite_values_at_padding_are_allowed():
    logp = torch.zeros(5, 3)
    logp[0, 2] = float("-inf")  # position (0, 2) is padding: a -inf log-prob there is harmless
    assert make(old_logp=logp).old_logp is logp


def test_rollout_is_immutable():
    r = make()
    with pytest.raises(AttributeError):
        r.reward = torch.zeros(5)
