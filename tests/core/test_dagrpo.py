"""DaGRPO (arXiv 2512.06337, interpreted): pair-masked GRPO advantage, edit distance, hard-group detection."""

import pytest
import torch

from grpolab.core.advantages import ADVANTAGES
from grpolab.core.dagrpo import (
    compact_tokens,
    dagrpo,
    edit_distance,
    first_member,
    group_pairs,
    hard_groups,
    pairwise_advantage,
)
from grpolab.core.types import Rollout


def make_rollout(rows, group, reward, pad=0, **extras):
    T = max(len(r) for r in rows)
    ids = torch.tensor([r + [pad] * (T - len(r)) for r in rows])
    mask = torch.tensor([[True] * len(r) + [False] * (T - len(r)) for r in rows])
    return Rollout(
        group=torch.tensor(group),
        mask=mask,
        reward=torch.tensor(reward, dtype=torch.float64),
        extras={"token_ids": ids, **extras},
    )


# ---------------------------------------------------------------------------------------- pair masking
def test_all_pairs_distinctive_gives_the_grpo_advantage_on_random_unequal_groups():
    """With every pair kept, Σ_j (r_i − r_j)/(n·(std + ε)) is GRPO's (r_i − mean)/(std + ε)."""
    g = torch.Generator().manual_seed(0)
    group = torch.tensor([1, 0, 2, 1, 0, 1, 3, 0, 1])  # sizes 3, 4, 1, 1
    rows = [torch.randint(1, 5, (int(n),), generator=g).tolist() for n in torch.randint(1, 6, (9,), generator=g)]
    r = make_rollout(rows, group.tolist(), torch.randint(0, 3, (9,), generator=g).double().tolist())
    expected = ADVANTAGES["grpo"](r)
    torch.testing.assert_close(dagrpo(r, threshold=0.0), expected)
    # distance="score" with a threshold of 0 keeps every pair too
    scored = r.replace(extras={"distinct_score": torch.zeros(9, dtype=torch.float64)})
    torch.testing.assert_close(dagrpo(scored, threshold=0.0, distance="score"), expected)


def test_masking_a_pair_by_hand():
    # r = [1, 0, 0, 0]: std (ddof 1) 0.5, n 4; pair (0, 1) masked → A_0 = (1 + 1)/2 = 1, A_1 = 0, A_2,3 = −1/2
    i, j = group_pairs(torch.zeros(4, dtype=torch.long))
    keep = ~((i == 0) & (j == 1))
    a = pairwise_advantage(torch.tensor([1.0, 0, 0, 0]), torch.zeros(4, dtype=torch.long), i, j, keep, eps=1e-12)
    assert a.tolist() == pytest.approx([1.0, 0.0, -0.5, -0.5])
    all_pairs = pairwise_advantage(torch.tensor([1.0, 0, 0, 0]), torch.zeros(4, dtype=torch.long), i, j, i >= 0)
    assert all_pairs.tolist() == pytest.approx([1.5, -0.5, -0.5, -0.5], abs=1e-5)  # baselines.md hand check


def test_near_duplicate_completions_are_masked_by_edit_distance():
    # [5,6,7,8] (r 1) vs [5,6,7,9] (r 0): distance 1/4 < 0.3 → masked; [1,2,3,4] (r 0) differs fully from both.
    r = make_rollout([[5, 6, 7, 8], [5, 6, 7, 9], [1, 2, 3, 4]], [0, 0, 0], [1.0, 0.0, 0.0], pad=5)
    s = 3**-0.5  # group std of [1, 0, 0] with ddof 1
    a = dagrpo(r, threshold=0.3, eps=1e-12)[:, 0]
    assert a.tolist() == pytest.approx([1 / (3 * s), 0.0, -1 / (3 * s)])
    # below the distance the pair is kept again: grpo
    torch.testing.assert_close(dagrpo(r, threshold=0.25), ADVANTAGES["grpo"](r))


def test_spec_score_distance_masks_pairs_with_close_scores():
    # spec placeholder: m_ij = 1[|s_i − s_j| ≥ τ_d]; s = [0.9, 0.85, 0.1]: pair (0, 1) masked at τ = 0.2
    r = make_rollout([[1], [2], [3]], [0, 0, 0], [1.0, 0.0, 0.0], distinct_score=torch.tensor([0.9, 0.85, 0.1]))
    s = 3**-0.5
    a = dagrpo(r, threshold=0.2, distance="score", eps=1e-12)[:, 0]
    assert a.tolist() == pytest.approx([1 / (3 * s), 0.0, -1 / (3 * s)])
    # all scores equal → every pair masked → no signal at all
    same = r.replace(extras={"distinct_score": torch.full((3,), 0.5)})
    assert (dagrpo(same, threshold=0.2, distance="score") == 0).all()


