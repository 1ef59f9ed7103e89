"""CurES math (arXiv 2510.01037): posterior accuracy, sampling distribution, gradient spread σ, rollout allocation."""

import math

import pytest
import torch

from grpolab.core.cures import (
    allocation_sigma,
    posterior_accuracy,
    rollout_allocation,
    sampling_distribution,
    sampling_logits,
)


def test_posterior_accuracy_is_the_beta_mean():
    # (c + 1)/(N + 2): c=0, N=4 -> 1/6 (the spec's check); c=4, N=4 -> 5/6; never rolled out -> 1/2; 3 of 8 -> 4/10
    p = posterior_accuracy(torch.tensor([0, 4, 0, 3]), torch.tensor([4, 4, 0, 8]))
    assert p.tolist() == pytest.approx([1 / 6, 5 / 6, 1 / 2, 0.4], abs=1e-12)


def test_code_form_matches_the_hand_computed_distribution():
    # c = [0, 4] of 4: p̂ = [1/6, 5/6], sqrt(p̂(1-p̂)) = sqrt(5)/6 = 0.3726779962 for both;
    # t = (c + 1)/0.01 = [100, 500] -> log-scores [0.003726779962, 0.000745355992];
    # P0 = 1/(1 + exp(-(0.003726779962 - 0.000745355992))) = 1/(1 + exp(-0.00298142397)) = 0.5007453560
    logits = sampling_logits(torch.tensor([0, 4]), torch.tensor([4, 4]))
    assert logits.tolist() == pytest.approx([0.003726779962, 0.000745355992], abs=1e-11)
    probs = sampling_distribution(torch.tensor([0, 4]), torch.tensor([4, 4]))
    assert probs.tolist() == pytest.approx([0.5007453560, 0.4992546440], abs=1e-9)


def test_code_form_is_nearly_uniform_and_favours_unsolved_middle_prompts():
    c = torch.tensor([0, 1, 2, 3, 4, 2])
    n = torch.tensor([4, 4, 4, 4, 4, 4])
    p = sampling_distribution(c, n)
    assert float(p.sum()) == pytest.approx(1.0, abs=1e-12)
    # every log-score is in [0, scale/2] = [0, 0.005]: max/min probability <= exp(0.005)
    assert float(p.max() / p.min()) <= math.exp(0.005)
    # equal counts -> equal probability; fewer successes (smaller t) -> larger score at the same spread
    assert p[2] == p[5]
    assert p[0] > p[4]  # same spread sqrt(5)/6, t = 100 vs 500


def test_entropy_form_hand_computed_and_peaks_at_one_half():
    # c = [2, 4] of 4: p̂ = [1/2, 5/6]: spread [0.5, 0.372678]; / 0.1 -> [5, 3.72678];
    # P0 = 1/(1 + exp(-1.27322)) = 1/(1 + 0.279930) = 0.781293
    p = sampling_distribution(torch.tensor([2, 4]), torch.tensor([4, 4]), form="entropy", temperature=0.1)
    assert p.tolist() == pytest.approx([0.781293, 0.218707], abs=1e-6)
    q = sampling_distribution(torch.tensor([0, 1, 2, 3, 4]), torch.tensor([4] * 5), form="entropy", temperature=0.2)
    assert int(q.argmax()) == 2 and q[1] == pytest.approx(float(q[3])) and q[0] == pytest.approx(float(q[4]))


def test_distribution_is_stable_for_huge_scores():
    # a tiny temperature makes exp(score) overflow in float64; the log-space softmax does not
    p = sampling_distribution(torch.tensor([2, 0]), torch.tensor([4, 4]), form="entropy", temperature=1e-4)
    assert torch.isfinite(p).all() and p.tolist() == pytest.approx([1.0, 0.0], abs=1e-12)
    q = sampling_distribution(torch.tensor([0, 4]), torch.tensor([4, 4]), scale=1e6)
    assert torch.isfinite(q).all() and float(q.sum()) == pytest.approx(1.0)


def test_sigma_from_two_correct_and_two_wrong_norms():
    # correct norms [1, 3], wrong [2, 4]: a = b = 1/2; E g_c^2 = 5, E g_w^2 = 10, E g_c = 2, E g_w = 3
    # sigma^2 = 0.5*0.25*5 + 0.25*0.5*10 - 0.0625*(2 - 3)^2 = 0.625 + 1.25 - 0.0625 = 1.8125
    g = torch.tensor([1.0, 2.0, 3.0, 4.0])
    ok = torch.tensor([True, False, True, False])
    sigma = allocation_sigma(g, ok, torch.zeros(4, dtype=torch.long), 1)
    assert sigma.tolist() == pytest.approx([math.sqrt(1.8125)], abs=1e-12)


