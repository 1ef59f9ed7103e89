"""OTC-PO: the Optimal-Tool-Call reward that makes a tool-using model call tools only as often as it must.

Paper: "Acting Less is Reasoning More! Teaching Model to Act Efficiently" (OTC: Optimal Tool Calls via
Reinforcement Learning), Wang et al., arXiv 2504.14870, Sec. 3 (the tool-integrated reward).

Per response y of question q: m = its number of tool calls, r_φ(q, y) its correctness reward (0/1). With n the
optimal number of tool calls of q,

    f(m, n) = 0 if m = n = 0;   m if n = 0;   2nm / (m + n) otherwise            (a harmonic-mean mapping)
    r_tool  = 1 if f = n = 0;   cos(m·π / (2m + c)) if n = 0;   sin(f(m, n)·π / (2n)) otherwise
    r       = α · r_tool · r_φ(q, y)                                               (wrong answers get 0)

OTC-GRPO estimates n as the fewest calls among the *correct* responses of q's group (and keeps the smallest n seen
for q across epochs, see :func:`otc`); OTC-PPO has no group and always uses n = 0, so every call costs
(cos(mπ/(2m+c)) falls from 1 at m = 0 towards cos(π/2) = 0). With n > 0, r_tool peaks (= 1) at m = n and falls
for both fewer and more calls (f < n on both sides: f → 2n as m → ∞, sin(π) = 0).

Pure functions on tensors; the SHAPING entry ``otc`` reads ``rollout.extras["tool_calls"]`` (long [B], written by
multi-turn rollouts, ``grpolab.rollout.multiturn``) and a correctness column of ``rollout.rewards``.

>>> import torch
>>> m, n = torch.tensor([2.0, 1.0, 0.0, 4.0]), torch.tensor([2.0, 0.0, 0.0, 2.0])
>>> [round(x, 4) for x in otc_tool_reward(m, n).tolist()]  # m = n; cos(π/3); f = n = 0; sin(4/3·π/2)
[1.0, 0.5, 1.0, 0.866]
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from grpolab.core.checks import check_choice, check_number
from grpolab.core.shaping import SHAPING
from grpolab.core.stats import group_min
from grpolab.core.types import Rollout

#: The extras key holding each completion's question id (its row index in the task's train split): OTC-GRPO's
#: per-question memory of n across epochs reads it when a trainer provides it (see :func:`otc`).
ROW_KEY = "prompt_id"
#: The extras key of the per-completion tool-call counts (long [B]; multi-turn rollouts write it).
CALLS_KEY = "tool_calls"


def otc_mapping(m: Tensor, n: Tensor) -> Tensor:
    """OTC's f(m, n) (arXiv 2504.14870, Sec. 3.2): 0 if m = n = 0, m if n = 0, else 2nm / (m + n).

    Args:
        m: tool calls of each response, float [B] (>= 0).
        n: the optimal number of calls of each response's question, float [B] (>= 0), broadcastable to m.

    >>> otc_mapping(torch.tensor([0.0, 3.0, 2.0, 1.0]), torch.tensor([0.0, 0.0, 2.0, 3.0])).tolist()
    [0.0, 3.0, 2.0, 1.5]
    """
    harmonic = 2 * n * m / (m + n).clamp(min=1e-12)  # [B]; m + n > 0 wherever n > 0
    return torch.where(n == 0, m, harmonic)  # [B]; m = n = 0 gives m = 0


def otc_tool_reward(m: Tensor, n: Tensor, *, c: float = 1.0) -> Tensor:
    """OTC's r_tool (arXiv 2504.14870, Sec. 3.2, the OTC-GRPO form; n = 0 everywhere is OTC-PPO's form).

    r_tool = 1 if f(m, n) = n = 0; cos(m·π / (2m + c)) if n = 0; sin(f(m, n)·π / (2n)) otherwise.

    Args:
        m: tool calls of each response, float [B] (>= 0).
        n: optimal number of calls of each response's question, float [B] (>= 0).
        c: the smoothing constant of the n = 0 branch: larger c punishes each call less (cos(π/(2 + c)) at
            m = 1). Default 1.0 (the reference reimplementation's; the paper's value was not confirmed); usually
            0.5 to 2.

    Values are in [0, 1]: the n = 0 branch is cos of an angle in [0, π/2), the other is sin of one in [0, π).

    >>> [round(x, 6) for x in otc_tool_reward(torch.tensor([2.0, 1.0]), torch.tensor([2.0, 0.0])).tolist()]
    [1.0, 0.5]
    """
    check_number("c", c, above=0, where="otc_tool_reward", hint="reimplementation default 1.0")
    m, n = torch.broadcast_tensors(m, n)  # [B], [B]
    no_tools_needed = torch.cos(m * math.pi / (2 * m + c))  # [B]; = 1 at m = 0 (the f = n = 0 case)
    around_n = torch.sin(otc_mapping(m, n) * math.pi / (2 * n.clamp(min=1e-12)))  # [B]; peaks at m = n
    return torch.where(n == 0, no_tools_needed, around_n)  # [B]


def optimal_calls(m: Tensor, correct: Tensor, group: Tensor, num_groups: int) -> Tensor:
    """OTC-GRPO's n per group: the fewest tool calls among the group's correct responses; +inf where none is.

    Args:
        m: tool calls, float [B]. correct: bool [B]. group: long [B], ids 0..P-1. num_groups: P.

    Returns float [P].

    >>> optimal_calls(torch.tensor([2.0, 1.0, 3.0, 0.0]), torch.tensor([True, False, True, False]),
    ...               torch.tensor([0, 0, 0, 1]), 2).tolist()
    [2.0, inf]
    """
    candidates = torch.where(correct, m, torch.full_like(m, math.inf))  # [B]; wrong responses never set n
    return group_min(candidates, group, num_groups)  # [P]


@SHAPING.register("otc")
def otc(
    rollout: Rollout,
    *,
    variant: str = "grpo",
    alpha: float = 1.0,
    c: float = 1.0,
    reward_name: str | None = None,
    correct_threshold: float = 0.5,
    memory: bool = True,
    state: dict[str, Any] | None = None,
) -> tuple[Rollout, dict[str, float]]:
    """OTC's tool-integrated reward: ``reward = α · r_tool(m, n) · r_φ`` (arXiv 2504.14870, Sec. 3.2-3.3).

    Inputs (Rollout): m = ``extras["tool_calls"]`` (long [B]); r_φ = the column ``reward_name`` of
    ``rollout.rewards`` (default None: the first column, i.e. the task's first reward function, which is its
    default accuracy; the ``search`` task's ``search_em``); without ``rollout.rewards`` the combined ``reward``.
    The combined reward is *replaced* (other reward terms do not enter; OTC's r is the only reward). A rollout
    without ``tool_calls`` (a single-turn task) counts m = 0 for every completion: then r_tool = 1 and the reward
    is α·r_φ, so the preset reduces to its base algorithm on the correctness reward.

    n (``variant``):

    - ``"grpo"`` (OTC-GRPO): per group, the fewest calls among the correct responses (r_φ >= ``correct_threshold``);
      0 for a group with no correct response (its r_φ is then usually 0 everywhere, so n does not matter). With
      ``memory`` and a per-question id in ``extras["prompt_id"]`` (long [B]), the smallest n ever found for that
      question is kept in ``state`` and used when smaller than the group's (the paper carries n across epochs);
      without the id (trainers that do not provide it), n is the group's own.
    - ``"ppo"`` (OTC-PPO): n = 0 for every response (no group), r_tool = cos(m·π/(2m + c)).

    Args:
        variant: "grpo" or "ppo" (see above).
        alpha: α, the scale of the reward (default 1.0, the reimplementation's; usually 0.5 to 2).
        c: the smoothing constant of the n = 0 branch (default 1.0; usually 0.5 to 2), see ``otc_tool_reward``.
        reward_name: the ``rollout.reward_names`` entry holding r_φ (default None: the first column).
        correct_threshold: r_φ at or above this counts as correct when estimating n (default 0.5, for a 0/1 r_φ).
        memory: keep each question's smallest n across steps in ``state`` (default True; needs ``prompt_id``).
        state: the run's private dict for this part (supplied by the trainer; a plain dict in tests).

    Example: one group of three correct responses with m = 1, 2, 3 calls and a wrong one with 0 calls: n = 1,
    f = 1, 4/3, 3/2, r_tool = sin(f·π/2) = 1, 0.866, 0.707, and the wrong one gets 0 (α = 1).

    >>> r = Rollout(group=torch.tensor([0, 0, 0, 0]), mask=torch.ones(4, 2, dtype=torch.bool),
    ...             reward=torch.tensor([1.0, 1.0, 1.0, 0.0]), rewards=torch.tensor([[1.0], [1.0], [1.0], [0.0]]),
    ...             reward_names=("em",), extras={"tool_calls": torch.tensor([1, 2, 3, 0])})
    >>> [round(x, 3) for x in otc(r)[0].reward.tolist()]
    [1.0, 0.866, 0.707, 0.0]
    """
    check_choice("otc", "variant", variant, ("grpo", "ppo"))
    check_number("alpha", alpha, minimum=0, where="otc", hint="reimplementation default 1.0")
    check_number("c", c, above=0, where="otc", hint="reimplementation default 1.0")
    check_number("correct_threshold", correct_threshold, where="otc")
    B, P = rollout.batch_size, rollout.num_groups
    device, dtype = rollout.reward.device, rollout.reward.dtype
    calls = rollout.extras.get(CALLS_KEY)
    if calls is None:  # a single-turn rollout: no tool was called
        m = torch.zeros(B, dtype=dtype, device=device)  # [B]
    else:
        if not isinstance(calls, Tensor) or calls.shape != (B,):
            raise ValueError(f"otc: extras['{CALLS_KEY}'] must be a tensor of shape [{B}], got {calls!r:.80}")
        m = calls.to(device=device, dtype=dtype)  # [B]
        if bool((m < 0).any()):
            raise ValueError("otc: extras['tool_calls'] must be >= 0")
    r_phi = _correctness(rollout, reward_name)  # [B]
    correct = r_phi >= correct_threshold  # [B]

    if variant == "ppo":
        n = torch.zeros_like(m)  # [B]: OTC-PPO always uses the n = 0 branch
    else:
        n_group = optimal_calls(m, correct, rollout.group, P)  # [P], inf where no response is correct
        rows = rollout.extras.get(ROW_KEY)
        if memory and rows is not None and state is not None:
            n_group = _remember(n_group, rows, rollout.group, P, state)  # [P]
        n_group = torch.where(torch.isinf(n_group), torch.zeros_like(n_group), n_group)  # [P]
        n = n_group[rollout.group]  # [B]
    r_tool = otc_tool_reward(m, n, c=c)  # [B]
    reward = alpha * r_tool * r_phi  # [B]: OTC's r = α · r_tool · r_φ (wrong answers get 0)
    metrics = {
        "otc/tool_calls": m.mean().item(),
        "otc/r_tool": r_tool.mean().item(),
        "otc/n": n.mean().item(),
        "otc/correct_frac": correct.float().mean().item(),
    }
    if state is not None and "n" in state:
        metrics["otc/questions_remembered"] = float(len(state["n"]))
    return rollout.replace(reward=reward), metrics


def _correctness(rollout: Rollout, reward_name: str | None) -> Tensor:
    """r_φ [B]: the named (default first) column of ``rollout.rewards``, or ``reward`` without per-function rewards."""
    if rollout.rewards is None:
        if reward_name is not None:
            raise ValueError(f"otc: reward_name={reward_name!r} but the rollout has no per-function rewards")
        return rollout.reward  # [B]
    if reward_name is None:
        return rollout.rewards[:, 0].to(rollout.reward.dtype)  # [B]
    if reward_name not in rollout.reward_names:
        raise ValueError(
            f"otc: reward_name {reward_name!r} is not a reward of this task; known: {rollout.reward_names}"
        )
    return rollout.rewards[:, rollout.reward_names.index(reward_name)].to(rollout.reward.dtype)  # [B]


def _remember(n_group: Tensor, rows: Tensor, group: Tensor, num_groups: int, state: dict[str, Any]) -> Tensor:
    """The smaller of each group's n and the smallest n stored for its question; stores the result (state["n"]:
    question id -> n). Groups whose question has neither keep +inf."""
    best: dict[int, float] = state.setdefault("n", {})
    question = torch.zeros(num_groups, dtype=torch.long)  # [P]: one question id per group
    question[group.cpu()] = rows.cpu().long()
    out = n_group.clone()  # [P]
    for p, q in enumerate(question.tolist()):
        stored = best.get(q, math.inf)
        value = min(stored, float(n_group[p]))
        out[p] = value
        if math.isfinite(value):
            best[q] = value
    return out  # [P]


__all__ = ["CALLS_KEY", "ROW_KEY", "optimal_calls", "otc", "otc_mapping", "otc_tool_reward"]
