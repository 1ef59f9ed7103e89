"""Variance-aware data selection (Temporal-RLT): keep the prompts whose repeated rollouts disagree.

Paper: "Reinforcement Learning Tuning for VideoLLMs: Reward Design and Data Efficiency" (arXiv 2506.01908). The
paper scores every candidate sample by repeated inference and keeps the samples whose rewards vary across the
repeats: a prompt whose rollouts all earn the same reward gives GRPO a zero advantage for every completion, so it
carries no learning signal (their Temporal-RLT-32k is such a selection from the 490k pool). These are the pure
functions: per-prompt reward variance over its repeats, and the keep rule. The prompt sampler that runs the
estimation rounds online is ``grpolab.data.variance_select``.

Conventions: the variance is the population variance (ddof 0, the spread of the observed rewards; for 0/1 rewards
it is p·(1 − p) with p the fraction correct), computed in float64, and exactly 0 for a prompt whose rewards are all
equal (so float rounding never lets an all-equal group pass a threshold of 0). A prompt with one repeat has
variance 0.

>>> import torch
>>> reward = torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 0.25, 0.75])
>>> group = torch.tensor([0, 0, 0, 0, 1, 1, 2, 2])
>>> group_reward_variance(reward, group, 3).tolist()  # 0.25·0.75, all equal, (0.25² + 0.25²) / 2
[0.1875, 0.0, 0.0625]
>>> variance_keep(group_reward_variance(reward, group, 3)).tolist()
[True, False, True]
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from grpolab.core.stats import group_count, group_max, group_min, group_var


def group_reward_variance(reward: Tensor, group: Tensor, num_groups: int) -> Tensor:
    """Population variance of each prompt's rewards over its repeated rollouts, float64 [P].

    Temporal-RLT's selection statistic (arXiv 2506.01908, variance-aware data selection): the variance of the
    rewards of the K repeated inferences of one sample.

    Args:
        reward: float [N], one reward per rollout (any real values: 0/1 accuracies or continuous rewards).
        group: long [N], the prompt (0..P−1) each rollout belongs to; groups may be unequal and non-contiguous,
            every id in 0..P−1 must occur.
        num_groups: P.

    Returns:
        float64 [P]: Σ_k (r_k − mean)² / K per prompt (ddof 0); exactly 0 when all of a prompt's rewards are equal
        (a single rollout included).

    Worked example: rewards (1, 0, 0, 0) → mean 0.25, variance (0.75² + 3·0.25²) / 4 = 0.1875.
    """
    if reward.dim() != 1 or group.shape != reward.shape:
        raise ValueError(f"reward and group must both be [N]; got {list(reward.shape)} and {list(group.shape)}")
    if reward.numel() == 0:
        raise ValueError("group_reward_variance: no rewards")
    if not torch.isfinite(reward).all():
        raise ValueError("group_reward_variance: rewards must be finite")
    group = group.long()
    if int(group.min()) < 0 or int(group.max()) >= num_groups:
        raise ValueError(f"group ids must be in 0..{num_groups - 1}, got {group.min().item()}..{group.max().item()}")
    if bool((group_count(group, num_groups) == 0).any()):
        raise ValueError("every group id in 0..num_groups-1 needs at least one reward")
    x = reward.to(torch.float64)  # [N]
    var = group_var(x, group, num_groups, ddof=0)  # [P] population variance
    high, low = group_max(x, group, num_groups), group_min(x, group, num_groups)  # [P], [P]
    # all-equal rewards carry no GRPO signal: make their variance exactly 0 whatever the rounding of the mean
    return torch.where(high == low, torch.zeros_like(var), var)  # [P]


def variance_keep(variance: Tensor, *, min_variance: float = 0.0, max_variance: float = math.inf) -> Tensor:
    """Temporal-RLT's keep rule: a prompt is kept when ``min_variance < variance <= max_variance``, bool [P].

    Args:
        variance: float [P], e.g. from ``group_reward_variance``.
        min_variance: the threshold the variance must exceed (default 0.0: keep every prompt whose repeats
            disagree at all, dropping the all-correct and all-wrong ones; the paper's exact threshold is not in the
            available text). For 0/1 rewards the variance is at most 0.25; usually 0 to 0.05.
        max_variance: an optional upper bound (default inf: no bound); usually left at inf.

    >>> variance_keep(torch.tensor([0.0, 0.01, 0.2]), min_variance=0.005).tolist()
    [False, True, True]
    """
    if not (math.isfinite(min_variance) and min_variance >= 0):
        raise ValueError(f"min_variance must be a finite number >= 0, got {min_variance}")
    if not max_variance > min_variance:
        raise ValueError(f"max_variance must exceed min_variance, got {max_variance} <= {min_variance}")
    return (variance > min_variance) & (variance <= max_variance)  # [P]
