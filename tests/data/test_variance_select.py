"""The ``variance_select`` prompt sampler (Temporal-RLT's variance-aware data selection, arXiv 2506.01908, run
online) and the ``"dual_reward"`` preset that uses it."""

import io
from collections import Counter

import pytest
import torch

from grpolab.algorithms import PRESETS
from grpolab.data.sampler import SAMPLERS, Observation, UniformSampler
from grpolab.data.variance_select import VarianceSelectSampler


def obs(request, rewards, accuracies=None):
    rewards = [torch.tensor(r, dtype=torch.float32) for r in rewards]
    accuracies = rewards if accuracies is None else [torch.tensor(a, dtype=torch.float32) for a in accuracies]
    return Observation(list(request.rows), rewards, accuracies)


# Rewards of the four candidates of the hand-computed pool (3 repeats each) and their population variances:
#   (1, 0, 1)        → mean 2/3, var (1/9 + 4/9 + 1/9) / 3 = 2/9 ≈ 0.222
#   (1, 1, 1)        → 0 (all correct: no GRPO signal)
#   (0, 0, 0)        → 0 (all wrong)
#   (0.2, 0.4, 0.4)  → mean 1/3, var (0.0178 + 2·0.0044) / 3 = 0.0089
POOL_REWARDS = [[1.0, 0.0, 1.0], [1.0, 1.0, 1.0], [0.0, 0.0, 0.0], [0.2, 0.4, 0.4]]


def test_hand_computed_selection_keeps_the_rows_whose_repeats_disagree():
    s = VarianceSelectSampler(10, seed=3, pool_size=4, refresh_every=0)
    first = s.request(2, 3, step=0)
    pool = UniformSampler(10, seed=3).next(4)  # candidates come in the seeded uniform epoch order
    assert first.rows == pool and first.num_generations == [3, 3, 3, 3]
    assert s.observe(obs(first, POOL_REWARDS)) == [False] * 4  # estimation rollouts never train
    m = s.metrics()
    assert m["kept"] == 2 and m["pass_frac"] == 0.5 and m["refreshes"] == 1 and m["scored"] == 4
    assert m["pool_variance"] == pytest.approx((2 / 9 + 0 + 0 + 0.2 / 22.5) / 4, rel=1e-5)  # 0.0089 = 0.2/22.5
    train = s.request(2, 3, step=0)
    assert sorted(train.rows) == sorted([pool[0], pool[3]]) and train.num_generations == [3, 3]
    assert s.observe(obs(train, [[0.0, 1.0, 1.0], [1.0, 1.0, 1.0]])) == [True, True]  # training groups all kept
    later = s.request(3, 3, step=100)  # refresh_every=0: the selection of step 0 is kept for the whole run
    assert Counter(later.rows).keys() == {pool[0], pool[3]} and len(later.rows) == 3

    strict = VarianceSelectSampler(10, seed=3, pool_size=4, min_variance=0.01)
    strict.observe(obs(strict.request(2, 3), POOL_REWARDS))
    assert strict.request(2, 3).rows == [pool[0], pool[0]]  # 0.0089 < 0.01: only (1, 0, 1) passes
    capped = VarianceSelectSampler(10, seed=3, pool_size=4, max_variance=0.1)
    capped.observe(obs(capped.request(2, 3), POOL_REWARDS))
    assert capped.request(1, 3).rows == [pool[3]]  # 2/9 > 0.1: only the low-variance row stays


def test_accuracy_objective_selects_on_the_accuracy_variance():
    s = VarianceSelectSampler(10, seed=0, pool_size=2, objective="accuracy")
    first = s.request(1, 2)
    s.observe(obs(first, rewards=[[0.5, 0.5], [0.3, 0.9]], accuracies=[[1.0, 0.0], [1.0, 1.0]]))
    assert s.request(1, 2).rows == [first.rows[0]]  # equal rewards, mixed accuracy: kept; the other: dropped


def test_num_samples_sets_the_repeats_of_estimation_rounds_only():
    s = VarianceSelectSampler(10, seed=0, pool_size=2, num_samples=5)
    first = s.request(3, 2)
    assert first.num_generations == [5, 5]
    s.observe(obs(first, [[1.0, 0.0, 0.0, 0.0, 0.0], [1.0, 0.0, 1.0, 0.0, 1.0]]))
    assert s.request(3, 2).num_generations == [2, 2, 2]


