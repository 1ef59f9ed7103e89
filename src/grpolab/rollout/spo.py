"""SPO rollout strategies: the Monte-Carlo sampling of Segment Policy Optimization (arXiv 2505.23564).

- ``spo_chain``: cutpoints from the rollout policy's token probabilities, N continuations from every cutpoint of
  the batch in ONE ``ctx.continue_from`` call, their mean reward stored as the value of the cutpoint.
- ``spo_tree``: a tree of segments per prompt grown level by level (one ``ctx.continue_from`` call per level);
  every leaf is a full completion that joins the batch, each tree segment is trained once, in the row that
  sampled it, with its true prefix as context.

The math (cutpoint choice, segment values and advantages, the probability mask) is in :mod:`grpolab.core.spo`.
"""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import Tensor

from grpolab.core.spo import (
    TREE_METHODS,
    TREE_NODE_VALUES,
    cutpoints,
    mc_values,
    probability_mask,
    tree_segment_advantages,
    tree_segment_len,
    tree_token_advantages,
)
from grpolab.rollout.strategies import ROLLOUT_STRATEGIES, RolloutContext, Sampled


def _rewards_within(ctx: RolloutContext, cont: Sampled, limit: int) -> tuple[Tensor, Tensor]:
    """Rewards and validity [M] of continuations cut to at most ``limit`` completion tokens.

    One continuation call serves cutpoints at different depths, so it samples up to ``limit − shallowest cut``
    new tokens; continuations from deeper cutpoints may then run past the run's budget. Those are cut back to
    ``limit`` tokens (and marked truncated) and scored again, so every value is the expected reward under the
    same length budget as the completions it is compared with."""
    lengths = cont.gen.completion_mask.sum(-1)  # [M]
    over = (lengths > limit).nonzero().flatten()  # [m]
    reward, valid = cont.reward.clone(), cont.valid.clone()  # [M], [M]
    if over.numel() == 0:
        return reward, valid
    gen = cont.gen.take(over)
    ids, mask = gen.completion_ids[:, :limit], gen.completion_mask[:, :limit]  # [m, limit]
    texts = ctx.tokenizer.batch_decode(torch.where(mask, ids, ctx.pad_id), skip_special_tokens=True)
    short = replace(
        gen, completion_ids=ids, completion_mask=mask, truncated=torch.ones_like(gen.truncated), texts=texts
    )
    rescored = ctx.score(cont.rows, short)
    reward[over] = rescored.reward.to(reward)
    valid[over] = rescored.valid.to(valid)
    return reward, valid


@ROLLOUT_STRATEGIES.register("spo_chain")
def spo_chain(
    ctx: RolloutContext,
    sampled: Sampled,
    *,
    max_len: int,
    num_rollouts: int = 9,
    cutpoint_interval: int = 5,
    prob_threshold: float = 0.9,
) -> tuple[Sampled, dict[str, float]]:
    """SPO-chain's Monte-Carlo values (arXiv 2505.23564, SPO-chain), written to ``extras`` for the ``spo_chain``
    advantage. Costs one extra forward pass and one ``continue_from`` call of ``num_rollouts`` continuations per
    cutpoint; the continuations only estimate values and do not join the batch.

    For each completion: the rollout policy's token probabilities (``ctx.token_outputs``, sampling temperature)
    give the cutpoints (:func:`grpolab.core.spo.cutpoints`: every ``cutpoint_interval``-th token with p <
    ``prob_threshold``; a cutpoint at token j means the state after j tokens, i.e. just before that uncertain
    token: the official code's "shift back by one"). A cutpoint at token 0 is the prompt itself, whose value is
    the advantage's ``base``, so only cutpoints j ≥ 1 are estimated: ``continue_from(cut=j)``, ``num_rollouts``
    times, at most ``max_len`` tokens in total, value = their mean reward (:func:`grpolab.core.spo.mc_values`).

    Writes ``extras["spo_cut"]`` bool [N, T] (cutpoints j ≥ 1 with a value), ``extras["spo_value"]`` float [N, T]
    (their values) and ``extras["spo_keep"]`` bool [N, T] (the probability mask, p < ``prob_threshold``).

    Args:
        max_len: the run's generation limit (run argument).
        num_rollouts: N, continuations per cutpoint; paper 9 (GSM8K, RhoMath-1.1B) or 4 (MATH, Qwen-1.5B);
            usually 4 to 16. More = less noisy values, proportionally more generation.
        cutpoint_interval: every how many low-probability tokens a segment ends; paper default 5 (1 to 10).
        prob_threshold: p below which a token is a cutpoint candidate and stays in the loss; paper 0.9.
    """
    if isinstance(num_rollouts, bool) or not isinstance(num_rollouts, int) or num_rollouts < 1:
        raise ValueError(f"spo_chain: num_rollouts must be an int >= 1, got {num_rollouts!r}; paper 9 or 4")
    gen = sampled.gen
    mask = gen.completion_mask  # [N, T]
    logp, _ = ctx.token_outputs(gen)  # [N, T] rollout-policy log-probs at the sampling temperature
    keep = probability_mask(logp, mask, threshold=prob_threshold)  # [N, T]
    cut = cutpoints(logp, mask, threshold=prob_threshold, interval=cutpoint_interval)  # [N, T]
    at_start = cut[:, 0].clone()  # [N]: first token uncertain: V(start) is the base, not sampled here
    cut[:, 0] = False
    value = torch.zeros(mask.shape, dtype=torch.float32, device=mask.device)  # [N, T]
    rows, pos = cut.nonzero(as_tuple=True)  # [M], [M]
    metrics = {"spo/cutpoints": float(rows.numel()) / max(1, sampled.size), "spo/mc_rollouts": 0.0}
    if rows.numel():
        # ALL cutpoints of the batch in one call; the budget of the shallowest cutpoint bounds the others
        cont = ctx.continue_from(sampled, rows, pos, num_rollouts, max_new_tokens=max_len - int(pos.min()))
        reward, valid = _rewards_within(ctx, cont, max_len)  # [M * n]
        v, ok = mc_values(reward, valid, num_rollouts)  # [M], [M]
        value[rows, pos] = v.to(value)
        cut[rows[~ok], pos[~ok]] = False  # no valid continuation: no value, the segment merges with the previous
        metrics["spo/mc_rollouts"] = float(reward.numel())
        if bool(ok.any()):
            metrics["spo/mc_value"] = v[ok].mean().item()
    metrics["spo/first_token_cut_frac"] = at_start.float().mean().item()
    metrics["spo/prob_keep_frac"] = (keep.sum() / mask.sum().clamp(min=1)).item()
    extras = {**sampled.extras, "spo_cut": cut, "spo_value": value, "spo_keep": keep}
    return replace(sampled, extras=extras), metrics


