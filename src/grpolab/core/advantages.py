"""Advantage estimators: from a :class:`~grpolab.core.types.Rollout` to a per-token advantage [B, T].

Every entry of ``ADVANTAGES`` has the signature ``fn(rollout, *, <hyper-parameters>) -> Tensor`` and returns a
float [B, T] tensor that is 0 at masked positions (padding and tool-output tokens). Sequence-level estimators
(grpo, dr_grpo, rloo, remax) compute one number per completion and broadcast it to every valid token;
token-level estimators (reinforce_pp, gae) run a backward recursion over the valid tokens of each completion.

Conventions shared by the token-level estimators:

- The outcome reward ``rollout.reward`` sits on the last valid token (``rollout.last_index``);
  ``rollout.token_reward`` (PRM scores, a KL-in-reward penalty written by a shaping step) is added on top.
- Masked positions inside a completion (tool output between two turns) are *skipped* by the recursion: the
  "next" step of a valid token is the next valid token, and discounting counts valid steps only.
- Whitening is batch-level over all valid tokens with ``stats.masked_whiten`` (unbiased variance, eps inside
  the root, as verl's ``masked_whiten``).

>>> import torch
>>> from grpolab.core.types import Rollout
>>> r = Rollout(group=torch.tensor([0, 0, 0, 0]), mask=torch.ones(4, 2, dtype=torch.bool),
...             reward=torch.tensor([1.0, 0.0, 0.0, 0.0]))
>>> ADVANTAGES["dr_grpo"](r)[:, 0].tolist()
[0.75, -0.25, -0.25, -0.25]
"""

from __future__ import annotations

import torch
from torch import Tensor

from grpolab.core.registry import Registry
from grpolab.core.stats import group_count, group_mean, group_std, masked_whiten
from grpolab.core.types import Rollout

ADVANTAGES = Registry("advantage")

GRPO_SCALES = ("group", "batch", "none")
REINFORCE_PP_BASELINES = ("none", "group")


# ---------------------------------------------------------------------------------------------- checks
def _check_eps(name: str, eps: float) -> None:
    if not eps > 0:
        raise ValueError(f"{name}: eps must be > 0 (it keeps the division finite), got {eps}; usually 1e-8 to 1e-4")


def _check_ddof(name: str, ddof: int, allowed: tuple[int, ...] | None = None) -> None:
    if isinstance(ddof, bool) or not isinstance(ddof, int) or ddof < 0:
        raise ValueError(f"{name}: ddof must be a non-negative int (1 = Bessel's correction), got {ddof!r}")
    if allowed is not None and ddof not in allowed:
        raise ValueError(f"{name}: ddof must be one of {list(allowed)}, got {ddof!r}")


def _check_unit(name: str, what: str, x: float) -> None:
    if not 0.0 <= x <= 1.0:
        raise ValueError(f"{name}: {what} must be in [0, 1], got {x}")


def _check_token_tensors(name: str, mask: Tensor, **tensors: Tensor) -> None:
    if mask.dtype != torch.bool or mask.dim() != 2:
        raise ValueError(f"{name}: mask must be bool [B, T], got {mask.dtype} {list(mask.shape)}")
    for key, x in tensors.items():
        if x.shape != mask.shape:
            raise ValueError(f"{name}: {key} must be [B, T] = {list(mask.shape)} like mask, got {list(x.shape)}")
        if not x.is_floating_point():
            raise ValueError(f"{name}: {key} must be floating point, got {x.dtype}")


def _broadcast(adv: Tensor, mask: Tensor) -> Tensor:
    """A sequence-level advantage [B] copied to every valid token, 0 elsewhere: [B, T]."""
    return torch.where(mask, adv[:, None], torch.zeros((), dtype=adv.dtype, device=adv.device))  # [B, T]


