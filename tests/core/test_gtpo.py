"""GTPO (arXiv 2508.03772): conflict-token weights, the entropy filter/shaping and the selector."""

import pytest
import torch

from grpolab.core.gtpo import conflict_runs, gtpo, gtpo_entropy_shaping, gtpo_token_weights
from grpolab.core.selection import SELECTORS
from grpolab.core.types import Rollout

R = 50  # the id of "<reasoning>" in the hand examples


def padded(rows, pad=0):
    """Right-padded ids [B, T] and mask [B, T] from lists of ids."""
    T = max(len(r) for r in rows)
    ids = torch.tensor([r + [pad] * (T - len(r)) for r in rows])
    mask = torch.tensor([[True] * len(r) + [False] * (T - len(r)) for r in rows])
    return ids, mask


def make_rollout(rows, group, adv, entropy, pad=0):
    ids, mask = padded(rows, pad)
    ent = torch.tensor(entropy, dtype=torch.float32)[:, None].expand(mask.shape).clone()
    ent[~mask] = float("nan")  # padding garbage must not matter
    r = Rollout(
        group=torch.tensor(group),
        mask=mask,
        reward=torch.zeros(len(rows)),
        extras={"token_ids": ids, "old_entropy": ent},
    )
    advantages = torch.tensor(adv, dtype=torch.float32)[:, None].expand(mask.shape).clone()
    advantages[~mask] = 123.0  # garbage at padding
    return r, advantages


# ---------------------------------------------------------------------------------------- hand-computed weights
def test_spec_reasoning_prefix_weighs_two_in_the_positive_and_zero_in_the_negative():
    """Spec part A §7: the shared first token <reasoning> gets 2 in the A>0 completion and 0 in the A<0 one;
    the tokens after the completions diverge get 1 (their last tokens differ, so no backward conflict)."""
    ids, mask = padded([[R, 3, 4], [R, 5, 6]])
    w, conflicts = gtpo_token_weights(ids, mask, torch.tensor([0, 0]), torch.tensor([1.5, -0.5]))
    assert w.tolist() == [[2.0, 1.0, 1.0], [0.0, 1.0, 1.0]]
    assert conflicts.tolist() == [[True, False, False], [True, False, False]]


def test_backward_run_is_right_aligned_and_the_directions_multiply():
    # pos [R, 3, 4, 9] and neg [R, 9]: forward run {0}; right-aligned the last tokens (9, 9) conflict, the ones
    # before them (4 vs R) do not. Weights: pos [2, 1, 1, 2]; neg: t=0 forward conflict 0, t=1 backward 0.
    ids, mask = padded([[R, 3, 4, 9], [R, 9]])
    w, _ = gtpo_token_weights(ids, mask, torch.tensor([0, 0]), torch.tensor([1.0, -1.0]))
    assert w.tolist() == [[2.0, 1.0, 1.0, 2.0], [0.0, 0.0, 0.0, 0.0]]
    # one-token completions [R] and [R]: the token is in both runs: 2·2 = 4 in the positive, 0·0 in the negative
    ids, mask = padded([[R], [R]])
    w, _ = gtpo_token_weights(ids, mask, torch.tensor([0, 0]), torch.tensor([1.0, -1.0]))
    assert w.tolist() == [[4.0], [0.0]]


def test_only_the_contiguous_run_counts_and_inactive_or_other_groups_do_not_conflict():
    # group 0: pos [R, 1, 2, 3, 4], neg [R, 7, 2, 8]  -> t=2 (2 in both) is after a break: not a conflict;
    #          inactive [R, 1, 2] (A = 0) keeps weight 1 and does not create conflicts.
    # group 1: neg [R, 1] alone with no positive in its group -> no conflicts, although group 0 has R at t=0.
    ids, mask = padded([[R, 1, 2, 3, 4], [R, 7, 2, 8], [R, 1, 2], [R, 1]])
    group = torch.tensor([0, 0, 0, 1])
    w, _ = gtpo_token_weights(ids, mask, group, torch.tensor([1.0, -1.0, 0.0, -1.0]), conflict_weight=3.0)
    assert w.tolist() == [
        [3.0, 1.0, 1.0, 1.0, 1.0],
        [0.0, 1.0, 1.0, 1.0, 0.0],
        [1.0, 1.0, 1.0, 0.0, 0.0],
        [1.0, 1.0, 0.0, 0.0, 0.0],
    ]


