import pytest
import torch

from grpolab.data.sampler import SAMPLERS, DynamicSampler, Observation, Request, UniformSampler


def test_requests_hold_one_group_size_per_row():
    assert UniformSampler(10, seed=1).request(3, 4) == Request(UniformSampler(10, seed=1).next(3), [4, 4, 4])
    with pytest.raises(ValueError, match="one num_generations per row"):
        Request([1, 2], [4])
    with pytest.raises(ValueError, match=">= 1"):
        Request([1, 2], [4, 0])
    with pytest.raises(ValueError, match="can measure"):
        Request([1], [4], measure=frozenset({"hessian"}))


def test_uniform_keeps_every_group_in_one_round():
    s = SAMPLERS["uniform"](6, seed=0)
    assert s.max_rounds == 1
    assert s.observe(Observation([0, 1], [torch.ones(3)] * 2, [torch.ones(3)] * 2)) == [True, True]


def test_dynamic_drops_all_correct_and_all_wrong_groups():
    s = DynamicSampler(20, seed=0)
    acc = [torch.tensor([1.0, 1.0, 1.0]), torch.tensor([0.0, 0.0, 0.0]), torch.tensor([1.0, 0.0, 0.0]), torch.ones(1)]
    rewards = [torch.tensor([0.5, 0.7, 0.5]), torch.zeros(3), torch.zeros(3), torch.ones(1)]
    # a lone completion has no spread
    assert s.observe(Observation([0, 1, 2, 3], rewards, acc)) == [False, False, True, False]
    by_reward = DynamicSampler(20, seed=0, objective="reward")
    assert by_reward.observe(Observation([0, 1, 2, 3], rewards, acc)) == [True, False, False, False]
    near = Observation([0], [torch.zeros(2)], [torch.tensor([0.0, 0.4])])
    assert DynamicSampler(20, seed=0, tol=0.5).observe(near) == [False]


def test_dynamic_oversamples_the_missing_groups_and_keeps_its_order_across_a_checkpoint():
    s = DynamicSampler(50, seed=3, oversample=3.0)
    first = s.request(5, 8)
    assert len(first.rows) == 15 and first.num_generations == [8] * 15
    assert len(s.request(2, 8).rows) == 6
    state = s.state_dict()
    again = DynamicSampler(50, seed=99, oversample=3.0)
    again.load_state_dict(state)
    assert again.request(4, 2) == s.request(4, 2)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"max_rounds": 0}, "max_rounds"), ({"oversample": 0.5}, "oversample"), ({"objective": "x"}, "objective")],
)
def test_dynamic_rejects_bad_settings(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DynamicSampler(5, **kwargs)
