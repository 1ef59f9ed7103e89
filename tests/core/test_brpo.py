"""BRPO (AnytimeReasoner, arXiv 2505.13438): budgets, priors, segment returns, the BRPO baseline, token placement
and the summary advantage, against hand-computed numbers and a loop transcription of the official code."""

import pytest
import torch

from grpolab.core.advantages import ADVANTAGES
from grpolab.core.brpo import (
    brpo_baseline,
    budget_cuts,
    budget_positions,
    budget_prior,
    budget_rewards,
    segment_returns,
    segment_token_advantages,
    summary_baselines,
)
from grpolab.core.types import Rollout


# ---------------------------------------------------------------------------------------------- budgets
def test_budget_positions_are_j_times_l_over_s():
    assert budget_positions(8000, 4) == [2000, 4000, 6000, 8000]  # the paper's 2k/4k/6k/8k
    assert budget_positions(7, 3) == [2, 4, 7]
    assert budget_positions(4, 1) == [4]
    with pytest.raises(ValueError, match="max_len"):
        budget_positions(3, 4)
    with pytest.raises(ValueError, match="num_budgets"):
        budget_positions(8, 0)


def test_budget_priors_by_hand():
    assert budget_prior(4, prior="uniform").tolist() == [0.25] * 4
    torch.testing.assert_close(budget_prior(3, prior="linear"), torch.tensor([1 / 6, 2 / 6, 3 / 6]))
    assert budget_prior(3, prior="base").tolist() == [0.0, 0.0, 1.0]
    with pytest.raises(ValueError, match="prior"):
        budget_prior(3, prior="triangular")


def test_budget_cuts_take_short_completions_whole_and_skip_ended_ones():
    # lengths 1 (ended), 3 (ended), 4 (truncated at L = 4); budgets [2, 4]
    cuts, needs = budget_cuts(torch.tensor([1, 3, 4]), torch.tensor([True, True, False]), [2, 4])
    assert cuts.tolist() == [[1, 1], [2, 3], [2, 4]]
    assert needs.tolist() == [[False, False], [True, False], [True, True]]
    with pytest.raises(ValueError, match="increasing"):
        budget_cuts(torch.tensor([1]), torch.tensor([True]), [2, 2])


def test_budget_rewards_average_valid_summaries_or_take_the_own_reward():
    needs = torch.tensor([[True, True], [False, True]])
    # summaries: (0, 0): 1, 0, 1 (the last one failed: left out) ; (0, 1): 1 ; (1, 1): 0, 0 ; (1, 0) none
    r = torch.tensor([1.0, 0.0, 1.0, 1.0, 0.0, 0.0])
    src = torch.tensor([0, 0, 0, 0, 1, 1])
    bud = torch.tensor([0, 0, 0, 1, 1, 1])
    valid = torch.tensor([True, True, False, True, True, True])
    out = budget_rewards(torch.tensor([0.3, 0.7]), needs, r, src, bud, valid)
    assert out.tolist() == [[0.5, 1.0], [pytest.approx(0.7), 0.0]]


# ---------------------------------------------------------------------------------------------- returns, baseline
def test_segment_returns_are_prior_weighted_suffix_sums():
    rbar = torch.tensor([[1.0, 0.0, 1.0]])
    p = torch.tensor([0.2, 0.3, 0.5])
    # Ret_0 = .2 + 0 + .5 = .7 ; Ret_1 = 0 + .5 ; Ret_2 = .5
    torch.testing.assert_close(segment_returns(rbar, p), torch.tensor([[0.7, 0.5, 0.5]]))


def test_brpo_baseline_by_hand_two_budgets():
    # S = 2, p = [.5, .5], one group: r̄ = [[0, 1], [1, 1]]
    # Ret = [[.5, .5], [1, .5]]; V2 = [.75, .5]; V1(s=1) = [0·.5, 1·.5]; b(s=1) = (V1 + V2)/2
    rbar = torch.tensor([[0.0, 1.0], [1.0, 1.0]])
    p = torch.tensor([0.5, 0.5])
    g = torch.tensor([0, 0])
    assert brpo_baseline(rbar, g, 1, p).tolist() == [[0.75, 0.25], [0.75, 0.5]]
    assert brpo_baseline(rbar, g, 1, p, variance_reduction="v2only").tolist() == [[0.75, 0.5], [0.75, 0.5]]
    assert brpo_baseline(rbar, g, 1, p, variance_reduction="v1only").tolist() == [[0.0, 0.0], [0.0, 0.5]]
    assert brpo_baseline(rbar, g, 1, p, variance_reduction="none").tolist() == [[0.0, 0.0], [0.0, 0.0]]


