"""The CurES prompt sampler (arXiv 2510.01037) on synthetic observations: estimation rounds, Bayesian draws, rollout
allocation, refresh schedule, checkpoints; and the "cures" preset's wiring."""

import math
from collections import Counter

import pytest
import torch

from grpolab.algorithms import PRESETS
from grpolab.data.cures import CurESSampler
from grpolab.data.sampler import SAMPLERS, Observation

MIXED = "mixed"  # one correct and one wrong completion with norms [x, x]: a = b = 1/2 -> sigma = x/2


def group(kind, x=2.0):
    """(accuracies, grad norms) of a 2-completion estimation group."""
    if kind == MIXED:
        return torch.tensor([1.0, 0.0]), torch.tensor([x, x])
    if kind == "correct":
        return torch.ones(2), torch.tensor([x, x])
    return torch.zeros(2), torch.tensor([x, x])


def estimate(sampler, kinds, *, step=0, num_prompts=2, G=8):
    """Run the estimation round of ``step`` with pool position i described by kinds[i] ((kind, x) or kind)."""
    req = sampler.request(num_prompts, G, step=step)
    assert req.measure == frozenset({"grad_norms"}) and len(req.rows) == len(kinds)
    groups = [group(*k) if isinstance(k, tuple) else group(k) for k in kinds]
    acc = [a for a, _ in groups]
    keep = sampler.observe(Observation(req.rows, acc, acc, step=step, grad_norms=[g for _, g in groups]))
    assert keep == [False] * len(kinds)  # estimation groups never train
    return req.rows


def train_round(sampler, req, acc_by_row=None, step=0):
    sizes = zip(req.rows, req.num_generations, strict=True)
    acc = [acc_by_row[r] if acc_by_row else torch.ones(n) for r, n in sizes]
    return sampler.observe(Observation(req.rows, acc, acc, step=step))


def test_registered_and_the_preset_uses_it():
    assert SAMPLERS["cures"] is CurESSampler and CurESSampler.max_rounds == 2
    preset = PRESETS["cures"]
    assert preset.trainer["sampler"] == "cures" and preset.advantage.name == "grpo"
    assert preset.trainer["sampler_args"]["n_min"] == 4 and preset.trainer["sampler_args"]["n_max"] == 8


def test_step_zero_estimates_a_pool_then_trains_on_the_informative_prompts():
    s = CurESSampler(100, seed=0, pool_size=4, n_min=2)
    est = s.request(2, 8, step=0)
    assert est.num_generations == [2, 2, 2, 2] and len(set(est.rows)) == 4
    # pool: mixed with norms [2, 2] (sigma 1), all correct, mixed [6, 6] (sigma 3), all wrong
    acc = [torch.tensor([1.0, 0.0]), torch.ones(2), torch.tensor([0.0, 1.0]), torch.zeros(2)]
    norms = [torch.tensor([2.0, 2.0]), torch.ones(2), torch.tensor([6.0, 6.0]), torch.ones(2)]
    assert s.observe(Observation(est.rows, acc, acc, grad_norms=norms)) == [False] * 4
    # p̂ = [(1+1)/4, 3/4, 2/4, 1/4] -> mean 0.5; half of the pool has sigma > 0; mean sigma (1 + 3)/4 = 1
    m = s.metrics()
    assert m["pool_p_hat"] == pytest.approx(0.5) and m["pool_informative"] == 0.5 and m["pool_sigma"] == 1.0
    assert m["estimated"] == 1.0
    train = s.request(2, 8, step=0)
    assert train.measure == frozenset()
    # budget B * N_max = 16 shared 1 : 3 -> [4, 12]; the all-correct and all-wrong prompts get 0 and are skipped
    alloc = dict(zip(train.rows, train.num_generations, strict=True))
    assert alloc == {est.rows[0]: 4, est.rows[2]: 12}
    assert train_round(s, train) == [True, True]  # training groups are all kept
    m = s.metrics()
    assert (m["alloc_min"], m["alloc_max"], m["alloc_total"], m["filled"]) == (4.0, 12.0, 16.0, 0.0)


def test_n_max_defaults_to_the_trainers_group_size():
    for n_max, G, expected in ((None, 6, 6), (3, 6, 3)):
        s = CurESSampler(50, seed=1, pool_size=4, n_min=2, n_max=n_max)
        estimate(s, [MIXED, MIXED, MIXED, MIXED], G=G)
        req = s.request(2, G, step=0)
        assert req.num_generations == [expected, expected]  # equal sigma -> uniform N_max