# ---------------------------------------------------------------------------------------------- helpers
def outcome_token_rewards(rollout: Rollout, reward: Tensor | None = None) -> Tensor:
    """Token rewards [B, T]: the outcome reward on the last valid token plus ``rollout.token_reward``.

    ``reward`` (float [B]) overrides ``rollout.reward`` (REINFORCE++-baseline passes the group-centred reward).
    Positions where ``rollout.mask`` is False are 0, whatever ``token_reward`` holds there.

    >>> import torch
    >>> from grpolab.core.types import Rollout
    >>> r = Rollout(group=torch.tensor([0, 0]), mask=torch.tensor([[1, 1, 0], [1, 0, 1]]).bool(),
    ...             reward=torch.tensor([1.0, 2.0]), token_reward=torch.full((2, 3), 0.5))
    >>> outcome_token_rewards(r).tolist()
    [[0.5, 1.5, 0.0], [0.5, 0.0, 2.5]]
    """
    if reward is None:
        reward = rollout.reward  # [B]
    elif not isinstance(reward, Tensor) or reward.shape != (rollout.batch_size,) or not reward.is_floating_point():
        got = f"{reward.dtype} {list(reward.shape)}" if isinstance(reward, Tensor) else type(reward).__name__
        raise ValueError(f"outcome_token_rewards: reward must be float [B] = [{rollout.batch_size}], got {got}")
    mask = rollout.mask  # [B, T]
    tok = torch.zeros(mask.shape, dtype=reward.dtype, device=reward.device)  # [B, T]
    tok.scatter_(1, rollout.last_index[:, None], reward[:, None])  # [B, T]: outcome on the last valid token
    if rollout.token_reward is not None:
        tok = tok + torch.where(mask, rollout.token_reward.to(tok), torch.zeros_like(tok))  # [B, T]
    return torch.where(mask, tok, torch.zeros_like(tok))  # [B, T]


def discounted_returns(token_rewards: Tensor, mask: Tensor, *, gamma: float) -> Tensor:
    """Reward-to-go ``G_t = Σ_{s ≥ t, valid} γ^{k(s, t)} r_s`` over valid positions, [B, T].

    ``k(s, t)`` counts valid steps from t to s: masked positions (tool output, padding) are skipped, neither
    adding reward nor discounting. Output is 0 at masked positions. A Python loop over T, vectorised over B.

    Args:
        token_rewards: float [B, T]; values at masked positions are ignored.
        mask: bool [B, T].
        gamma: discount, paper default 1.0 for language models (usually 0.99 to 1.0); in [0, 1].

    >>> import torch
    >>> discounted_returns(torch.tensor([[1.0, 9.0, 0.0, 2.0]]), torch.tensor([[1, 0, 1, 1]]).bool(),
    ...                    gamma=0.5).tolist()
    [[1.5, 0.0, 1.0, 2.0]]
    """
    _check_token_tensors("discounted_returns", mask, token_rewards=token_rewards)
    _check_unit("discounted_returns", "gamma", gamma)
    rew = torch.where(mask, token_rewards, torch.zeros_like(token_rewards))  # [B, T]: padding may hold NaN
    out = torch.zeros_like(rew)  # [B, T]
    running = torch.zeros_like(rew[:, 0])  # [B]
    for t in reversed(range(rew.shape[1])):
        valid = mask[:, t]  # [B]
        # a masked step leaves the running return untouched: it is skipped, not discounted
        running = torch.where(valid, rew[:, t] + gamma * running, running)  # [B]
        out[:, t] = torch.where(valid, running, torch.zeros_like(running))  # [B]
    return out  # [B, T]