def test_v1_uses_two_to_the_j_weights_over_earlier_budgets():
    # one trajectory alone in its group, S = 3, uniform prior; r̄ = [1, 0, x]
    # V1(s=2) = (2^0·1 + 2^1·0)/(1 + 2) · p_2 = (1/3)·(1/3); V2(s=2) = Ret_2 = x/3 (its own group)
    # b(s=2) = (2·V1 + 1·V2)/3
    rbar = torch.tensor([[1.0, 0.0, 0.6]])
    p = budget_prior(3, prior="uniform")
    b = brpo_baseline(rbar, torch.tensor([0]), 1, p)
    v1, v2 = (1 / 3) * (1 / 3), 0.6 / 3
    v1_s1, v2_s1 = 1.0 * (2 / 3), (0.0 + 0.6) / 3
    torch.testing.assert_close(b[0], torch.tensor([v2_s1 * 0 + 1.6 / 3, (v1_s1 + 2 * v2_s1) / 3, (2 * v1 + v2) / 3]))
    with pytest.raises(ValueError, match="discount"):
        brpo_baseline(rbar, torch.tensor([0]), 1, p, discount=0.0)
    with pytest.raises(ValueError, match="variance_reduction"):
        brpo_baseline(rbar, torch.tensor([0]), 1, p, variance_reduction="both")


def code_cot_advantage(rbar, group, prior, discount=2.0):
    """A transcription of AnytimeReasoner's compute_cot_advantage loops (groups given by id, any size)."""
    B, S = rbar.shape
    adv = torch.zeros(B, S)
    for i in range(B):
        mates = [k for k in range(B) if int(group[k]) == int(group[i])]
        for s in range(S):
            ret = sum(float(rbar[i, j]) * float(prior[j]) for j in range(s, S))
            avg = sum(sum(float(rbar[k, j]) * float(prior[j]) for j in range(s, S)) for k in mates) / len(mates)
            last = 0.0
            if s > 0:
                w = [discount**j for j in range(s)]
                prev = sum(float(rbar[i, j]) * w[j] for j in range(s)) / sum(w)
                last = prev * sum(float(prior[j]) for j in range(s, S))
            adv[i, s] = ret - (s * last + (S - s) * avg) / S
    return adv


@pytest.mark.parametrize("prior", ["uniform", "linear", "base"])
def test_vectorised_baseline_equals_the_code_loops_on_unequal_groups(prior):
    gen = torch.Generator().manual_seed(3)
    group = torch.tensor([2, 0, 1, 0, 2, 2, 0, 3])  # unequal, non-contiguous, a group of size 1
    rbar = torch.rand(8, 4, generator=gen)
    p = budget_prior(4, prior=prior)
    got = segment_returns(rbar, p) - brpo_baseline(rbar, group, 4, p)
    torch.testing.assert_close(got, code_cot_advantage(rbar, group, p))


def test_segment_tokens_get_their_segment_advantage_and_empty_segments_are_skipped():
    seg = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    # row 0: budgets 2/4/6, length 5 → segments [0,2) [2,4) [4,5); row 1 ended at 1 → all cuts 1
    cuts = torch.tensor([[2, 4, 5], [1, 1, 1]])
    mask = torch.tensor([[True] * 5 + [False], [True] + [False] * 5])
    out = segment_token_advantages(seg, cuts, mask)
    assert out.tolist() == [[1, 1, 2, 2, 3, 0], [4, 0, 0, 0, 0, 0]]


def test_summary_baseline_is_the_cell_mean_or_the_group_budget_mean_for_lone_summaries():
    r = torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0])
    key = torch.tensor([3, 3, 3, 9, 5])
    fallback = torch.tensor([0.1, 0.1, 0.1, 0.4, 0.6])
    torch.testing.assert_close(summary_baselines(r, key, fallback), torch.tensor([1 / 3, 1 / 3, 1 / 3, 0.4, 0.6]))


# ---------------------------------------------------------------------------------------------- the advantage entry
def brpo_rollout(thinking, summaries, S, T=6, group=None):
    """thinking: (reward, length, rbar [S], cuts [S]) per row; summaries: (source, budget, reward, prefix, length)."""
    n = len(thinking)
    lengths = [t[1] for t in thinking] + [s[4] for s in summaries]
    mask = torch.arange(T)[None, :] < torch.tensor(lengths)[:, None]
    rbar = [t[2] for t in thinking] + [thinking[s[0]][2] for s in summaries]
    cuts = [t[3] for t in thinking] + [thinking[s[0]][3] for s in summaries]
    group = group or [0] * n
    return Rollout(
        group=torch.tensor(group + [group[s[0]] for s in summaries]),
        mask=mask,
        reward=torch.tensor([t[0] for t in thinking] + [s[2] for s in summaries]),
        extras={
            "brpo_budget_reward": torch.tensor(rbar),
            "brpo_cuts": torch.tensor(cuts),
            "brpo_budget": torch.tensor([-1] * n + [s[1] for s in summaries]),
            "brpo_source": torch.tensor(list(range(n)) + [s[0] for s in summaries]),
            "prefix_len": torch.tensor([0] * n + [s[3] for s in summaries]),
        },
    )