def test_the_last_round_of_a_step_trains_and_a_long_refresh_continues_next_step():
    s = VarianceSelectSampler(20, seed=1, pool_size=6, estimate_batch=2, max_rounds=3)
    pool = UniformSampler(20, seed=1).next(6)
    r1 = s.request(2, 2, step=0)
    assert r1.rows == pool[:2]
    s.observe(obs(r1, [[1.0, 0.0], [1.0, 1.0]]))  # pool[0] passes
    r2 = s.request(2, 2, step=0)
    assert r2.rows == pool[2:4]
    s.observe(obs(r2, [[0.0, 0.0], [0.0, 0.0]]))
    r3 = s.request(2, 2, step=0)  # round 3 of 3: must train; the refresh is not done, so the rows passed so far
    assert r3.rows == [pool[0], pool[0]] and s.observe(obs(r3, [[1.0, 0.0], [0.0, 0.0]])) == [True, True]
    assert s.metrics()["refreshes"] == 0
    r4 = s.request(2, 2, step=1)  # next step: the last two candidates
    assert r4.rows == pool[4:6]
    s.observe(obs(r4, [[0.5, 1.0], [1.0, 1.0]]))  # pool[4] passes; the pool is complete
    assert s.metrics()["refreshes"] == 1 and s.metrics()["kept"] == 2
    assert sorted(s.request(2, 2, step=1).rows) == sorted([pool[0], pool[4]])


def test_a_pool_that_keeps_nothing_falls_back_to_uniform_rows_and_is_retried_next_step():
    s = VarianceSelectSampler(12, seed=2, pool_size=3)
    order = UniformSampler(12, seed=2).next(8)
    first = s.request(2, 2, step=0)
    s.observe(obs(first, [[1.0, 1.0]] * 3))  # nothing disagrees
    assert s.metrics()["kept"] == 0 and s.metrics()["pass_frac"] == 0.0
    fallback = s.request(2, 2, step=0)
    assert fallback.rows == order[3:5] and s.metrics()["fallback"] == 1  # the uniform order, as GRPO would
    again = s.request(2, 2, step=1)
    assert again.rows == order[5:8] and again.num_generations == [2, 2, 2]  # a new pool at the next step


def test_refresh_every_replaces_the_kept_set_with_a_new_pool():
    s = VarianceSelectSampler(12, seed=4, pool_size=2, refresh_every=2)
    order = UniformSampler(12, seed=4).next(4)
    s.observe(obs(s.request(1, 2, step=0), [[1.0, 0.0], [1.0, 1.0]]))
    assert s.request(1, 2, step=0).rows == [order[0]]
    assert s.request(1, 2, step=1).rows == [order[0]]  # step 1: no refresh due
    refresh = s.request(1, 2, step=2)
    assert refresh.rows == order[2:4]
    s.observe(obs(refresh, [[1.0, 1.0], [0.0, 1.0]]))
    assert s.request(1, 2, step=2).rows == [order[3]]  # the old selection is gone
    assert s.metrics()["refreshes"] == 2


def synthetic_rewards(rows, generations):
    """Rows ≡ 0 (mod 3) always right, ≡ 1 always wrong, ≡ 2 mixed: only the last pass the selection."""
    out = []
    for row, g in zip(rows, generations, strict=True):
        if row % 3 == 2:
            out.append([float(j % 2) for j in range(g)])
        else:
            out.append([float(row % 3 == 0)] * g)
    return out


def run_steps(sampler, steps, start=0, num_prompts=3, num_generations=4):
    """The trainer's loop (``Trainer._sample_batch``): rounds until num_prompts groups are kept or max_rounds."""
    log = []
    for step in range(start, start + steps):
        needed, rounds = num_prompts, 0
        while needed > 0 and rounds < sampler.max_rounds:
            request = sampler.request(needed, num_generations, step=step, total_steps=100)
            rounds += 1
            keep = sampler.observe(obs(request, synthetic_rewards(request.rows, request.num_generations)))
            log.append((step, request.rows, request.num_generations, keep))
            needed -= min(needed, sum(keep))
    return log


