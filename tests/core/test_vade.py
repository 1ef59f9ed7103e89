import math

import pytest
import torch

from grpolab.core.vade import (
    decay_counts,
    info_gain,
    posterior_mean,
    select_top,
    thompson_draw,
    update_counts,
    vade_step,
)


def test_posterior_mean_of_three_correct_one_wrong_is_four_sixths_and_thompson_draws_agree():
    # spec unit test: (α, β) = (3, 1) -> Beta(4, 2), mean 4/6
    assert posterior_mean(torch.tensor([3.0]), torch.tensor([1.0])).item() == pytest.approx(4 / 6)
    g = torch.Generator().manual_seed(0)
    draws = thompson_draw(torch.full((200_000,), 3.0), torch.full((200_000,), 1.0), generator=g)  # [200000]
    assert draws.mean().item() == pytest.approx(4 / 6, abs=3e-3)
    # Var Beta(4, 2) = 4·2 / (6² · 7) = 8 / 252
    assert draws.var().item() == pytest.approx(8 / 252, abs=1e-3)
    # no rollout yet: Beta(1, 1), the uniform distribution (mean 1/2, variance 1/12)
    flat = thompson_draw(torch.zeros(200_000), torch.zeros(200_000), generator=g)
    assert flat.mean().item() == pytest.approx(0.5, abs=3e-3) and flat.var().item() == pytest.approx(1 / 12, abs=1e-3)


def test_info_gain_is_zero_at_the_ends_and_peaks_at_one_third():
    assert info_gain(torch.tensor([0.0, 1.0])).tolist() == [0.0, 0.0]
    grid = torch.linspace(0, 1, 30_001, dtype=torch.float64)  # contains 1/3 up to 1/60000
    assert grid[info_gain(grid).argmax()].item() == pytest.approx(1 / 3, abs=1e-4)
    assert info_gain(torch.tensor(1 / 3, dtype=torch.float64)).item() == pytest.approx(4 / 27)
    # asymmetric: p = 0.25 gives 0.25 · 0.75² = 0.140625, p = 0.75 gives 0.75 · 0.25² = 0.046875
    assert info_gain(torch.tensor([0.25, 0.75])).tolist() == pytest.approx([0.140625, 0.046875])


def test_decay_moves_a_one_sided_posterior_mean_toward_one_half():
    # spec unit test. (3, 0): mean 4/5; halved to (1.5, 0): mean 2.5/3.5 = 5/7
    alpha, beta = decay_counts(torch.tensor([3.0, 0.0]), torch.tensor([0.0, 5.0]), 1, decay_unselected=0.5)
    assert alpha.tolist() == [1.5, 0.0] and beta.tolist() == [0.0, 2.5]
    before = posterior_mean(torch.tensor([3.0, 0.0]), torch.tensor([0.0, 5.0]))  # [4/5, 1/7]
    after = posterior_mean(alpha, beta)  # [5/7, 1/4.5]
    assert after.tolist() == pytest.approx([5 / 7, 1 / 4.5])
    assert ((after - 0.5).abs() < (before - 0.5).abs()).all()
    # λ2^steps per row: 0.9^0 = 1, 0.9^3 = 0.729
    a, b = decay_counts(torch.tensor([2.0, 2.0]), torch.tensor([1.0, 1.0]), torch.tensor([0, 3]), decay_unselected=0.9)
    assert a.tolist() == pytest.approx([2.0, 1.458]) and b.tolist() == pytest.approx([1.0, 0.729])


def test_update_counts_by_hand():
    # the paper figure's example, λ1 = 0.2: (0.1, 8.4) + 1 of 8 -> (0.02 + 1, 1.68 + 7) = (1.02, 8.68);
    # (2.7, 5.3) + 4 of 8 -> (0.54 + 4, 1.06 + 4) = (4.54, 5.06)
    a, b = update_counts(
        torch.tensor([0.1, 2.7], dtype=torch.float64),
        torch.tensor([8.4, 5.3], dtype=torch.float64),
        torch.tensor([1.0, 4.0], dtype=torch.float64),
        torch.tensor([8.0, 8.0], dtype=torch.float64),
        decay_selected=0.2,
    )
    assert a.tolist() == pytest.approx([1.02, 4.54]) and b.tolist() == pytest.approx([8.68, 5.06])
    # λ1 = 0.5, soft accuracies summing to 2.5 of 4: α = 1 + 2.5, β = 0.5 + 1.5
    a, b = update_counts(
        torch.tensor([2.0]), torch.tensor([1.0]), torch.tensor([2.5]), torch.tensor([4.0]), decay_selected=0.5
    )
    assert a.item() == pytest.approx(3.5) and b.item() == pytest.approx(2.0)
    # λ1 = 1 is plain Bayesian accumulation; λ1 = 0 keeps only the latest group
    a, b = update_counts(
        torch.tensor([2.0]), torch.tensor([1.0]), torch.tensor([1.0]), torch.tensor([2.0]), decay_selected=1.0
    )
    assert (a.item(), b.item()) == (3.0, 2.0)
    a, b = update_counts(
        torch.tensor([2.0]), torch.tensor([1.0]), torch.tensor([1.0]), torch.tensor([2.0]), decay_selected=0.0
    )
    assert (a.item(), b.item()) == (1.0, 1.0)