def compute_gae(
    token_rewards: Tensor, values: Tensor, mask: Tensor, *, gamma: float, lam: float
) -> tuple[Tensor, Tensor]:
    """Generalized Advantage Estimation, unwhitened: ``(advantages [B, T], returns [B, T])``.

    High-Dimensional Continuous Control Using Generalized Advantage Estimation (Schulman et al., arXiv
    1506.02438), eq. 16: ``δ_t = r_t + γ V_{t+1} − V_t``, ``A_t = Σ_l (γλ)^l δ_{t+l}``; ``returns = A + V`` (the
    λ-return, the PPO value-loss target). Over valid positions only: the next value of a valid token is the value
    of the next *valid* token, and 0 past the last one (the completion ends there: terminal state). Masked
    positions are skipped by the recursion and are 0 in both outputs. A Python loop over T, vectorised over B.

    Args:
        token_rewards: float [B, T]; values at masked positions are ignored.
        values: float [B, T] critic values at rollout time; values at masked positions are ignored.
        mask: bool [B, T].
        gamma: discount, paper default for LMs 1.0 (usually 0.99 to 1.0); in [0, 1].
        lam: GAE λ, PPO-for-LMs default 0.95 (usually 0.9 to 1.0); λ = 0 gives the TD error δ_t, λ = 1 the
            Monte-Carlo return minus V_t; in [0, 1].

    Worked example (γ = 0.9, λ = 0.8, γλ = 0.72): r = [0, 0, 1], V = [0.5, 0.4, 0.8] → δ = [−0.14, 0.32, 0.2],
    A = [0.19408, 0.464, 0.2], returns = [0.69408, 0.864, 1.0].

    >>> import torch
    >>> adv, ret = compute_gae(torch.tensor([[0.0, 0.0, 1.0]]), torch.tensor([[0.5, 0.4, 0.8]]),
    ...                        torch.ones(1, 3, dtype=torch.bool), gamma=0.9, lam=0.8)
    >>> [round(a, 5) for a in adv[0].tolist()], [round(a, 5) for a in ret[0].tolist()]
    ([0.19408, 0.464, 0.2], [0.69408, 0.864, 1.0])
    """
    _check_token_tensors("compute_gae", mask, token_rewards=token_rewards, values=values)
    _check_unit("compute_gae", "gamma", gamma)
    _check_unit("compute_gae", "lam", lam)
    zero = torch.zeros_like(token_rewards)  # [B, T]
    rew = torch.where(mask, token_rewards, zero)  # [B, T]: padding may hold NaN
    val = torch.where(mask, values.to(rew), zero)  # [B, T]
    adv = torch.zeros_like(rew)  # [B, T]
    next_value = torch.zeros_like(rew[:, 0])  # [B]: V past the last valid token is 0 (terminal)
    running = torch.zeros_like(rew[:, 0])  # [B]: A of the next valid token
    for t in reversed(range(rew.shape[1])):
        valid = mask[:, t]  # [B]
        delta = rew[:, t] + gamma * next_value - val[:, t]  # [B]
        # masked steps keep (next_value, running) as they are, so the recursion jumps over tool output
        running = torch.where(valid, delta + gamma * lam * running, running)  # [B]
        next_value = torch.where(valid, val[:, t], next_value)  # [B]
        adv[:, t] = torch.where(valid, running, zero[:, t])  # [B]
    returns = torch.where(mask, adv + val, zero)  # [B, T]
    return adv, returns


