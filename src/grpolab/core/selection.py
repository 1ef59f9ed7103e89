"""Selectors: which tokens (and so which completions) carry the policy gradient, and with what weight.

``SELECTORS`` entries share one signature::

    fn(rollout, advantages [B, T], **hparams) -> (advantages [B, T], keep bool [B, T], metrics)

A trainer runs them after the advantage and the filters, in order. ``keep`` narrows the loss mask: a token with
``keep`` False leaves the loss and its token counts, and a completion with no kept token leaves the batch. The
returned advantages replace the input ones, so a selector can also re-weight tokens (GTPO's conflict weights)
or whole completions (an entropy filter that zeroes an advantage).
"""

from __future__ import annotations

import torch
from torch import Tensor

from grpolab.core.registry import Registry
from grpolab.core.types import Rollout

SELECTORS = Registry("selector")


@SELECTORS.register("mask_prefix", requires=("prefix_len",))
def mask_prefix(
    rollout: Rollout, advantages: Tensor, *, key: str = "prefix_len"
) -> tuple[Tensor, Tensor, dict[str, float]]:
    """Keep out of the loss the first ``extras[key][i]`` tokens of completion i: tokens that were given, not
    sampled (the shared prefix of a continuation, a forced suffix). Completions without a prefix have 0.

    Args:
        key: extras key of a long tensor [B] of prefix lengths; default ``"prefix_len"`` (what
            ``RolloutContext.continue_from`` writes). A rollout without it has no given token (all 0, the value
            ``Sampled.append`` and the trainer fill it with), so every valid token is kept.

    >>> import torch
    >>> r = Rollout(group=torch.tensor([0, 0]), mask=torch.ones(2, 3, dtype=torch.bool),
    ...             reward=torch.zeros(2), extras={"prefix_len": torch.tensor([0, 2])})
    >>> mask_prefix(r, torch.ones(2, 3))[1].tolist()
    [[True, True, True], [False, False, True]]
    """
    if key in rollout.extras:
        prefix = rollout.extras[key].to(rollout.mask.device).long()  # [B]
    else:  # nothing was given: a batch no strategy wrote prefixes for
        prefix = torch.zeros(rollout.batch_size, dtype=torch.long, device=rollout.mask.device)  # [B]
    if prefix.shape != (rollout.batch_size,):
        raise ValueError(f"mask_prefix: extras[{key!r}] must be long [{rollout.batch_size}], got {list(prefix.shape)}")
    t = torch.arange(rollout.seq_len, device=rollout.mask.device)  # [T]
    keep = rollout.mask & (t[None, :] >= prefix[:, None])  # [B, T]
    given = (rollout.mask & ~keep).sum()
    return advantages, keep, {"prefix_token_frac": (given / rollout.mask.sum().clamp(min=1)).item()}
