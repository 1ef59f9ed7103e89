"""SPO: segment-level Monte-Carlo advantages, chain and tree variants.

Segment Policy Optimization: Effective Segment-Level Credit Assignment in RL for Large Language Models (Guo et
al., arXiv 2505.23564). A completion is cut into contiguous segments; the value V of the state at each segment
boundary is a Monte-Carlo estimate (the mean reward of continuations sampled from that prefix by the rollout
policy), and every token of segment k gets the segment advantage ``A_k = V(end of k) − V(start of k)``. No critic.

- **SPO-chain** (short chain of thought): boundaries are *cutpoints*, tokens whose rollout probability is
  below 0.9, every ``interval``-th one (:func:`cutpoints`); ``V`` at a cutpoint is the mean reward of N
  continuations (a rollout strategy samples them), ``V(end)`` is the completion's reward and ``V(start)`` is a
  baseline of the prompt (:func:`chain_segment_advantages`, ADVANTAGES entry ``"spo_chain"``).
- **SPO-tree** (long chain of thought): a tree of segments of M tokens per prompt, ``V(node)`` the mean of its
  children's values (official code; the mean reward of the leaves below it is an option, equal for full
  subtrees), ``A = V(child) − V(parent)`` (:func:`tree_segment_advantages`, :func:`tree_token_advantages`,
  ADVANTAGES entry ``"spo_tree"``).
- **Probability mask** (policy optimization): only tokens with rollout probability below the threshold carry the
  policy gradient (:func:`probability_mask`; the rollout strategies write it to ``extras["spo_keep"]`` and the
  SELECTORS entry ``"spo_mask"`` removes the other tokens from the loss); the advantage is 0 on them and
  advantages are whitened over the kept tokens only, as the official code (AIFrameResearch/SPO
  ``ppo_trainer.py``, ``use_prob_mask``).

Everything here is pure tensor math; the sampling lives in :mod:`grpolab.rollout.spo`.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from grpolab.core.advantages import ADVANTAGES
from grpolab.core.selection import SELECTORS
from grpolab.core.stats import group_count, group_mean, group_sum, masked_whiten
from grpolab.core.types import Rollout

#: V(start) of SPO-chain: the prompt's group mean reward, its leave-one-out mean, or no base (first segment 0).
CHAIN_BASES = ("group", "loo", "none")
#: SPO-tree segment advantage: V(child) − V(parent) ("rloo"), or that divided by the std of the siblings ("grpo").
TREE_METHODS = ("rloo", "grpo")
#: V(node) of SPO-tree: mean of the children's values (official code) or mean reward of the leaves below.
TREE_NODE_VALUES = ("children", "leaves")


# ---------------------------------------------------------------------------------------------- checks
def _check_threshold(name: str, threshold: float) -> None:
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"{name}: threshold must be a probability in (0, 1], got {threshold}; paper 0.9")


def _check_token_pair(name: str, mask: Tensor, **tensors: Tensor) -> None:
    if not isinstance(mask, Tensor) or mask.dtype != torch.bool or mask.dim() != 2:
        got = f"{mask.dtype} {list(mask.shape)}" if isinstance(mask, Tensor) else type(mask).__name__
        raise ValueError(f"{name}: mask must be bool [B, T], got {got}")
    for key, x in tensors.items():
        if not isinstance(x, Tensor) or x.shape != mask.shape:
            found = str(list(x.shape)) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"{name}: {key} must be [B, T] = {list(mask.shape)} like mask, got {found}")


def _check_eps(name: str, eps: float) -> None:
    if not eps > 0:
        raise ValueError(f"{name}: eps must be > 0, got {eps}; usually 1e-8")


def _extra(rollout: Rollout, name: str, key: str, dtype: str, width: bool = True) -> Tensor:
    """``rollout.extras[key]`` checked to be a tensor [B, T] (or [B]) of the given kind."""
    B, T = rollout.batch_size, rollout.seq_len
    shape = [B, T] if width else [B]
    value = rollout.extras.get(key)
    if value is None:
        raise ValueError(
            f"{name}: rollout.extras[{key!r}] is missing; the SPO rollout strategies (spo_chain, spo_tree) write "
            f"it: name one in the preset's rollout=(...) (have: {sorted(rollout.extras)})"
        )
    is_tensor = isinstance(value, Tensor)
    kind_ok = is_tensor and (value.dtype == torch.bool if dtype == "bool" else value.is_floating_point())
    if not is_tensor or list(value.shape) != shape or not kind_ok:
        got = f"{value.dtype} {list(value.shape)}" if isinstance(value, Tensor) else type(value).__name__
        raise ValueError(f"{name}: rollout.extras[{key!r}] must be {dtype} {shape}, got {got}")
    return value.to(rollout.mask.device)


# ---------------------------------------------------------------------------------------------- segments
def probability_mask(logp: Tensor, mask: Tensor, *, threshold: float = 0.9) -> Tensor:
    """SPO's probability mask: the valid tokens whose rollout probability is below ``threshold``, bool [B, T].

    arXiv 2505.23564, probability-mask policy optimization: a token the policy was already sure of (p ≥ 0.9)
    decides nothing, so it carries no policy gradient and does not dilute the loss; the segment advantage goes to
    the low-probability tokens. The official code keeps ``exp(old_logp) < 0.9`` in the loss and in the whitening
    statistics (a token of probability exactly 0.9 is masked).

    Args:
        logp: rollout-policy log-probs of the sampled tokens, float [B, T] (at the sampling temperature).
        mask: valid completion tokens, bool [B, T].
        threshold: paper 0.9 (usually 0.8 to 0.95); 1.0 keeps every token with p < 1.

    >>> import math, torch
    >>> logp = torch.tensor([[math.log(0.95), math.log(0.5), math.log(0.9), 0.0]])
    >>> probability_mask(logp, torch.tensor([[True, True, True, False]])).tolist()
    [[False, True, False, False]]
    """
    _check_token_pair("probability_mask", mask, logp=logp)
    _check_threshold("probability_mask", threshold)
    low = torch.exp(logp.float()) < threshold  # [B, T]
    return mask & low  # [B, T]; padding (possibly NaN log-probs) is never kept


def cutpoints(logp: Tensor, mask: Tensor, *, threshold: float = 0.9, interval: int = 5) -> Tensor:
    """SPO-chain's cutpoint-based partition: the tokens that start a new segment, bool [B, T].

    arXiv 2505.23564, SPO-chain's cutpoint-based partition: the low-probability tokens (p < ``threshold`` under
    the rollout policy) are where a trajectory may branch; every ``interval``-th of them (the 1st, the
    (1 + interval)-th, ...) starts a segment, so each segment holds ``interval`` low-probability tokens.

    The shift by one. The official code (``math_episode_generator_with_mc_advantages.py``) takes the positions
    ``c = j − 1`` of the tokens ``j`` before the low-probability ones and estimates the value of the prefix
    ``response[:c + 1]``: the state right *before* token j is sampled. Here token j itself is marked, and the
    value belongs to the state after j tokens (``continue_from(cut=j)`` keeps tokens 0..j−1), so the uncertain
    token j is the first token of the new segment and its advantage measures that choice. A mark at j = 0 means
    the value of the prompt itself (the chain's ``V(start)``).

    Args:
        logp: rollout-policy log-probs of the sampled tokens, float [B, T].
        mask: valid completion tokens, bool [B, T].
        threshold: probability below which a token may be a cutpoint; paper 0.9 (usually 0.8 to 0.95).
        interval: take every ``interval``-th low-probability token; paper default 5 (usually 1 to 10; the
            ablation in the paper ranges 1 to 100). Larger = fewer, longer segments and fewer MC continuations.

    Worked example: probabilities [0.95, 0.5, 0.99, 0.3, 0.2, 0.8], interval 2 → low-probability tokens 1, 3, 4,
    5 → cutpoints at tokens 1 and 4.

    >>> import torch
    >>> p = torch.tensor([[0.95, 0.5, 0.99, 0.3, 0.2, 0.8]])
    >>> cutpoints(p.log(), torch.ones(1, 6, dtype=torch.bool), interval=2).nonzero()[:, 1].tolist()
    [1, 4]
    """
    if isinstance(interval, bool) or not isinstance(interval, int) or interval < 1:
        raise ValueError(f"cutpoints: interval must be an int >= 1, got {interval!r}; paper default 5")
    low = probability_mask(logp, mask, threshold=threshold)  # [B, T]
    rank = torch.cumsum(low.long(), dim=1) - 1  # [B, T]: index of each low-probability token among them
    return low & (rank % interval == 0)  # [B, T]


def mc_values(reward: Tensor, valid: Tensor, num_rollouts: int) -> tuple[Tensor, Tensor]:
    """Monte-Carlo state values: the mean reward of each block of ``num_rollouts`` continuations, float [M].

    arXiv 2505.23564, Monte-Carlo segment advantage estimation: ``V(s) ≈ 1/N Σ_n r(continuation_n of s)``.
    ``reward`` and ``valid`` are [M · N], the N continuations of state m contiguous. Invalid continuations (their
    reward failed) are left out; a state with none gets ``ok`` False (and value 0), so the caller can drop that
    boundary.

    >>> import torch
    >>> v, ok = mc_values(torch.tensor([1.0, 0.0, 1.0, 9.0, 9.0, 9.0]), torch.tensor([1, 1, 1, 0, 0, 0]).bool(), 3)
    >>> [round(x, 4) for x in v.tolist()], ok.tolist()
    ([0.6667, 0.0], [True, False])
    """
    if isinstance(num_rollouts, bool) or not isinstance(num_rollouts, int) or num_rollouts < 1:
        raise ValueError(f"mc_values: num_rollouts must be an int >= 1, got {num_rollouts!r}")
    if reward.dim() != 1 or reward.shape != valid.shape or reward.shape[0] % num_rollouts:
        raise ValueError(
            f"mc_values: reward and valid must be [M * {num_rollouts}], got {list(reward.shape)} and "
            f"{list(valid.shape)}"
        )
    r = torch.where(valid, reward, torch.zeros_like(reward)).view(-1, num_rollouts)  # [M, N]
    n = valid.view(-1, num_rollouts).sum(dim=1)  # [M]
    value = r.sum(dim=1) / n.clamp(min=1).to(r.dtype)  # [M]
    return value, n > 0


def chain_segment_advantages(
    cut: Tensor,
    cut_value: Tensor,
    mask: Tensor,
    reward: Tensor,
    start_value: Tensor,
    *,
    has_base: Tensor | None = None,
) -> Tensor:
    """SPO-chain segment advantages copied to every token of their segment, float [B, T] (0 at masked tokens).

    arXiv 2505.23564, SPO-chain's chain-based advantage estimation: with boundaries ``0 = j_0 < j_1 < … < j_K < L`` and
    values ``V_0 = V(start)``, ``V_k = V(after j_k tokens)``, ``V_{K+1} = r`` (the completion's reward), the
    tokens ``j_k .. j_{k+1} − 1`` of segment k get ``A_k = V_{k+1} − V_k``. Without a base (``has_base`` False)
    the first segment gets 0, as in the official code when the first token is not a cutpoint.

    Args:
        cut: bool [B, T], True at the first token j ≥ 1 of each segment after the first (``cutpoints`` minus
            position 0, whose value is ``start_value``); marks at masked positions or at position 0 are ignored.
        cut_value: float [B, T], V(after j tokens) at the marked tokens; other positions are ignored.
        mask: valid tokens, bool [B, T].
        reward: float [B], ``V(end)``.
        start_value: float [B], ``V(start)``.
        has_base: bool [B] or None (all True); False gives the first segment advantage 0.

    Worked example (the spec's): ``V(start) = 0.2``, cutpoint at token 2 with value 0.5, reward 1.0, 4 tokens →
    [0.3, 0.3, 0.5, 0.5]; without a base, cutpoints at tokens 1 (value 0.2) and 3 (value 0.5) → [0, 0.3, 0.3, 0.5].

    >>> import torch
    >>> cut = torch.tensor([[False, False, True, False]])
    >>> value = torch.tensor([[0.0, 0.0, 0.5, 0.0]])
    >>> adv = chain_segment_advantages(cut, value, torch.ones(1, 4, dtype=torch.bool), torch.tensor([1.0]),
    ...                                torch.tensor([0.2]))
    >>> [round(a, 4) for a in adv[0].tolist()]
    [0.3, 0.3, 0.5, 0.5]
    """
    _check_token_pair("chain_segment_advantages", mask, cut=cut, cut_value=cut_value)
    if cut.dtype != torch.bool or not cut_value.is_floating_point():
        raise ValueError(
            f"chain_segment_advantages: cut must be bool and cut_value float, got {cut.dtype}, {cut_value.dtype}"
        )
    B, T = mask.shape
    for key, x in (("reward", reward), ("start_value", start_value), ("has_base", has_base)):
        if x is not None and x.shape != (B,):
            raise ValueError(f"chain_segment_advantages: {key} must be [B] = [{B}], got {list(x.shape)}")
    dtype = cut_value.dtype
    boundary = cut & mask  # [B, T]
    boundary[:, 0] = False  # token 0 starts the first segment; its value is start_value
    seg = torch.cumsum(boundary.long(), dim=1)  # [B, T]: segment index of each token, 0 = the first segment
    # start[b, k] = V at the start of segment k; slot T is a dump slot for non-boundary positions (k <= T - 1)
    start = torch.zeros(B, T + 1, dtype=dtype, device=mask.device)  # [B, T + 1]
    start[:, 0] = start_value.to(dtype)
    slot = torch.where(boundary, seg, torch.full_like(seg, T))  # [B, T]
    start.scatter_(1, slot, torch.where(boundary, cut_value, torch.zeros_like(cut_value)))  # [B, T + 1]
    start[:, T] = 0.0
    last = boundary.sum(dim=1)  # [B]: index of the last segment
    k = torch.arange(T + 1, device=mask.device)  # [T + 1]
    nxt = torch.cat([start[:, 1:], torch.zeros(B, 1, dtype=dtype, device=mask.device)], dim=1)  # [B, T + 1]
    # V at the end of segment k: the start of segment k + 1, or the reward after the last segment
    end = torch.where(k[None, :] == last[:, None], reward.to(dtype)[:, None], nxt)  # [B, T + 1]
    seg_adv = end - start  # [B, T + 1]: A_k = V_{k+1} − V_k
    if has_base is not None:
        # no V(start): the first segment has nothing to compare with (official code: advantage 0)
        seg_adv[:, 0] = torch.where(has_base, seg_adv[:, 0], torch.zeros_like(seg_adv[:, 0]))  # [B]
    adv = seg_adv.gather(1, seg)  # [B, T]
    return torch.where(mask, adv, torch.zeros_like(adv))  # [B, T]


def chain_start_values(reward: Tensor, group: Tensor, *, base: str = "group") -> tuple[Tensor, Tensor]:
    """``V(start)`` of SPO-chain per completion, float [B], and whether it exists, bool [B].

    - ``"group"`` (default): the mean reward of the completion's group (its prompt's G samples are G Monte-Carlo
      rollouts from the prompt, so no extra sampling is needed; the completion's own reward is in the mean).
    - ``"loo"``: the mean of the *other* completions of the group (independent of the completion itself, like the
      official code's separate MC estimate at the prompt); a group of one has no base.
    - ``"none"``: no base: the first segment gets advantage 0 (official code when the first token is not a
      cutpoint; under the probability mask that segment holds only p ≥ 0.9 tokens anyway).

    >>> import torch
    >>> v, ok = chain_start_values(torch.tensor([1.0, 0.0, 0.0, 0.5]), torch.tensor([0, 0, 0, 1]), base="loo")
    >>> v.tolist(), ok.tolist()
    ([0.0, 0.5, 0.5, 0.0], [True, True, True, False])
    """
    if base not in CHAIN_BASES:
        raise ValueError(f"spo_chain: base must be one of {list(CHAIN_BASES)}, got {base!r}")
    P = int(group.max().item()) + 1
    if base == "none":
        return torch.zeros_like(reward), torch.zeros_like(group, dtype=torch.bool)
    if base == "group":
        return group_mean(reward, group, P)[group], torch.ones_like(group, dtype=torch.bool)  # [B], [B]
    n = group_count(group, P).to(reward)[group]  # [B]
    others = group_sum(reward, group, P)[group] - reward  # [B]
    value = torch.where(n > 1, others / (n - 1).clamp(min=1), torch.zeros_like(reward))  # [B]
    return value, n > 1


def whiten_segment_advantages(
    adv: Tensor, keep: Tensor, *, whiten: bool = True, ddof: int = 1, eps: float = 1e-8
) -> Tensor:
    """Token advantages restricted to the tokens in the loss (``keep``) and whitened over them, float [B, T].

    The official code whitens the precomputed MC advantages over the valid tokens that pass the probability mask
    (``masked_whiten`` with the unbiased variance and eps 1e-8 inside the root, here ``stats.masked_whiten``).
    Tokens outside ``keep`` get 0 (they leave the loss through the ``spo_mask`` selector).

    >>> import torch
    >>> keep = torch.tensor([[True, True, False], [True, False, False]])
    >>> whiten_segment_advantages(torch.tensor([[1.0, 2.0, 9.0], [3.0, 9.0, 9.0]]), keep).tolist()
    [[-1.0, 0.0, 0.0], [1.0, 0.0, 0.0]]
    """
    _check_token_pair("whiten_segment_advantages", keep, adv=adv)
    _check_eps("whiten_segment_advantages", eps)
    if whiten:
        return masked_whiten(adv, keep, ddof=ddof, eps=eps)  # [B, T], 0 outside keep
    return torch.where(keep, adv, torch.zeros_like(adv))  # [B, T]


# ---------------------------------------------------------------------------------------------- tree
def tree_segment_len(max_len: int, depth: int, *, segment_frac: float = 0.3, segment_len: int | None = None) -> int:
    """SPO-tree's segment length M for a run whose completions have at most ``max_len`` tokens.

    The paper fixes M in tokens (600 for long-CoT MATH with a 2K context, 30 for GSM8K); here M scales with the
    run: ``M = round(segment_frac · max_len)`` unless ``segment_len`` is given, at least 1 and at most
    ``(max_len − 1) // (depth − 1)`` so that the free last level keeps at least one token of budget.

    >>> tree_segment_len(8, 3), tree_segment_len(4, 3), tree_segment_len(2048, 3), tree_segment_len(8, 3, segment_len=9)
    (2, 1, 614, 3)
    """
    if depth < 1:
        raise ValueError(f"spo_tree: depth must be >= 1, got {depth}")
    if not 0.0 < segment_frac < 1.0:
        raise ValueError(f"spo_tree: segment_frac must be in (0, 1), got {segment_frac}; paper ~0.3 (600 of 2048)")
    if depth == 1:
        return max_len
    most = (max_len - 1) // (depth - 1)
    if most < 1:
        raise ValueError(
            f"spo_tree: a tree of depth {depth} needs max_len >= {depth} (one token per level), got {max_len}"
        )
    if segment_len is not None and (isinstance(segment_len, bool) or segment_len < 1):
        raise ValueError(f"spo_tree: segment_len must be an int >= 1 or None, got {segment_len!r}")
    m = segment_len if segment_len is not None else round(segment_frac * max_len)
    return int(min(max(1, m), most))


def _tree_parents(path: Tensor, group: Tensor, num_nodes: int) -> tuple[Tensor, Tensor]:
    """Parent (roots are ``num_nodes + group``) and level of every node, long [num_nodes + P]; checks the paths."""
    D = path.shape[1]
    P = int(group.max().item()) + 1
    parent = torch.full((num_nodes + P,), -1, dtype=torch.long, device=path.device)  # [K]
    level = torch.full((num_nodes + P,), -1, dtype=torch.long, device=path.device)  # [K]
    for d in range(D):
        ids = path[:, d]  # [R]
        ok = ids >= 0  # [R]
        par = group + num_nodes if d == 0 else path[:, d - 1]  # [R]
        parent[ids[ok]] = par[ok]
        level[ids[ok]] = d
    for d in range(D):
        ids = path[:, d]  # [R]
        ok = ids >= 0  # [R]
        par = group + num_nodes if d == 0 else path[:, d - 1]  # [R]
        if bool((parent[ids[ok]] != par[ok]).any()) or bool((level[ids[ok]] != d).any()):
            raise ValueError("tree_segment_advantages: a node id appears with two parents or at two levels")
    return parent, level


def tree_segment_advantages(
    path: Tensor,
    reward: Tensor,
    group: Tensor,
    *,
    valid: Tensor | None = None,
    method: str = "rloo",
    node_value: str = "children",
    eps: float = 1e-8,
) -> tuple[Tensor, Tensor]:
    """SPO-tree node values and segment advantages along each leaf's path: ``(adv [R, D], value [R, D])``.

    arXiv 2505.23564, SPO-tree's tree-based advantage estimation. Each of the R rows is one leaf (a full completion);
    ``path[r, d]`` is the id of the level-(d+1) node on its path (its segment of tokens), −1 below the leaf. The
    root of a tree is its prompt (``group``). The value of a leaf is its reward; of an inner node:

    - ``node_value="children"`` (official code, ``hybrid_inference_strategy.py``): the mean of its children's
      values, so an early-finished child counts as much as a fully expanded one;
    - ``"leaves"``: the mean reward of all leaves below it (the paper's wording; equal when every subtree is full).

    The segment advantage of a node (every row through it gets the same number) is
    ``A = V(node) − V(parent)`` (``method="rloo"``, default) or ``(V(node) − V(parent)) / (std + eps)`` with the
    std (ddof 0, ``np.std`` as the code) of the parent's children values (``"grpo"``). In "rloo" mode with
    children values, the advantages of a node's children average exactly to 0.

    Args:
        path: long [R, D]; node ids ≥ 0 unique across the batch (a node at one level with one parent), −1 after
            the leaf level, ``path[:, 0] >= 0``.
        reward: float [R], the leaves' rewards.
        group: long [R], the prompt (tree) of each leaf.
        valid: bool [R] or None: invalid leaves (failed reward) are left out of every mean; a node with no valid
            leaf below gets advantage 0, and so do its children.
        method: ``"rloo"`` or ``"grpo"``. node_value: ``"children"`` or ``"leaves"``.
        eps: added to the std in "grpo" mode (official code 1e-8).

    Worked example (one prompt): leaves r0 = 1 and r1 = 0 under node a, leaf r2 = 1 is node b itself →
    V(a) = 0.5, V(b) = 1, V(root) = 0.75; rloo: A(a) = −0.25, A(b) = 0.25, A(r0's leaf) = 0.5, A(r1's) = −0.5.

    >>> import torch
    >>> path = torch.tensor([[0, 2], [0, 3], [1, -1]])
    >>> adv, value = tree_segment_advantages(path, torch.tensor([1.0, 0.0, 1.0]), torch.tensor([0, 0, 0]))
    >>> adv.tolist(), value.tolist()
    ([[-0.25, 0.5], [-0.25, -0.5], [0.25, 0.0]], [[0.5, 1.0], [0.5, 0.0], [1.0, 0.0]])
    """
    if method not in TREE_METHODS:
        raise ValueError(f"spo_tree: method must be one of {list(TREE_METHODS)}, got {method!r}")
    if node_value not in TREE_NODE_VALUES:
        raise ValueError(f"spo_tree: node_value must be one of {list(TREE_NODE_VALUES)}, got {node_value!r}")
    _check_eps("tree_segment_advantages", eps)
    if path.dim() != 2 or path.dtype not in (torch.int64, torch.int32) or path.shape[1] < 1:
        raise ValueError(f"tree_segment_advantages: path must be long [R, D], got {path.dtype} {list(path.shape)}")
    R, D = path.shape
    path = path.long()
    if reward.shape != (R,) or group.shape != (R,) or (valid is not None and valid.shape != (R,)):
        raise ValueError(f"tree_segment_advantages: reward, group and valid must be [R] = [{R}]")
    present = path >= 0  # [R, D]
    if not bool(present[:, 0].all()):
        raise ValueError("tree_segment_advantages: every leaf's path needs a level-1 node (path[:, 0] >= 0)")
    if bool((present[:, 1:] & ~present[:, :-1]).any()):
        raise ValueError("tree_segment_advantages: a path must not continue after a -1")
    valid = torch.ones(R, dtype=torch.bool, device=path.device) if valid is None else valid.bool()
    depth = present.sum(dim=1)  # [R]
    leaf = path.gather(1, (depth - 1)[:, None]).squeeze(1)  # [R]: the leaf node of each row
    N = int(path.max().item()) + 1
    P = int(group.max().item()) + 1
    K = N + P  # node ids, then one root per prompt
    parent, level = _tree_parents(path, group, N)  # [K], [K]
    inner = torch.zeros(K, dtype=torch.bool, device=path.device)  # [K]
    inner[parent[parent >= 0]] = True
    if bool(inner[leaf].any()) or bool((torch.bincount(leaf, minlength=K) > 1).any()):
        raise ValueError("tree_segment_advantages: a leaf node must end exactly one row's path")
    dtype = reward.dtype if reward.is_floating_point() else torch.get_default_dtype()
    value = torch.zeros(K, dtype=dtype, device=path.device)  # [K]
    ok = torch.zeros(K, dtype=torch.bool, device=path.device)  # [K]: has a valid leaf below
    value[leaf] = torch.where(valid, reward.to(dtype), torch.zeros_like(reward, dtype=dtype))
    ok[leaf] = valid

    if node_value == "leaves":
        w = valid.to(dtype)  # [R]
        s = torch.zeros(K, dtype=dtype, device=path.device)  # [K]
        c = torch.zeros(K, dtype=dtype, device=path.device)  # [K]
        for d in range(D):
            ids = path[:, d]  # [R]
            keep = ids >= 0  # [R]
            s.index_add_(0, ids[keep], (reward.to(dtype) * w)[keep])
            c.index_add_(0, ids[keep], w[keep])
        s.index_add_(0, group + N, reward.to(dtype) * w)  # roots: every leaf of the prompt
        c.index_add_(0, group + N, w)
        value = torch.where(c > 0, s / c.clamp(min=1), torch.zeros_like(s))  # [K]
        ok = c > 0  # [K]
    else:
        # bottom-up: a level's children are final before their parents (one level above) are averaged
        for d in reversed(range(D)):
            kids = (level == d).nonzero().flatten()  # [n]: the distinct nodes of level d
            par = parent[kids]  # [n]
            w = ok[kids].to(dtype)  # [n]
            s = torch.zeros(K, dtype=dtype, device=path.device).index_add_(0, par, value[kids] * w)  # [K]
            c = torch.zeros(K, dtype=dtype, device=path.device).index_add_(0, par, w)  # [K]
            targets = torch.unique(par)  # [m]: inner nodes of level d - 1 (or roots)
            value[targets] = torch.where(c[targets] > 0, s[targets] / c[targets].clamp(min=1), 0.0)
            ok[targets] = c[targets] > 0
    # std of each parent's (valid) children values around their mean, ddof 0 as np.std in the official code
    nodes = (level >= 0).nonzero().flatten()  # [n]
    par = parent[nodes]  # [n]
    w = ok[nodes].to(dtype)  # [n]
    cnt = torch.zeros(K, dtype=dtype, device=path.device).index_add_(0, par, w)  # [K]
    kid_mean = torch.zeros(K, dtype=dtype, device=path.device).index_add_(0, par, value[nodes] * w)  # [K]
    kid_mean = kid_mean / cnt.clamp(min=1)  # [K]: = value in "children" mode, not in "leaves" mode
    sq = torch.zeros(K, dtype=dtype, device=path.device).index_add_(0, par, (value[nodes] - kid_mean[par]) ** 2 * w)
    std = torch.sqrt(sq / cnt.clamp(min=1))  # [K]

    safe = path.clamp(min=0)  # [R, D]
    node_par = parent[safe]  # [R, D]
    diff = value[safe] - value[node_par]  # [R, D]
    if method == "grpo":
        diff = diff / (std[node_par] + eps)  # [R, D]: normalised by the sibling spread (GRPO at every node)
    live = present & ok[safe] & ok[node_par]  # [R, D]
    adv = torch.where(live, diff, torch.zeros_like(diff))  # [R, D]
    val = torch.where(present & ok[safe], value[safe], torch.zeros_like(diff))  # [R, D]
    return adv, val


def tree_token_advantages(
    seg_adv: Tensor, path: Tensor, mask: Tensor, prefix_len: Tensor, *, segment_len: int
) -> tuple[Tensor, Tensor, Tensor]:
    """Map SPO-tree segment advantages to tokens: ``(adv [R, T], node [R, T], owned [R, T])``.

    Token t of a row belongs to its level ``min(t // M, D − 1)`` (segments of M tokens, the last level runs free
    to the end). ``owned`` marks the tokens the row sampled itself (``t >= prefix_len``): every tree segment is
    owned by exactly one row, the first leaf through it; the other rows carry a copy as given context. ``adv`` is
    the segment advantage at owned tokens, 0 elsewhere; ``node`` the node id of every valid token (−1 at padding).

    >>> import torch
    >>> adv, node, own = tree_token_advantages(torch.tensor([[0.5, 0.25], [0.5, -1.0]]), torch.tensor([[0, 2], [0, 3]]),
    ...     torch.ones(2, 3, dtype=torch.bool), torch.tensor([0, 1]), segment_len=1)
    >>> adv.tolist(), node.tolist(), own.tolist()
    ([[0.5, 0.25, 0.25], [0.0, -1.0, -1.0]], [[0, 2, 2], [0, 3, 3]], [[True, True, True], [False, True, True]])
    """
    if segment_len < 1:
        raise ValueError(f"tree_token_advantages: segment_len must be >= 1, got {segment_len}")
    R, D = seg_adv.shape
    if path.shape != (R, D) or mask.dim() != 2 or mask.shape[0] != R or prefix_len.shape != (R,):
        raise ValueError("tree_token_advantages: seg_adv and path must be [R, D], mask [R, T], prefix_len [R]")
    t = torch.arange(mask.shape[1], device=mask.device)  # [T]
    lvl = (t // segment_len).clamp(max=D - 1)[None, :].expand(R, -1)  # [R, T]
    node = torch.where(mask, path.gather(1, lvl), torch.full_like(lvl, -1))  # [R, T]
    if bool((mask & (node < 0)).any()):
        raise ValueError("tree_token_advantages: a valid token lies below its row's leaf level (path is -1 there)")
    owned = mask & (t[None, :] >= prefix_len[:, None])  # [R, T]
    adv = torch.where(owned, seg_adv.gather(1, lvl), torch.zeros((), dtype=seg_adv.dtype, device=mask.device))
    return adv, node, owned  # [R, T] each


# ---------------------------------------------------------------------------------------------- registered
@ADVANTAGES.register("spo_chain", requires=("spo_cut", "spo_value", "spo_keep"))
def spo_chain(
    rollout: Rollout, *, base: str = "group", whiten: bool = True, ddof: int = 1, eps: float = 1e-8
) -> Tensor:
    """SPO-chain advantage from the Monte-Carlo values the ``spo_chain`` rollout strategy stored, float [B, T].

    arXiv 2505.23564, SPO-chain: ``A_k = V(cut_k) − V(cut_{k−1})`` on every token of segment k
    (:func:`chain_segment_advantages`), with ``V(start)`` from ``base`` (:func:`chain_start_values`) and
    ``V(end)`` the completion's reward; then 0 on the tokens outside the probability mask and whitened over the
    tokens inside it (:func:`whiten_segment_advantages`).

    Reads ``rollout.extras``: ``"spo_cut"`` bool [B, T] (first token of each segment after the first),
    ``"spo_value"`` float [B, T] (V after that many tokens, at those tokens), ``"spo_keep"`` bool [B, T] (the
    probability mask).

    Args:
        base: ``"group"`` (default: the prompt's mean reward), ``"loo"`` (leave-one-out mean) or ``"none"``.
        whiten: whiten over the kept tokens of the batch (official code: yes).
        ddof: of the whitening variance, default 1 (unbiased, as the code). eps: inside the root, default 1e-8.

    Example: V(start) = 0.2, one cutpoint (value 0.5), reward 1.0 → segment advantages 0.3 and 0.5 (unwhitened).
    """
    if base not in CHAIN_BASES:
        raise ValueError(f"spo_chain: base must be one of {list(CHAIN_BASES)}, got {base!r}")
    cut = _extra(rollout, "spo_chain", "spo_cut", "bool")  # [B, T]
    value = _extra(rollout, "spo_chain", "spo_value", "float")  # [B, T]
    keep = _extra(rollout, "spo_chain", "spo_keep", "bool") & rollout.mask  # [B, T]
    start, has_base = chain_start_values(rollout.reward, rollout.group, base=base)  # [B], [B]
    adv = chain_segment_advantages(
        cut, value.to(rollout.reward), rollout.mask, rollout.reward, start, has_base=has_base
    )  # [B, T]
    return whiten_segment_advantages(adv, keep, whiten=whiten, ddof=ddof, eps=eps)  # [B, T]


@ADVANTAGES.register("spo_tree", requires=("spo_adv", "spo_keep"))
def spo_tree(rollout: Rollout, *, whiten: bool = True, ddof: int = 1, eps: float = 1e-8) -> Tensor:
    """SPO-tree advantage: the token advantages the ``spo_tree`` rollout strategy stored, whitened, float [B, T].

    arXiv 2505.23564, SPO-tree: the strategy grows the trees, computes ``A = V(child) − V(parent)`` per segment
    (:func:`tree_segment_advantages`) and writes it on the tokens each row owns (:func:`tree_token_advantages`)
    as ``extras["spo_adv"]`` float [B, T], with ``extras["spo_keep"]`` bool [B, T] = owned, nonzero advantage
    and inside the probability mask. Here they are whitened over the kept tokens (official PPO trainer).

    Args:
        whiten: whiten over the kept tokens of the batch (official code: yes). ddof: default 1. eps: 1e-8.
    """
    adv = _extra(rollout, "spo_tree", "spo_adv", "float").to(rollout.reward)  # [B, T]
    keep = _extra(rollout, "spo_tree", "spo_keep", "bool") & rollout.mask  # [B, T]
    return whiten_segment_advantages(adv, keep, whiten=whiten, ddof=ddof, eps=eps)  # [B, T]


@SELECTORS.register("spo_mask", requires=("spo_keep",))
def spo_mask(rollout: Rollout, advantages: Tensor, *, key: str = "spo_keep") -> tuple[Tensor, Tensor, dict[str, float]]:
    """Keep in the loss only the tokens of ``extras[key]`` (bool [B, T]): SPO's probability mask (and, for
    SPO-tree, each segment once, in the row that sampled it, and only segments with nonzero advantage).

    arXiv 2505.23564, probability mask: tokens of rollout probability ≥ 0.9 leave the loss and its token counts; a
    completion with no kept token leaves the batch.

    >>> import torch
    >>> r = Rollout(group=torch.tensor([0]), mask=torch.tensor([[True, True, False]]), reward=torch.zeros(1),
    ...             extras={"spo_keep": torch.tensor([[False, True, True]])})
    >>> spo_mask(r, torch.ones(1, 3))[1].tolist()
    [[False, True, False]]
    """
    keep = _extra(rollout, "spo_mask", key, "bool") & rollout.mask  # [B, T]
    frac = (keep.sum() / rollout.mask.sum().clamp(min=1)).item()
    return advantages, keep, {"spo/prob_mask_keep_frac": frac if math.isfinite(frac) else 0.0}