def test_sigma_three_correct_one_wrong_and_one_sided_groups():
    # group 0: correct [1, 1, 1], wrong [3]: a = 3/4, b = 1/4; E g_c^2 = 1, E g_w^2 = 9, E g_c = 1, E g_w = 3
    #   sigma^2 = 0.75*0.0625*1 + 0.5625*0.25*9 - 0.5625*0.0625*4 = 0.046875 + 1.265625 - 0.140625 = 1.171875
    # group 1: all correct (a = 1) -> 0; group 2: all wrong (a = 0) -> 0; group 3: a single completion -> 0
    g = torch.tensor([1.0, 5.0, 1.0, 7.0, 1.0, 3.0, 2.0, 9.0])
    ok = torch.tensor([True, True, True, False, True, False, False, True])
    group = torch.tensor([0, 1, 0, 2, 0, 0, 2, 3])  # non-contiguous, unequal sizes
    sigma = allocation_sigma(g, ok, group, 4)
    assert sigma.tolist() == pytest.approx([math.sqrt(1.171875), 0.0, 0.0, 0.0], abs=1e-12)


def _sigma_loop(g, ok, group, num_groups):
    """Obvious per-group re-implementation of EPICInitializer.init_sample_size (missing side -> [0])."""
    out = []
    for k in range(num_groups):
        members = [i for i in range(len(g)) if int(group[i]) == k]
        gc = [float(g[i]) for i in members if bool(ok[i])] or [0.0]
        gw = [float(g[i]) for i in members if not bool(ok[i])] or [0.0]
        a = sum(bool(ok[i]) for i in members) / len(members)
        b = 1 - a
        var = a * b**2 * sum(x * x for x in gc) / len(gc) + a**2 * b * sum(x * x for x in gw) / len(gw)
        var -= a**2 * b**2 * (sum(gc) / len(gc) - sum(gw) / len(gw)) ** 2
        out.append(math.sqrt(max(var, 0.0)))
    return out


def test_sigma_loop_equals_vectorised_on_random_unequal_groups():
    gen = torch.Generator().manual_seed(0)
    for _ in range(20):
        num_groups = int(torch.randint(1, 6, (1,), generator=gen))
        group = torch.cat([torch.arange(num_groups), torch.randint(0, num_groups, (12,), generator=gen)])
        group = group[torch.randperm(len(group), generator=gen)]
        g = torch.rand(len(group), generator=gen) * 5
        ok = torch.rand(len(group), generator=gen) > 0.5
        expected = _sigma_loop(g, ok, group, num_groups)
        assert allocation_sigma(g, ok, group, num_groups).tolist() == pytest.approx(expected, abs=1e-9)


def test_equal_sigma_allocates_uniformly_and_sums_to_the_budget():
    n = rollout_allocation(torch.tensor([2.0, 2.0, 2.0, 2.0]), n_max=8)
    assert n.tolist() == [8, 8, 8, 8] and int(n.sum()) == 4 * 8


def test_allocation_hand_computed_and_a_equal_one_gets_nothing():
    # sigma of an all-correct prompt (a = 1) is 0, so it gets 0 rollouts; budget B*N_max = 4*4 = 16 over [1, 3, 0]
    # -> [16/4, 16*3/4, 0] = [4, 12, 0]
    all_correct = allocation_sigma(torch.tensor([1.0, 2.0]), torch.tensor([True, True]), torch.tensor([0, 0]), 1)
    sigma = torch.cat([torch.tensor([1.0, 3.0]), all_correct.float()])
    assert rollout_allocation(sigma, n_max=4, num_prompts=4).tolist() == [4, 12, 0]
    # halves round to even as np.round: budget 2 over [1, 3] -> [0.5, 1.5] -> [0, 2]
    assert rollout_allocation(torch.tensor([1.0, 3.0]), n_max=1).tolist() == [0, 2]


def test_all_zero_sigma_falls_back_to_n_max_each():
    assert rollout_allocation(torch.zeros(3), n_max=8).tolist() == [8, 8, 8]


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: posterior_accuracy(torch.tensor([5]), torch.tensor([4])), "0 <= correct <= total"),
        (lambda: posterior_accuracy(torch.tensor([1, 2]), torch.tensor([4])), "same shape"),
        (lambda: sampling_logits(torch.tensor([1]), torch.tensor([4]), form="paper"), "form must be one of"),
        (lambda: sampling_logits(torch.tensor([1]), torch.tensor([4]), scale=0.0), "must be > 0"),
        (lambda: sampling_logits(torch.tensor([1]), torch.tensor([4]), form="entropy", temperature=-1), "> 0"),
        (lambda: rollout_allocation(torch.tensor([1.0]), n_max=0), "n_max"),
        (lambda: rollout_allocation(torch.tensor([-1.0, 1.0]), n_max=4), ">= 0"),
        (lambda: rollout_allocation(torch.zeros(0), n_max=4), "non-empty"),
        (
            lambda: allocation_sigma(torch.tensor([-1.0]), torch.tensor([True]), torch.tensor([0]), 1),
            "finite and >= 0",
        ),
        (lambda: allocation_sigma(torch.ones(2), torch.ones(3, dtype=torch.bool), torch.zeros(2).long(), 1), "same"),
    ],
)
def test_bad_input_raises(call, match):
    with pytest.raises(ValueError, match=match):
        call()