def test_a_masked_position_ends_the_run():
    ids = torch.tensor([[R, 5, 6], [R, 5, 6]])
    mask = torch.tensor([[True, False, True], [True, True, True]])
    runs = conflict_runs(ids, mask, torch.tensor([0, 0]), torch.tensor([True, False]), torch.tensor([False, True]))
    assert runs.tolist() == [[True, False, False], [True, False, False]]


# ---------------------------------------------------------------------------------------- entropy and selector
def test_entropy_filter_and_shaping_by_hand():
    # H̄ = 0.5 → 1 − 0.05; H̄ = 0.7 (at the threshold) kept → −1 − 0.07; H̄ = 0.71 → 0; A = 0, H̄ = 0.2 → −0.02
    out = gtpo_entropy_shaping(torch.tensor([1.0, -1.0, 2.0, 0.0]), torch.tensor([0.5, 0.7, 0.71, 0.2]))
    assert out.tolist() == pytest.approx([0.95, -1.07, 0.0, -0.02])


def test_selector_worked_example_and_padding_is_ignored():
    # group: pos [R, 3, 4] (A=1, H̄ .5), neg [R, 5] (A=−1, H̄ .6), pos [R, 8] (A=.5, H̄ .9: filtered)
    r, adv = make_rollout([[R, 3, 4], [R, 5], [R, 8]], [0, 0, 0], [1.0, -1.0, 0.5], [0.5, 0.6, 0.9])
    out, keep, metrics = SELECTORS["gtpo"](r, adv)
    # weights: pos [2, 1, 1]; neg [0, 1]; filtered pos [2, 1] times A' = 0
    expected = torch.tensor([[1.9, 0.95, 0.95], [0.0, -1.06, 0.0], [0.0, 0.0, 0.0]])
    torch.testing.assert_close(out, expected)
    assert torch.equal(keep, r.mask)
    assert metrics["gtpo/entropy_filtered_frac"] == pytest.approx(1 / 3)
    assert metrics["gtpo/conflict_token_frac"] == pytest.approx(3 / 7)
    assert metrics["gtpo/mean_entropy"] == pytest.approx(2.0 / 3)


def test_normalize_by_conflicts_divides_each_completion_by_its_conflict_count():
    # pos [R, 3, 9] and neg [R, 5, 9]: conflicts t=0 (forward) and t=2 (backward): 2 each
    r, adv = make_rollout([[R, 3, 9], [R, 5, 9], [6]], [0, 0, 1], [1.0, -1.0, 0.0], [0.0, 0.0, 0.0])
    plain, _, _ = gtpo(r, adv)
    divided, _, _ = gtpo(r, adv, normalize_by_conflicts=True)
    assert plain.tolist() == [[2.0, 1.0, 2.0], [0.0, -1.0, 0.0], [0.0, 0.0, 0.0]]
    assert divided.tolist() == [[1.0, 0.5, 1.0], [0.0, -0.5, 0.0], [0.0, 0.0, 0.0]]  # no conflict → / 1


def test_a_group_of_one_has_no_conflicts():
    r, adv = make_rollout([[R, 1]], [0], [0.0], [0.3])
    out, keep, _ = gtpo(r, adv)
    torch.testing.assert_close(out, torch.tensor([[-0.03, -0.03]]))
    assert keep.all()


# ---------------------------------------------------------------------------------------- invariants / equivalence
def reference_weights(rows, group, adv, W):
    """Slow, obvious GTPO weights: per completion and direction, walk the run while the token conflicts."""
    n = len(rows)

    def conflicting(i, t, from_end):
        tok = rows[i][len(rows[i]) - 1 - t] if from_end else rows[i][t]
        found = {1: False, -1: False}
        for j in range(n):
            if group[j] != group[i] or adv[j] == 0 or len(rows[j]) <= t:
                continue
            other = rows[j][len(rows[j]) - 1 - t] if from_end else rows[j][t]
            if other == tok:
                found[1 if adv[j] > 0 else -1] = True
        return adv[i] != 0 and found[1] and found[-1]

    out = []
    for i in range(n):
        L = len(rows[i])
        w = [1.0] * L
        for from_end in (False, True):
            t = 0
            while t < L and conflicting(i, t, from_end):
                pos = L - 1 - t if from_end else t
                w[pos] *= W if adv[i] > 0 else 0.0
                t += 1
        out.append(w)
    return out