def test_trained_rows_all_pass_the_selection_once_it_has_run():
    s = VarianceSelectSampler(60, seed=0, pool_size=9, estimate_batch=4, refresh_every=3, max_rounds=3)
    log = run_steps(s, 8)
    trained = [row for step, rows, _, keep in log if all(keep) for row in rows if step >= 1]
    assert trained and all(row % 3 == 2 for row in trained)
    assert s.metrics()["refreshes"] >= 2


def test_checkpoint_and_resume_continue_with_identical_requests():
    settings = dict(pool_size=9, estimate_batch=4, refresh_every=3, max_rounds=3)
    s = VarianceSelectSampler(60, seed=0, **settings)
    run_steps(s, 4)  # stops in the middle of the second refresh's pool
    buffer = io.BytesIO()
    torch.save(s.state_dict(), buffer)  # through a checkpoint file, as the trainer saves and loads it
    buffer.seek(0)
    resumed = VarianceSelectSampler(60, seed=123, **settings)  # another seed: everything must come from the state
    resumed.load_state_dict(torch.load(buffer, weights_only=False))
    expected = run_steps(s, 6, start=4)
    assert run_steps(resumed, 6, start=4) == expected
    assert resumed.metrics() == s.metrics() and resumed.state_dict() == s.state_dict()
    assert any(gens == [4] * len(rows) and not any(keep) for _, rows, gens, keep in expected)  # a refresh ran


def test_state_dict_is_a_copy():
    s = VarianceSelectSampler(30, seed=0, pool_size=3)
    run_steps(s, 2)
    state = s.state_dict()
    kept = list(state["kept"])
    run_steps(s, 20, start=2)
    assert state["kept"] == kept


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"pool_size": 0}, "pool_size"),
        ({"num_samples": 1}, "num_samples"),
        ({"min_variance": -1.0}, "min_variance"),
        ({"min_variance": 0.2, "max_variance": 0.1}, "max_variance"),
        ({"refresh_every": -1}, "refresh_every"),
        ({"estimate_batch": 0}, "estimate_batch"),
        ({"objective": "loss"}, "objective"),
        ({"max_rounds": 1}, "max_rounds"),
    ],
)
def test_bad_settings_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        VarianceSelectSampler(10, **kwargs)


def test_an_observation_of_other_rows_than_requested_raises():
    s = VarianceSelectSampler(10, seed=0, pool_size=2)
    request = s.request(1, 2)
    with pytest.raises(ValueError, match="not those of the last request"):
        s.observe(Observation([request.rows[0]], [torch.ones(2)], [torch.ones(2)]))
    s.observe(obs(request, [[1.0, 0.0], [1.0, 1.0]]))
    with pytest.raises(ValueError, match="once"):  # the same round twice
        s.observe(obs(request, [[1.0, 0.0], [1.0, 1.0]]))


def test_one_completion_per_candidate_has_no_variance():
    with pytest.raises(ValueError, match=">= 2 completions"):
        VarianceSelectSampler(10).request(2, 1)


def test_the_pool_is_capped_at_the_data_set_and_the_sampler_is_registered():
    assert SAMPLERS["variance_select"] is VarianceSelectSampler
    s = SAMPLERS["variance_select"](1, seed=0)  # the config check builds samplers with one row
    assert s.request(4, 2).rows == [0]


def test_dual_reward_preset_is_grpo_with_the_variance_select_sampler():
    """The "dual_reward" preset: GRPO's objective (hand-checked as expected_grpo in tests/algorithms/test_presets.py)
    with Temporal-RLT's selection as its prompt sampler."""
    preset, grpo = PRESETS["dual_reward"], PRESETS["grpo"]
    assert preset.arxiv == "2506.01908"
    assert (preset.advantage, preset.loss, preset.aggregation, preset.regularizers) == (
        grpo.advantage,
        grpo.loss,
        grpo.aggregation,
        grpo.regularizers,
    )
    assert preset.trainer["sampler"] == "variance_select"
    sampler = SAMPLERS[preset.trainer["sampler"]](100, seed=0, **preset.trainer["sampler_args"])
    assert (sampler.pool_size, sampler.min_variance, sampler.refresh_every) == (64, 0.0, 10)
    assert "dual" in preset.notes
