"""Combining several reward columns into the scalar reward: reward-model ensembles and multi-objective rewards.

Two pure functions and the two ``SHAPING`` entries that apply them to a Rollout's per-function rewards
(``rollout.rewards`` [B, K], named by ``rollout.reward_names``), recomputing ``rollout.reward`` before the advantage:

- :func:`ensemble_reward` / ``SHAPING["ensemble"]``: M reward models scoring the same completion, combined by their
  mean, the worst case (WCO) or mean minus λ·variance (UWO). Reward Model Ensembles Help Mitigate Overoptimization
  (Coste, Anwar, Kirk, Krueger; arXiv 2310.02743, ICLR 2024); the formulas as in the authors' code
  (``tlc4418/llm_optimization``, ``src/reward_modeling/scoring/ppo_reward_functions.py``).
- :func:`multi_objective_reward` / ``SHAPING["multi_objective"]``: K objectives (the heads of a multi-label reward
  model, or several verifiers) scalarised by a weighted sum (Optimizing Safe and Aligned Language Generation: A
  Multi-Objective GRPO Approach, Li et al., HydroX AI, arXiv 2503.21819) or normalised per objective within each
  group first (MO-GRPO, Ichihara et al., arXiv 2509.22047).

Which columns are combined (the ``columns`` option of both shaping entries):

- ``None`` (default): the reward-model columns, i.e. the names starting with ``"rm_"`` (every
  ``grpolab.rewards.reward_model.RewardModel`` is named so), when there is at least one; otherwise EVERY column. So
  on a task whose only reward is a verifier (the plain ``arith`` task) the part combines that one column: an ensemble
  of one member is the member itself (mean = min = the value, variance 0), and a one-objective weighted sum with the
  default weight 1 is the value itself; the preset then trains exactly as GRPO.
- a string: a name prefix (``"rm_"``, ``"rm_helpful_"``; ``""`` selects every column);
- a list of names: exactly those columns, in that order.

Columns left out are dropped from the reward unless ``others_weight`` (default 0) is set: the new reward is
``combined + others_weight · Σ (the other columns)``. With ``reward: [exact, {reward_model: ...}, ...]`` the verifier
column is then only logged (and the ``arith`` accuracy is measured as always), as in Coste et al., where the
ensemble's value replaces the single reward model's reward.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from grpolab.core.checks import check_choice, check_int, check_number, is_number
from grpolab.core.shaping import SHAPING
from grpolab.core.stats import group_mean, group_std
from grpolab.core.types import Rollout

#: How the M members of an ensemble are combined (Coste et al.: ``mean``, ``WCO``, ``UWO``).
ENSEMBLE_MODES = ("mean", "wco", "uwo")
#: How K objectives are scalarised: HydroX's weighted sum, or MO-GRPO's per-group normalisation first.
MULTI_OBJECTIVE_MODES = ("weighted_sum", "normalize_then_sum")
#: The name prefix of reward-model columns: the default selection of the shaping entries here.
RM_PREFIX = "rm_"


def ensemble_reward(rewards: Tensor, *, mode: str = "mean", uwo_weight: float = 0.1, unbiased: bool = True) -> Tensor:
    """Combine M reward models' scores of each completion into one reward, float [B].

    Reward Model Ensembles Help Mitigate Overoptimization (Coste et al., arXiv 2310.02743), §3 "conservative
    optimization objectives", as in the authors' code (``ppo_reward_functions.py``):

    - ``"mean"``: R = mean_m R_m (the ensemble mean; reduces variance, not conservative);
    - ``"wco"`` (worst-case optimisation): R = min_m R_m; no hyper-parameter;
    - ``"uwo"`` (uncertainty-weighted optimisation): R = mean_m R_m − λ · Var_m R_m, the intra-ensemble variance
      penalising completions the members disagree on.

    Args:
        rewards: float [B, M], column m = member m's score. M >= 1.
        mode: one of ``ENSEMBLE_MODES``; default "mean".
        uwo_weight: λ of UWO (ignored otherwise). Paper default 0.1 for PPO (``configs/config_rl.yaml``
            ``uwo_weight: 0.1``); 0.5 for best-of-n; the paper finds UWO robust to λ; usually 0.05 to 1. >= 0.
        unbiased: the variance's divisor: True (default) divides by M − 1 (``torch.var``, the authors' PPO code),
            False by M (``np.var``, their best-of-n code). An ensemble of one member has variance 0 either way (no
            disagreement), so UWO of one member is the member's score.

    Hand check (spec): one completion scored [1, 2, 3] → mean 2, WCO 1, UWO(λ=0.5) = 2 − 0.5·1 = 1.5 (unbiased
    variance 1) or 2 − 0.5·(2/3) ≈ 1.6667 (population variance 2/3).

    >>> r = torch.tensor([[1.0, 2.0, 3.0]])
    >>> [ensemble_reward(r, mode=m, uwo_weight=0.5).item() for m in ENSEMBLE_MODES]
    [2.0, 1.0, 1.5]
    >>> round(ensemble_reward(r, mode="uwo", uwo_weight=0.5, unbiased=False).item(), 4)
    1.6667
    """
    check_choice("ensemble_reward", "mode", mode, ENSEMBLE_MODES)
    check_number("uwo_weight", uwo_weight, minimum=0, where="ensemble_reward", hint="Coste et al.: 0.1 for PPO")
    if not isinstance(rewards, Tensor) or rewards.dim() != 2 or rewards.shape[1] < 1:
        shape = list(rewards.shape) if isinstance(rewards, Tensor) else type(rewards).__name__
        raise ValueError(f"ensemble_reward: rewards must be a float tensor [B, M] with M >= 1 members, got {shape}")
    if mode == "wco":
        return rewards.min(dim=1).values  # [B]: the most pessimistic member
    mean = rewards.mean(dim=1)  # [B]
    if mode == "mean":
        return mean  # [B]
    return mean - uwo_weight * ensemble_variance(rewards, unbiased=unbiased)  # [B]


def ensemble_variance(rewards: Tensor, *, unbiased: bool = True) -> Tensor:
    """Intra-ensemble variance of each completion's M scores, float [B]; 0 when M = 1 (see :func:`ensemble_reward`).

    >>> ensemble_variance(torch.tensor([[1.0, 2.0, 3.0], [5.0, 5.0, 5.0]])).tolist()
    [1.0, 0.0]
    """
    M = rewards.shape[1]
    if M == 1:
        return torch.zeros_like(rewards[:, 0])  # [B]: one member cannot disagree with itself
    return rewards.var(dim=1, correction=1 if unbiased else 0)  # [B]


def multi_objective_reward(
    rewards: Tensor,
    weights: Sequence[float] | Tensor | None = None,
    *,
    mode: str = "weighted_sum",
    group: Tensor | None = None,
    ddof: int = 1,
    eps: float = 1e-6,
) -> Tensor:
    """Scalarise K objectives of each completion into one reward, float [B].

    - ``"weighted_sum"`` (HydroX, arXiv 2503.21819, §3: R(x, y) = Σ_k w_k R_k(x, y), the GRPO reward; the paper
      reports no special weighting): ``Σ_k w_k r_k``.
    - ``"normalize_then_sum"`` (MO-GRPO, arXiv 2509.22047, §4: each reward function is reweighted "according to the
      variance of its values" within the group, so every objective contributes evenly whatever its scale):
      ``Σ_k w_k (r_k − mean_g r_k) / (std_g r_k + eps)``, mean and std over the completion's group g. Dividing by
      the standard deviation (the square root of the variance the paper speaks of) is what gives every objective
      unit spread in each group, the property the paper proves ("all reward functions contribute evenly");
      dividing by the variance itself would leave an objective's contribution proportional to 1/std. The result
      is invariant to rescaling one objective (r_k → c·r_k, c > 0) up to eps, and keeps each objective's order
      within the group. GRPO's own normalisation of the summed reward follows (the advantage), as in MO-GRPO.

    Conventions: std with ``ddof`` (default 1, Bessel's correction, as the ``grpo`` advantage) and eps added outside
    the root; a group of size <= ddof and an objective constant within a group contribute 0 to that group.

    Args:
        rewards: float [B, K], column k = objective k.
        weights: K weights w_k, or None for equal weights 1/K (the spec's default: HydroX reports no weighting).
            Usually positive; a weight may be 0 (an objective only logged) or negative (a cost).
        mode: one of ``MULTI_OBJECTIVE_MODES``; default "weighted_sum" (HydroX).
        group: long [B], each completion's prompt group (0..P−1); needed by "normalize_then_sum".
        ddof: 0 or 1, the group std's delta degrees of freedom (default 1).
        eps: added to the group std, default 1e-6 (as the ``grpo`` advantage); usually 1e-8 to 1e-4. > 0.

    Worked example: one group of 3 completions, objectives (correctness, brevity·10): rows [1, 0], [0, 10], [1, 5].
    weighted_sum with w = [1, 1] → [1, 10, 6]: the wrong but short completion wins (brevity's scale dominates).
    normalize_then_sum: correctness z = [0.577, −1.155, 0.577] (mean 2/3, std 0.577), brevity z = [−1, 1, 0] (mean 5,
    std 5) → [−0.423, −0.155, 0.577]: the correct and fairly short completion wins.

    >>> r = torch.tensor([[1.0, 0.0], [0.0, 10.0], [1.0, 5.0]])
    >>> multi_objective_reward(r, [1.0, 1.0]).tolist()
    [1.0, 10.0, 6.0]
    >>> [round(x, 3) for x in multi_objective_reward(r, [1.0, 1.0], mode="normalize_then_sum",
    ...                                                group=torch.tensor([0, 0, 0])).tolist()]
    [-0.423, -0.155, 0.577]
    """
    check_choice("multi_objective_reward", "mode", mode, MULTI_OBJECTIVE_MODES)
    check_int("ddof", ddof, minimum=0, where="multi_objective_reward")
    check_choice("multi_objective_reward", "ddof", ddof, (0, 1))
    check_number("eps", eps, above=0, where="multi_objective_reward", hint="default 1e-6")
    if not isinstance(rewards, Tensor) or rewards.dim() != 2 or rewards.shape[1] < 1:
        shape = list(rewards.shape) if isinstance(rewards, Tensor) else type(rewards).__name__
        raise ValueError(f"multi_objective_reward: rewards must be a float tensor [B, K] with K >= 1, got {shape}")
    B, K = rewards.shape
    w = _weights(weights, K, rewards)  # [K]
    if mode == "weighted_sum":
        return rewards @ w  # [B]: HydroX's scalarisation Σ_k w_k R_k
    if group is None or not isinstance(group, Tensor) or group.shape != (B,):
        raise ValueError(
            f"multi_objective_reward: mode 'normalize_then_sum' needs group, a long tensor [B] = [{B}] of prompt "
            f"group ids, got {group if not isinstance(group, Tensor) else list(group.shape)}"
        )
    P = int(group.max().item()) + 1
    z = torch.empty_like(rewards)  # [B, K]
    for k in range(K):  # K is small (a few objectives): one group statistic per objective
        col = rewards[:, k]  # [B]
        mean = group_mean(col, group, P)[group]  # [B]
        std = group_std(col, group, P, ddof=ddof)[group]  # [B]
        z[:, k] = (col - mean) / (std + eps)  # [B]: MO-GRPO's per-objective group normalisation, eps outside the root
    return z @ w  # [B]


def _weights(weights: Sequence[float] | Tensor | None, K: int, like: Tensor) -> Tensor:
    if weights is None:
        return torch.full((K,), 1.0 / K, dtype=like.dtype, device=like.device)  # [K]: equal weights 1/K
    values = weights.tolist() if isinstance(weights, Tensor) else list(weights)
    if len(values) != K or not all(is_number(v) for v in values):
        raise ValueError(
            f"multi_objective_reward: weights must be {K} finite numbers (one per objective column), got {values}"
        )
    return torch.tensor(values, dtype=like.dtype, device=like.device)  # [K]


def select_columns(
    names: Sequence[str], columns: str | Sequence[str] | None, *, part: str
) -> tuple[list[int], list[int]]:
    """Indices of the selected reward columns and of the others, from a ``columns`` option (see the module docstring).

    >>> select_columns(["exact", "rm_a", "rm_b"], None, part="ensemble")
    ([1, 2], [0])
    >>> select_columns(["digit_fraction"], None, part="ensemble")
    ([0], [])
    >>> select_columns(["exact", "rm_a", "rm_b"], ["rm_b", "exact"], part="ensemble")
    ([2, 0], [1])
    """
    names = list(names)
    if columns is None:
        chosen = [i for i, n in enumerate(names) if n.startswith(RM_PREFIX)] or list(range(len(names)))
    elif isinstance(columns, str):
        chosen = [i for i, n in enumerate(names) if n.startswith(columns)]
        if not chosen:
            raise ValueError(
                f"{part}: no reward column starts with {columns!r}; the columns are {names}. Pass columns=<a prefix "
                "or a list of names>, or leave it unset for the reward-model columns (rm_...) or all"
            )
    else:
        wanted = list(columns)
        missing = [n for n in wanted if n not in names]
        if missing or not wanted or len(set(wanted)) != len(wanted):
            raise ValueError(
                f"{part}: columns must be distinct names of reward columns; {missing or wanted} not usable, the "
                f"columns are {names} (logged as reward/<name>)"
            )
        chosen = [names.index(n) for n in wanted]
    others = [i for i in range(len(names)) if i not in chosen]
    return chosen, others


def _columns(rollout: Rollout, columns: str | Sequence[str] | None, part: str) -> tuple[Tensor, list[str], Tensor]:
    """The selected reward columns [B, M], their names, and the row sums of the other columns [B]."""
    if rollout.rewards is None:
        raise ValueError(
            f"{part}: the rollout has no per-function rewards (rollout.rewards [B, K]); the trainer fills them from "
            "the task's reward functions, tests must pass rewards= and reward_names="
        )
    chosen, others = select_columns(rollout.reward_names, columns, part=part)
    values = rollout.rewards.to(rollout.reward.dtype)  # [B, K]
    rest = values[:, others].sum(dim=1)  # [B]; 0 when there is no other column
    return values[:, chosen], [rollout.reward_names[i] for i in chosen], rest  # [B, M], M names, [B]


@SHAPING.register("ensemble")
def ensemble(
    rollout: Rollout,
    *,
    mode: str = "mean",
    uwo_weight: float = 0.1,
    unbiased: bool = True,
    columns: str | list[str] | None = None,
    others_weight: float = 0.0,
    clip: float | None = None,
) -> tuple[Rollout, dict[str, float]]:
    """Replace ``rollout.reward`` with the combination of an ensemble of reward-model columns (Coste et al., arXiv
    2310.02743): :func:`ensemble_reward` of the selected columns, clipped to [−clip, clip], plus
    ``others_weight`` times the sum of the other columns.

    Args:
        mode, uwo_weight, unbiased: as :func:`ensemble_reward` (defaults: mean, λ = 0.1 the paper's PPO value,
            unbiased variance as the paper's PPO code).
        columns: the members: None (default: the ``rm_`` columns, else every column), a name prefix, or a list of
            names (module docstring).
        others_weight: weight of the sum of the columns not in the ensemble (default 0: the ensemble's value is the
            whole reward, as in the paper); 1 adds the verifier rewards unweighted.
        clip: clip the combined value to [−clip, clip] (the authors' PPO config ``cliprange_reward: 10``); None
            (default) leaves it unclipped. > 0.

    Metrics: ``ensemble/members`` (M), ``ensemble/reward`` (mean combined value), ``ensemble/member_mean`` (mean
    of the members' mean), ``ensemble/variance`` (mean intra-ensemble variance, the chosen divisor),
    ``ensemble/spread`` (mean of max − min over members), ``ensemble/penalty`` (mean of member mean − combined: how
    conservative the combination is), ``ensemble/clip_frac`` when clipping.

    >>> r = Rollout(group=torch.tensor([0, 0]), mask=torch.ones(2, 1, dtype=torch.bool), reward=torch.zeros(2),
    ...             rewards=torch.tensor([[1.0, 0.2, 0.4], [0.0, 0.9, 0.5]]), reward_names=("exact", "rm_a", "rm_b"))
    >>> shaped, m = ensemble(r, mode="wco")
    >>> [round(x, 4) for x in shaped.reward.tolist()], m["ensemble/members"]
    ([0.2, 0.5], 2.0)
    """
    check_number("others_weight", others_weight, where="ensemble shaping")
    if clip is not None:
        check_number("clip", clip, above=0, where="ensemble shaping", hint="Coste et al.'s PPO config: 10")
    members, _, rest = _columns(rollout, columns, "ensemble shaping")  # [B, M], [B]
    combined = ensemble_reward(members, mode=mode, uwo_weight=uwo_weight, unbiased=unbiased)  # [B]
    member_mean = members.mean(dim=1)  # [B]
    metrics = {
        "ensemble/members": float(members.shape[1]),
        "ensemble/member_mean": member_mean.mean().item(),
        "ensemble/variance": ensemble_variance(members, unbiased=unbiased).mean().item(),
        "ensemble/spread": (members.max(dim=1).values - members.min(dim=1).values).mean().item(),
        "ensemble/penalty": (member_mean - combined).mean().item(),
    }
    if clip is not None:
        metrics["ensemble/clip_frac"] = (combined.abs() > clip).float().mean().item()
        combined = combined.clamp(-clip, clip)  # [B]: the authors' PPO reward clip (cliprange_reward)
    metrics["ensemble/reward"] = combined.mean().item()
    return rollout.replace(reward=combined + others_weight * rest), metrics  # [B]


@SHAPING.register("multi_objective")
def multi_objective(
    rollout: Rollout,
    *,
    mode: str = "weighted_sum",
    weights: list[float] | None = None,
    columns: str | list[str] | None = None,
    others_weight: float = 0.0,
    ddof: int = 1,
    eps: float = 1e-6,
) -> tuple[Rollout, dict[str, float]]:
    """Replace ``rollout.reward`` with a scalarisation of objective columns (:func:`multi_objective_reward`; HydroX
    arXiv 2503.21819 weighted sum, or MO-GRPO arXiv 2509.22047 per-group normalisation first), plus
    ``others_weight`` times the sum of the other columns.

    Args:
        mode: "weighted_sum" (default, HydroX) or "normalize_then_sum" (MO-GRPO).
        weights: one weight per selected column, in the selected order; None (default) = 1/K each.
        columns: the objectives: None (default: the ``rm_`` columns, e.g. a multi-head model's
            ``rm_<name>_<label>`` heads; else every column), a name prefix, or a list of names (module docstring).
        others_weight: weight of the sum of the columns not selected (default 0).
        ddof, eps: the group std of "normalize_then_sum" (defaults 1 and 1e-6).

    Metrics: ``multi_objective/<name>`` (mean of each objective's raw value), ``multi_objective/<name>_group_std``
    (mean within-group std of each objective: a scale mismatch shows here), ``multi_objective/reward``.
    """
    check_number("others_weight", others_weight, where="multi_objective shaping")
    check_int("ddof", ddof, minimum=0, where="multi_objective shaping")
    objectives, names, rest = _columns(rollout, columns, "multi_objective shaping")  # [B, K], [B]
    combined = multi_objective_reward(objectives, weights, mode=mode, group=rollout.group, ddof=ddof, eps=eps)  # [B]
    metrics: dict[str, float] = {}
    g, P = rollout.group, rollout.num_groups
    for k, name in enumerate(names):
        metrics[f"multi_objective/{name}"] = objectives[:, k].mean().item()
        metrics[f"multi_objective/{name}_group_std"] = group_std(objectives[:, k], g, P, ddof=ddof).mean().item()
    metrics["multi_objective/reward"] = combined.mean().item()
    return rollout.replace(reward=combined + others_weight * rest), metrics  # [B]