# ---------------------------------------------------------------------------------------------- registered
@ADVANTAGES.register("grpo")
def grpo(rollout: Rollout, *, scale: str = "group", ddof: int = 1, eps: float = 1e-6) -> Tensor:
    """GRPO group-normalised advantage, broadcast to every valid token: float [B, T].

    DeepSeekMath: Pushing the Limits of Mathematical Reasoning in Open Language Models (arXiv 2402.03300), §4.1.2
    outcome supervision: ``A_i = (r_i − mean_g r) / (s + eps)`` with the mean over the completion's own group g.

    Args:
        scale: what ``s`` is. ``"group"`` (paper): std of the own group. ``"batch"``: std of all B rewards while
            the mean stays the group mean (TRL's ``scale_rewards="batch"``). ``"none"``: no division at all
            (``s + eps`` replaced by 1; this is Dr. GRPO, see ``dr_grpo``).
        ddof: delta degrees of freedom of the std, 1 (default, Bessel's correction as TRL and verl) or 0. A group
            of size <= ddof gets std 0; a size-1 group then has ``r_i − mean = 0`` so ``A = 0`` (verl instead
            gives a lone completion mean 0 and std 1, so ``A = r / (1 + eps)``). Larger ddof is
            refused: a group of size 2..ddof would get std 0 and an advantage ``(r_i − mean) / eps``.
        eps: added to the std *outside* the root, default 1e-6 (verl uses 1e-6, TRL 1e-4); usually 1e-6 to
            1e-4. A zero-variance group has ``r_i − mean = 0`` exactly, so its advantage is 0 for any eps.

    Hand check (one group): rewards [1, 0, 0, 0] → mean 0.25, std (ddof 1) 0.5 → [1.5, −0.5, −0.5, −0.5].

    >>> import torch
    >>> from grpolab.core.types import Rollout
    >>> r = Rollout(group=torch.tensor([0, 0, 0, 0]), mask=torch.ones(4, 1, dtype=torch.bool),
    ...             reward=torch.tensor([1.0, 0.0, 0.0, 0.0]))
    >>> [round(a, 4) for a in grpo(r)[:, 0].tolist()]
    [1.5, -0.5, -0.5, -0.5]
    """
    if scale not in GRPO_SCALES:
        raise ValueError(f"grpo: scale must be one of {list(GRPO_SCALES)}, got {scale!r}")
    _check_ddof("grpo", ddof, allowed=(0, 1))
    _check_eps("grpo", eps)
    r, g, P = rollout.reward, rollout.group, rollout.num_groups  # [B], [B], int
    centred = r - group_mean(r, g, P)[g]  # [B]
    if scale == "group":
        s = group_std(r, g, P, ddof=ddof)[g]  # [B]
        adv = centred / (s + eps)  # [B]: eps outside the root
    elif scale == "batch":
        # one "group" holding the whole batch: the std of all B rewards (0 when B <= ddof)
        s = group_std(r, torch.zeros_like(g), 1, ddof=ddof)  # [1]
        adv = centred / (s + eps)  # [B]
    else:
        adv = centred  # [B]: Dr. GRPO modification: no std division (removes the question-difficulty bias)
    return _broadcast(adv, rollout.mask)  # [B, T]


@ADVANTAGES.register("dr_grpo")
def dr_grpo(rollout: Rollout) -> Tensor:
    """Dr. GRPO advantage ``A_i = r_i − mean_g r``, broadcast to every valid token: float [B, T].

    Understanding R1-Zero-Like Training: A Critical Perspective (Liu et al., arXiv 2503.20783), §3.2: GRPO without
    the division by the group std, which biases updates towards too-easy and too-hard questions. Equals
    ``grpo(rollout, scale="none")``. A size-1 group gets 0.

    Hand check: rewards [1, 0, 0, 0] (one group) → mean 0.25 → [0.75, −0.25, −0.25, −0.25].
    """
    r, g, P = rollout.reward, rollout.group, rollout.num_groups  # [B], [B], int
    adv = r - group_mean(r, g, P)[g]  # [B]
    return _broadcast(adv, rollout.mask)  # [B, T]


@ADVANTAGES.register("rloo")
def rloo(rollout: Rollout) -> Tensor:
    """REINFORCE Leave-One-Out advantage, broadcast to every valid token: float [B, T].

    Back to Basics: Revisiting REINFORCE Style Optimization for Learning from Human Feedback in LLMs (Ahmadian et
    al., arXiv 2402.14740), eq. 5: the baseline of sample i is the mean reward of the *other* samples of its group,
    ``A_i = r_i − mean_{j≠i} r_j = n_g / (n_g − 1) · (r_i − mean_g r)``. A size-1 group has no other sample and
    gets 0 (verl gives it ``A = r``). No std normalisation (the paper found it hurt).

    Hand check: rewards [1, 0, 0, 0] (one group) → [1 − 0, 0 − 1/3, ...] = [1, −1/3, −1/3, −1/3].

    >>> import torch
    >>> from grpolab.core.types import Rollout
    >>> r = Rollout(group=torch.tensor([0, 0, 0, 0]), mask=torch.ones(4, 1, dtype=torch.bool),
    ...             reward=torch.tensor([1.0, 0.0, 0.0, 0.0]))
    >>> [round(a, 4) for a in rloo(r)[:, 0].tolist()]
    [1.0, -0.3333, -0.3333, -0.3333]
    """
    r, g, P = rollout.reward, rollout.group, rollout.num_groups  # [B], [B], int
    n = group_count(g, P).to(r)[g]  # [B]
    centred = r - group_mean(r, g, P)[g]  # [B]
    # leave-one-out rescaling n/(n-1); a size-1 group has no baseline, so its advantage is 0
    adv = torch.where(n > 1, centred * n / (n - 1).clamp(min=1), torch.zeros_like(r))  # [B]
    return _broadcast(adv, rollout.mask)  # [B, T]


