"""The ``polychromic_vines`` rollout strategy: vine sampling for Polychromic PPO (set RL).

Polychromic Objectives for Reinforcement Learning (arXiv 2509.25424). The math (state choice, set sampling,
diversity, set and marginal advantages) is in :mod:`grpolab.core.polychromic`; this module only samples.
"""

from __future__ import annotations

from dataclasses import replace

import torch

from grpolab.core.polychromic import choose_vine_states, outcome_ids, sample_subsets, set_scores
from grpolab.rollout.strategies import ROLLOUT_STRATEGIES, RolloutContext, Sampled, cut_to_limit


@ROLLOUT_STRATEGIES.register("polychromic_vines")
def polychromic_vines(
    ctx: RolloutContext,
    sampled: Sampled,
    *,
    num_states: int = 1,
    num_continuations: int = 8,
    num_sets: int = 8,
    set_size: int = 4,
    max_len: int,
) -> tuple[Sampled, dict[str, float]]:
    """Vine sampling: pick ``num_states`` rollout states per prompt along the batch's trajectories
    (``choose_vine_states``), sample ``num_continuations`` on-policy continuations from each in ONE
    ``ctx.continue_from`` call, draw ``num_sets`` random subsets of size ``set_size`` per state
    (``sample_subsets``; torch's global RNG, so a seeded run is reproducible), give every continuation an outcome id
    (its stripped text, ``outcome_ids``) and append the continuations to the batch with the extras the
    ``polychromic`` advantage reads (``poly_state``, ``poly_outcome``, ``poly_member``, ``prefix_len``). Ordinary
    rows get state -1, no set and prefix 0; continuations keep their prompt's group, and their ``prefix_len`` keeps
    the given prefix out of the loss with the ``mask_prefix`` selector.

    A vine state is a state of the same episode, so a continuation from it runs under the same horizon: at most
    ``max_len`` completion tokens in total, prefix included (one call samples up to ``max_len − shallowest cut`` new
    tokens; continuations from deeper states that run past ``max_len`` are cut back to it, marked truncated and
    scored again), exactly as an ordinary rollout that reached the limit.

    Args:
        num_states: p, rollout states per prompt; usually 1 to 4 (the paper's p is not recovered; our choice).
        num_continuations: N per state; recalled paper value 8 (unverified); usually 4 to 16.
        num_sets: M per state; usually N or more; our choice (not recovered from the paper).
        set_size: n <= N; recalled paper value 4 (unverified); usually 2 to 8.
        max_len: the run's generation limit (supplied by the trainer).

    Metrics: ``poly_continuations``, ``poly_set_score`` (mean f_poly), ``poly_set_diversity`` (mean distinct
    fraction of a state's N continuations).
    """
    gen = sampled.gen
    dev = sampled.reward.device
    N = sampled.size
    P = int(sampled.group.max().item()) + 1
    lengths = gen.completion_mask.sum(-1).to(dev)  # [N]
    index, cut = choose_vine_states(lengths, sampled.group.to(dev), P, num_states=num_states)  # [K], [K]
    member = sample_subsets(
        index.numel(), num_continuations, num_sets=num_sets, set_size=set_size
    )  # [K, Nc, M] (validates n <= N before any sampling)
    # the horizon of the episode: a continuation holds at most max_len tokens, its given prefix included
    vines = ctx.continue_from(
        sampled, index, cut, num_continuations, max_new_tokens=max_len - int(cut.min())
    )  # K * Nc rows, state-major
    vines = cut_to_limit(ctx, vines, max_len)
    K = index.numel()
    state = torch.arange(K, device=dev).repeat_interleave(num_continuations)  # [K * Nc]
    outcome = outcome_ids(vines.gen.texts, state)  # [K * Nc]
    vine_member = member.reshape(K * num_continuations, num_sets).to(dev)  # [K * Nc, M]
    main_extras = {
        **sampled.extras,
        "poly_state": torch.full((N,), -1, dtype=torch.long, device=dev),  # [N]
        "poly_outcome": torch.full((N,), -1, dtype=torch.long, device=dev),  # [N]
        "poly_member": torch.zeros(N, num_sets, dtype=torch.bool, device=dev),  # [N, M]
        "prefix_len": torch.zeros(N, dtype=torch.long, device=dev),  # [N]
    }
    vine_extras = {
        "poly_state": state,
        "poly_outcome": outcome,
        "poly_member": vine_member,
        "prefix_len": vines.extras["prefix_len"].to(dev).long(),  # [K * Nc]
    }
    out = replace(sampled, extras=main_extras).append(replace(vines, extras=vine_extras), ctx.pad_id)
    score, size = set_scores(vines.reward, state, outcome, vine_member, K)  # [K, M]
    distinct = torch.tensor([torch.unique(outcome[state == k]).numel() / num_continuations for k in range(K)])  # [K]
    metrics = {
        "poly_continuations": float(K * num_continuations),
        "poly_set_score": score[size > 0].mean().item(),
        "poly_set_diversity": distinct.float().mean().item(),
    }
    return out, metrics
