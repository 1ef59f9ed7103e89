"""D³S (arXiv 2509.22115): max-variance rollout subset, top |A|·H tokens, the relaxing schedule, the selector."""

import itertools
import math

import pytest
import torch

from grpolab.core.d3s import d3s, d3s_schedule, max_variance_subset, top_token_mask
from grpolab.core.selection import SELECTORS
from grpolab.core.types import Rollout


# ---------------------------------------------------------------------------------------- spec unit tests
def test_spec_max_variance_subset_of_two_is_the_extremes():
    keep = max_variance_subset(torch.tensor([-2.0, -1.0, 0.0, 1.0, 2.0]), torch.zeros(5, dtype=torch.long), ratio=0.4)
    assert keep.tolist() == [True, False, False, False, True]  # m = ⌈0.4·5⌉ = 2 → {−2, 2}


def test_spec_token_mask_keeps_the_top_half_by_score():
    keep = top_token_mask(torch.tensor([[4.0, 1.0, 3.0, 0.0]]), torch.ones(1, 4, dtype=torch.bool), ratio=0.5)
    assert keep.tolist() == [[True, False, True, False]]


@pytest.mark.parametrize("kind", ["linear", "cosine"])
@pytest.mark.parametrize("total", [1, 2, 3, 10, 37])
def test_spec_schedule_is_monotone_and_ends_at_one(kind, total):
    values = [d3s_schedule(s, total, start=0.3, kind=kind) for s in range(total)]
    assert all(b >= a - 1e-12 for a, b in itertools.pairwise(values))
    assert values[-1] == pytest.approx(1.0)
    if total > 1:
        assert values[0] == pytest.approx(0.3)
    assert d3s_schedule(total + 5, total, start=0.3, kind=kind) == pytest.approx(1.0)  # past the end: stays at 1


def test_schedule_by_hand():
    assert [d3s_schedule(s, 5, start=0.2, end=0.6) for s in range(5)] == pytest.approx([0.2, 0.3, 0.4, 0.5, 0.6])
    # cosine at p = 1/4: 1 − 0.5·(1 + cos(π/4))·0.5 = 0.5 + 0.25·(1 − 0.70711) = 0.57322
    assert d3s_schedule(1, 5, start=0.5, kind="cosine") == pytest.approx(1 - 0.25 * (1 + math.cos(math.pi / 4)))
    assert d3s_schedule(3, 5, start=0.4, kind="constant") == 0.4


# ---------------------------------------------------------------------------------------- sample level
def brute_force_best_variance(values, m):
    return max(
        torch.tensor(c, dtype=torch.float64).var(unbiased=False).item() for c in itertools.combinations(values, m)
    )


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("ratio", [0.25, 0.5, 0.7, 1.0])
def test_max_variance_subset_matches_brute_force_on_random_unequal_groups(seed, ratio):
    g = torch.Generator().manual_seed(seed)
    group = torch.tensor([2, 0, 1, 0, 2, 2, 0, 2, 1, 0, 2, 3])  # sizes 4, 2, 5, 1; non-contiguous
    values = torch.randn(len(group), generator=g).round(decimals=1)  # rounding makes ties likely
    keep = max_variance_subset(values, group, ratio=ratio)
    for k in range(4):
        members = values[group == k].tolist()
        n = len(members)
        m = min(n, max(1, math.ceil(ratio * n - 1e-9)))
        kept = values[(group == k) & keep]
        assert len(kept) == m
        var = kept.double().var(unbiased=False).item()
        assert var == pytest.approx(brute_force_best_variance(members, m), abs=1e-9)


def test_max_variance_subset_across_the_batch_uses_one_set():
    keep = max_variance_subset(torch.tensor([0.0, 5.0, 1.0, -5.0]), torch.zeros(4, dtype=torch.long), ratio=0.5)
    assert keep.tolist() == [False, True, False, True]


def test_max_variance_ties_pick_the_fewest_top_values_in_index_order():
    # all equal: every k gives variance 0 → k = 0 → the bottom m in (stable) index order
    keep = max_variance_subset(torch.zeros(4), torch.zeros(4, dtype=torch.long), ratio=0.5)
    assert keep.tolist() == [True, True, False, False]


# ---------------------------------------------------------------------------------------- token level
def reference_top_tokens(scores, mask, ratio, scope):
    B, T = mask.shape
    keep = torch.zeros(B, T, dtype=torch.bool)
    if scope == "batch":
        cand = [(i, t) for i in range(B) for t in range(T) if mask[i, t]]
        k = min(len(cand), max(1, math.ceil(ratio * len(cand) - 1e-9))) if cand else 0
        for i, t in sorted(cand, key=lambda p: (-scores[p[0], p[1]].item(), p[0], p[1]))[:k]:
            keep[i, t] = True
    else:
        for i in range(B):
            cand = [t for t in range(T) if mask[i, t]]
            k = min(len(cand), max(1, math.ceil(ratio * len(cand) - 1e-9))) if cand else 0
            for t in sorted(cand, key=lambda t: (-scores[i, t].item(), t))[:k]:
                keep[i, t] = True
    return keep


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("scope", ["batch", "sequence"])
@pytest.mark.parametrize("ratio", [0.1, 0.5, 0.8])
def test_top_token_mask_equals_a_python_loop_with_ties_in_row_major_order(seed, scope, ratio):
    g = torch.Generator().manual_seed(seed)
    scores = torch.randint(0, 4, (5, 6), generator=g).float()  # many ties
    mask = torch.arange(6)[None, :] < torch.randint(0, 7, (5,), generator=g)[:, None]
    scores[~mask] = float("nan")  # garbage outside the candidates
    keep = top_token_mask(scores, mask, ratio=ratio, scope=scope)
    assert torch.equal(keep, reference_top_tokens(torch.nan_to_num(scores, nan=0.0), mask, ratio, scope))