@ROLLOUT_STRATEGIES.register("spo_tree")
def spo_tree(
    ctx: RolloutContext,
    sampled: Sampled,
    *,
    max_len: int,
    branch_factors: tuple[int, ...] | list[int] = (6, 6),
    segment_frac: float = 0.3,
    segment_len: int | None = None,
    method: str = "rloo",
    node_value: str = "children",
    only_nonzero: bool = True,
    zero_tol: float = 1e-6,
    prob_threshold: float | None = 0.9,
) -> tuple[Sampled, dict[str, float]]:
    """SPO-tree (arXiv 2505.23564): grow a tree of segments per prompt; every leaf joins the batch.

    Tree shape. The G completions of a prompt in the main batch are its level-1 branches: a tree of depth
    ``D = 1 + len(branch_factors)`` has branch factors ``(G, *branch_factors)`` (paper 6-6-6: G = 6 and
    ``branch_factors=(6, 6)``). Each node is a segment of M tokens (:func:`grpolab.core.spo.tree_segment_len`:
    ``round(segment_frac · max_len)``), the last level runs free to the end (at most ``max_len`` tokens in all); a
    segment that ends (EOS) before M tokens is a leaf.

    Growth, one ``continue_from`` call per level for the whole batch: a completion sampled without limit is a
    valid path of the tree (its first M tokens are distributed as an M-token segment, the rest as the continuation
    of that segment), so every row is a full completion and the *first* child of every node is the row that
    created the node. At level d (d = 1 .. D − 1), every node of level d that did not end is given
    ``branch_factors[d − 1] − 1`` more children: continuations of its row after its ``d · M`` tokens. The tree
    therefore has the paper's ``G · b_2 · …`` leaves (fewer where segments ended early) and costs exactly
    that many completions, the main batch included.

    Values and advantages (:func:`grpolab.core.spo.tree_segment_advantages`): ``V(leaf)`` is its reward, ``V(node)``
    the mean of its children (``node_value``), ``A = V(node) − V(parent)`` ("rloo") or divided by the std of the
    siblings ("grpo"). Each row trains only the tokens it sampled (``t >= prefix_len``): every segment once, in
    the first row through it, with its true prefix as context; only segments with a nonzero advantage are kept
    (``only_nonzero``) and, as in the official trainer, only tokens with rollout probability < ``prob_threshold``.

    Writes ``extras["prefix_len"]`` long [R] (given tokens, 0 for the main batch), ``extras["spo_adv"]`` float
    [R, T], ``extras["spo_keep"]`` bool [R, T] and ``extras["spo_node"]`` long [R, T] (node id of every token,
    −1 at padding; rows sharing a node hold the same tokens there).

    Args:
        max_len: the run's generation limit (run argument).
        branch_factors: children per node below level 1; paper (6, 6) with G = 6; each >= 1.
        segment_frac: M as a fraction of ``max_len``; default 0.3 (paper: M = 600 with a 2K context on MATH;
            the GSM8K config has M = 30 of 1024, 0.03). segment_len: a fixed M instead (clipped to the budget).
        method: "rloo" (paper default) or "grpo". node_value: "children" (official code) or "leaves".
        only_nonzero: keep only segments with nonzero advantage (official code: yes).
        zero_tol: an advantage with ``|A| <= zero_tol`` counts as zero; default 1e-6. The official code tests
            ``pav_advantage != 0`` exactly, which keeps segments whose advantage is 0 in exact arithmetic but not
            after rounding (|A| ~ 1e-8: about 0.5% of such edges in a 6-6-6 tree of 0/1 rewards); whitening then
            blows them up to ordinary advantages. 0 reproduces the exact test.
        prob_threshold: probability mask threshold (official trainer: 0.9); None turns the mask off (and skips
            the extra forward pass).
    """
    if method not in TREE_METHODS:
        raise ValueError(f"spo_tree: method must be one of {list(TREE_METHODS)}, got {method!r}")
    if node_value not in TREE_NODE_VALUES:
        raise ValueError(f"spo_tree: node_value must be one of {list(TREE_NODE_VALUES)}, got {node_value!r}")
    factors = [int(b) for b in branch_factors]
    if any(b < 1 for b in factors):
        raise ValueError(f"spo_tree: branch_factors must be ints >= 1, got {list(branch_factors)}; paper (6, 6)")
    D = 1 + len(factors)
    M = tree_segment_len(max_len, D, segment_frac=segment_frac, segment_len=segment_len)
    device = sampled.gen.completion_ids.device
    N0 = sampled.size
    tree = replace(sampled, extras={**sampled.extras, "prefix_len": torch.zeros(N0, dtype=torch.long, device=device)})
    src = torch.arange(N0, device=device)  # [R]: the row each row continues (itself for the main batch)
    birth = torch.zeros(N0, dtype=torch.long, device=device)  # [R]: 0-based level of the first node it sampled
    calls = 0
    for d in range(1, D):
        n = factors[d - 1] - 1
        lengths = tree.gen.completion_mask.sum(-1)  # [R]
        # nodes of level d (0-based d - 1) that go on: held by rows born at or above it that run past d · M tokens
        grow = ((birth <= d - 1) & (lengths > d * M)).nonzero().flatten()  # [m]
        if n == 0 or grow.numel() == 0:
            continue
        cut = torch.full_like(grow, d * M)  # [m]
        new = ctx.continue_from(tree, grow, cut, n, max_new_tokens=max_len - d * M)  # last levels run free
        calls += 1
        tree = tree.append(new, ctx.pad_id, fill={"prefix_len": 0})  # append builds the fill eagerly: give it
        src = torch.cat([src, grow.repeat_interleave(n)])  # [R]
        birth = torch.cat([birth, torch.full((grow.numel() * n,), d, dtype=torch.long, device=device)])  # [R]

    # node ids: row r owns node r·D + l at each level l from its birth to its leaf; above its birth it shares
    # the nodes of the row it continues (created earlier, so already filled in)
    R = tree.size
    mask = tree.gen.completion_mask  # [R, T]
    lengths = mask.sum(-1)  # [R]
    leaf_level = ((lengths - 1) // M).clamp(max=D - 1)  # [R]
    lvl = torch.arange(D, device=device)  # [D]
    own = (lvl[None, :] >= birth[:, None]) & (lvl[None, :] <= leaf_level[:, None])  # [R, D]
    path = torch.where(own, torch.arange(R, device=device)[:, None] * D + lvl[None, :], -1)  # [R, D]
    for d in range(1, D):  # levels in creation order: a row's source was born earlier, its path is complete
        rows = (birth == d).nonzero().flatten()  # [m]
        path[rows, :d] = path[src[rows], :d]
    seg_adv, _ = tree_segment_advantages(
        path, tree.reward, tree.group, valid=tree.valid, method=method, node_value=node_value
    )  # [R, D]
    prefix_len = tree.extras["prefix_len"].long()  # [R]
    adv, node, owned = tree_token_advantages(seg_adv, path, mask, prefix_len, segment_len=M)  # [R, T] each
    if zero_tol < 0:
        raise ValueError(f"spo_tree: zero_tol must be >= 0, got {zero_tol}")
    keep = owned & (adv.abs() > zero_tol) if only_nonzero else owned  # [R, T]
    if prob_threshold is not None:
        logp, _ = ctx.token_outputs(tree.gen)  # [R, T] rollout-policy log-probs of every leaf
        keep = keep & probability_mask(logp, mask, threshold=prob_threshold)  # [R, T]
    extras = {**tree.extras, "spo_adv": adv.float(), "spo_keep": keep, "spo_node": node}
    P = len(sampled.rows)
    metrics = {
        "spo/segment_len": float(M),
        "spo/leaves_per_prompt": R / max(1, P),
        "spo/continue_calls": float(calls),
        "spo/kept_token_frac": (keep.sum() / mask.sum().clamp(min=1)).item(),
        "spo/nonzero_segment_frac": (seg_adv[path >= 0].abs() > zero_tol).float().mean().item(),
    }
    return replace(tree, extras=extras), metrics
