import random

import pytest
import torch

from grpolab.data.sampler import SAMPLERS, DynamicSampler, Observation, Request, UniformSampler, next_in_passes


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


def test_observation_flat_gives_values_and_group_ids_in_request_order():
    rewards = [torch.tensor([1.0, 0.0]), torch.tensor([0.5]), torch.tensor([2.0, 3.0, 4.0])]
    obs = Observation([4, 0, 9], rewards, rewards)
    flat, group = obs.flat(obs.rewards)
    assert flat.dtype == torch.float32 and flat.tolist() == [1.0, 0.0, 0.5, 2.0, 3.0, 4.0]
    assert group.dtype == torch.long and group.tolist() == [0, 0, 1, 2, 2, 2]
    flat64, _ = obs.flat(obs.accuracies, dtype=torch.float64)
    assert flat64.dtype == torch.float64
    empty, empty_group = obs.flat([])
    assert empty.numel() == 0 and empty_group.numel() == 0


def test_next_in_passes_is_the_uniform_epoch_order():
    s = UniformSampler(5, seed=4)
    rows = s.next(12)  # epochs of 5: two full passes and two rows of the third
    assert s.epoch == 3
    out, order, pos, passes = next_in_passes(random.Random(4), range(5), [], 0, 12)
    assert out == rows and passes == 3 and pos == 2 and sorted(order) == [0, 1, 2, 3, 4]
    assert sorted(out[:5]) == sorted(out[5:10]) == [0, 1, 2, 3, 4]  # each pass holds every item once
    with pytest.raises(ValueError, match="empty source"):
        next_in_passes(random.Random(0), [], [], 0, 1)


def test_uniform_sampler_saves_and_restores_its_auxiliary_stream():
    s = UniformSampler(10, seed=1)
    assert s.aux_rng.random() == random.Random("uniform-aux-1").random()  # seeded from the seed
    s.next(3)
    s.aux_rng.random()
    state = s.state_dict()
    again = UniformSampler(10, seed=99)
    again.load_state_dict(state)
    assert again.next(4) == s.next(4) and again.aux_rng.random() == s.aux_rng.random()
    old = {k: v for k, v in s.state_dict().items() if k != "aux_rng"}  # a checkpoint from before the stream
    UniformSampler(10, seed=2).load_state_dict(old)


@pytest.mark.parametrize(
    ("name", "seed_text", "legacy_key", "kwargs"),
    [
        ("vas", "vas-{seed}", "weighted_rng", {"pool_size": 3, "curriculum_rollouts": 2}),
        ("cures", "cures-{seed}", "draw_rng", {"pool_size": 3, "n_min": 2}),
        ("hard_mining", "hard_mining:{seed}", "hard_rng", {"stage1_fraction": 0.0}),
    ],
)
def test_samplers_auxiliary_streams_keep_their_seeds_and_load_older_checkpoints(name, seed_text, legacy_key, kwargs):
    s = SAMPLERS[name](40, seed=7, **kwargs)
    # the stream each sampler seeded by hand before it moved into UniformSampler: the same draws as before
    assert s.aux_rng.getstate() == random.Random(seed_text.format(seed=7)).getstate()
    assert s._rng.getstate() == random.Random(7).getstate()  # the epoch order is UniformSampler(seed)'s
    s.aux_rng.random()  # move the stream on, so a restore that forgets it shows
    state = s.state_dict()
    older = {(legacy_key if k == "aux_rng" else k): v for k, v in state.items()}  # the key it was saved under
    for saved in (state, older):
        resumed = SAMPLERS[name](40, seed=8, **kwargs)
        resumed.load_state_dict(saved)
        assert resumed.aux_rng.getstate() == s.aux_rng.getstate()
        assert resumed.state_dict().keys() == state.keys()  # saved again under "aux_rng"