def test_zero_allocation_is_dropped_and_replaced_by_the_next_draw():
    # three prompts with sigma 1, 1, 0.0005 (+ one all wrong); B = 2, N_max = 4: budget 8 -> the tiny one rounds to
    # 8 * 0.0005 / 1.0005 = 0.004 -> 0, is dropped, and the next sigma = 1 prompt takes its place
    skipped = Counter()
    for seed in range(12):
        s = CurESSampler(40, seed=seed, pool_size=4, n_min=2, n_max=4)
        rows = estimate(s, [(MIXED, 2.0), (MIXED, 2.0), (MIXED, 0.001), "wrong"])
        req = s.request(2, 8, step=0)
        assert sorted(req.rows) == sorted(rows[:2]) and req.num_generations == [4, 4]
        skipped[s.metrics()["skipped"]] += 1
    # the tiny prompt (and the all-wrong one) is drawn before the batch is full in some seeds, not in others
    assert set(skipped) <= {0.0, 1.0, 2.0} and len(skipped) > 1


def test_too_few_informative_prompts_fill_the_batch_at_n_max():
    s = CurESSampler(40, seed=3, pool_size=5, n_min=2, n_max=8)
    rows = estimate(s, [MIXED, "correct", "wrong", "correct", "wrong"], num_prompts=3)
    req = s.request(3, 8, step=0)
    # the one informative prompt shares 1 * N_max = 8; two more drawn prompts come at N_max each
    assert len(req.rows) == 3 and len(set(req.rows)) == 3 and rows[0] in req.rows
    assert req.num_generations == [8, 8, 8] and s.metrics()["filled"] == 2.0


def test_no_informative_prompt_is_grpo_on_the_pool():
    s = CurESSampler(40, seed=0, pool_size=6, n_min=2)
    rows = estimate(s, ["correct", "wrong"] * 3, num_prompts=4)
    req = s.request(4, 8, step=0)
    assert req.num_generations == [8] * 4 and set(req.rows) <= set(rows) and len(set(req.rows)) == 4


def test_draws_follow_the_sampling_distribution_without_replacement():
    # entropy form, temperature 0.1, all sigma equal: pool p̂ from training counts is what differs.
    s = CurESSampler(30, seed=0, pool_size=3, n_min=2, form="entropy", temperature=0.1, update_every=0)
    rows = estimate(s, [MIXED, MIXED, MIXED], num_prompts=1)
    # make the counts differ: row 0 stays at 1 of 2, rows 1 and 2 get 6 more correct (p̂ = 8/10)
    s.observe(Observation([rows[1], rows[2]], [torch.ones(6)] * 2, [torch.ones(6)] * 2))
    # log-scores: sqrt(0.5*0.5)/0.1 = 5 and sqrt(0.8*0.2)/0.1 = 4 -> P = e^5 / (e^5 + 2 e^4) = 0.5761
    p0 = math.exp(5) / (math.exp(5) + 2 * math.exp(4))
    assert s.probabilities() == pytest.approx([p0, (1 - p0) / 2, (1 - p0) / 2], abs=1e-9)
    first = Counter(s.request(1, 8, step=1).rows[0] for _ in range(3000))
    assert first[rows[0]] / 3000 == pytest.approx(p0, abs=0.03)
    for _ in range(20):  # a batch never repeats a prompt
        assert len(set(s.request(3, 8, step=1).rows)) == 3


def test_code_form_draw_is_nearly_uniform():
    s = CurESSampler(30, seed=0, pool_size=3, n_min=2, update_every=0)
    estimate(s, [MIXED, MIXED, MIXED], num_prompts=1)
    assert s.probabilities() == pytest.approx([1 / 3] * 3, abs=1e-12)  # equal counts
    s.request(1, 8, step=1)
    assert s.metrics()["prob_ratio"] == pytest.approx(1.0)


def test_training_rounds_update_the_counts_only_when_asked():
    for update in (True, False):
        s = CurESSampler(30, seed=0, pool_size=2, n_min=2, update_counts=update, form="entropy")
        rows = estimate(s, [MIXED, MIXED], num_prompts=2)
        before = s.metrics()["pool_p_hat"]  # both 1 of 2 -> p̂ = 1/2
        req = s.request(2, 8, step=0)
        train_round(s, req)  # every completion correct
        after = s.metrics()["pool_p_hat"]
        assert before == 0.5
        # each row: (1 + 8 + 1)/(2 + 8 + 2) = 10/12 with the update
        assert after == (pytest.approx(10 / 12) if update else 0.5)
        assert set(rows) == set(req.rows)


