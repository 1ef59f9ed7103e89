"""Tests of grpolab.core.spo (SPO, arXiv 2505.23564): hand-computed values, paper invariants, loop-vs-vectorised,
bad input."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from grpolab.core.advantages import ADVANTAGES
from grpolab.core.selection import SELECTORS
from grpolab.core.spo import (
    chain_segment_advantages,
    chain_start_values,
    cutpoints,
    mc_values,
    probability_mask,
    tree_segment_advantages,
    tree_segment_len,
    tree_token_advantages,
    whiten_segment_advantages,
)
from grpolab.core.types import Rollout

NAN = float("nan")


def logp_of(probs) -> torch.Tensor:
    return torch.tensor(probs, dtype=torch.float64).log()  # [B, T]


# ---------------------------------------------------------------------------------------------- chain: hand values
def test_probability_mask_keeps_uncertain_valid_tokens_only():
    # p = 0.95 and 0.9 leave (the code keeps p < 0.9); p = 0.3 at a padding position leaves too
    logp = logp_of([[0.95, 0.5, 0.9, 0.89, 0.3]])
    mask = torch.tensor([[True, True, True, True, False]])
    assert probability_mask(logp, mask).tolist() == [[False, True, False, True, False]]
    assert probability_mask(logp, mask, threshold=1.0).tolist() == [[True, True, True, True, False]]


def test_cutpoints_every_interval_th_low_probability_token():
    # low-probability tokens (p < 0.9) at 1, 3, 4, 5, 7; interval 2 takes the 1st, 3rd, 5th -> 1, 4, 7
    logp = logp_of([[0.95, 0.5, 0.99, 0.3, 0.2, 0.8, 0.97, 0.1]])
    mask = torch.ones(1, 8, dtype=torch.bool)
    assert cutpoints(logp, mask, interval=2)[0].nonzero().flatten().tolist() == [1, 4, 7]
    assert cutpoints(logp, mask, interval=1)[0].nonzero().flatten().tolist() == [1, 3, 4, 5, 7]
    assert cutpoints(logp, mask, interval=5)[0].nonzero().flatten().tolist() == [1]  # the paper default


def test_cutpoints_skip_masked_positions_in_the_count():
    # position 2 is masked (p = 0.1 there does not count): low tokens are 0, 3, 4 -> interval 2 gives 0 and 4
    logp = logp_of([[0.5, 0.95, 0.1, 0.3, 0.2]])
    mask = torch.tensor([[True, True, False, True, True]])
    assert cutpoints(logp, mask, interval=2)[0].nonzero().flatten().tolist() == [0, 4]


def test_chain_spec_values_with_and_without_base():
    """Spec: V = [0.2, 0.5, 1.0] over segments -> [0.3, 0.5]; without a base -> [0, 0.3, 0.5]."""
    mask = torch.ones(1, 6, dtype=torch.bool)
    # with a base: V(start) = 0.2, cutpoint at token 3 with V = 0.5, reward 1.0 -> tokens 0-2: 0.3, 3-5: 0.5
    cut = torch.tensor([[False, False, False, True, False, False]])
    value = torch.tensor([[0.0, 0.0, 0.0, 0.5, 0.0, 0.0]])
    adv = chain_segment_advantages(cut, value, mask, torch.tensor([1.0]), torch.tensor([0.2]))
    torch.testing.assert_close(adv, torch.tensor([[0.3, 0.3, 0.3, 0.5, 0.5, 0.5]]))
    # no base: cutpoints at 2 (V = 0.2) and 4 (V = 0.5) -> tokens 0-1: 0, 2-3: 0.3, 4-5: 0.5
    cut = torch.tensor([[False, False, True, False, True, False]])
    value = torch.tensor([[0.0, 0.0, 0.2, 0.0, 0.5, 0.0]])
    adv = chain_segment_advantages(
        cut, value, mask, torch.tensor([1.0]), torch.tensor([123.0]), has_base=torch.tensor([False])
    )
    torch.testing.assert_close(adv, torch.tensor([[0.0, 0.0, 0.3, 0.3, 0.5, 0.5]]))


def test_chain_ignores_marks_at_token_zero_and_padding_and_nan_there():
    mask = torch.tensor([[True, True, True, False]])
    cut = torch.tensor([[True, True, False, True]])  # token 0 = start, token 3 = padding: both ignored
    value = torch.tensor([[NAN, 0.25, 0.0, NAN]])
    adv = chain_segment_advantages(cut, value, mask, torch.tensor([0.0]), torch.tensor([0.5]))
    # segments [0, 1): 0.25 - 0.5; [1, 3): 0 - 0.25; padding 0
    assert adv.tolist() == [[-0.25, -0.25, -0.25, 0.0]]


def test_chain_start_values_hand():
    reward, group = torch.tensor([1.0, 0.0, 0.5, 0.0, 1.0]), torch.tensor([0, 1, 0, 2, 0])
    v, ok = chain_start_values(reward, group, base="group")  # group 0: (1.0 + 0.5 + 1.0) / 3
    torch.testing.assert_close(v, torch.tensor([5 / 6, 0.0, 5 / 6, 0.0, 5 / 6]))
    assert ok.all()
    v, ok = chain_start_values(reward, group, base="loo")  # group 0: others of 1.0 are (0.5, 1.0) -> 0.75
    assert v.tolist() == [0.75, 0.0, 1.0, 0.0, 0.75] and ok.tolist() == [True, False, True, False, True]
    v, ok = chain_start_values(reward, group, base="none")
    assert not ok.any()


def test_mc_values_mean_of_valid_continuations():
    v, ok = mc_values(torch.tensor([1.0, 0.0, 0.5, 7.0, 7.0, 0.0]), torch.tensor([1, 1, 1, 0, 0, 1]).bool(), 3)
    assert v.tolist() == [0.5, 0.0] and ok.tolist() == [True, True]
    v, ok = mc_values(torch.tensor([1.0, 1.0]), torch.tensor([False, False]), 2)
    assert v.tolist() == [0.0] and ok.tolist() == [False]


def chain_rollout(keep=None, base_rewards=(1.0, 0.0, 0.5)) -> Rollout:
    """Three completions, two prompts (0, 1, 0), 4 tokens; one cutpoint each at token 2."""
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0], [1, 1, 1, 1]]).bool()
    cut = torch.zeros(3, 4, dtype=torch.bool)
    cut[:, 2] = True
    value = torch.zeros(3, 4)
    value[:, 2] = torch.tensor([0.5, 0.25, 1.0])
    keep = mask.clone() if keep is None else keep
    return Rollout(
        group=torch.tensor([0, 1, 0]),
        mask=mask,
        reward=torch.tensor(base_rewards),
        extras={"spo_cut": cut, "spo_value": value, "spo_keep": keep},
    )


def test_spo_chain_advantage_entry_unwhitened_hand():
    # group 0 mean = 0.75, group 1 mean = 0.0
    # row 0: [0.5 - 0.75, ·, 1.0 - 0.5, ·] ; row 1: [0.25 - 0, ·, 0 - 0.25, pad] ; row 2: [1.0 - 0.75, ·, 0.5 - 1.0, ·]
    keep = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 0], [0, 1, 1, 1]]).bool()  # a p > 0.9 token at (0, 3) and (2, 0)
    adv = ADVANTAGES["spo_chain"](chain_rollout(keep), whiten=False)
    expected = [[-0.25, -0.25, 0.5, 0.0], [0.25, 0.25, -0.25, 0.0], [0.0, 0.25, -0.5, -0.5]]
    torch.testing.assert_close(adv, torch.tensor(expected))
    adv = ADVANTAGES["spo_chain"](chain_rollout(keep), whiten=False, base="none")
    expected = [[0.0, 0.0, 0.5, 0.0], [0.0, 0.0, -0.25, 0.0], [0.0, 0.0, -0.5, -0.5]]
    torch.testing.assert_close(adv, torch.tensor(expected))


def test_tokens_above_the_probability_threshold_get_zero_and_whitening_uses_kept_tokens_only():
    keep = torch.tensor([[1, 0, 1, 0], [1, 1, 0, 0], [0, 1, 1, 1]]).bool()
    adv = ADVANTAGES["spo_chain"](chain_rollout(keep))  # whitened
    assert (adv[~keep] == 0).all()
    kept = adv[keep]
    assert abs(kept.mean().item()) < 1e-6 and abs(kept.std().item() - 1.0) < 1e-4  # unbiased std, eps 1e-8
    raw = ADVANTAGES["spo_chain"](chain_rollout(keep), whiten=False)[keep]
    torch.testing.assert_close(kept, (raw - raw.mean()) / torch.sqrt(raw.var() + 1e-8))


def test_whiten_segment_advantages_hand():
    keep = torch.tensor([[True, True, False], [True, False, False]])
    out = whiten_segment_advantages(torch.tensor([[1.0, 2.0, NAN], [3.0, NAN, NAN]]), keep)  # mean 2, var 1
    assert out.tolist() == [[-1.0, 0.0, 0.0], [1.0, 0.0, 0.0]]
    assert whiten_segment_advantages(torch.tensor([[1.0, 2.0, 5.0]]), keep[:1], whiten=False).tolist() == [
        [1.0, 2.0, 0.0]
    ]


# ---------------------------------------------------------------------------------------------- chain: loop
def chain_loop(cut, value, mask, reward, start, has_base):
    """Obvious version: walk each row, collect (first token, value) of every segment, subtract neighbours."""
    B, T = mask.shape
    out = torch.zeros(B, T, dtype=torch.float64)
    for b in range(B):
        starts = [0] + [t for t in range(1, T) if cut[b, t] and mask[b, t]]
        values = [start[b].item()] + [value[b, t].item() for t in starts[1:]] + [reward[b].item()]
        bounds = [*starts, T]
        for k in range(len(starts)):
            a = values[k + 1] - values[k]
            if k == 0 and not has_base[b]:
                a = 0.0
            for t in range(bounds[k], bounds[k + 1]):
                if mask[b, t]:
                    out[b, t] = a
    return out


@pytest.mark.parametrize("seed", range(4))
def test_chain_segment_advantages_match_loop(seed):
    g = torch.Generator().manual_seed(seed)
    B, T = 7, 9
    mask = torch.rand(B, T, generator=g) < 0.8  # gaps inside completions (tool output)
    mask[:, 0] = True
    cut = torch.rand(B, T, generator=g) < 0.35
    value = torch.rand(B, T, generator=g, dtype=torch.float64)
    value[~cut] = NAN  # values off the cutpoints must not matter
    reward, start = torch.rand(B, generator=g, dtype=torch.float64), torch.rand(B, generator=g, dtype=torch.float64)
    has_base = torch.rand(B, generator=g) < 0.6
    got = chain_segment_advantages(cut, value, mask, reward, start, has_base=has_base)
    torch.testing.assert_close(got, chain_loop(cut, value, mask, reward, start, has_base))


@pytest.mark.parametrize("base", ["group", "loo", "none"])
def test_spo_chain_entry_matches_loop_on_unequal_groups(base):
    g = torch.Generator().manual_seed(3)
    sizes = [1, 3, 4, 2]
    group = torch.cat([torch.full((n,), p) for p, n in enumerate(sizes)])[torch.randperm(10, generator=g)]
    B, T = 10, 7
    mask = torch.arange(T)[None, :] < torch.randint(1, T + 1, (B,), generator=g)[:, None]
    cut = torch.rand(B, T, generator=g) < 0.3
    value = torch.rand(B, T, generator=g, dtype=torch.float64)
    reward = torch.rand(B, generator=g, dtype=torch.float64)
    keep = mask & (torch.rand(B, T, generator=g) < 0.7)
    r = Rollout(group=group, mask=mask, reward=reward, extras={"spo_cut": cut, "spo_value": value, "spo_keep": keep})
    start, has_base = torch.zeros(B, dtype=torch.float64), torch.zeros(B, dtype=torch.bool)
    for i in range(B):  # loop baseline: V(start) by hand from the group's members
        others = [reward[j].item() for j in range(B) if group[j] == group[i] and (base == "group" or j != i)]
        if base != "none" and others:
            start[i], has_base[i] = sum(others) / len(others), True
    expected = torch.where(keep, chain_loop(cut, value, mask, reward, start, has_base), 0.0)
    torch.testing.assert_close(ADVANTAGES["spo_chain"](r, base=base, whiten=False), expected)


# ---------------------------------------------------------------------------------------------- tree: hand values
def hand_tree():
    """One prompt: node a (id 0) with leaves r0 = 1 (node 2) and r1 = 0 (node 3); node b (id 1) is leaf r2 = 1."""
    return torch.tensor([[0, 2], [0, 3], [1, -1]]), torch.tensor([1.0, 0.0, 1.0]), torch.tensor([0, 0, 0])


def test_tree_hand_rloo_children():
    # V(a) = 0.5, V(b) = 1, V(root) = 0.75
    adv, value = tree_segment_advantages(*hand_tree())
    assert adv.tolist() == [[-0.25, 0.5], [-0.25, -0.5], [0.25, 0.0]]
    assert value.tolist() == [[0.5, 1.0], [0.5, 0.0], [1.0, 0.0]]


def test_tree_hand_grpo_divides_by_the_sibling_std():
    # siblings of a, b: values 0.5, 1 -> std (ddof 0) 0.25; siblings under a: 1, 0 -> std 0.5
    adv, _ = tree_segment_advantages(*hand_tree(), method="grpo", eps=1e-12)
    torch.testing.assert_close(adv, torch.tensor([[-1.0, 1.0], [-1.0, -1.0], [1.0, 0.0]]))


def test_tree_hand_leaves_mode():
    # V(root) = mean of all leaves = 2/3 (children mode: 0.75); V(a) = 0.5, V(b) = 1
    adv, _ = tree_segment_advantages(*hand_tree(), node_value="leaves")
    torch.testing.assert_close(adv, torch.tensor([[0.5 - 2 / 3, 0.5], [0.5 - 2 / 3, -0.5], [1 / 3, 0.0]]))


def test_tree_invalid_leaf_is_left_out():
    path, reward, group = hand_tree()
    # r1 invalid: V(a) = 1 (only r0), V(root) = 1; r1's own node has advantage 0
    adv, _ = tree_segment_advantages(path, reward, group, valid=torch.tensor([True, False, True]))
    assert adv.tolist() == [[0.0, 0.0], [0.0, 0.0], [0.0, 0.0]]
    reward = torch.tensor([1.0, 0.0, 0.0])
    adv, _ = tree_segment_advantages(path, reward, group, valid=torch.tensor([True, False, True]))
    assert adv.tolist() == [[0.5, 0.0], [0.5, 0.0], [-0.5, 0.0]]  # V(a) = 1, V(b) = 0, root 0.5


def test_tree_token_advantages_hand_ownership():
    # M = 2, D = 2: row 0 (main) owns tokens 0-4; row 1 continues row 0 after 2 tokens and owns tokens 2-3
    seg_adv = torch.tensor([[0.5, 0.25], [0.5, -1.0]])
    path = torch.tensor([[0, 2], [0, 3]])
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 1, 0]]).bool()
    adv, node, owned = tree_token_advantages(seg_adv, path, mask, torch.tensor([0, 2]), segment_len=2)
    assert adv.tolist() == [[0.5, 0.5, 0.25, 0.25, 0.25], [0.0, 0.0, -1.0, -1.0, 0.0]]
    assert node.tolist() == [[0, 0, 2, 2, 2], [0, 0, 3, 3, -1]]
    assert owned.tolist() == [[True] * 5, [False, False, True, True, False]]


def test_tree_segment_len_scales_with_the_budget():
    assert [tree_segment_len(n, 3) for n in (3, 4, 8, 20, 2048)] == [1, 1, 2, 6, 614]
    assert tree_segment_len(8, 3, segment_len=100) == 3  # clipped: (D - 1) * M < max_len
    assert tree_segment_len(8, 1) == 8
    with pytest.raises(ValueError, match="max_len >= 3"):
        tree_segment_len(2, 3)


# ---------------------------------------------------------------------------------------------- tree: invariants
def random_forest(seed: int, sizes=(1, 3, 2), depth: int = 3):
    """Random trees (one per prompt, branching 1..3, early leaves), rows (leaves) shuffled across prompts and node
    ids permuted: returns path [R, D], reward [R], group [R]."""
    g = torch.Generator().manual_seed(seed)
    rows: list[tuple[list[int], int]] = []
    counter = [0]

    def grow(prefix: list[int], p: int, level: int) -> None:
        node = counter[0]
        counter[0] += 1
        chain = [*prefix, node]
        last = level == depth - 1 or (level > 0 and torch.rand(1, generator=g).item() < 0.3)
        if last:
            rows.append((chain, p))
            return
        for _ in range(int(torch.randint(1, 4, (1,), generator=g))):
            grow(chain, p, level + 1)

    for p, n in enumerate(sizes):
        for _ in range(n):
            grow([], p, 0)
    perm = torch.randperm(counter[0], generator=g)
    order = torch.randperm(len(rows), generator=g).tolist()
    path = torch.full((len(rows), depth), -1, dtype=torch.long)
    for i, j in enumerate(order):
        chain = rows[j][0]
        path[i, : len(chain)] = perm[torch.tensor(chain)]
    group = torch.tensor([rows[j][1] for j in order])
    reward = torch.rand(len(rows), generator=g, dtype=torch.float64)
    return path, reward, group


def tree_loop(path, reward, group, valid, method, node_value, eps):
    """Obvious version: build the tree as dicts, compute values recursively, then A = V - V(parent)."""
    children: dict = {}
    parent: dict = {}
    leaf_row: dict = {}
    for r in range(path.shape[0]):
        chain = [("root", int(group[r]))] + [("n", int(x)) for x in path[r] if x >= 0]
        for a, b in itertools.pairwise(chain):
            children.setdefault(a, set()).add(b)
            parent[b] = a
        leaf_row[chain[-1]] = r

    def leaves(n):
        if n in leaf_row:
            return [leaf_row[n]]
        return [r for c in children[n] for r in leaves(c)]

    def value(n):  # (value, has a valid leaf)
        if n in leaf_row:
            return reward[leaf_row[n]].item(), bool(valid[leaf_row[n]])
        if node_value == "leaves":
            rs = [reward[r].item() for r in leaves(n) if valid[r]]
            return (sum(rs) / len(rs), True) if rs else (0.0, False)
        vs = [value(c)[0] for c in children[n] if value(c)[1]]
        return (sum(vs) / len(vs), True) if vs else (0.0, False)

    adv = torch.zeros(path.shape, dtype=torch.float64)
    for r in range(path.shape[0]):
        for d in range(path.shape[1]):
            if path[r, d] < 0:
                continue
            n = ("n", int(path[r, d]))
            (v, ok), (pv, pok) = value(n), value(parent[n])
            if not (ok and pok):
                continue
            a = v - pv
            if method == "grpo":
                sib = [value(c)[0] for c in children[parent[n]] if value(c)[1]]
                mean = sum(sib) / len(sib)
                a /= math.sqrt(sum((x - mean) ** 2 for x in sib) / len(sib)) + eps
            adv[r, d] = a
    return adv


@pytest.mark.parametrize("method", ["rloo", "grpo"])
@pytest.mark.parametrize("node_value", ["children", "leaves"])
@pytest.mark.parametrize("seed", range(3))
def test_tree_segment_advantages_match_loop(method, node_value, seed):
    path, reward, group = random_forest(seed)
    valid = torch.rand(len(reward), generator=torch.Generator().manual_seed(seed)) < 0.85
    got, _ = tree_segment_advantages(path, reward, group, valid=valid, method=method, node_value=node_value)
    torch.testing.assert_close(got, tree_loop(path, reward, group, valid, method, node_value, 1e-8))


@pytest.mark.parametrize("seed", range(4))
def test_tree_children_advantages_average_to_zero_under_their_parent(seed):
    """Spec invariant (rloo): the advantages of a node's children average to 0."""
    path, reward, group = random_forest(seed, sizes=(2, 1, 3))
    adv, _ = tree_segment_advantages(path, reward, group)
    by_parent: dict = {}
    for r in range(path.shape[0]):
        for d in range(path.shape[1]):
            if path[r, d] >= 0:
                par = ("root", int(group[r])) if d == 0 else int(path[r, d - 1])
                by_parent.setdefault(par, {})[int(path[r, d])] = adv[r, d].item()
    assert len(by_parent) > 3
    for kids in by_parent.values():
        assert abs(sum(kids.values()) / len(kids)) < 1e-12


