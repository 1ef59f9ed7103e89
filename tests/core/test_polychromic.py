"""Polychromic objectives (set RL, arXiv 2509.25424): diversity, f_poly, set sampling, set and marginal advantages,
the combined advantage; hand-computed numbers, the spec's invariants and loop-vs-vectorised checks."""

import itertools

import pytest
import torch

from grpolab.core.advantages import ADVANTAGES
from grpolab.core.polychromic import (
    choose_vine_states,
    diversity,
    marginal_advantages,
    outcome_ids,
    polychromic_objective,
    sample_subsets,
    set_advantages,
    set_scores,
)
from grpolab.core.types import Rollout


# ---------------------------------------------------------------------------------------------- spec checks
def test_two_identical_successes_score_half():
    assert diversity(torch.tensor([4, 4])).item() == 0.5
    assert polychromic_objective(torch.tensor([1.0, 1.0]), torch.tensor([4, 4])).item() == 0.5


def test_a_success_and_a_distinct_failure_score_half():
    assert polychromic_objective(torch.tensor([1.0, 0.0]), torch.tensor([4, 9])).item() == 0.5


def test_an_identical_set_never_beats_a_diverse_set_of_equal_mean_reward():
    gen = torch.Generator().manual_seed(0)
    for n in (2, 3, 5):
        reward = torch.rand(200, n, generator=gen)  # rewards in [0, 1], the paper's setting
        identical = torch.zeros(200, n, dtype=torch.long)
        mixed = torch.randint(0, n, (200, n), generator=gen)
        distinct = torch.arange(n).expand(200, n)
        f_same = polychromic_objective(reward, identical)
        assert (f_same <= polychromic_objective(reward, mixed) + 1e-7).all()
        assert (polychromic_objective(reward, mixed) <= polychromic_objective(reward, distinct) + 1e-7).all()
        torch.testing.assert_close(f_same, reward.mean(-1) / n)


def test_diversity_counts_distinct_ids_in_any_order():
    assert diversity(torch.tensor([[3, 1, 3, 2], [7, 7, 7, 7]])).tolist() == [0.75, 0.25]


# ---------------------------------------------------------------------------------------------- sets
def test_set_scores_equal_the_dense_objective_per_set_on_random_sets():
    """Loop over states and sets with polychromic_objective vs the vectorised set_scores; some rows left out."""
    gen = torch.Generator().manual_seed(1)
    K, N, M = 3, 5, 4
    state = torch.arange(K).repeat_interleave(N)
    member = sample_subsets(K, N, num_sets=M, set_size=3, generator=gen).reshape(K * N, M)
    reward = torch.rand(K * N, generator=gen)
    outcome = torch.randint(0, 3, (K * N,), generator=gen)
    keep = torch.ones(K * N, dtype=torch.bool)
    keep[[1, 7]] = False  # two continuations whose reward failed left the batch
    state, member, reward, outcome = state[keep], member[keep], reward[keep], outcome[keep]
    # prepend ordinary rows (state -1): they belong to no set
    state = torch.cat([torch.tensor([-1, -1]), state])
    member = torch.cat([torch.ones(2, M, dtype=torch.bool), member])
    reward = torch.cat([torch.tensor([5.0, 5.0]), reward])
    outcome = torch.cat([torch.tensor([-1, -1]), outcome])
    score, size = set_scores(reward, state, outcome, member, K)
    for k in range(K):
        for m in range(M):
            rows = [i for i in range(len(state)) if int(state[i]) == k and bool(member[i, m])]
            assert int(size[k, m]) == len(rows)
            expected = polychromic_objective(reward[rows], outcome[rows]).item() if rows else 0.0
            assert score[k, m].item() == pytest.approx(expected)