def test_brpo_advantage_by_hand():
    # S = 2, budgets [2, 4], uniform prior. Thinking 0: truncated (len 4), r̄ = [0.5, 1.0] from summaries;
    # thinking 1: ended at length 2 with reward 1 → r̄ = [1, 1] (its own reward, no summary).
    # Ret: t0 = [.75, .5], t1 = [1, .5]; V2 = [.875, .5]; V1(s=1): t0 = .5·.5 = .25, t1 = 1·.5 = .5
    # b(s=1) = (V1 + V2)/2: t0 .375, t1 .5 → A: t0 = [-.125, .125], t1 = [.125, 0]
    # summaries of t0: budget 0 (prefix 2): rewards 1, 0 → baseline .5 → ±.5; budget 1 (prefix 4): 1, 1 → 0
    r = brpo_rollout(
        thinking=[(0.0, 4, [0.5, 1.0], [2, 4]), (1.0, 2, [1.0, 1.0], [2, 2])],
        summaries=[(0, 0, 1.0, 2, 3), (0, 0, 0.0, 2, 4), (0, 1, 1.0, 4, 5), (0, 1, 1.0, 4, 6)],
        S=2,
    )
    adv = ADVANTAGES["brpo"](r, prior="uniform")
    assert adv.tolist() == [
        [-0.125, -0.125, 0.125, 0.125, 0, 0],
        [0.125, 0.125, 0, 0, 0, 0],
        [0, 0, 0.5, 0, 0, 0],
        [0, 0, -0.5, -0.5, 0, 0],
        [0, 0, 0, 0, 0, 0],
        [0, 0, 0, 0, 0, 0],
    ]
    grpo_summaries = ADVANTAGES["brpo"](r, prior="uniform", summary_method="grpo")
    assert grpo_summaries[2:4].abs().sum() == 0 and torch.equal(grpo_summaries[:2], adv[:2])


def test_single_budget_single_summary_is_dr_grpo():
    """Spec: S = 1 and n_summary = 1 reproduce the mean baseline r − mean_G r (no std)."""
    # three prompts of unequal sizes; the truncated thinking rows get their one summary's reward as r̄
    thinking = [
        (1.0, 2, [1.0], [2]),
        (0.0, 3, [0.0], [3]),
        (0.0, 4, [1.0], [4]),  # truncated at L = 4: its summary scored 1
        (1.0, 1, [1.0], [1]),
        (0.0, 4, [0.0], [4]),  # truncated: its summary scored 0
        (0.5, 2, [0.5], [2]),  # alone in its group
    ]
    group = [0, 0, 0, 1, 1, 2]
    summaries = [(2, 0, 1.0, 4, 5), (4, 0, 0.0, 4, 6)]
    r = brpo_rollout(thinking, summaries, S=1, T=6, group=group)
    adv = ADVANTAGES["brpo"](r, prior="uniform")
    rbar = [1.0, 0.0, 1.0, 1.0, 0.0, 0.5]
    means = {0: 2 / 3, 1: 0.5, 2: 0.5}
    for i in range(6):
        expected = rbar[i] - means[group[i]]
        torch.testing.assert_close(adv[i, : thinking[i][1]], torch.full((thinking[i][1],), expected))
    # the summary of thinking 2 (group 0): 1 − mean_G r̄ = 1/3 on its own token; thinking 4's: 0 − .5
    assert adv[6].tolist()[4] == pytest.approx(1 / 3) and adv[7].tolist()[4] == pytest.approx(-0.5)
    assert adv[6, :4].abs().sum() == 0  # the given prefix carries nothing


def test_brpo_advantage_is_zero_at_masked_positions_and_explains_missing_extras():
    r = brpo_rollout([(1.0, 2, [1.0, 1.0], [2, 2]), (0.0, 3, [0.0, 0.0], [2, 3])], [], S=2)
    adv = ADVANTAGES["brpo"](r)
    assert (adv[~r.mask] == 0).all()
    bare = r.replace(extras={k: v for k, v in r.extras.items() if k != "brpo_cuts"})
    with pytest.raises(ValueError, match="brpo_budgets"):
        ADVANTAGES["brpo"](bare)
    with pytest.raises(ValueError, match="summary_method"):
        ADVANTAGES["brpo"](r, summary_method="all")