def reference_advantage(rows, group, reward, tau):
    """Slow loop: A_i = Σ_j 1[lev(i, j)/max(len) ≥ τ]·(r_i − r_j) / (n·(std + 1e-6))."""
    out = []
    for i in range(len(rows)):
        members = [j for j in range(len(rows)) if group[j] == group[i]]
        n = len(members)
        mean = sum(reward[j] for j in members) / n
        std = (sum((reward[j] - mean) ** 2 for j in members) / (n - 1)) ** 0.5 if n > 1 else 0.0
        total = 0.0
        for j in members:
            if j != i and levenshtein(rows[i], rows[j]) / max(len(rows[i]), len(rows[j])) >= tau:
                total += reward[i] - reward[j]
        out.append(total / (n * (std + 1e-6)))
    return out


def levenshtein(a, b):
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        cur = [i]
        for j, y in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y)))
        prev = cur
    return prev[-1]


@pytest.mark.parametrize("seed", range(6))
def test_vectorised_advantage_equals_a_python_loop(seed):
    g = torch.Generator().manual_seed(seed)
    group = torch.randint(0, 3, (10,), generator=g)
    group[:3] = torch.tensor([0, 1, 2])
    rows = [torch.randint(1, 4, (int(n),), generator=g).tolist() for n in torch.randint(1, 7, (10,), generator=g)]
    reward = torch.rand(10, generator=g, dtype=torch.float64).round(decimals=1).tolist()
    r = make_rollout(rows, group.tolist(), reward, pad=int(torch.randint(1, 4, (1,), generator=g)))
    a = dagrpo(r, threshold=0.4)
    assert a[:, 0].tolist() == pytest.approx(reference_advantage(rows, group.tolist(), reward, 0.4), abs=1e-9)
    assert (a[~r.mask] == 0).all() and torch.equal(a, a[:, :1].expand_as(a) * r.mask)


@pytest.mark.parametrize("seed", range(4))
def test_edit_distance_equals_the_textbook_recursion(seed):
    g = torch.Generator().manual_seed(seed)
    M, T = 12, 7
    a, b = torch.randint(0, 3, (M, T), generator=g), torch.randint(0, 3, (M, T + 2), generator=g)
    a_len, b_len = torch.randint(0, T + 1, (M,), generator=g), torch.randint(0, T + 3, (M,), generator=g)
    got = edit_distance(a, a_len, b, b_len)
    for m in range(M):
        assert got[m].item() == levenshtein(a[m, : a_len[m]].tolist(), b[m, : b_len[m]].tolist())


def test_compact_tokens_drops_masked_positions():
    ids, n = compact_tokens(
        torch.tensor([[9, 1, 9, 2], [3, 4, 9, 9]]), torch.tensor([[0, 1, 0, 1], [1, 1, 0, 0]]).bool()
    )
    assert n.tolist() == [2, 2] and ids[:, :2].tolist() == [[1, 2], [3, 4]]


def test_group_of_one_and_padding_garbage():
    r = make_rollout([[1, 2], [1, 3, 4]], [0, 1], [1.0, 0.0], pad=7)
    assert (dagrpo(r) == 0).all()
    other_pad = make_rollout([[5, 6, 7, 8], [5, 6, 7, 9], [1, 2]], [0, 0, 0], [1.0, 0.0, 0.0], pad=3)
    ids = other_pad.extras["token_ids"].clone()
    ids[~other_pad.mask] = 8  # garbage that would match a token if it were read
    torch.testing.assert_close(
        dagrpo(other_pad, threshold=0.3), dagrpo(other_pad.replace(extras={"token_ids": ids}), threshold=0.3)
    )


# ---------------------------------------------------------------------------------------- anchors' groups
def test_hard_groups_are_those_where_every_completion_scored_zero():
    signal = torch.tensor([0.0, 0.0, 1.0, 0.0, 0.0, 0.0])
    group = torch.tensor([0, 1, 1, 2, 0, 2])
    assert hard_groups(signal, group).tolist() == [True, False, True]
    assert hard_groups(signal, group, threshold=-0.5).tolist() == [False, False, False]
    assert first_member(group, 3).tolist() == [0, 1, 3]


def test_bad_input_says_what_is_wrong():
    r = make_rollout([[1, 2], [3]], [0, 0], [1.0, 0.0])
    with pytest.raises(ValueError, match="token_ids"):
        dagrpo(r.replace(extras={}))
    with pytest.raises(ValueError, match="distinct_score"):
        dagrpo(r, distance="score")
    with pytest.raises(ValueError, match="distance"):
        dagrpo(r, distance="cosine")
    with pytest.raises(ValueError, match="threshold"):
        dagrpo(r, threshold=-0.1)
    with pytest.raises(ValueError, match="ddof"):
        dagrpo(r, ddof=2)
    assert ADVANTAGES.requires("dagrpo") == {"token_ids"}
