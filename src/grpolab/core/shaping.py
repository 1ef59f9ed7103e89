"""Reward shaping: functions that turn a Rollout's rewards into shaped ones before advantages are computed.

``SHAPING`` entries share one signature, ``fn(rollout, **hparams) -> (Rollout, metrics)``, and return a new
Rollout (the input is never changed). They run after scoring and before the advantage estimator.

Parameters named ``max_len`` are the run's generation limit (``max_new_tokens``); a trainer supplies them.
"""

from __future__ import annotations

import torch

from grpolab.core.checks import check_number
from grpolab.core.kl import kl_estimate
from grpolab.core.registry import Registry
from grpolab.core.stats import group_max, group_mean, group_min, masked_mean
from grpolab.core.types import Rollout

SHAPING = Registry("reward shaping")


@SHAPING.register("overlong")
def overlong(
    rollout: Rollout,
    *,
    max_len: int,
    cache_len: int | None = None,
    cache_fraction: float = 0.2,
    factor: float = 1.0,
) -> tuple[Rollout, dict[str, float]]:
    """DAPO's soft overlong punishment (DAPO, arXiv 2503.14476, Eq. 13), added to ``reward``.

    With L_exp = max_len − cache_len and L = the completion's length (its number of valid tokens):
    R_len = 0 if L ≤ L_exp; (L_exp − L) / cache_len · factor if L_exp < L ≤ max_len; −factor beyond max_len.

    Args:
        max_len: L_max, the generation limit (DAPO: 20480 = 16384 + 4096). Supplied by the trainer.
        cache_len: L_cache, the soft-penalty zone before the limit (DAPO: 4096). Default: ``cache_fraction``
            of ``max_len`` rounded, so presets stay meaningful at any generation limit.
        cache_fraction: used when ``cache_len`` is None; DAPO's ratio is 4096 / 20480 = 0.2 (usually 0.1 to 0.3).
        factor: penalty at the limit (DAPO: 1.0, the size of a correct/incorrect reward gap of ±1).

    Example (the spec's hand check): max_len 20, cache_len 4, a completion of 18 tokens → reward − 0.5.
    """
    if max_len <= 0:
        raise ValueError(f"overlong: max_len must be positive, got {max_len}")
    if cache_len is None:
        if not 0 < cache_fraction <= 1:
            raise ValueError(f"overlong: cache_fraction must be in (0, 1], got {cache_fraction}")
        cache_len = max(1, round(cache_fraction * max_len))
    if not 0 < cache_len <= max_len:
        raise ValueError(f"overlong: cache_len must be in (0, max_len={max_len}], got {cache_len}")
    length = rollout.lengths.to(rollout.reward.dtype)  # [B]
    expected = max_len - cache_len
    soft = (expected - length) / cache_len * factor  # [B], negative inside the cache zone
    penalty = torch.where(length <= expected, torch.zeros_like(soft), soft)  # [B]
    penalty = torch.where(length > max_len, torch.full_like(soft, -factor), penalty)  # [B]
    metrics = {
        "overlong/penalty_mean": penalty.mean().item(),
        "overlong/frac_penalised": (penalty < 0).float().mean().item(),
    }
    return rollout.replace(reward=rollout.reward + penalty), metrics