def test_a_single_child_has_zero_advantage_and_a_lone_leaf_prompt_too():
    # prompt 0: one level-1 node with one leaf below; prompt 1: a single leaf
    path, reward, group = torch.tensor([[0, 1], [2, -1]]), torch.tensor([1.0, 0.5]), torch.tensor([0, 1])
    adv, value = tree_segment_advantages(path, reward, group)
    assert adv.tolist() == [[0.0, 0.0], [0.0, 0.0]] and value.tolist() == [[1.0, 1.0], [0.5, 0.0]]


# ---------------------------------------------------------------------------------------------- entries
def test_spo_tree_entry_whitens_the_stored_advantages_over_kept_tokens():
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]]).bool()
    adv = torch.tensor([[0.5, 0.5, -0.5], [NAN, 1.5, NAN]])
    keep = torch.tensor([[1, 1, 0], [0, 1, 1]]).bool()  # (1, 2) is padding: not kept
    r = Rollout(group=torch.tensor([0, 0]), mask=mask, reward=torch.zeros(2), extras={"spo_adv": adv, "spo_keep": keep})
    torch.testing.assert_close(
        ADVANTAGES["spo_tree"](r, whiten=False), torch.tensor([[0.5, 0.5, 0.0], [0.0, 1.5, 0.0]])
    )
    # kept values 0.5, 0.5, 1.5: mean 5/6, unbiased var 1/3
    w = (torch.tensor([0.5, 0.5, 1.5]) - 5 / 6) / math.sqrt(1 / 3 + 1e-8)
    torch.testing.assert_close(ADVANTAGES["spo_tree"](r)[r.extras["spo_keep"] & mask], w)