def test_set_and_marginal_advantages_by_hand_reward_a_failed_but_novel_continuation():
    # one state, continuations 0, 1, 2 succeed with the same answer a, continuation 3 fails with answer b; all
    # C(4, 3) = 4 sets of size 3: {0,1,2}: 1 · 1/3 = 1/3; the three sets with 3: 2/3 · 2/3 = 4/9
    # b = (1/3 + 3 · 4/9)/4 = 5/12 → A = [−1/12, 1/36, 1/36, 1/36]
    # marginal: continuation 3 lies in the three mixed sets → +1/36; continuations 0..2 → (−1/12 + 2/36)/3 = −1/108
    sets = list(itertools.combinations(range(4), 3))  # [(0,1,2), (0,1,3), (0,2,3), (1,2,3)]
    member = torch.tensor([[i in s for s in sets] for i in range(4)])
    state = torch.zeros(4, dtype=torch.long)
    reward = torch.tensor([1.0, 1.0, 1.0, 0.0])
    outcome = torch.tensor([0, 0, 0, 1])
    score, size = set_scores(reward, state, outcome, member, 1)
    torch.testing.assert_close(score, torch.tensor([[1 / 3, 4 / 9, 4 / 9, 4 / 9]]))
    adv = set_advantages(score, size)
    torch.testing.assert_close(adv, torch.tensor([[-1 / 12, 1 / 36, 1 / 36, 1 / 36]]))
    marg = marginal_advantages(adv, state, member)
    torch.testing.assert_close(marg, torch.tensor([-1 / 108, -1 / 108, -1 / 108, 1 / 36]))
    assert marg[3] > 0 > marg[0]  # the failed but diversity-adding continuation is pushed up


def test_marginal_advantages_equal_a_loop_over_sets():
    gen = torch.Generator().manual_seed(2)
    K, N, M = 4, 6, 5
    adv = torch.randn(K, M, generator=gen)
    state = torch.cat([torch.arange(K).repeat_interleave(N), torch.tensor([-1, -1, -1])])
    member = torch.rand(K * N + 3, M, generator=gen) < 0.4
    got = marginal_advantages(adv, state, member)
    for i in range(len(state)):
        k = int(state[i])
        sets = [m for m in range(M) if k >= 0 and bool(member[i, m])]
        expected = sum(float(adv[k, m]) for m in sets) / len(sets) if sets else 0.0
        assert got[i].item() == pytest.approx(expected, abs=1e-6)


def test_empty_sets_have_no_advantage_and_leave_the_baseline_alone():
    adv = set_advantages(torch.tensor([[0.2, 0.0, 0.6]]), torch.tensor([[2, 0, 2]]))
    torch.testing.assert_close(adv, torch.tensor([[-0.2, 0.0, 0.2]]))


# ---------------------------------------------------------------------------------------------- sampling
def test_sample_subsets_draws_n_distinct_members_and_follows_the_torch_seed():
    torch.manual_seed(5)
    a = sample_subsets(3, 6, num_sets=7, set_size=4)
    torch.manual_seed(5)
    b = sample_subsets(3, 6, num_sets=7, set_size=4)
    assert torch.equal(a, b) and a.shape == (3, 6, 7)
    assert (a.sum(1) == 4).all()  # every set has exactly n distinct continuations
    many = sample_subsets(1, 4, num_sets=4000, set_size=2, generator=torch.Generator().manual_seed(0))
    assert (many.float().mean(-1) - 0.5).abs().max() < 0.05  # each continuation in about n/N of the sets
    with pytest.raises(ValueError, match="set_size"):
        sample_subsets(1, 3, num_sets=2, set_size=4)


def test_choose_vine_states_cut_inside_a_trajectory_of_each_prompt():
    lengths = torch.tensor([5, 1, 3, 2, 4])
    group = torch.tensor([1, 0, 1, 2, 0])
    torch.manual_seed(0)
    index, cut = choose_vine_states(lengths, group, 3, num_states=50)
    assert index.shape == (150,)
    assert group[index].tolist() == [0] * 50 + [1] * 50 + [2] * 50
    assert ((cut >= 0) & (cut < lengths[index])).all()
    assert set(index[:50].tolist()) == {1, 4} and set(cut[index == 0].tolist()) == set(range(5))
    torch.manual_seed(0)
    again = choose_vine_states(lengths, group, 3, num_states=50)
    assert torch.equal(again[0], index) and torch.equal(again[1], cut)
    with pytest.raises(ValueError, match="num_states"):
        choose_vine_states(lengths, group, 3, num_states=0)