@SHAPING.register("kl_reward", requires=("old_logp", "ref_logp"))
def kl_reward(
    rollout: Rollout,
    *,
    coef: float,
    estimator: str = "k1",
    level: str = "token",
) -> tuple[Rollout, dict[str, float]]:
    """Subtract β·KL(π_old‖π_ref) from the rewards (KL in the reward, as in InstructGPT PPO and REINFORCE++).

    The per-token estimate uses the behaviour log-probs ``old_logp`` and ``ref_logp`` (no gradient flows: it is
    a reward). ``level="token"`` writes −β·kl_t into ``token_reward`` (added to any dense reward already there;
    PPO / REINFORCE++, arXiv 2501.03262); ``level="sequence"`` subtracts β·Σ_t kl_t from the scalar ``reward``
    (RLOO, arXiv 2402.14740, treats the whole completion as one action).

    Args:
        coef: β. Usually 0.001 to 0.1 (REINFORCE++: 0.01; InstructGPT-style PPO: 0.02 to 0.05).
        estimator: "k1" (the usual choice in the reward; unbiased), "k2" or "k3".
        level: "token" or "sequence".
    """
    if rollout.old_logp is None or rollout.ref_logp is None:
        raise ValueError("kl_reward needs rollout.old_logp and rollout.ref_logp (load a reference model)")
    if coef < 0:
        raise ValueError(f"kl_reward: coef must be >= 0, got {coef}")
    if level not in ("token", "sequence"):
        raise ValueError(f"kl_reward: level must be 'token' or 'sequence', got {level!r}")
    mask = rollout.mask  # [B, T]
    kl = kl_estimate(rollout.old_logp, rollout.ref_logp, estimator=estimator, mask=mask).detach()  # [B, T]
    metrics = {
        "kl_reward/kl_token_mean": masked_mean(kl, mask).item(),
        "kl_reward/kl_seq_mean": kl.sum(-1).mean().item(),
    }
    if level == "sequence":
        return rollout.replace(reward=rollout.reward - coef * kl.sum(dim=-1)), metrics  # [B]
    dense = torch.zeros_like(kl) if rollout.token_reward is None else rollout.token_reward  # [B, T]
    dense = torch.where(mask, dense - coef * kl, torch.zeros_like(kl))  # [B, T]
    return rollout.replace(token_reward=dense), metrics


@SHAPING.register("group_length_reward")
def group_length_reward(rollout: Rollout, *, coef: float = 0.1) -> tuple[Rollout, dict[str, float]]:
    """A group-relative length reward added to ``reward`` (Kimi k1.5, arXiv 2501.12599, §2.3.3 "length penalty"),
    the length penalty of the ``rubric_env`` preset (Baichuan-M2's dynamic length reward, whose exact form was not
    read: this published form stands in for it).

    With L_i the completion's number of valid tokens (model tokens: environment tokens are masked out) and the min
    and max over its group g::

        λ_i = 0.5 − (L_i − min_g L) / (max_g L − min_g L)      (λ_i = 0 when all lengths of the group are equal)
        r_i ← r_i + coef · λ_i            if r_i ≥ mean_g r   (a good-enough answer: shorter earns more)
        r_i ← r_i + coef · min(0, λ_i)    otherwise           (a poor answer is only penalised for being long)

    Kimi gates on correctness (r = 1); for graded rubric rewards the gate is "at least its group's mean" (our
    choice), which equals Kimi's gate for 0/1 rewards in a group holding both.

    Args:
        coef: weight of the length reward (default 0.1, ours: ±0.05 at most against rubric rewards in [−1, 1];
            usually 0.05 to 0.5; 0 turns it off).

    Hand check (one group): rewards [1, 1, 0], lengths [2, 4, 4] → λ = [0.5, −0.5, −0.5] → with coef 1:
    [1.5, 0.5, −0.5].

    >>> r = Rollout(group=torch.tensor([0, 0, 0]), mask=torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1], [1, 1, 1, 1]]).bool(),
    ...             reward=torch.tensor([1.0, 1.0, 0.0]))
    >>> group_length_reward(r, coef=1.0)[0].reward.tolist()
    [1.5, 0.5, -0.5]
    """
    check_number("coef", coef, minimum=0.0, where="group_length_reward")
    g, P = rollout.group, rollout.num_groups  # [B], int
    length = rollout.lengths.to(rollout.reward.dtype)  # [B]
    low, high = group_min(length, g, P)[g], group_max(length, g, P)[g]  # [B], [B]
    spread = high - low  # [B]
    lam = torch.where(spread > 0, 0.5 - (length - low) / spread.clamp(min=1.0), torch.zeros_like(length))  # [B]
    good = rollout.reward >= group_mean(rollout.reward, g, P)[g]  # [B]: Kimi's "correct", for graded rewards
    bonus = coef * torch.where(good, lam, lam.clamp(max=0.0))  # [B]
    metrics = {
        "length_reward/mean": bonus.mean().item(),
        "length_reward/frac_penalised": (bonus < 0).float().mean().item(),
    }
    return rollout.replace(reward=rollout.reward + bonus), metrics
