import math

import pytest
import torch

from grpolab.core.hard_mining import hard_count, in_stage_two, mine_hard, pass_rates


def test_the_miner_returns_exactly_the_prompts_with_pass_rate_at_most_tau():
    # spec unit test, hand-made stage-1 counts; p̂ = [0, 1/8, 2/8, 3/8, 1, unseen, 2.5/10 (soft), 3/10]
    correct = torch.tensor([0.0, 1.0, 2.0, 3.0, 8.0, 0.0, 2.5, 3.0])
    total = torch.tensor([8.0, 8.0, 8.0, 8.0, 8.0, 0.0, 10.0, 10.0])
    assert mine_hard(correct, total, tau=0.25).tolist() == [0, 1, 2, 6]  # p̂ = τ counts as hard
    assert mine_hard(correct, total, tau=0.3).tolist() == [0, 1, 2, 6, 7]  # 3/10 = 0.3 exactly (float 0.30000…4)
    assert mine_hard(correct, total, tau=0.0).tolist() == [0]  # never solved
    assert mine_hard(correct, total, tau=1.0).tolist() == [0, 1, 2, 3, 4, 6, 7]  # every seen prompt, never unseen
    assert mine_hard(correct, total, tau=0.25, min_rollouts=9).tolist() == [6]  # only rows with >= 9 rollouts


def test_pass_rates_by_hand():
    rates = pass_rates(torch.tensor([1.0, 0.0, 3.5]), torch.tensor([4.0, 0.0, 7.0]))
    assert rates[0].item() == 0.25 and math.isnan(rates[1].item()) and rates[2].item() == 0.5


def test_stage_two_starts_at_the_fraction_of_the_run():
    assert [in_stage_two(s, 20) for s in (0, 9, 10, 19)] == [False, False, True, True]
    assert [in_stage_two(s, 3, stage1_fraction=0.5) for s in range(3)] == [False, False, True]  # 1.5 steps
    assert in_stage_two(0, 5, stage1_fraction=0.0) and not in_stage_two(4, 5, stage1_fraction=1.0)
    assert [in_stage_two(s, 10, stage1_fraction=0.3) for s in (2, 3)] == [False, True]


def test_hard_count_rounds_half_up_and_is_zero_for_an_empty_pool():
    assert hard_count(16, 50) == 8  # 0.5 · 16
    assert hard_count(3, 50) == 2  # 1.5 rounds up
    assert hard_count(5, 50, hard_fraction=0.3) == 2  # 1.5 rounds up
    assert hard_count(10, 50, hard_fraction=0.24) == 2  # 2.4 rounds down
    assert hard_count(4, 1, hard_fraction=1.0) == 4  # the sampler repeats a small pool
    assert hard_count(16, 0) == 0 and hard_count(16, 50, hard_fraction=0.0) == 0


def test_miner_equals_a_python_loop_on_random_counts():
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        total = torch.randint(0, 12, (30,), generator=g).double()  # [30], some unseen
        correct = torch.floor(torch.rand(30, generator=g, dtype=torch.float64) * (total + 1))  # [30]
        tau = float(torch.rand(1, generator=g))
        min_rollouts = int(torch.randint(1, 6, (1,), generator=g))
        want = [i for i in range(30) if total[i] >= min_rollouts and correct[i] / total[i] <= tau]
        assert mine_hard(correct, total, tau=tau, min_rollouts=min_rollouts).tolist() == want


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: mine_hard(torch.zeros(2), torch.ones(2), tau=1.5), "tau"),
        (lambda: mine_hard(torch.zeros(2), torch.ones(2), min_rollouts=0), "min_rollouts"),
        (lambda: pass_rates(torch.tensor([2.0]), torch.tensor([1.0])), "correct <= total"),
        (lambda: pass_rates(torch.zeros(2), torch.zeros(3)), "same shape"),
        (lambda: in_stage_two(0, 10, stage1_fraction=1.2), "stage1_fraction"),
        (lambda: in_stage_two(0, 0), "total_steps"),
        (lambda: hard_count(8, 3, hard_fraction=-0.5), "hard_fraction"),
    ],
)
def test_bad_inputs_raise(call, match):
    with pytest.raises(ValueError, match=match):
        call()