def test_spo_mask_selector_narrows_the_loss_mask():
    mask = torch.tensor([[1, 1, 0]]).bool()
    r = Rollout(
        group=torch.tensor([0]),
        mask=mask,
        reward=torch.zeros(1),
        extras={"spo_keep": torch.tensor([[True, False, True]])},
    )
    adv, keep, metrics = SELECTORS["spo_mask"](r, torch.ones(1, 3))
    assert keep.tolist() == [[True, False, False]] and adv.tolist() == [[1.0, 1.0, 1.0]]
    assert metrics["spo/prob_mask_keep_frac"] == 0.5


# ---------------------------------------------------------------------------------------------- bad input
def test_bad_input_raises_value_error():
    mask = torch.ones(1, 3, dtype=torch.bool)
    logp = torch.zeros(1, 3)
    with pytest.raises(ValueError, match="interval"):
        cutpoints(logp, mask, interval=0)
    with pytest.raises(ValueError, match="threshold"):
        probability_mask(logp, mask, threshold=1.5)
    with pytest.raises(ValueError, match="base"):
        ADVANTAGES["spo_chain"](chain_rollout(), base="median")
    with pytest.raises(ValueError, match="spo_cut"):
        ADVANTAGES["spo_chain"](Rollout(group=torch.tensor([0]), mask=mask, reward=torch.zeros(1)))
    with pytest.raises(ValueError, match="spo_keep"):
        SELECTORS["spo_mask"](Rollout(group=torch.tensor([0]), mask=mask, reward=torch.zeros(1)), torch.zeros(1, 3))
    with pytest.raises(ValueError, match="method"):
        tree_segment_advantages(*hand_tree(), method="ppo")
    with pytest.raises(ValueError, match="node_value"):
        tree_segment_advantages(*hand_tree(), node_value="max")
    with pytest.raises(ValueError, match="two parents"):
        tree_segment_advantages(torch.tensor([[0, 2], [1, 2]]), torch.zeros(2), torch.tensor([0, 0]))
    with pytest.raises(ValueError, match="after a -1"):
        tree_segment_advantages(torch.tensor([[0, -1, 3]]), torch.zeros(1), torch.tensor([0]))
    with pytest.raises(ValueError, match="exactly one row"):
        tree_segment_advantages(torch.tensor([[0, -1], [0, 1]]), torch.zeros(2), torch.tensor([0, 0]))
    with pytest.raises(ValueError, match="num_rollouts"):
        mc_values(torch.zeros(4), torch.ones(4, dtype=torch.bool), 0)
    with pytest.raises(ValueError, match="segment_frac"):
        tree_segment_len(8, 3, segment_frac=1.5)