def test_refresh_schedule_and_pools_walk_through_the_data():
    s = CurESSampler(20, seed=4, pool_size=5, n_min=2, update_every=3)
    pools = []
    for step in range(12):
        req = s.request(2, 8, step=step)
        if req.measure:
            pools.append((step, req.rows))
            acc = [torch.tensor([1.0, 0.0])] * 5
            s.observe(Observation(req.rows, acc, acc, step=step, grad_norms=[torch.ones(2)] * 5))
            assert s.metrics()["estimated"] == 1.0
            req = s.request(2, 8, step=step)
        assert not req.measure and len(req.rows) == 2
        train_round(s, req, step=step)
        if step % 3:
            assert s.metrics()["estimated"] == 0.0
    assert [step for step, _ in pools] == [0, 3, 6, 9]
    assert sorted(r for _, rows in pools for r in rows) == list(range(20))  # one epoch of the data, no repeats
    once = CurESSampler(20, seed=4, pool_size=5, n_min=2, update_every=0)
    estimate(once, [MIXED] * 5)
    assert not any(once.request(2, 8, step=k).measure for k in range(1, 30))


def test_pool_is_at_least_the_batch_and_at_most_the_data():
    assert len(CurESSampler(100, pool_size=4).request(10, 8, step=0).rows) == 10
    assert sorted(CurESSampler(6, pool_size=64).request(2, 8, step=0).rows) == list(range(6))


def test_unequal_estimation_groups():
    # a group of 3 (two correct [1, 3], one wrong [2]) and one of 1: a = 2/3, b = 1/3; E g_c^2 = 5, E g_w^2 = 4,
    # E g_c = 2, E g_w = 2 -> sigma^2 = 2/3 * 1/9 * 5 + 4/9 * 1/3 * 4 - 0 = 10/27 + 16/27 = 26/27
    s = CurESSampler(10, seed=0, pool_size=2, n_min=2)
    req = s.request(2, 8, step=0)
    acc = [torch.tensor([1.0, 0.0, 1.0]), torch.tensor([1.0])]
    s.observe(Observation(req.rows, acc, acc, grad_norms=[torch.tensor([1.0, 2.0, 3.0]), torch.tensor([4.0])]))
    assert s.metrics()["pool_sigma"] == pytest.approx(math.sqrt(26 / 27) / 2)
    assert s.request(2, 8, step=0).rows[0] == req.rows[0]  # the lone prompt has sigma 0: filled after it


def test_resume_gives_identical_next_requests():
    s = CurESSampler(200, seed=5, pool_size=8, n_min=2, update_every=2)
    kinds = [(MIXED, 1.0), (MIXED, 3.0), "correct", (MIXED, 2.0), "wrong", (MIXED, 5.0), (MIXED, 0.5), "correct"]
    estimate(s, kinds, num_prompts=3)
    train_round(s, s.request(3, 8, step=0))
    train_round(s, s.request(3, 8, step=1))
    state = s.state_dict()
    again = CurESSampler(200, seed=99, pool_size=8, n_min=2, update_every=2)
    again.load_state_dict(state)
    assert again.metrics() == s.metrics()
    for step in (1, 1):  # training draws
        assert again.request(3, 8, step=step) == s.request(3, 8, step=step)
    est_a, est_b = again.request(3, 8, step=2), s.request(3, 8, step=2)  # the next estimation pool
    assert est_a == est_b and est_a.measure
    pending = s.state_dict()
    third = CurESSampler(200, seed=7, pool_size=8, n_min=2, update_every=2)
    third.load_state_dict(pending)  # a checkpoint between an estimation request and its observation
    assert third.request(3, 8, step=2) == est_b


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_min": 1}, "n_min"),
        ({"n_max": 0}, "n_max"),
        ({"update_every": -1}, "update_every"),
        ({"pool_size": 0}, "pool_size"),
        ({"form": "paper"}, "form"),
        ({"scale": 0.0}, "scale"),
        ({"temperature": -1.0}, "temperature"),
        ({"update_counts": "yes"}, "update_counts"),
        ({"threshold": "half"}, "threshold"),
    ],
)
def test_rejects_bad_settings(kwargs, match):
    with pytest.raises(ValueError, match=match):
        CurESSampler(10, **kwargs)


def test_estimation_needs_gradient_norms_and_the_pool_rows():
    s = CurESSampler(10, seed=0, pool_size=2, n_min=2)
    req = s.request(2, 8, step=0)
    acc = [torch.ones(2)] * 2
    with pytest.raises(ValueError, match="gradient norms"):
        s.observe(Observation(req.rows, acc, acc))
    with pytest.raises(ValueError, match="pool rows"):
        s.observe(Observation(req.rows[::-1], acc, acc, grad_norms=[torch.ones(2)] * 2))
    with pytest.raises(ValueError, match="one gradient norm per completion"):
        s.observe(Observation(req.rows, acc, acc, grad_norms=[torch.ones(3), torch.ones(2)]))
