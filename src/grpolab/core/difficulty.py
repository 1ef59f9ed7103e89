"""Difficulty-aware reward scaling (GRPO-S of DR-IRL), a ``SHAPING`` entry.

Inverse Reinforcement Learning with Dynamic Reward Scaling for LLM Alignment (Cheng et al., arXiv 2503.18991,
ICLR 2026): GRPO-S "scales the reward during optimization to task difficulty — data-level hardness measured by
CLIP similarity and model-level responsiveness measured by reward gaps". The scaling formula itself is not in
the available text; ``difficulty_scale`` implements the spec's documented default (see its docstring).
"""

from __future__ import annotations

import torch
from torch import Tensor

from grpolab.core.shaping import SHAPING
from grpolab.core.stats import group_mean
from grpolab.core.types import Rollout


def _hardness(rollout: Rollout, key: str) -> Tensor:
    """Per-completion data-level hardness h from ``rollout.extras[key]`` (float [B], >= 0); zeros when absent."""
    B = rollout.batch_size
    h = rollout.extras.get(key)
    if h is None:
        return torch.zeros(B, dtype=rollout.reward.dtype, device=rollout.reward.device)  # [B]
    if not isinstance(h, Tensor) or h.shape != (B,) or not h.is_floating_point():
        got = f"{h.dtype} {list(h.shape)}" if isinstance(h, Tensor) else type(h).__name__
        raise ValueError(
            f"difficulty_scale: rollout.extras[{key!r}] must be a float tensor [B] = [{B}] (the prompt's hardness, "
            f"repeated for each of its completions), got {got}"
        )
    h = h.to(rollout.reward)  # [B]
    if not bool(torch.isfinite(h).all()) or bool((h < 0).any()):
        raise ValueError(f"difficulty_scale: rollout.extras[{key!r}] must be finite and >= 0 (e.g. 1 − cosine)")
    return h  # [B]


@SHAPING.register("difficulty_scale")
def difficulty_scale(
    rollout: Rollout,
    *,
    hardness_weight: float = 1.0,
    gap_weight: float = 1.0,
    hardness_key: str = "hardness",
    objective: str | None = None,
    reference: float = 1.0,
    min_scale: float = 0.5,
    max_scale: float = 2.0,
) -> tuple[Rollout, dict[str, float]]:
    """GRPO-S reward scaling ``r'_i = s(x)·r_i`` by a per-prompt difficulty factor s(x), before the advantage.

    DR-IRL (arXiv 2503.18991), GRPO-S. The paper's formula was not found; this is the spec's default, flagged as
    unverified: ``s(x) = 1 + a·h(x) + b·g(x)``, divided by its mean over the batch's prompts (so the mean factor is
    1 and the overall reward scale is kept), then clipped to ``[min_scale, max_scale]``.

    - h(x), data-level hardness: read from ``rollout.extras[hardness_key]`` (float [B], the prompt's value on each
      of its completions; averaged over the group), written by the trainer from a dataset column (the paper:
      1 − CLIP/text-encoder cosine similarity). Absent → 0.
    - g(x), model-level responsiveness: the paper's "reward gap" between the policy's outputs and the
      demonstrations, read here as ``max(0, reference − mean_G r)``: the gap between the group's mean reward (or
      accuracy, with ``objective="accuracy"``) and the score of a demonstration, ``reference`` = 1 for a verifier
      reward in [0, 1]. So g = 1 − the group's accuracy: a prompt the model fails gets a larger factor.

    s is constant within a group, so it **cancels** in std-normalised GRPO ((s·r − s·μ)/(s·σ)); it acts only with
    a mean-only advantage (Dr. GRPO, ``dr_grpo``), where the advantage scales by s. The ``grpo_s`` preset pairs it
    with ``dr_grpo``.

    Args:
        hardness_weight: a, weight of h; not reported (assumed 1.0); >= 0 (s must grow with difficulty).
        gap_weight: b, weight of g; not reported (assumed 1.0); >= 0.
        hardness_key: extras key of h; default ``"hardness"``.
        objective: a name in ``rollout.reward_names`` whose group mean gives g (e.g. ``"accuracy"``), or None for
            the combined ``reward`` (default).
        reference: the demonstration's score in g; default 1.0 (the top of a [0, 1] verifier reward).
        min_scale, max_scale: clip range of the normalised factor; defaults 0.5 and 2.0 (assumed), 0 < min <= 1
            <= max.

    Example: two prompts, group accuracies 1 and 0, no hardness → g = [0, 1] → s = [1, 2] / 1.5 = [0.667, 1.333].

    >>> import torch
    >>> r = Rollout(group=torch.tensor([0, 0, 1, 1]), mask=torch.ones(4, 1, dtype=torch.bool),
    ...             reward=torch.tensor([1.0, 1.0, 0.0, 0.0]))
    >>> shaped, m = difficulty_scale(r)
    >>> round(m["difficulty/scale_max"], 4), [round(x, 4) for x in shaped.reward.tolist()]
    (1.3333, [0.6667, 0.6667, 0.0, 0.0])
    """
    if not hardness_weight >= 0 or not gap_weight >= 0:
        raise ValueError(
            f"difficulty_scale: hardness_weight and gap_weight must be >= 0 (the factor grows with difficulty), got "
            f"{hardness_weight} and {gap_weight}"
        )
    if not 0 < min_scale <= 1 <= max_scale:
        raise ValueError(f"difficulty_scale: need 0 < min_scale <= 1 <= max_scale, got {min_scale}, {max_scale}")
    g, P = rollout.group, rollout.num_groups  # [B], int
    if objective is None:
        values = rollout.reward  # [B]
    else:
        if rollout.rewards is None or objective not in rollout.reward_names:
            raise ValueError(
                f"difficulty_scale: objective {objective!r} is not in reward_names {list(rollout.reward_names)}; "
                "pass None to use the combined reward"
            )
        values = rollout.rewards[:, rollout.reward_names.index(objective)].to(rollout.reward)  # [B]
    h = group_mean(_hardness(rollout, hardness_key), g, P)  # [P]: data-level hardness of each prompt
    gap = (reference - group_mean(values, g, P)).clamp(min=0)  # [P]: model-level responsiveness (reward gap)
    raw = 1 + hardness_weight * h + gap_weight * gap  # [P], >= 1
    # GRPO-S: normalise to mean 1 over the batch's prompts (keeps the reward scale), then clip
    scale = (raw / raw.mean()).clamp(min_scale, max_scale)  # [P]
    metrics = {
        "difficulty/scale_mean": scale.mean().item(),
        "difficulty/scale_min": scale.min().item(),
        "difficulty/scale_max": scale.max().item(),
        "difficulty/hardness_mean": h.mean().item(),
        "difficulty/gap_mean": gap.mean().item(),
    }
    return rollout.replace(reward=rollout.reward * scale[g]), metrics  # [B]
