"""The ``token_ids`` rollout strategy: completion token ids as a per-completion extra.

The trainer builds the :class:`~grpolab.core.types.Rollout` from masks, rewards and log-probs only; parts that
compare the *tokens* of completions (GTPO's conflict tokens, DaGRPO's edit-distance distinctiveness) read them
from ``rollout.extras["token_ids"]``, which this strategy writes. It samples nothing.

Put it *last* in a preset's ``rollout``: a strategy that appends completions after it (off-policy anchors,
continuations) would have to fill ``token_ids`` for its new rows.
"""

from __future__ import annotations

from dataclasses import replace

from grpolab.rollout.strategies import ROLLOUT_STRATEGIES, RolloutContext, Sampled


@ROLLOUT_STRATEGIES.register("token_ids")
def token_ids(ctx: RolloutContext, sampled: Sampled, *, key: str = "token_ids") -> tuple[Sampled, dict[str, float]]:
    """Copy ``sampled.gen.completion_ids`` (long [N, T], right-padded; padding positions hold the pad id and are
    masked) into ``sampled.extras[key]``, so selectors and advantages can compare completions token by token.

    Args:
        key: extras key to write; default ``"token_ids"`` (what ``SELECTORS["gtpo"]`` and ``ADVANTAGES["dagrpo"]``
            read).
    """
    if not isinstance(key, str) or not key:
        raise ValueError(f"token_ids: key must be a non-empty string, got {key!r}")
    ids = sampled.gen.completion_ids.long()  # [N, T]
    return replace(sampled, extras={**sampled.extras, key: ids}), {}
