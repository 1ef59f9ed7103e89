"""Fleming-R1's adaptive hard-sample mining, as pure functions: per-prompt pass-rate estimates from rollout counts,
the two-stage schedule, the pass-rate-threshold miner and the stage-2 batch split.

Paper: "Fleming-R1: Toward Expert-Level Medical Reasoning via Reinforcement Learning" (Liu et al., arXiv 2509.15279).
What was read: the abstract ("a two-stage RLVR framework using GRPO, which consolidates core reasoning skills while
targeting persistent failure modes through adaptive hard-sample mining"). The method section's thresholds, stage
lengths and mixing were out of reach, so every number here is an unverified choice, documented where it is made:
a prompt is *hard* when its estimated pass rate p̂ = correct / rollouts is at most τ after at least
``min_rollouts`` rollouts; stage 2 starts at a fixed fraction of the run and mixes hard prompts into each batch.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from grpolab.core.checks import check_int


def pass_rates(correct: Tensor, total: Tensor) -> Tensor:
    """Per-prompt pass-rate estimates p̂ = correct / total; NaN where a prompt has no rollout yet (total = 0).

    ``correct`` may be fractional (the sum of soft accuracies in [0, 1]).

    Shapes: ``correct``, ``total`` [N] -> [N].

    >>> pass_rates(torch.tensor([1.0, 0.0, 3.0]), torch.tensor([4.0, 0.0, 4.0]))
    tensor([0.2500,    nan, 0.7500])
    """
    if correct.shape != total.shape:
        raise ValueError(f"correct and total need the same shape, got {tuple(correct.shape)} and {tuple(total.shape)}")
    if bool((total < 0).any()) or bool((correct < 0).any()) or bool((correct > total).any()):
        raise ValueError("counts must satisfy 0 <= correct <= total")
    seen = total > 0  # [N]
    return torch.where(seen, correct / total.clamp(min=1e-12), torch.full_like(correct, math.nan))  # [N]


def mine_hard(correct: Tensor, total: Tensor, *, tau: float = 0.25, min_rollouts: int = 1) -> Tensor:
    """Fleming-R1's miner: the prompts the policy keeps failing, i.e. p̂ ≤ τ among prompts with at least
    ``min_rollouts`` rollouts (unseen prompts are never hard: nothing is known about them).

    Args:
        tau: pass-rate threshold τ (unverified: the paper's value was not found; 0.25 = at most 2 of 8 rollouts
            correct; 0 keeps only never-solved prompts; usually 0 to 0.5).
        min_rollouts: rollouts a prompt needs before it can be judged (unverified; 1 = any observed prompt; one
            group of G rollouts is the usual evidence; usually 1 to 2·G).

    Shapes: ``correct``, ``total`` [N] -> long [H], the hard prompt indices in increasing order.

    >>> mine_hard(torch.tensor([0.0, 2.0, 3.0, 0.0]), torch.tensor([8.0, 8.0, 8.0, 0.0]), tau=0.25)
    tensor([0, 1])
    """
    if not 0.0 <= tau <= 1.0:
        raise ValueError(f"tau (the hard pass-rate threshold) must be in [0, 1], got {tau!r}")
    check_int("min_rollouts", min_rollouts, minimum=1)
    p = pass_rates(correct, total)  # [N] (NaN where unseen: NaN <= tau is False)
    # a tolerance keeps p̂ = τ hard even when correct / total rounds just above τ (e.g. 0.3 * 10 / 10)
    hard = (total >= min_rollouts) & (p <= tau + 1e-9)  # [N]
    return torch.nonzero(hard).flatten()  # [H]


def in_stage_two(step: int, total_steps: int, *, stage1_fraction: float = 0.5) -> bool:
    """Whether training step ``step`` (steps completed before it, 0-based) belongs to stage 2: stage 1 covers the
    steps with step < stage1_fraction · total_steps.

    Args:
        stage1_fraction: share of the run spent in stage 1 (uniform sampling, skills consolidation; unverified:
            the paper's split was not found; 0 = mine from the first step's counts, which are empty, so stage 2
            samples uniformly until prompts are seen; usually 0.3 to 0.8).

    >>> [in_stage_two(s, 4) for s in range(4)]
    [False, False, True, True]
    """
    if not 0.0 <= stage1_fraction <= 1.0:
        raise ValueError(f"stage1_fraction must be in [0, 1], got {stage1_fraction!r}")
    if total_steps < 1:
        raise ValueError(f"total_steps must be >= 1, got {total_steps}")
    return step >= stage1_fraction * total_steps


def hard_count(num_prompts: int, pool_size: int, *, hard_fraction: float = 0.5) -> int:
    """How many of a stage-2 batch's ``num_prompts`` prompts come from the hard pool: round(hard_fraction · B)
    (halves round up), 0 when the pool is empty (the batch is then uniform).

    Args:
        hard_fraction: share of a stage-2 batch drawn from the hard pool (unverified: the paper says hard samples
            are emphasised, not by how much; 1 = hard prompts only; usually 0.25 to 1).

    >>> hard_count(16, 100), hard_count(3, 100), hard_count(16, 0)
    (8, 2, 0)
    """
    if not 0.0 <= hard_fraction <= 1.0:
        raise ValueError(f"hard_fraction must be in [0, 1], got {hard_fraction!r}")
    if pool_size == 0:
        return 0
    return min(num_prompts, math.floor(hard_fraction * num_prompts + 0.5))