def test_vade_step_by_hand_matches_the_paper_figure():
    alpha = torch.tensor([0.1, 2.7, 9.0], dtype=torch.float64)
    beta = torch.tensor([8.4, 5.3, 0.2], dtype=torch.float64)
    a, b = vade_step(
        alpha,
        beta,
        torch.tensor([0, 1]),
        torch.tensor([1.0, 4.0], dtype=torch.float64),
        torch.tensor([8.0, 8.0], dtype=torch.float64),
    )
    # unselected row: 9.0 · 0.999 = 8.991, 0.2 · 0.999 = 0.1998 (the figure prints 1.998)
    assert a.tolist() == pytest.approx([1.02, 4.54, 8.991]) and b.tolist() == pytest.approx([8.68, 5.06, 0.1998])


def loop_vade_step(alpha, beta, selected, correct, total, lam1, lam2):
    """The framework figure's rule written per prompt."""
    out_a, out_b = [], []
    for i in range(len(alpha)):
        if i in selected:
            j = selected.index(i)
            out_a.append(lam1 * alpha[i] + correct[j])
            out_b.append(lam1 * beta[i] + total[j] - correct[j])
        else:
            out_a.append(lam2 * alpha[i])
            out_b.append(lam2 * beta[i])
    return out_a, out_b


def test_vade_step_equals_a_python_loop_and_lazy_decay_equals_stepwise_decay():
    g = torch.Generator().manual_seed(3)
    n = 9
    alpha = torch.zeros(n, dtype=torch.float64)
    beta = torch.zeros(n, dtype=torch.float64)
    lazy_a, lazy_b = alpha.clone(), beta.clone()
    last = torch.full((n,), -1)
    for step in range(12):
        selected = torch.randperm(n, generator=g)[: int(torch.randint(1, 5, (1,), generator=g))]  # [M]
        total = torch.randint(1, 9, (selected.numel(),), generator=g).double()  # [M] unequal group sizes
        correct = torch.floor(torch.rand(selected.numel(), generator=g, dtype=torch.float64) * (total + 1))  # [M]
        want = loop_vade_step(
            alpha.tolist(), beta.tolist(), selected.tolist(), correct.tolist(), total.tolist(), 0.3, 0.9
        )
        alpha, beta = vade_step(alpha, beta, selected, correct, total, decay_selected=0.3, decay_unselected=0.9)
        assert alpha.tolist() == pytest.approx(want[0]) and beta.tolist() == pytest.approx(want[1])
        # lazy: a prompt stores its counts at its last update and decays by λ2^(idle steps) when read
        idle = (step - 1 - last[selected]).clamp(min=0)
        a_sel, b_sel = decay_counts(lazy_a[selected], lazy_b[selected], idle, decay_unselected=0.9)
        lazy_a[selected], lazy_b[selected] = update_counts(a_sel, b_sel, correct, total, decay_selected=0.3)
        last[selected] = step
        read_a, read_b = decay_counts(lazy_a, lazy_b, (step - last).clamp(min=0), decay_unselected=0.9)
        assert read_a.tolist() == pytest.approx(alpha.tolist()) and read_b.tolist() == pytest.approx(beta.tolist())


def test_thompson_draws_follow_the_generator_and_leave_the_global_rng_alone():
    alpha, beta = torch.tensor([3.0, 0.0, 10.0]), torch.tensor([1.0, 0.0, 2.0])
    global_state = torch.get_rng_state()
    first = thompson_draw(alpha, beta, generator=torch.Generator().manual_seed(5))
    again = thompson_draw(alpha, beta, generator=torch.Generator().manual_seed(5))
    other = thompson_draw(alpha, beta, generator=torch.Generator().manual_seed(6))
    assert torch.equal(first, again) and not torch.equal(first, other)
    assert torch.equal(torch.get_rng_state(), global_state)
    assert first.dtype == torch.float64 and ((first > 0) & (first < 1)).all()


def test_select_top_is_stable_and_clips_k():
    scores = torch.tensor([0.2, 0.5, 0.5, 0.1, 0.5])
    assert select_top(scores, 2).tolist() == [1, 2]  # ties: lower index first
    assert select_top(scores, 10).tolist() == [1, 2, 4, 0, 3]
    assert select_top(scores, 0).tolist() == []


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: decay_counts(torch.ones(2), torch.ones(2), 1, decay_unselected=1.5), "decay_unselected"),
        (
            lambda: update_counts(torch.ones(1), torch.ones(1), torch.ones(1), torch.ones(1), decay_selected=-0.1),
            "decay_selected",
        ),
        (lambda: update_counts(torch.ones(1), torch.ones(1), torch.tensor([3.0]), torch.tensor([2.0])), "correct"),
        (lambda: posterior_mean(torch.tensor([-1.0]), torch.ones(1)), ">= 0"),
        (lambda: posterior_mean(torch.ones(2), torch.ones(3)), "same shape"),
        (lambda: decay_counts(torch.ones(1), torch.ones(1), -1), "steps"),
        (lambda: select_top(torch.ones(3), -1), "k must"),
        (
            lambda: vade_step(torch.ones(3), torch.ones(3), torch.tensor([1, 1]), torch.ones(2), torch.ones(2)),
            "distinct",
        ),
    ],
)
def test_bad_inputs_raise(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_info_gain_prefers_uncertain_rows_over_settled_ones():
    # a settled easy row (30, 0) and a settled hard row (0, 30) score near 0; an estimated p near 1/3 scores near 4/27
    p = posterior_mean(torch.tensor([30.0, 0.0, 10.0]), torch.tensor([0.0, 30.0, 20.0]))  # [31/32, 1/32, 11/32]
    scores = info_gain(p)
    assert scores.argmax().item() == 2 and scores[2].item() == pytest.approx(11 / 32 * (21 / 32) ** 2)
    assert math.isclose(scores[0].item(), 31 / 32 * (1 / 32) ** 2, rel_tol=1e-6)