@ADVANTAGES.register("remax", requires=("greedy_reward",))
def remax(rollout: Rollout, *, baseline_key: str = "greedy_reward") -> Tensor:
    """ReMax advantage ``A_i = r_i − r(greedy decode of i's prompt)``, broadcast to every valid token: [B, T].

    ReMax: A Simple, Effective, and Efficient Reinforcement Learning Method for Aligning Large Language Models
    (Li et al., arXiv 2310.10505), Algorithm 1: the baseline is the reward of the greedy completion of the same
    prompt. With an outcome reward the reward-to-go ``R_t(y) − r(ȳ)`` is the same on every token.

    Args:
        baseline_key: key of ``rollout.extras`` holding a float tensor [B]: for each completion, the reward of
            the greedy decode of its prompt (the rollout engine fills it). Default ``"greedy_reward"``.

    Example: rewards [1.0, 0.2], greedy rewards [0.5, 1.0] → [0.5, −0.8].
    """
    B = rollout.batch_size
    base = rollout.extras.get(baseline_key)
    if base is None:
        raise ValueError(
            f"remax: rollout.extras[{baseline_key!r}] is missing; it must be a float tensor [B] = [{B}] holding the "
            f"reward of the greedy decode of each completion's prompt (have: {sorted(rollout.extras)})"
        )
    if not isinstance(base, Tensor) or base.shape != (B,) or not base.is_floating_point():
        got = f"{base.dtype} {list(base.shape)}" if isinstance(base, Tensor) else type(base).__name__
        raise ValueError(f"remax: rollout.extras[{baseline_key!r}] must be a float tensor [B] = [{B}], got {got}")
    if not bool(torch.isfinite(base).all()):
        raise ValueError(f"remax: rollout.extras[{baseline_key!r}] holds NaN or inf")
    adv = rollout.reward - base.to(rollout.reward)  # [B]
    return _broadcast(adv, rollout.mask)  # [B, T]


