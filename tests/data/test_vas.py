"""MMR1's Variance-Aware Sampling sampler (arXiv 2509.21268): batch mixture, estimation rounds, refresh cadence,
checkpoints, settings."""

import copy
import io

import pytest
import torch

from grpolab.algorithms import PRESETS
from grpolab.data.sampler import SAMPLERS, Observation, UniformSampler
from grpolab.data.vas import VASSampler


def estimate(sampler, request, accuracies, completions, step):
    """Answer an estimation request with the given per-row accuracies and completions."""
    acc = [torch.tensor(a, dtype=torch.float32) for a in accuracies]
    return sampler.observe(Observation(list(request.rows), acc, acc, completions, step=step))


def fake_step(sampler, step, num_prompts=4, num_generations=5):
    """One trainer step (``Trainer._sample_batch``): rounds until ``num_prompts`` groups are kept. Pool rows are
    answered with accuracies and completions that depend on the row only. Returns the requests of the step."""
    requests, needed, rounds = [], num_prompts, 0
    while needed > 0 and rounds < sampler.max_rounds:
        request = sampler.request(needed, num_generations, step=step, total_steps=100)
        requests.append(request)
        groups = list(zip(request.rows, request.num_generations, strict=True))
        acc = [torch.tensor([float((row + j) % 3 == 0) for j in range(g)]) for row, g in groups]
        completions = [[[row % 5, j % (1 + row % 3)] for j in range(g)] for row, g in groups]
        keep = sampler.observe(Observation(list(request.rows), acc, acc, completions, step=step))
        needed -= sum(keep)
        rounds += 1
    assert needed == 0
    return requests