# ---------------------------------------------------------------------------------------- selector
def make_rollout(adv_rows, lengths, group, entropy):
    T = max(lengths)
    mask = torch.arange(T)[None, :] < torch.tensor(lengths)[:, None]
    adv = torch.tensor(adv_rows, dtype=torch.float32)[:, None].expand(len(lengths), T).clone()
    adv[~mask] = 99.0
    ent = torch.tensor(entropy, dtype=torch.float32)
    ent[~mask] = float("nan")
    r = Rollout(group=torch.tensor(group), mask=mask, reward=torch.zeros(len(lengths)), extras={"old_entropy": ent})
    return r, adv


def test_selector_by_hand():
    # group 0: A = [−1, 0, 2] (m = ⌈0.5·3⌉ = 2 → {−1, 2}); group 1: A = [0.5] (kept alone)
    ent = [[1.0, 2.0, 0.0], [5.0, 5.0, 5.0], [0.1, 1.0, 0.0], [4.0, 0.0, 0.0]]
    r, adv = make_rollout([-1.0, 0.0, 2.0, 0.5], [2, 3, 2, 1], [0, 0, 0, 1], ent)
    out, keep, metrics = d3s(r, adv, step=0, total_steps=4, sample_ratio_start=0.5, token_ratio_start=0.4)
    # kept rollouts 0, 2, 3 → 5 tokens with scores |A|·H: [1, 2], [0.2, 2], [2]; ⌈0.4·5⌉ = 2 → ties at 2.0 in
    # row-major order: (0, 1) and (2, 1)
    assert keep.tolist() == [[False, True, False], [False, False, False], [False, True, False], [False, False, False]]
    assert torch.equal(out, torch.where(r.mask, adv, torch.zeros_like(adv)))
    assert metrics["d3s/sample_ratio"] == 0.5 and metrics["d3s/token_ratio"] == 0.4
    assert metrics["d3s/kept_sample_frac"] == 0.75 and metrics["d3s/kept_token_frac"] == pytest.approx(2 / 8)


def test_selector_keeps_everything_at_the_last_step_and_without_entropy_when_token_ratio_is_one():
    r, adv = make_rollout([-1.0, 0.0, 2.0, 0.5], [2, 3, 2, 1], [0, 0, 0, 1], [[1.0] * 3] * 4)
    _, keep, _ = SELECTORS["d3s"](r, adv, step=9, total_steps=10)
    assert torch.equal(keep, r.mask)
    no_entropy = r.replace(extras={})
    _, keep, _ = d3s(no_entropy, adv, step=0, total_steps=10, sample_ratio_start=0.5, token_ratio_start=1.0)
    assert keep.any(dim=-1).tolist() == [True, False, True, True]


def test_selector_batch_scope_selects_across_groups():
    r, adv = make_rollout([-1.0, 0.0, 2.0, 0.5], [2, 3, 2, 1], [0, 0, 0, 1], [[1.0] * 3] * 4)
    _, keep, _ = d3s(
        r, adv, step=0, total_steps=10, sample_ratio_start=0.5, token_ratio_start=1.0, sample_scope="batch"
    )
    assert keep.any(dim=-1).tolist() == [True, False, True, False]  # m = 2 of 4 → {−1, 2}


def test_bad_input_says_what_is_wrong():
    r, adv = make_rollout([1.0, 0.0], [2, 2], [0, 0], [[1.0] * 2] * 2)
    with pytest.raises(ValueError, match="ratio"):
        d3s(r, adv, step=0, total_steps=2, sample_ratio_start=0.0)
    with pytest.raises(ValueError, match="only relaxes"):
        d3s(r, adv, step=0, total_steps=2, token_ratio_start=0.5, token_ratio_end=0.4)
    with pytest.raises(ValueError, match="kind"):
        d3s(r, adv, step=0, total_steps=2, schedule="exp")
    with pytest.raises(ValueError, match="sample_scope"):
        d3s(r, adv, step=0, total_steps=2, sample_scope="prompt")
    with pytest.raises(ValueError, match="old_entropy"):
        d3s(r.replace(extras={}), adv, step=0, total_steps=2)
    with pytest.raises(ValueError, match="step"):
        d3s_schedule(-1, 3, start=0.5)
    assert SELECTORS.requires("d3s") == {"old_entropy"}
