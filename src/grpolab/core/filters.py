"""Sample filters: which completions enter the loss.

``FILTERS`` entries share one signature, ``fn(rollout, **hparams) -> (keep, metrics)`` with ``keep`` bool [B].
A trainer computes advantages on the whole rollout first (so group statistics see every completion), then
combines the filters' ``keep`` with logical AND and applies ``rollout.select(keep)`` and ``advantages[keep]``.
"""

from __future__ import annotations

import torch

from grpolab.core.registry import Registry
from grpolab.core.stats import group_max, group_min
from grpolab.core.types import Rollout

FILTERS = Registry("filter")


@FILTERS.register("zero_variance")
def zero_variance(rollout: Rollout, *, objective: str | None = None, tol: float = 0.0) -> tuple[torch.Tensor, dict]:
    """Drop every group whose rewards are all equal (DAPO's dynamic-sampling filter, arXiv 2503.14476, Eq. 11).

    Such groups have zero group-relative advantage: they add no gradient but dilute a token-mean loss.
    DAPO states it on accuracy ("all correct or all wrong"); ``objective`` names a column of ``rewards`` to
    test (e.g. "accuracy"), default the combined ``reward``. A group of one completion is dropped too.

    Args:
        objective: name in ``rollout.reward_names``, or None for ``reward``.
        tol: a group is kept when max − min of its rewards exceeds ``tol`` (default 0: exact equality).

    This filter only drops; DAPO's refill (generate more prompts until the batch is full) is a prompt sampler.
    """
    if objective is None:
        values = rollout.reward  # [B]
    else:
        if rollout.rewards is None or objective not in rollout.reward_names:
            raise ValueError(
                f"zero_variance: objective {objective!r} is not in reward_names {list(rollout.reward_names)}"
            )
        values = rollout.rewards[:, rollout.reward_names.index(objective)]  # [B]
    P = rollout.num_groups
    hi = group_max(values, rollout.group, P)  # [P]
    lo = group_min(values, rollout.group, P)  # [P]
    varied = (hi - lo) > tol  # [P]
    keep = varied[rollout.group]  # [B]
    return keep, {"filter/zero_variance_group_frac": 1.0 - varied.float().mean().item()}


@FILTERS.register("truncated")
def truncated(rollout: Rollout) -> tuple[torch.Tensor, dict]:
    """Drop completions that hit the length limit (DAPO's "overlong filtering", off in DAPO's final recipe).

    Their reward says nothing about the answer they did not finish; masking them keeps that noise out of the
    loss while they still count in their group's baseline (advantages are computed before filtering).
    """
    assert rollout.truncated is not None  # Rollout fills it with all False when not given
    keep = ~rollout.truncated  # [B]
    return keep, {"filter/truncated_frac": 1.0 - keep.float().mean().item()}