def one_hot_weights(sampler, step=0):
    """Estimation round in which only the first pool row has a positive weight: it alone has OVS > 0 and every
    completion is the same token, so TDS = 0 everywhere (VPS 0.2 for it, 0 for the rest)."""
    request = sampler.request(8, 4, step=step, total_steps=10)
    g = sampler.curriculum_rollouts
    accuracies = [[1.0, 0.0] * (g // 2)] + [[1.0] * g] * (len(request.rows) - 1)
    completions = [[[7]] * g for _ in request.rows]
    assert estimate(sampler, request, accuracies, completions, step) == [False] * len(request.rows)
    return request.rows


def test_every_training_batch_has_int_b_lambda_weighted_and_the_rest_uniform_rows_interleaved():
    s = VASSampler(100, seed=3, mixture_ratio=0.5, pool_size=4, curriculum_rollouts=2, update_every=10)
    pool = one_hot_weights(s)
    favourite = pool[0]
    assert s.weight(favourite) == pytest.approx(1.0) and all(s.weight(r) == 0.0 for r in pool[1:])
    uniform = UniformSampler(100, seed=3)  # the uniform part follows UniformSampler's seeded epoch order
    for step in range(4):
        request = s.request(8, 4, step=step, total_steps=10)
        assert request.num_generations == [4] * 8
        assert request.rows[0::2] == [favourite] * 4  # int(8 * 0.5) = 4 weighted rows at even positions
        assert request.rows[1::2] == uniform.next(4)  # 4 uniform rows, interleaved
        # weighted groups with mixed outcomes, uniform ones all correct: the training-batch signal metrics
        acc = [torch.tensor([1.0, 0.0, 0.0, 0.0]) if i % 2 == 0 else torch.ones(4) for i in range(8)]
        assert s.observe(Observation(request.rows, acc, acc)) == [True] * 8
        assert s.metrics()["mixed_weighted"] == 1.0 and s.metrics()["mixed_uniform"] == 0.0


def test_mixture_ratio_zero_and_one():
    s = VASSampler(50, seed=0, mixture_ratio=1.0, pool_size=4, curriculum_rollouts=2, update_every=10)
    favourite = one_hot_weights(s)[0]
    assert s.request(6, 2, step=1).rows == [favourite] * 6
    s = VASSampler(50, seed=0, mixture_ratio=0.0, pool_size=4, curriculum_rollouts=2, update_every=10)
    one_hot_weights(s)
    assert s.request(6, 2, step=1).rows == UniformSampler(50, seed=0).next(6)
    # int(5 * 0.5) = 2 weighted: w u w u u
    s = VASSampler(50, seed=0, mixture_ratio=0.5, pool_size=4, curriculum_rollouts=2, update_every=10)
    favourite = one_hot_weights(s)[0]
    rows = s.request(5, 2, step=1).rows
    assert rows[0] == rows[2] == favourite and rows[1::2] + rows[4:] == UniformSampler(50, seed=0).next(3)


def test_an_estimation_round_keeps_nothing_and_sets_weights_from_the_vps():
    s = SAMPLERS["vas"](3, seed=0, curriculum_rollouts=4)  # 3 rows <= pool_size: the pool is every row
    request = s.request(2, 8, step=0, total_steps=10)
    assert request.rows == [0, 1, 2] and request.num_generations == [4, 4, 4]
    # row 0: 2 of 4 correct -> OVS 0.25, identical completions -> TDS 0 -> VPS 0.8 * 0.25 = 0.2
    # row 1: 1 of 4 correct -> OVS 3/16, TDS 0 -> VPS 0.15
    # row 2: all correct -> OVS 0; completions [1,2] [1,3] [1,2] [1,3]: 4 of 6 pairs differ by 1 of 2 tokens
    #        -> TDS 4 * 0.5 / 6 = 1/3 -> VPS 0.2 / 3
    # min-max over (0.2, 0.15, 0.0667): row 0 -> 1, row 1 -> (0.15 - 0.2/3) / (0.2 - 0.2/3) = 0.625, row 2 -> 0
    accuracies = [[1, 1, 0, 0], [1, 0, 0, 0], [1, 1, 1, 1]]
    completions = [[[1, 2]] * 4, [[1, 2]] * 4, [[1, 2], [1, 3], [1, 2], [1, 3]]]
    assert estimate(s, request, accuracies, completions, step=0) == [False, False, False]
    assert [s.weight(r) for r in range(3)] == pytest.approx([1.0, 0.625, 0.0], abs=1e-6)
    m = s.metrics()
    assert m["pool_vps"] == pytest.approx((0.2 + 0.15 + 0.2 / 3) / 3)
    assert m["pool_ovs_positive"] == pytest.approx(2 / 3) and m["refreshed"] == 1.0 and m["weighted_rows"] == 2.0
    # The next request of the same step is the training batch; its groups are all kept.
    train = s.request(4, 8, step=0, total_steps=10)
    assert train.num_generations == [8] * 4 and set(train.rows[0::2]) <= {0, 1}
    assert s.observe(Observation(train.rows, [torch.zeros(8)] * 4, [torch.zeros(8)] * 4)) == [True] * 4


def test_momentum_mixes_the_old_and_new_weights_and_rows_outside_the_pool_decay():
    s = VASSampler(3, seed=0, curriculum_rollouts=4, momentum=0.5, update_every=1)
    request = s.request(2, 8, step=0)
    first = ([[1, 1, 0, 0], [1, 0, 0, 0], [1, 1, 1, 1]], [[[1, 2]] * 4, [[1, 2]] * 4, [[1, 2], [1, 3], [1, 2], [1, 3]]])
    estimate(s, request, *first, step=0)  # weights 1, 0.625, 0 (previous test): the first refresh has no momentum
    s.request(2, 8, step=0)
    request = s.request(2, 8, step=1)
    assert request.num_generations == [4, 4, 4]
    # Only row 2 has OVS > 0 now: new weights 0, 0, 1 -> 0.5 * old + 0.5 * new = 0.5, 0.3125, 0.5
    estimate(s, request, [[1] * 4, [0] * 4, [1, 0, 1, 0]], [[[5]] * 4] * 3, step=1)
    assert [s.weight(r) for r in range(3)] == pytest.approx([0.5, 0.3125, 0.5], abs=1e-6)
    # With momentum 0 a new pool replaces the weights: rows of the old pool outside the new one weigh 0.
    s = VASSampler(1000, seed=1, pool_size=4, curriculum_rollouts=2, update_every=1)
    old = one_hot_weights(s, step=0)
    s.request(2, 2, step=0)
    new = one_hot_weights(s, step=1)
    assert sorted(r for r in range(1000) if s.weight(r) > 0) == [new[0]]
    assert all(s.weight(r) == 0 for r in set(old) - {new[0]})


def test_equal_scores_fall_back_to_uniform_draws_from_the_pool():
    s = VASSampler(1000, seed=0, pool_size=3, curriculum_rollouts=2, mixture_ratio=1.0)
    request = s.request(4, 2, step=0)
    estimate(s, request, [[1, 1]] * 3, [[[4], [4]]] * 3, step=0)  # every VPS 0 -> every weight 0
    assert all(s.weight(r) == 0 for r in request.rows)
    assert set(s.request(12, 2, step=0).rows) <= set(request.rows)


def test_refresh_cadence_follows_the_step_and_the_pool_is_a_random_subset():
    s = VASSampler(200, seed=0, update_every=3, pool_size=16, curriculum_rollouts=3)
    refreshed, pools = [], []
    for step in range(8):
        requests = fake_step(s, step)
        if len(requests) == 2:  # an estimation round, then the training round
            refreshed.append(step)
            pools.append(requests[0].rows)
            assert requests[0].num_generations == [3] * 16
        assert requests[-1].num_generations == [5] * 4
        assert s.metrics()["refreshed"] == float(len(requests) == 2)
    assert refreshed == [0, 3, 6]
    assert all(len(set(p)) == 16 and all(0 <= r < 200 for r in p) for p in pools) and pools[0] != pools[1]
    # A run that skips steps (e.g. resumed into a later window) refreshes at its first request there.
    assert len(fake_step(s, 13)) == 2 and len(fake_step(s, 14)) == 1


def test_a_resumed_sampler_continues_identically():
    def make(seed):
        return VASSampler(300, seed=seed, update_every=2, pool_size=12, curriculum_rollouts=4, momentum=0.3)

    s = make(0)
    for step in range(3):
        fake_step(s, step)
    buffer = io.BytesIO()
    torch.save(copy.deepcopy(s.state_dict()), buffer)  # through a checkpoint file, as the trainer saves it
    buffer.seek(0)
    resumed = make(123)
    resumed.load_state_dict(torch.load(buffer, weights_only=False))
    for step in range(3, 8):  # refreshes at steps 4 and 6 on both
        assert fake_step(resumed, step) == fake_step(s, step)
        assert resumed.metrics() == s.metrics()
    assert resumed.state_dict() == s.state_dict()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"mixture_ratio": 1.5}, "mixture_ratio"),
        ({"update_every": 0}, "update_every"),
        ({"pool_size": 0}, "pool_size"),
        ({"curriculum_rollouts": 1}, "curriculum_rollouts"),
        ({"weights": (0.0, 0.0)}, "weights"),
        ({"weights": (1.0,)}, "weights"),
        ({"weights": (-0.2, 1.0)}, "weights"),
        ({"diversity": "bleu"}, "diversity"),
        ({"momentum": 2.0}, "momentum"),
    ],
)
def test_bad_settings_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        VASSampler(10, **kwargs)


def test_an_observation_that_does_not_answer_the_estimation_request_raises():
    s = VASSampler(10, seed=0, pool_size=2, curriculum_rollouts=2)
    s.request(4, 2, step=0)
    with pytest.raises(ValueError, match="pool rows"):
        s.observe(Observation([99], [torch.ones(2)], [torch.ones(2)], [[[1], [2]]]))


def test_the_preset_trains_grpo_with_the_vas_sampler():
    preset = PRESETS["vas"]
    assert preset.trainer["sampler"] == "vas" and preset.trainer["temperature"] == 0.6
    sampler = SAMPLERS[preset.trainer["sampler"]](19_500, seed=0, **preset.trainer["sampler_args"])
    assert isinstance(sampler, VASSampler) and sampler.max_rounds == 2 and sampler.pool_size == 64
    assert (sampler.ovs_weight, sampler.tds_weight) == (0.8, 0.2)