@ADVANTAGES.register("reinforce_pp")
def reinforce_pp(
    rollout: Rollout,
    *,
    gamma: float = 1.0,
    baseline: str = "none",
    whiten: bool = True,
    ddof: int = 1,
    eps: float = 1e-8,
) -> Tensor:
    """REINFORCE++ advantage: whitened discounted reward-to-go over valid tokens, float [B, T].

    REINFORCE++: Stabilizing Critic-Free Policy Optimization with Global Normalization (Hu et al., arXiv
    2501.03262), §3: token rewards = outcome reward on the last valid token (``outcome_token_rewards``), return
    ``G_t = Σ_{s ≥ t} γ^{k(s, t)} r_s`` over valid positions (``discounted_returns``: masked positions are skipped
    and ``k`` counts valid steps), then global batch normalisation ``(G − mean) / sqrt(var + eps)`` over all
    valid tokens of the batch (``stats.masked_whiten``, unbiased variance with ``ddof``, eps inside the root).

    KL is NOT handled here: the paper's KL-in-reward is a separate shaping step that writes the ``−β·KL_t``
    penalty into ``rollout.token_reward`` before this estimator runs; ``token_reward`` is added to the token
    rewards as is.

    Args:
        gamma: discount, paper default 1.0 (usually 0.99 to 1.0); in [0, 1].
        baseline: ``"none"`` (paper) or ``"group"`` (REINFORCE++-baseline: the outcome reward r_i is first replaced
            by ``r_i − mean_g r``, the mean over the completion's own group).
        whiten: batch-level whitening of the returns, default True (paper).
        ddof: of the whitening variance, default 1 (unbiased, verl).
        eps: inside the whitening root, default 1e-8 (verl's ``masked_whiten``); usually 1e-8 to 1e-5.

    Worked example (unwhitened, γ = 0.5): mask [1, 0, 1, 1], token_reward [0.5, ·, 0, 0.5], reward 0.5 → token
    rewards [0.5, 0, 0, 1.0] → G = [0.5 + 0.5·0.5, 0, 0.5·1.0, 1.0] = [0.75, 0, 0.5, 1.0].
    """
    if baseline not in REINFORCE_PP_BASELINES:
        raise ValueError(f"reinforce_pp: baseline must be one of {list(REINFORCE_PP_BASELINES)}, got {baseline!r}")
    _check_unit("reinforce_pp", "gamma", gamma)
    _check_ddof("reinforce_pp", ddof)
    _check_eps("reinforce_pp", eps)
    r = rollout.reward  # [B]
    if baseline == "group":
        # REINFORCE++-baseline: centre the outcome reward within its group before computing returns
        r = r - group_mean(r, rollout.group, rollout.num_groups)[rollout.group]  # [B]
    tok = outcome_token_rewards(rollout, r)  # [B, T]
    ret = discounted_returns(tok, rollout.mask, gamma=gamma)  # [B, T]
    if whiten:
        # REINFORCE++ global advantage normalisation over all valid tokens of the batch
        ret = masked_whiten(ret, rollout.mask, ddof=ddof, eps=eps)  # [B, T]
    return ret  # [B, T]


@ADVANTAGES.register("gae", requires=("value",))
def gae(
    rollout: Rollout,
    *,
    gamma: float = 1.0,
    lam: float = 0.95,
    whiten: bool = True,
    ddof: int = 1,
    eps: float = 1e-8,
) -> Tensor:
    """GAE advantage from the critic values ``rollout.value``, float [B, T] (PPO).

    High-Dimensional Continuous Control Using Generalized Advantage Estimation (Schulman et al., arXiv
    1506.02438), eq. 16, via ``compute_gae`` on ``outcome_token_rewards(rollout)``: ``δ_t = r_t + γ V_{t+1} − V_t``
    (V past the last valid token = 0; masked positions skipped, the next of a valid token is the next valid
    token), ``A_t = Σ_l (γλ)^l δ_{t+l}``, then whitened over all valid tokens of the batch (``stats.masked_whiten``,
    unbiased variance, eps inside the root). The value-loss target (returns = A + V, unwhitened) comes from
    ``compute_gae`` directly. As in ``reinforce_pp``, KL-in-reward is a separate shaping step that writes into
    ``rollout.token_reward`` before this runs.

    Args:
        gamma: discount, default 1.0 as PPO for language models (usually 0.99 to 1.0); in [0, 1].
        lam: GAE λ, default 0.95 as PPO for language models (usually 0.9 to 1.0); in [0, 1].
        whiten: batch-level whitening of the advantages, default True.
        ddof: of the whitening variance, default 1 (unbiased, verl).
        eps: inside the whitening root, default 1e-8 (verl); usually 1e-8 to 1e-5.
    """
    if rollout.value is None:
        raise ValueError("gae: rollout.value is None; GAE needs critic values [B, T] (use a value model, or grpo/rloo)")
    _check_unit("gae", "gamma", gamma)
    _check_unit("gae", "lam", lam)
    _check_ddof("gae", ddof)
    _check_eps("gae", eps)
    tok = outcome_token_rewards(rollout)  # [B, T]
    adv, _ = compute_gae(tok, rollout.value, rollout.mask, gamma=gamma, lam=lam)  # [B, T]
    if whiten:
        adv = masked_whiten(adv, rollout.mask, ddof=ddof, eps=eps)  # [B, T]
    return adv  # [B, T]
