"""DR-PO's dataset reset: which prompt groups restart from a reference response, and how long the roll-in is.

Dataset Reset Policy Optimization for RLHF (Chang, Zhan, Oertell, Brantley, Misra, Lee, Sun; arXiv 2404.08495).
DR-PO is PPO on a learned reward model whose rollouts start from *reset states* taken inside offline preferred
responses y*: the first h tokens of y* are forced ("rolled in") and the policy generates the rest. The official
code (github.com/Cornell-RL/drpo, ``src/tldr/drpo.py``; the ``RollinProcessor`` it imports lives in
github.com/Cornell-RL/tril, ``src/tril/utils/logit_processors.py``) draws, per batch row:

- with probability ``beta`` (default 1.0: always) a reset, else an ordinary rollout from the prompt
  (``rng.choice([True, False], p=[beta, 1 - beta])`` per row);
- the roll-in length h uniformly from {1, ..., L − 1}, L = the reference's token count up to its first pad (it ends
  with EOS here): ``rng.choice`` over the first L − 1 rows of a lower-triangular 0/1 matrix, row k forcing k + 1
  tokens. So at least one token is forced and at least the last one (EOS) is left to the policy; a reference of
  fewer than 2 tokens gets no roll-in (h = 0).

These functions take the uniform draws as input (the strategy ``dataset_reset`` draws them from its seeded
generator), so they are deterministic and hand-checkable.
"""

from __future__ import annotations

import torch
from torch import Tensor


def _check_uniform(name: str, u: Tensor) -> None:
    if not isinstance(u, Tensor) or not u.is_floating_point() or u.dim() != 1:
        raise ValueError(f"{name}: u must be a float tensor [n] of uniform draws in [0, 1)")
    if u.numel() and (bool((u < 0).any()) or bool((u >= 1).any())):
        raise ValueError(f"{name}: u must lie in [0, 1) (torch.rand draws), got min {u.min():.3g} max {u.max():.3g}")


def reset_groups(u: Tensor, *, reset_prob: float = 1.0) -> Tensor:
    """Which prompt groups are reset, bool [P]: group p is reset when ``u[p] < reset_prob``.

    DR-PO (arXiv 2404.08495) mixes reset rollouts with ordinary ones; the code's ``beta`` is the reset
    probability per batch row (one completion per prompt there). Here the draw is per prompt group, so a group is
    either all reset rollouts or all ordinary ones.

    Args:
        u: float [P] uniform draws in [0, 1), one per group.
        reset_prob: probability of a reset, the code's ``beta``; default 1.0 (always reset, the code's default);
            in [0, 1], usually 0.5 to 1.0 (0 gives plain PPO).

    >>> reset_groups(torch.tensor([0.1, 0.5, 0.9]), reset_prob=0.5).tolist()
    [True, False, False]
    """
    if isinstance(reset_prob, bool) or not isinstance(reset_prob, (int, float)) or not 0.0 <= reset_prob <= 1.0:
        raise ValueError(f"reset_groups: reset_prob must be a probability in [0, 1], got {reset_prob!r}")
    _check_uniform("reset_groups", u)
    return u < reset_prob  # [P]: the code's rng.choice([True, False], p=[beta, 1 - beta])


def rollin_lengths(ref_len: Tensor, u: Tensor, *, min_rollin: int = 1) -> Tensor:
    """Roll-in length h of each reset rollout, long [M]: uniform on {min_rollin, ..., L − 1} for a reference of
    L ≥ min_rollin + 1 tokens (L counts its final EOS), 0 for a shorter one.

    With ``min_rollin`` = 1 (default) this is the DR-PO code's ``RollinProcessor`` (arXiv 2404.08495,
    github.com/Cornell-RL/tril): ``rng.choice(length_masks[: length - 1])``, row k of the lower-triangular mask
    forcing k + 1 tokens, so h is uniform on {1, ..., L − 1}, and a reference of L < 2 tokens gets no roll-in.
    ``h = min_rollin + floor(u · (L − min_rollin))`` maps a uniform draw u ∈ [0, 1) onto the allowed values with
    equal probability. At least the last reference token (EOS) is left to the policy, so every reset rollout
    samples at least one token.

    Args:
        ref_len: long [M] reference lengths L (tokens, EOS included).
        u: float [M] uniform draws in [0, 1), one per reset rollout (per completion: the code draws per row).
        min_rollin: shortest roll-in; default 1 (the code: at least one reference token is forced, so the policy's
            first token is never trained on a reset row); 0 adds the prompt itself as a reset state (our option, for
            short answers whose first token decides them). Usually 0 or 1.

    Worked example: L = 5, u = 0.6 -> 1 + floor(0.6 · 4) = 3 tokens forced; L = 1 -> 0; with min_rollin = 0,
    L = 5, u = 0.1 -> floor(0.5) = 0 (a plain rollout from the prompt).

    >>> rollin_lengths(torch.tensor([5, 5, 1, 2]), torch.tensor([0.0, 0.6, 0.7, 0.99])).tolist()
    [1, 3, 0, 1]
    >>> rollin_lengths(torch.tensor([5, 5, 1]), torch.tensor([0.1, 0.6, 0.7]), min_rollin=0).tolist()
    [0, 3, 0]
    """
    if isinstance(min_rollin, bool) or not isinstance(min_rollin, int) or min_rollin < 0:
        raise ValueError(f"rollin_lengths: min_rollin must be an int >= 0 (usually 0 or 1), got {min_rollin!r}")
    if not isinstance(ref_len, Tensor) or ref_len.dim() != 1 or ref_len.is_floating_point():
        raise ValueError("rollin_lengths: ref_len must be an integer tensor [M] of reference lengths")
    _check_uniform("rollin_lengths", u)
    if u.shape != ref_len.shape:
        raise ValueError(f"rollin_lengths: u {list(u.shape)} and ref_len {list(ref_len.shape)} must match")
    if bool((ref_len < 0).any()):
        raise ValueError("rollin_lengths: reference lengths must be >= 0")
    ref_len = ref_len.long()  # [M]
    span = (ref_len - min_rollin).clamp(min=0).to(torch.float64)  # [M]: number of allowed lengths min..L − 1
    h = min_rollin + torch.floor(u.to(torch.float64) * span).long()  # [M]: uniform on {min_rollin, ..., L − 1}
    h = torch.minimum(h, ref_len - 1)  # [M]: guard a u rounding up to 1 in float32
    return torch.where(ref_len >= min_rollin + 1, h, torch.zeros_like(h))  # [M]: too short: no roll-in (code: L < 2)