def test_outcome_ids_compare_stripped_texts_within_a_state():
    ids = outcome_ids(["7", "7 ", "8", "7", "", "x"], torch.tensor([0, 0, 0, 1, 1, -1]))
    assert ids.tolist() == [0, 0, 1, 2, 3, -1]


# ---------------------------------------------------------------------------------------------- the advantage entry
def poly_rollout(value=None):
    # prompt 0: two ordinary rows (rewards 1, 0); prompt 1: one ordinary row (reward 1)
    # state 0 (from a prompt-0 row, prefix 1): continuations rewards [1, 1, 0], outcomes [a, a, b],
    # sets {0, 1} and {0, 2}: f = [0.5, 0.5] → A = [0, 0]; state 1 (prefix 0): rewards [1, 0], outcomes [c, d],
    # sets {0, 1} and {0}: f = [0.5, 1.0] → b = .75, A = [−.25, .25]; marginal [0, −.25]
    T = 4
    lengths = [3, 2, 4, 3, 2, 3, 2, 1]
    mask = torch.arange(T)[None, :] < torch.tensor(lengths)[:, None]
    return Rollout(
        group=torch.tensor([0, 0, 1, 0, 0, 0, 1, 1]),
        mask=mask,
        reward=torch.tensor([1.0, 0.0, 1.0, 1.0, 1.0, 0.0, 1.0, 0.0]),
        value=value,
        extras={
            "poly_state": torch.tensor([-1, -1, -1, 0, 0, 0, 1, 1]),
            "poly_outcome": torch.tensor([-1, -1, -1, 0, 0, 1, 2, 3]),
            "poly_member": torch.tensor(
                [[False, False]] * 3 + [[True, True], [True, False], [False, True], [True, True], [True, False]]
            ),
            "prefix_len": torch.tensor([0, 0, 0, 1, 1, 1, 0, 0]),
        },
    )


def test_polychromic_advantage_by_hand_with_grpo_elsewhere():
    adv = ADVANTAGES["polychromic"](poly_rollout(), base="dr_grpo", whiten=False)
    assert adv.tolist() == [
        [0.5, 0.5, 0.5, 0.0],  # ordinary rows: r − mean over the ordinary rows of the prompt ([1, 0] → ±.5)
        [-0.5, -0.5, 0.0, 0.0],
        [0.0, 0.0, 0.0, 0.0],  # prompt 1 has one ordinary row: 0
        [0.0, 0.0, 0.0, 0.0],  # state 0: every set scores 0.5 → 0; prefix token 0 stays 0
        [0.0, 0.0, 0.0, 0.0],
        [0.0, 0.0, 0.0, 0.0],
        [0.0, 0.0, 0.0, 0.0],  # state 1: in both sets → (−.25 + .25)/2
        [-0.25, 0.0, 0.0, 0.0],  # in set {0, 1} only
    ]


def test_polychromic_with_gae_needs_values_and_whitens_the_trained_tokens():
    r = poly_rollout()
    with pytest.raises(ValueError, match="value"):
        ADVANTAGES["polychromic"](r)
    value = torch.linspace(-0.5, 0.5, 32).view(8, 4)
    adv = ADVANTAGES["polychromic"](poly_rollout(value=value))
    trained = r.mask & (torch.arange(4)[None, :] >= r.extras["prefix_len"][:, None])
    assert (adv[~trained] == 0).all()
    assert adv[trained].mean().abs() < 1e-5 and adv[trained].std().item() == pytest.approx(1.0, abs=1e-4)
    with pytest.raises(ValueError, match="base"):
        ADVANTAGES["polychromic"](r, base="rloo")
    with pytest.raises(ValueError, match="polychromic_vines"):
        ADVANTAGES["polychromic"](r.replace(extras={}))
