"""MedS³-style process rewards: MCTS statistics over reasoning steps, the soft dual-sided PRM target, PRM-guided
answer selection, and the process-supervision advantage.

MedS³: Towards Medical Slow Thinking with Self-Evolved Soft Dual-sided Process Supervision (Jiang et al., arXiv
2501.12051, v4; official code ``pixas/MedSSS``). A policy runs Monte-Carlo Tree Search over reasoning *steps*; a
node's value is the fraction of simulated completions from it that reach the rule-verified answer, backed up the
tree. Node values are soft labels for a process reward model (PRM) that scores every step; v4's "soft dual-sided"
target also penalises a step that *lowers* the value of the node it leaves (and credits one that raises it). At
inference, PRM-guided Vote-Sum sums the PRM scores of the responses per distinct final answer.

Here the PRM's step scores feed RL as process rewards (ADVANTAGES entry ``"process"``): DeepSeekMath's process
supervision (arXiv 2402.03300 §4.1.3) normalises the step rewards over the group and gives each token the sum of
the normalised rewards of the steps ending at or after it; PRIME (arXiv 2502.01456) adds the outcome
advantage to such a process return.

Layouts used throughout:

- token layout [B, T]: a completion's tokens; a *step* ends at a token whose id is one of the delimiter ids, and
  the last valid token always ends the final step (:func:`step_ends`). Step rewards sit on the step's last token.
- step layout [B, S]: the steps of each completion in order (:func:`tokens_to_steps` / :func:`steps_to_tokens`).
- tree layout [N]: nodes of one search tree in creation order, node 0 the root (the prompt, no step yet),
  ``parent[0] = -1`` and ``parent[n] < n``; statistics ``wins`` (sum of verified outcomes of the simulations
  through the node) and ``sims`` (their count), value ``wins / sims``.

Everything here is pure tensor math; the search, the PRM model and the sampling live in :mod:`grpolab.rollout.mcts`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from grpolab.core.advantages import ADVANTAGES, discounted_returns, grpo
from grpolab.core.checks import check_choice, check_number
from grpolab.core.stats import group_max, group_mean, group_std
from grpolab.core.types import Rollout

#: How a completion's step scores become one score (PRM-guided selection): MedS³'s ``compute_weighted_values``
#: options (min, mean, prod over the steps; "last" = the final step's score, the code's ``prm-vote``).
SCORE_REDUCTIONS = ("min", "mean", "prod", "last")
#: PRM losses: binary cross-entropy on the step logit (the official v4 run's ``--loss_type bce``) or a Huber loss
#: on the step probability (the code's default ``loss_type="huber"``, delta 0.5).
PRM_LOSSES = ("bce", "huber")


# ---------------------------------------------------------------------------------------------- checks
def _check_tokens(name: str, mask: Tensor, **tensors: Tensor) -> None:
    if not isinstance(mask, Tensor) or mask.dtype != torch.bool or mask.dim() != 2:
        got = f"{mask.dtype} {list(mask.shape)}" if isinstance(mask, Tensor) else type(mask).__name__
        raise ValueError(f"{name}: mask must be bool [B, T], got {got}")
    for key, x in tensors.items():
        if not isinstance(x, Tensor) or x.shape != mask.shape:
            found = str(list(x.shape)) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"{name}: {key} must be [B, T] = {list(mask.shape)} like mask, got {found}")


def _check_tree(name: str, parent: Tensor, **stats: Tensor) -> None:
    if not isinstance(parent, Tensor) or parent.dim() != 1 or parent.dtype not in (torch.int64, torch.int32):
        raise ValueError(f"{name}: parent must be a long tensor [N] (node 0 the root with parent -1)")
    N = parent.shape[0]
    if N == 0 or int(parent[0]) != -1:
        raise ValueError(f"{name}: node 0 must be the root, with parent[0] = -1")
    if N > 1 and bool((parent[1:] < 0).any() | (parent[1:] >= torch.arange(1, N, device=parent.device)).any()):
        raise ValueError(f"{name}: nodes must be in creation order: 0 <= parent[n] < n for n >= 1")
    for key, x in stats.items():
        if not isinstance(x, Tensor) or x.shape != parent.shape:
            found = str(list(x.shape)) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"{name}: {key} must be [N] = [{N}] like parent, got {found}")


# ---------------------------------------------------------------------------------------------- steps
def step_ends(ids: Tensor, mask: Tensor, delimiters: Sequence[int] | Tensor) -> Tensor:
    """Where each step of a completion ends: bool [B, T].

    MedS³ writes one reasoning step per paragraph (steps joined by ``"\\n\\n"``; the PRM is labelled on the last token
    of each step, ``prm_train.py``). Here a step ends at every valid token whose id is in ``delimiters`` (the
    delimiter belongs to the step it closes), and the last valid token of a row always ends its final step, so a
    completion without any delimiter is one step. Rows with no valid token have no step.

    Args:
        ids: long [B, T] completion token ids (right padded).
        mask: bool [B, T] valid tokens.
        delimiters: token ids that close a step (e.g. the ids of ``","`` and ``")"`` for ``arith_think``'s
            ``"(7+5=12,20+40=60)72"``: steps ``"(7+5=12,"``, ``"20+40=60)"``, ``"72<eos>"``); may be empty.

    >>> ids = torch.tensor([[5, 9, 5, 2], [5, 5, 0, 0]])
    >>> step_ends(ids, ids != 0, [9]).int().tolist()
    [[0, 1, 0, 1], [0, 1, 0, 0]]
    """
    _check_tokens("step_ends", mask, ids=ids)
    delim = torch.as_tensor(list(delimiters) if not isinstance(delimiters, Tensor) else delimiters, dtype=torch.long)
    is_delim = torch.isin(ids, delim.to(ids.device)) & mask  # [B, T]
    t = torch.arange(mask.shape[1], device=mask.device)  # [T]
    last = torch.where(mask, t, -1).max(dim=-1).values  # [B], -1 for an empty row
    is_last = (t[None, :] == last[:, None]) & mask  # [B, T]
    return is_delim | is_last  # [B, T]


def step_index(step_end: Tensor, mask: Tensor) -> Tensor:
    """The 0-based step of every valid token, long [B, T] (-1 at masked positions).

    A token belongs to the step that the next step end at or after it closes.

    >>> end = torch.tensor([[False, True, False, True]])
    >>> step_index(end, torch.tensor([[True, True, True, True]])).tolist()
    [[0, 0, 1, 1]]
    """
    _check_tokens("step_index", mask, step_end=step_end)
    end = (step_end & mask).long()  # [B, T]
    before = torch.cumsum(end, dim=1) - end  # [B, T]: step ends strictly before t
    return torch.where(mask, before, torch.full_like(before, -1))  # [B, T]


def first_step_end(step_end: Tensor, mask: Tensor, start: Tensor) -> Tensor:
    """Position of the first step end at or after ``start[b]`` in each row, long [B]: the end of the step that
    begins at ``start`` (MCTS expansion: the next step of a continuation sampled after a prefix of ``start``
    tokens). Raises ``ValueError`` when a row has no step end at or after its start (start past its length).

    >>> end = torch.tensor([[False, True, False, True]])
    >>> first_step_end(end, torch.ones(1, 4, dtype=torch.bool), torch.tensor([2])).tolist()
    [3]
    """
    _check_tokens("first_step_end", mask, step_end=step_end)
    T = mask.shape[1]
    t = torch.arange(T, device=mask.device)  # [T]
    cand = step_end & mask & (t[None, :] >= start.to(mask.device)[:, None])  # [B, T]
    pos = torch.where(cand, t, T).min(dim=-1).values  # [B]
    if bool((pos == T).any()):
        rows = (pos == T).nonzero().flatten().tolist()
        raise ValueError(f"first_step_end: rows {rows[:10]} have no step end at or after their start")
    return pos  # [B]


def tokens_to_steps(values: Tensor, step_end: Tensor) -> tuple[Tensor, Tensor]:
    """Values at the step ends of the token layout, gathered into the step layout: ``(steps [B, S], valid [B, S])``
    with S the most steps of any row (at least 1); padding steps are 0 and not valid.

    >>> v = torch.tensor([[0.0, 0.25, 0.0, 0.75], [0.5, 0.0, 0.0, 0.0]])
    >>> end = torch.tensor([[False, True, False, True], [True, False, False, False]])
    >>> s, ok = tokens_to_steps(v, end)
    >>> s.tolist(), ok.tolist()
    ([[0.25, 0.75], [0.5, 0.0]], [[True, True], [True, False]])
    """
    if values.shape != step_end.shape or step_end.dtype != torch.bool:
        raise ValueError(f"tokens_to_steps: values {list(values.shape)} and bool step_end must be [B, T] alike")
    B = values.shape[0]
    count = step_end.sum(dim=1)  # [B]
    S = max(1, int(count.max()) if B else 1)
    slot = torch.cumsum(step_end.long(), dim=1) - 1  # [B, T]: step number at each end
    rows, pos = step_end.nonzero(as_tuple=True)  # [K], [K]
    out = torch.zeros(B, S, dtype=values.dtype, device=values.device)  # [B, S]
    out[rows, slot[rows, pos]] = values[rows, pos]
    valid = torch.arange(S, device=values.device)[None, :] < count[:, None]  # [B, S]
    return out, valid


def steps_to_tokens(steps: Tensor, step_end: Tensor) -> Tensor:
    """Step-layout values [B, S] put back on the last token of each step, 0 elsewhere: [B, T] (inverse of
    :func:`tokens_to_steps`; a row needs at least as many steps in ``steps`` as it has step ends).

    >>> end = torch.tensor([[False, True, False, True]])
    >>> steps_to_tokens(torch.tensor([[0.25, 0.75]]), end).tolist()
    [[0.0, 0.25, 0.0, 0.75]]
    """
    if step_end.dtype != torch.bool or step_end.dim() != 2 or steps.dim() != 2 or steps.shape[0] != step_end.shape[0]:
        raise ValueError(f"steps_to_tokens: steps [B, S] and bool step_end [B, T], got {list(steps.shape)}")
    if int(step_end.sum(dim=1).max()) > steps.shape[1]:
        raise ValueError("steps_to_tokens: a row has more step ends than steps has columns")
    slot = torch.cumsum(step_end.long(), dim=1) - 1  # [B, T]
    gathered = steps.gather(1, slot.clamp(min=0))  # [B, T]
    return torch.where(step_end, gathered, torch.zeros_like(gathered))  # [B, T]


# ---------------------------------------------------------------------------------------------- MCTS statistics
def node_values(wins: Tensor, sims: Tensor) -> Tensor:
    """MedS³ node value: the fraction of the simulated completions through a node that reach the verified answer,
    ``wins / sims``, float [N] (0 for a node without simulations).

    >>> node_values(torch.tensor([2.0, 0.0, 1.0]), torch.tensor([4.0, 0.0, 1.0])).tolist()
    [0.5, 0.0, 1.0]
    """
    if wins.shape != sims.shape:
        raise ValueError(f"node_values: wins {list(wins.shape)} and sims {list(sims.shape)} must have one shape")
    return torch.where(sims > 0, wins / sims.clamp(min=1), torch.zeros_like(wins))  # [N]


def uct_scores(
    value: Tensor,
    visits: Tensor,
    parent_visits: Tensor | float,
    *,
    c: float = 2.0,
    unvisited: float = math.inf,
    completed: Tensor | None = None,
) -> Tensor:
    """UCT selection scores of sibling nodes, float [K] (the selection step of MCTS).

    UCB1 applied to trees (Kocsis & Szepesvári 2006), as MedS³'s ``select_child``:
    ``score = Q + c · sqrt(ln N_parent / n)`` with ``Q`` the node value and ``n`` its visit count. A node never
    visited scores ``unvisited``; a *completed* node (terminal, or every child completed: nothing left to explore
    below it) scores -inf, so selection never returns into it (MedS³ gives it -1 while c > 0).

    Args:
        value: float [K] node values Q in [0, 1].
        visits: float [K] visit counts n of the nodes (here: their simulation counts).
        parent_visits: N of their parent (a number or a tensor broadcasting to [K]); ``ln N`` with N >= 1.
        c: exploration constant; MedS³ default 2 (``expand.constant`` of its configs), usually 0.5 to 2.
        unvisited: score of an unvisited node; default +inf (always tried first; MedS³'s ``trial5`` config 5).
        completed: bool [K] or None.

    Hand check: Q = [0.5, 1.0], n = [2, 1], N = 3, c = 2 → [0.5 + 2·sqrt(ln 3 / 2), 1 + 2·sqrt(ln 3)] =
    [1.98230, 3.09629].

    >>> [round(s, 5) for s in uct_scores(torch.tensor([0.5, 1.0]), torch.tensor([2.0, 1.0]), 3.0).tolist()]
    [1.9823, 3.09629]
    """
    check_number("c", c, minimum=0, where="uct_scores", hint="MedS³ 2")
    if value.shape != visits.shape:
        raise ValueError(f"uct_scores: value {list(value.shape)} and visits {list(visits.shape)} must match")
    N = torch.as_tensor(parent_visits, dtype=value.dtype, device=value.device).clamp(min=1)  # [] or [K]
    n = visits.to(value.dtype)  # [K]
    explore = torch.sqrt(torch.log(N) / n.clamp(min=1))  # [K]
    score = torch.where(n > 0, value + c * explore, torch.full_like(value, unvisited))  # [K]
    if completed is not None:
        score = torch.where(completed, torch.full_like(score, -math.inf), score)  # [K]
    return score  # [K]


def completed_nodes(parent: Tensor, terminal: Tensor, expanded: Tensor) -> Tensor:
    """Which nodes have nothing left to search, bool [N]: a terminal node (its step ended the completion: EOS or
    the length limit), or an expanded node all of whose children are completed (MedS³'s ``is_completed``). A tree
    whose root is completed stops searching.

    >>> parent = torch.tensor([-1, 0, 0, 1])
    >>> completed_nodes(parent, torch.tensor([False, False, True, True]),
    ...                 torch.tensor([True, True, False, False])).tolist()
    [True, True, True, True]
    """
    _check_tree("completed_nodes", parent, terminal=terminal, expanded=expanded)
    done = terminal.clone()  # [N]
    pending = torch.zeros_like(terminal)  # [N]: some child is not completed
    for n in range(parent.shape[0] - 1, 0, -1):  # children come after their parent: a reverse sweep finishes them
        done[n] = bool(terminal[n]) or (bool(expanded[n]) and not bool(pending[n]))
        if not bool(done[n]):
            pending[parent[n]] = True
    done[0] = bool(terminal[0]) or (bool(expanded[0]) and not bool(pending[0]))
    return done  # [N]


def select_leaf(
    parent: Tensor,
    wins: Tensor,
    sims: Tensor,
    completed: Tensor,
    *,
    c: float = 2.0,
    unvisited: float = math.inf,
) -> int:
    """MCTS selection: walk from the root to a leaf, at each node entering the child of highest
    :func:`uct_scores` (ties: the first created), and return the leaf's index; -1 when the root is completed.

    Node values are ``wins / sims``, visits are ``sims`` (every simulation through a node counts as a visit).

    Hand check: root 0 with children 1 (1 of 2 simulations verified) and 2 (1 of 1), node 1 with child 3; c = 2,
    N = 3: UCT(1) = 0.5 + 2·sqrt(ln 3 / 2) = 1.98 < UCT(2) = 1 + 2·sqrt(ln 3) = 3.10, so leaf 2.

    >>> parent = torch.tensor([-1, 0, 0, 1])
    >>> wins, sims = torch.tensor([2.0, 1.0, 1.0, 0.0]), torch.tensor([3.0, 2.0, 1.0, 1.0])
    >>> select_leaf(parent, wins, sims, torch.zeros(4, dtype=torch.bool))
    2
    """
    _check_tree("select_leaf", parent, wins=wins, sims=sims, completed=completed)
    if bool(completed[0]):
        return -1
    value = node_values(wins, sims)  # [N]
    node = 0
    while True:
        children = (parent == node).nonzero().flatten()  # [K]
        if children.numel() == 0:
            return node
        score = uct_scores(
            value[children], sims[children], sims[node], c=c, unvisited=unvisited, completed=completed[children]
        )  # [K]
        if bool(torch.isinf(score).all() & (score < 0).all()):
            return -1  # cannot happen for a node that is not completed; kept for safety
        node = int(children[int(torch.argmax(score))])


def backup(parent: Tensor, wins: Tensor, sims: Tensor, node: Tensor, outcome: Tensor) -> tuple[Tensor, Tensor]:
    """MCTS back-propagation: each simulation m, run from node ``node[m]`` with verified outcome ``outcome[m]``
    (1 = reached the verified answer, or a soft accuracy in [0, 1]), is added to the statistics of that node and of
    every ancestor up to the root. Returns new ``(wins [N], sims [N])``.

    The resulting value ``wins / sims`` is the spec's "fraction of simulated completions from the node that reach
    the verified answer". MedS³'s code instead sets an inner node to the visit-weighted mean of its children's
    values (its ``update_rule`` "default"; "comp" averages that with the node's own simulation value); with one
    simulation per visit both are the same Monte-Carlo average.

    Hand check: root 0 → 1 → 2 and root → 3; simulations (node 2, 1), (node 3, 0), (node 1, 1) → wins
    [2, 2, 1, 0], sims [3, 2, 1, 1].

    >>> w, s = backup(torch.tensor([-1, 0, 1, 0]), torch.zeros(4), torch.zeros(4),
    ...               torch.tensor([2, 3, 1]), torch.tensor([1.0, 0.0, 1.0]))
    >>> w.tolist(), s.tolist()
    ([2.0, 2.0, 1.0, 0.0], [3.0, 2.0, 1.0, 1.0])
    """
    _check_tree("backup", parent, wins=wins, sims=sims)
    if node.dim() != 1 or outcome.shape != node.shape:
        raise ValueError(f"backup: node and outcome must be [M] alike, got {list(node.shape)}, {list(outcome.shape)}")
    if node.numel() and bool((node < 0).any() | (node >= parent.shape[0]).any()):
        raise ValueError(f"backup: node ids must be in 0..{parent.shape[0] - 1}")
    wins, sims = wins.clone(), sims.clone()  # [N], [N]
    cur = node.long().clone()  # [M]
    out = outcome.to(wins.dtype)  # [M]
    while bool((cur >= 0).any()):
        live = cur >= 0  # [M]
        wins.index_add_(0, cur[live], out[live])
        sims.index_add_(0, cur[live], torch.ones_like(out[live]))
        cur = torch.where(live, parent[cur.clamp(min=0)], cur)  # [M]: one level up (the root's parent is -1)
    return wins, sims


def dual_sided_targets(value: Tensor, parent_value: Tensor, *, look_back: float = 1.0) -> Tensor:
    """MedS³ v4 soft dual-sided PRM target of a step: ``clamp(v + λ·(v − v_parent), 0, 1)``, float like ``value``.

    ``v`` is the value of the node the step leads to, ``v_parent`` that of the node it leaves (the root's value for
    a first step). A step that lowers the node value is penalised by λ times the drop, and one that raises it is
    credited (the "dual sides"); λ = 0 is the plain soft label (the node value, MedS³ v1-v3 ``use_soft_training``).

    Source: the v4 code (``prm_train.py``, ``format_one_item``): ``penalty = look_back_factor · (label[i-1] −
    value)``, ``label[i] = value − penalty``, with ``look_back_factor 1.0`` in the released training run. Two choices
    differ from that code and are deliberate: ``v_parent`` is the parent's *value*, while the code's loop reads the
    previous step's already adjusted label (``label[i-1]`` was overwritten one iteration earlier, which makes a
    target depend on every earlier step with alternating signs); and the first step is penalised against the root's
    value, while the code skips its first step. The result is clamped to [0, 1] so it stays a probability target for
    the soft binary cross-entropy (the code clamps BCE labels to [0, 1 − 1e-4]).

    Args:
        value, parent_value: float tensors of one shape, values in [0, 1].
        look_back: λ, weight of the value change; released run 1.0, usually 0 to 1; >= 0.

    Hand check: (v, v_parent) = (0.5, 1.0) → 0.0; (1.0, 0.5) → 1.5 → 1.0; (0.6, 0.8) with λ = 0.5 → 0.5.

    >>> dual_sided_targets(torch.tensor([0.5, 1.0]), torch.tensor([1.0, 0.5])).tolist()
    [0.0, 1.0]
    """
    check_number("look_back", look_back, minimum=0, where="dual_sided_targets", hint="MedS³ 1.0")
    if value.shape != parent_value.shape:
        raise ValueError(f"dual_sided_targets: value {list(value.shape)} and parent_value must have one shape")
    return (value + look_back * (value - parent_value)).clamp(0.0, 1.0)  # soft label in [0, 1]


def prm_loss(logits: Tensor, targets: Tensor, label_mask: Tensor, *, loss: str = "bce", delta: float = 0.5) -> Tensor:
    """PRM training loss over the labelled step ends, mean over the labels (0-dim).

    MedS³ trains a token-classification PRM on the last token of each step (``prm_train.py``). ``"bce"``: binary
    cross-entropy of the step logit against the soft target (the released v4 run, ``--loss_type bce``; equal to the
    v1 two-class soft-label cross-entropy on the logit difference). ``"huber"``: Huber loss between
    ``sigmoid(logit)`` and the target (the code's default ``loss_type``), with ``delta``.

    Args:
        logits: float [B, T] one logit per token (the PRM's score of the prefix ending there).
        targets: float [B, T] targets in [0, 1]; read only where ``label_mask``.
        label_mask: bool [B, T] step ends that carry a label.
        loss: "bce" (default) or "huber".
        delta: Huber threshold; code default 0.5.

    A batch without labels gives 0 (with a gradient path). Hand check: one label, logit 0, target 1 → ln 2 =
    0.69315.

    >>> round(prm_loss(torch.zeros(1, 2), torch.ones(1, 2), torch.tensor([[False, True]])).item(), 5)
    0.69315
    """
    check_choice("prm_loss", "loss", loss, PRM_LOSSES)
    check_number("delta", delta, above=0, where="prm_loss", hint="code 0.5")
    _check_tokens("prm_loss", label_mask, logits=logits, targets=targets)
    if not bool(label_mask.any()):
        return logits.sum() * 0.0
    x, y = logits[label_mask], targets[label_mask].to(logits.dtype)  # [K], [K]
    if loss == "bce":
        return F.binary_cross_entropy_with_logits(x, y)
    return F.huber_loss(torch.sigmoid(x), y, delta=delta)


# ---------------------------------------------------------------------------------------------- PRM-guided choice
def completion_scores(step_scores: Tensor, step_end: Tensor, *, reduce: str = "min") -> Tensor:
    """One PRM score per completion from its step scores, float [B].

    MedS³'s ``compute_weighted_values``: ``"min"``, ``"mean"``, ``"prod"`` over the steps, or ``"last"`` (the
    final step's score, the code's ``prm-vote``). Every row needs at least one step end.

    >>> s = torch.tensor([[0.0, 0.5, 0.0, 0.8]])
    >>> end = torch.tensor([[False, True, False, True]])
    >>> [round(completion_scores(s, end, reduce=r).item(), 4) for r in ("min", "mean", "prod", "last")]
    [0.5, 0.65, 0.4, 0.8]
    """
    check_choice("completion_scores", "reduce", reduce, SCORE_REDUCTIONS)
    _check_tokens("completion_scores", step_end, step_scores=step_scores)
    count = step_end.sum(dim=1)  # [B]
    if bool((count == 0).any()):
        raise ValueError("completion_scores: every row needs at least one step end (see step_ends)")
    s = step_scores  # [B, T]
    if reduce == "min":
        return torch.where(step_end, s, torch.full_like(s, math.inf)).min(dim=1).values  # [B]
    if reduce == "mean":
        return torch.where(step_end, s, torch.zeros_like(s)).sum(dim=1) / count.to(s.dtype)  # [B]
    if reduce == "prod":
        return torch.where(step_end, s, torch.ones_like(s)).prod(dim=1)  # [B]
    t = torch.arange(s.shape[1], device=s.device)  # [T]
    last = torch.where(step_end, t, -1).max(dim=1).values  # [B]
    return s.gather(1, last[:, None]).squeeze(1)  # [B]


def _groups(scores: Tensor, group: Tensor | None) -> tuple[Tensor, int]:
    if scores.dim() != 1:
        raise ValueError(f"scores must be [N], got {list(scores.shape)}")
    if group is None:
        return torch.zeros(scores.shape[0], dtype=torch.long, device=scores.device), 1
    if group.shape != scores.shape or group.dtype not in (torch.int64, torch.int32) or bool((group < 0).any()):
        raise ValueError(f"group must be long [N] = [{scores.shape[0]}] of ids >= 0")
    return group.long(), int(group.max()) + 1 if group.numel() else 0


def best_of_n(scores: Tensor, group: Tensor | None = None) -> Tensor:
    """PRM best-of-N: the index of the highest-scoring completion of each group (ties: the first), long [P]
    (``group=None``: one group). Groups may be unequal and non-contiguous; every id in 0..P-1 must occur.

    >>> best_of_n(torch.tensor([0.9, 0.6, 0.5])).tolist()
    [0]
    """
    g, P = _groups(scores, group)
    top = group_max(scores, g, P)  # [P]
    hit = scores >= top[g]  # [N]
    idx = torch.arange(scores.shape[0], device=scores.device)  # [N]
    first = torch.full((P,), scores.shape[0], dtype=torch.long, device=scores.device)  # [P]
    return first.scatter_reduce(0, g, torch.where(hit, idx, scores.shape[0]), "amin")  # [P]


def vote_sum(
    scores: Tensor, answer: Tensor, group: Tensor | None = None, *, tol: float = 1e-6
) -> tuple[Tensor, Tensor, Tensor]:
    """MedS³ PRM-guided Vote-Sum: sum the PRM scores of the completions per distinct final answer and return the
    answer with the largest sum, per group: ``(answer [P], total [P], index [P])``.

    ``index`` is the highest-scoring completion that gave the winning answer. Ties within ``tol`` (MedS³'s code:
    1e-6) go to the answer holding the highest single score, then to the smaller answer id. Vote-Sum with all
    scores 1 is majority voting. ``answer`` holds non-negative integer ids of the final answers (equal id = same
    answer); groups may be unequal and non-contiguous.

    Spec check: answers {A: 0.9, B: 0.6, B: 0.5} → B wins with 1.1 (best-of-N picks A).

    >>> a, total, i = vote_sum(torch.tensor([0.9, 0.6, 0.5]), torch.tensor([0, 1, 1]))
    >>> a.tolist(), round(total.item(), 6), i.tolist()
    ([1], 1.1, [1])
    """
    g, P = _groups(scores, group)
    if answer.shape != scores.shape or answer.dtype not in (torch.int64, torch.int32) or bool((answer < 0).any()):
        raise ValueError(f"vote_sum: answer must be long [N] = [{scores.shape[0]}] of ids >= 0")
    check_number("tol", tol, minimum=0, where="vote_sum")
    A = int(answer.max()) + 1
    key = g * A + answer.long()  # [N]: one key per (group, answer) pair
    pairs, inv = torch.unique(key, return_inverse=True)  # [U], [N]
    U = pairs.shape[0]
    total = torch.zeros(U, dtype=scores.dtype, device=scores.device).index_add(0, inv, scores)  # [U]
    best = torch.full((U,), -math.inf, dtype=scores.dtype, device=scores.device)  # [U]
    best = best.scatter_reduce(0, inv, scores, "amax")  # [U]: highest single score of each pair
    pg = pairs // A  # [U]
    top = group_max(total, pg, P)  # [P]
    cand = total >= top[pg] - tol  # [U]
    tie = torch.where(cand, best, torch.full_like(best, -math.inf))  # [U]
    win = cand & (tie >= group_max(tie, pg, P)[pg])  # [U]
    pair_idx = torch.arange(U, device=scores.device)  # [U]: pairs sorted by key, so by answer id within a group
    chosen = torch.full((P,), U, dtype=torch.long, device=scores.device)  # [P]
    chosen = chosen.scatter_reduce(0, pg, torch.where(win, pair_idx, U), "amin")  # [P]
    # the highest-scoring completion of the winning pair (first on ties)
    in_win = inv == chosen[g]  # [N]
    n_idx = torch.arange(scores.shape[0], device=scores.device)  # [N]
    top_in = group_max(torch.where(in_win, scores, torch.full_like(scores, -math.inf)), g, P)  # [P]
    hit = in_win & (scores >= top_in[g])  # [N]
    index = torch.full((P,), scores.shape[0], dtype=torch.long, device=scores.device)  # [P]
    index = index.scatter_reduce(0, g, torch.where(hit, n_idx, scores.shape[0]), "amin")  # [P]
    return pairs[chosen] % A, total[chosen], index


# ---------------------------------------------------------------------------------------------- advantage
def normalised_step_rewards(
    step_rewards: Tensor, step_end: Tensor, mask: Tensor, group: Tensor, *, ddof: int = 1, eps: float = 1e-6
) -> Tensor:
    """Step rewards normalised over their group, on the step ends, 0 elsewhere: float [B, T].

    DeepSeekMath (arXiv 2402.03300) §4.1.3, process supervision: ``r̃ = (r − mean(R)) / std(R)`` where ``R`` holds
    the rewards of *every step of every completion* of the question's group. Here ``std`` uses ``ddof`` (1, as
    ``grpo``) and ``eps`` is added outside the root; a group with one step (or equal step rewards) gets 0.

    Args:
        step_rewards: float [B, T], read at ``step_end & mask``.
        step_end: bool [B, T] step ends; mask: bool [B, T]; group: long [B].
        ddof: 0 or 1, default 1. eps: default 1e-6 (as ``grpo``).

    Hand check (one group): step rewards {0.8, 0.2} and {0.5} → mean 0.5, std 0.3 → 1, −1, 0.
    """
    _check_tokens("normalised_step_rewards", mask, step_rewards=step_rewards, step_end=step_end)
    if ddof not in (0, 1) or isinstance(ddof, bool):
        raise ValueError(f"normalised_step_rewards: ddof must be 0 or 1, got {ddof!r}")
    check_number("eps", eps, above=0, where="normalised_step_rewards", hint="usually 1e-6")
    end = step_end & mask  # [B, T]
    rows, pos = end.nonzero(as_tuple=True)  # [K], [K]
    out = torch.zeros(mask.shape, dtype=step_rewards.dtype, device=mask.device)  # [B, T]
    if rows.numel() == 0:
        return out
    vals = step_rewards[rows, pos]  # [K]
    g = group[rows]  # [K]
    P = int(group.max()) + 1
    # groups without any step get a 0/0 mean; they are never indexed below
    mean = group_mean(vals, g, P)  # [P]
    std = group_std(vals, g, P, ddof=ddof)  # [P]
    out[rows, pos] = (vals - mean[g]) / (std[g] + eps)  # [K]: eps outside the root, as grpo
    return out  # [B, T]


@ADVANTAGES.register("process", requires=("step_rewards",))
def process(
    rollout: Rollout,
    *,
    process_coef: float = 1.0,
    outcome_coef: float = 1.0,
    ddof: int = 1,
    eps: float = 1e-6,
    key: str = "step_rewards",
    end_key: str = "step_end",
) -> Tensor:
    """Process-supervised GRPO advantage from step rewards (PRM scores), plus the GRPO outcome advantage: [B, T].

    DeepSeekMath (arXiv 2402.03300) §4.1.3, process supervision: the step rewards of the question's group are
    normalised together (:func:`normalised_step_rewards`) and the advantage of token t is the sum of the
    normalised rewards of the steps ending at or after t, ``Â_{i,t} = Σ_{index(j) ≥ t} r̃_i^{index(j)}``. PRIME
    (arXiv 2502.01456) sums the returns of its process rewards and of the outcome reward, computed apart; here
    the outcome term is GRPO's (``core.advantages.grpo``, group std, ``ddof``, ``eps``):
    ``A = process_coef · Â_process + outcome_coef · Â_outcome``. ``outcome_coef = 0`` is DeepSeekMath's process
    supervision exactly; ``process_coef = 0`` is GRPO.

    Reads ``rollout.extras[key]`` float [B, T] (step rewards on the last token of each step; the ``mcts_prm``
    rollout strategy writes PRM scores there) and ``rollout.extras[end_key]`` bool [B, T] (which tokens end a
    step). Without ``end_key`` every valid token is a step: ``extras[key]`` is then a dense token reward [B, T].
    Masked positions (padding, tool output) are skipped by the return and are 0 in the output.

    Args:
        process_coef: weight of the process return; default 1.0, usually 0.5 to 1.
        outcome_coef: weight of the outcome advantage; default 1.0 (PRIME's sum), 0 for DeepSeekMath's process
            supervision alone; usually 0 to 1.
        ddof: std ddof of both normalisations, 0 or 1 (default 1). eps: outside the root, default 1e-6.
        key, end_key: the extras keys.

    Worked example (one group; eps ignored): completion 0 has 4 tokens, steps ending at t = 1 and t = 3 with
    rewards 0.8, 0.2, outcome 1; completion 1 has 3 tokens, one step ending at t = 2 with reward 0.5, outcome 0.
    Normalised steps: 1, −1 and 0 → process returns [0, 0, −1, −1] and [0, 0, 0, ·]; GRPO outcome ±0.70711 →
    A = [0.70711, 0.70711, −0.29289, −0.29289] and [−0.70711, −0.70711, −0.70711, 0].
    """
    check_number("process_coef", process_coef, where="process", hint="default 1.0")
    check_number("outcome_coef", outcome_coef, where="process", hint="default 1.0 (PRIME), 0 for DeepSeekMath")
    mask = rollout.mask  # [B, T]
    B, T = rollout.batch_size, rollout.seq_len
    rewards = rollout.extras.get(key)
    if rewards is None:
        raise ValueError(
            f"process: rollout.extras[{key!r}] is missing; it must hold step rewards float [B, T] = [{B}, {T}] on the "
            f"last token of each step (the mcts_prm rollout strategy writes it; have: {sorted(rollout.extras)})"
        )
    if not isinstance(rewards, Tensor) or rewards.shape != (B, T) or not rewards.is_floating_point():
        got = f"{rewards.dtype} {list(rewards.shape)}" if isinstance(rewards, Tensor) else type(rewards).__name__
        raise ValueError(f"process: rollout.extras[{key!r}] must be float [B, T] = [{B}, {T}], got {got}")
    end = rollout.extras.get(end_key)
    if end is None:
        end = mask  # dense token rewards: every token is a step
    elif not isinstance(end, Tensor) or end.shape != (B, T) or end.dtype != torch.bool:
        got = f"{end.dtype} {list(end.shape)}" if isinstance(end, Tensor) else type(end).__name__
        raise ValueError(f"process: rollout.extras[{end_key!r}] must be bool [B, T] = [{B}, {T}], got {got}")
    end = end.to(mask.device) & mask  # [B, T]
    rewards = rewards.to(rollout.reward)  # [B, T]
    if not bool(torch.isfinite(rewards[end]).all()):
        raise ValueError(f"process: rollout.extras[{key!r}] holds NaN or inf at step ends")
    norm = normalised_step_rewards(rewards, end, mask, rollout.group, ddof=ddof, eps=eps)  # [B, T]
    # DeepSeekMath §4.1.3: Â_{i,t} = Σ over the steps ending at or after t (γ = 1, masked tokens skipped)
    proc = discounted_returns(norm, mask, gamma=1.0)  # [B, T]
    adv = process_coef * proc  # [B, T]
    if outcome_coef != 0:
        adv = adv + outcome_coef * grpo(rollout, ddof=ddof, eps=eps)  # [B, T]: PRIME adds the outcome advantage
    return torch.where(mask, adv, torch.zeros_like(adv))  # [B, T]