def random_batch(seed):
    g = torch.Generator().manual_seed(seed)
    B = 9
    group = torch.randint(0, 3, (B,), generator=g)
    group[:3] = torch.tensor([0, 1, 2])  # every group present
    lengths = torch.randint(1, 7, (B,), generator=g).tolist()
    # a tiny vocabulary and a shared prefix / suffix make conflicts frequent
    rows = []
    for L in lengths:
        body = torch.randint(1, 4, (L,), generator=g).tolist()
        if L >= 2 and torch.rand(1, generator=g).item() < 0.6:
            body[0], body[-1] = R, 9
        rows.append(body)
    sign = torch.tensor([-1, 1, -1, 1, 0])[torch.randint(0, 5, (B,), generator=g)]  # mostly active completions
    adv = (sign * (0.1 + torch.rand(B, generator=g))).tolist()
    return rows, group, adv


@pytest.mark.parametrize("seed", range(8))
def test_vectorised_weights_equal_a_python_loop_on_random_unequal_groups(seed):
    rows, group, adv = random_batch(seed)
    ids, mask = padded(rows, pad=7)  # pad id 7 never occurs in the rows
    w, _ = gtpo_token_weights(ids, mask, group, torch.tensor(adv), conflict_weight=2.0)
    expected = reference_weights(rows, group.tolist(), adv, 2.0)
    for i, row in enumerate(expected):
        assert w[i, : len(row)].tolist() == row
        assert (w[i, len(row) :] == 0).all()


def test_gtpo_never_pushes_down_a_token_shared_with_a_positive_completion():
    """Paper invariant: a conflict token of a negative completion (same position and id as in a positive
    completion of the group) has weighted advantage exactly 0, whatever the entropy shaping does."""
    checked = 0
    for seed in range(12):
        rows, group, adv = random_batch(seed)
        g = torch.Generator().manual_seed(100 + seed)
        r, a = make_rollout(rows, group.tolist(), adv, (0.6 * torch.rand(len(rows), generator=g)).tolist())
        out, _, _ = gtpo(r, a)
        signs = [1.0 if x > 0 else -1.0 if x < 0 else 0.0 for x in adv]
        runs = reference_weights(rows, group.tolist(), signs, 2.0)
        for i, x in enumerate(adv):
            if x < 0:
                for t, w in enumerate(runs[i]):
                    if w == 0.0:  # a conflict token of a negative completion
                        assert out[i, t].item() == 0.0
                        checked += 1
        assert (out[~r.mask] == 0).all()
    assert checked >= 10  # the random batches do contain conflict tokens


# ---------------------------------------------------------------------------------------- bad input
def test_bad_input_says_what_is_wrong():
    r, adv = make_rollout([[R, 1]], [0], [1.0], [0.3])
    no_ids = r.replace(extras={"old_entropy": r.extras["old_entropy"]})
    with pytest.raises(ValueError, match="token_ids"):
        gtpo(no_ids, adv)
    with pytest.raises(ValueError, match="old_entropy"):
        gtpo(r.replace(extras={"token_ids": r.extras["token_ids"]}), adv)
    with pytest.raises(ValueError, match="integer"):
        gtpo(r.replace(extras={**r.extras, "token_ids": torch.zeros(1, 2)}), adv)
    with pytest.raises(ValueError, match="conflict_weight"):
        gtpo(r, adv, conflict_weight=-1.0)
    with pytest.raises(ValueError, match="entropy_threshold"):
        gtpo(r, adv, entropy_threshold=-0.1)
    with pytest.raises(ValueError, match="advantages"):
        gtpo(r, adv[:, :1])
    assert SELECTORS.requires("gtpo") == {"old_entropy", "token_ids"}
