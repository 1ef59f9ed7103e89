"""T-PPO's Extended GAE (EGAE) and the window bookkeeping of truncated rollouts.

Truncated Proximal Policy Optimization (Fan et al., ByteDance Seed, arXiv 2506.15050). Verified in the abstract:
EGAE estimates advantages "derived from incomplete responses", the policy and the value model are optimised
independently, and prompt and truncated tokens are filtered. The formula below is from secondary summaries (the
project spec, §16; no official code exists): GAE over the tokens generated so far; an unfinished response, cut
after l tokens, bootstraps the missing value of the state after its last token with the value of its last
state, ``V(s_l) := V(s_{l−1})``, so its last TD error is ``δ_{l−1} = r_{l−1} + γ V(s_{l−1}) − V(s_{l−1})``; a
finished response gets standard GAE with its terminal (outcome) reward.
"""

from __future__ import annotations

import torch
from torch import Tensor

from grpolab.core.advantages import ADVANTAGES, _check_token_tensors, compute_gae, outcome_token_rewards
from grpolab.core.stats import masked_whiten
from grpolab.core.types import Rollout


def egae(
    token_rewards: Tensor, values: Tensor, mask: Tensor, truncated: Tensor, *, gamma: float, lam: float
) -> tuple[Tensor, Tensor]:
    """Extended GAE (T-PPO, arXiv 2506.15050, §3), unwhitened: ``(advantages [B, T], returns [B, T])``.

    ``δ_t = r_t + γ V_{t+1} − V_t`` and ``A_t = Σ_l (γλ)^l δ_{t+l}`` over the valid tokens of each row, as
    ``core.advantages.compute_gae`` (masked positions are skipped). The value after the last valid token is 0 for a
    finished row (terminal state: standard GAE) and ``V`` of the last valid token for a ``truncated`` row (EGAE's
    ``V(s_l) := V(s_{l−1})``). Implemented by adding ``γ · V_last`` to the reward of the last valid token of each
    truncated row and calling ``compute_gae``, which is the same δ. ``returns = A + V``.

    Args:
        token_rewards: float [B, T] (the outcome reward on a finished row's last token, dense rewards elsewhere);
            values at masked positions are ignored.
        values: float [B, T] critic values at rollout time; masked positions ignored.
        mask: bool [B, T], every row with at least one valid token.
        truncated: bool [B], True for a response that has not ended (``rollout.truncated``; after the ``windows``
            strategy: cut by a window and to be continued; without it, also a response that hit max_new_tokens,
            which is then bootstrapped as a time-limit cut).
        gamma: discount, default for LMs 1.0 (usually 0.99 to 1.0); in [0, 1].
        lam: GAE λ (usually 0.9 to 1.0); in [0, 1].

    Worked example (γ = λ = 1): r = [0, 0, 0], V = [0.2, 0.5, 0.4]. Finished: δ = [0.3, −0.1, −0.4] → A = [−0.2,
    −0.5, −0.4] (= −V). Truncated: the last δ becomes 0 + 0.4 − 0.4 = 0 → A = [0.2, −0.1, 0].

    >>> r, v = torch.zeros(2, 3), torch.tensor([[0.2, 0.5, 0.4]] * 2)
    >>> adv, _ = egae(r, v, torch.ones(2, 3, dtype=torch.bool), torch.tensor([False, True]), gamma=1.0, lam=1.0)
    >>> [[round(a, 4) for a in row] for row in adv.tolist()]
    [[-0.2, -0.5, -0.4], [0.2, -0.1, 0.0]]
    """
    _check_token_tensors("egae", mask, token_rewards=token_rewards, values=values)
    B, T = mask.shape
    if truncated.dtype != torch.bool or truncated.shape != (B,):
        raise ValueError(f"egae: truncated must be bool [B] = [{B}], got {truncated.dtype} {list(truncated.shape)}")
    if not bool(mask.any(dim=-1).all()):
        raise ValueError("egae: every row needs at least one valid token")
    t = torch.arange(T, device=mask.device)  # [T]
    last = torch.where(mask, t, -1).max(dim=-1).values  # [B] last valid position
    v = torch.where(mask, values.to(token_rewards), torch.zeros_like(token_rewards))  # [B, T]
    v_last = v.gather(1, last[:, None]).squeeze(1)  # [B]
    # EGAE: an unfinished row bootstraps V(s_l) := V(s_{l−1}); compute_gae puts V = 0 past the last token, so
    # adding γ·V_last to the last reward gives δ_{l−1} = r + γ V(s_{l−1}) − V(s_{l−1}) exactly
    boot = torch.where(truncated.to(mask.device), gamma * v_last, torch.zeros_like(v_last))  # [B]
    rew = torch.where(mask, token_rewards, torch.zeros_like(token_rewards))  # [B, T]: padding may hold NaN
    rew = rew.scatter_add(1, last[:, None], boot[:, None])  # [B, T]
    return compute_gae(rew, values, mask, gamma=gamma, lam=lam)


@ADVANTAGES.register("egae", requires=("value",))
def egae_advantage(
    rollout: Rollout,
    *,
    gamma: float = 1.0,
    lam: float = 0.95,
    whiten: bool = True,
    ddof: int = 1,
    eps: float = 1e-8,
    truncated_reward: bool = False,
    prefix_key: str | None = "prefix_len",
) -> Tensor:
    """T-PPO's EGAE advantage from the critic values ``rollout.value``, float [B, T] (arXiv 2506.15050).

    :func:`egae` over the valid tokens with ``rollout.truncated`` as the unfinished flag, then whitened over the
    trained tokens of the batch (``stats.masked_whiten``, unbiased variance, eps inside the root, as the ``gae``
    entry). A finished row gets exactly the ``gae`` entry's unwhitened advantage.

    Args:
        gamma: discount, default 1.0 (LM PPO; T-PPO's value not recovered); in [0, 1].
        lam: GAE λ, default 0.95 (LM PPO; T-PPO's value not recovered); in [0, 1].
        whiten: batch-level whitening, default True (as the ``gae`` entry).
        ddof, eps: of the whitening variance; defaults 1 and 1e-8 (verl).
        truncated_reward: place a truncated row's outcome reward on its last token. Default False: a response that
            has not ended has no reward yet (the task's score of an unfinished text is not a return); dense
            ``rollout.token_reward`` (e.g. a KL penalty) counts on every row either way.
        prefix_key: extras key of a long [B] count of given (not sampled this step) leading tokens, as the window
            strategy writes (``"prefix_len"``); those tokens leave the whitening statistics and get advantage 0
            (they are trained in the step that sampled them; ``mask_prefix`` drops them from the loss). None or a
            missing key: every valid token counts.

    Example (γ = λ = 1, no whitening): V constant over a truncated window with zero rewards → every δ is 0 → A = 0.
    """
    if rollout.value is None:
        raise ValueError("egae: rollout.value is None; EGAE needs critic values [B, T] (a preset with value_loss)")
    truncated = rollout.truncated
    assert truncated is not None  # Rollout fills it (all False) when not given
    tok_reward = rollout.reward
    if not truncated_reward:
        # an unfinished response has not been rewarded yet: only its dense token rewards count
        tok_reward = torch.where(truncated, torch.zeros_like(tok_reward), tok_reward)  # [B]
    tok = outcome_token_rewards(rollout, tok_reward)  # [B, T]
    adv, _ = egae(tok, rollout.value, rollout.mask, truncated, gamma=gamma, lam=lam)  # [B, T]
    trained = rollout.mask  # [B, T]
    if prefix_key is not None and prefix_key in rollout.extras:
        prefix = rollout.extras[prefix_key].to(rollout.mask.device).long()  # [B]
        if prefix.shape != (rollout.batch_size,):
            raise ValueError(f"egae: extras[{prefix_key!r}] must be long [B] = [{rollout.batch_size}]")
        t = torch.arange(rollout.seq_len, device=rollout.mask.device)  # [T]
        trained = rollout.mask & (t[None, :] >= prefix[:, None])  # [B, T]: the tokens sampled this step
    if whiten:
        if not bool(trained.any()):
            return torch.zeros_like(adv)  # [B, T]
        adv = masked_whiten(adv, trained, ddof=ddof, eps=eps)  # [B, T]
    return torch.where(trained, adv, torch.zeros_like(adv))  # [B, T]


# ---------------------------------------------------------------------------------------------- windows
def window_length(max_len: int, *, window: float) -> int:
    """Tokens a response may advance per step: ``max(1, min(max_len, round(window · max_len)))`` (T-PPO's window l).

    ``round`` is Python's: a half rounds to the even neighbour (``round(2.5) = 2``, ``round(1.5) = 2``).

    Args:
        max_len: the generation limit of a whole response (the run's max_new_tokens).
        window: l as a fraction of ``max_len``, in (0, 1]; 1 gives plain PPO rollouts.

    >>> window_length(4, window=0.25), window_length(100, window=0.3), window_length(3, window=0.01)
    (1, 30, 1)
    """
    if not 0.0 < window <= 1.0:
        raise ValueError(f"window must be a fraction of max_len in (0, 1], got {window}")
    if max_len < 1:
        raise ValueError(f"max_len must be >= 1, got {max_len}")
    return max(1, min(max_len, round(window * max_len)))


def unfinished(lengths: Tensor, truncated: Tensor, *, max_len: int) -> Tensor:
    """Responses to continue at the next step, bool [B]: not ended (``truncated``: no EOS / stop string) and shorter
    than ``max_len`` (a response at the limit is over, truncated for good).

    >>> unfinished(torch.tensor([2, 4, 2]), torch.tensor([True, True, False]), max_len=4).tolist()
    [True, False, False]
    """
    return truncated.bool() & (lengths < max_len)  # [B]
