"""The data contract: one batch of completions, as every core part sees it.

B completions drawn from P prompts (B = sum of the group sizes; groups may be unequal and need not be
contiguous), T token positions of completion (right padding). ``Rollout(...)`` validates on construction and
raises ``RolloutError`` with a message naming the field for anything the core parts cannot handle.

>>> import torch
>>> r = Rollout(
...     group=torch.tensor([0, 0, 1]),                                  # [B]
...     mask=torch.tensor([[1, 1, 0], [1, 0, 0], [1, 1, 1]]).bool(),    # [B, T]
...     reward=torch.tensor([1.0, 0.0, 0.5]),                           # [B]
... )
>>> r.num_groups, r.group_sizes.tolist(), r.lengths.tolist()
(2, [2, 1], [2, 1, 3])
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

TOKEN_FIELDS = ("old_logp", "ref_logp", "token_reward", "value")


class RolloutError(ValueError):
    """A Rollout was built from tensors that break the data contract."""


@dataclass(frozen=True, eq=False)
class Rollout:
    """One batch of B completions from P prompts.

    Fields (shapes in brackets):

    - ``group`` long [B]: index 0..P-1 of the prompt each completion belongs to; every index in 0..P-1 occurs.
    - ``mask`` bool [B, T]: completion tokens that count (False for padding and tool-output tokens); every row
      has at least one True.
    - ``reward`` float [B]: combined scalar (outcome) reward, finite.
    - ``rewards`` float [B, K] and ``reward_names`` (K strings): per-objective rewards, optional.
    - ``old_logp`` float [B, T]: behaviour-policy log-probs at rollout time (needed by ratio losses).
    - ``ref_logp`` float [B, T]: reference-model log-probs, optional (KL terms).
    - ``token_reward`` float [B, T]: dense rewards *in addition to* ``reward``, which advantage estimators place
      on the last valid token (PRM scores, KL-in-reward penalties, segment rewards), optional.
    - ``value`` float [B, T]: critic values at rollout time, optional (PPO, T-PPO).
    - ``truncated`` bool [B]: the completion hit the length limit; defaults to all False.
    - ``extras`` dict: anything else (tool-call counts, off-policy flags, budgets, ReMax's greedy reward ...).
      Tensors whose first dimension is B are per-completion and are sliced by :meth:`select`; other values are
      carried unchanged.

    Token fields must be finite where ``mask`` is True; their values at padding are ignored.
    """

    group: Tensor  # [B] long
    mask: Tensor  # [B, T] bool
    reward: Tensor  # [B] float
    rewards: Tensor | None = None  # [B, K] float
    reward_names: tuple[str, ...] = ()
    old_logp: Tensor | None = None  # [B, T] float
    ref_logp: Tensor | None = None  # [B, T] float
    token_reward: Tensor | None = None  # [B, T] float
    value: Tensor | None = None  # [B, T] float
    truncated: Tensor | None = None  # [B] bool
    extras: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _validate(self)
        if self.truncated is None:
            object.__setattr__(self, "truncated", torch.zeros_like(self.group, dtype=torch.bool))  # [B]
        object.__setattr__(self, "reward_names", tuple(self.reward_names))

    # ------------------------------------------------------------------ derived sizes
    @property
    def batch_size(self) -> int:
        """B, the number of completions."""
        return self.group.shape[0]

    @property
    def seq_len(self) -> int:
        """T, the padded number of completion token positions."""
        return self.mask.shape[1]

    @property
    def num_groups(self) -> int:
        """P, the number of prompts."""
        return int(self.group.max().item()) + 1

    @property
    def group_sizes(self) -> Tensor:
        """Number of completions of each prompt, long [P]."""
        return torch.bincount(self.group, minlength=self.num_groups)  # [P]

    @property
    def lengths(self) -> Tensor:
        """Number of valid (unmasked) tokens of each completion, long [B]."""
        return self.mask.sum(dim=-1)  # [B]

    @property
    def last_index(self) -> Tensor:
        """Position of the last valid token of each completion, long [B]."""
        t = torch.arange(self.seq_len, device=self.mask.device)  # [T]
        return torch.where(self.mask, t, -1).max(dim=-1).values  # [B]

    # ------------------------------------------------------------------ derived rollouts
    def replace(self, **changes: Any) -> Rollout:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def select(self, keep: Tensor) -> Rollout:
        """The completions where ``keep`` (bool [B]) is True, with group ids renumbered to 0..P'-1 in order."""
        if keep.dtype != torch.bool or keep.shape != self.group.shape:
            raise RolloutError(f"select: keep must be bool [{self.batch_size}], got {keep.dtype} {list(keep.shape)}")
        if not bool(keep.any()):
            raise RolloutError("select: keep is all False; a Rollout needs at least one completion")
        old_group = self.group[keep]  # [B']
        present = torch.zeros(self.num_groups, dtype=torch.bool, device=keep.device)  # [P]
        present[old_group] = True
        new_id = torch.cumsum(present.long(), dim=0) - 1  # [P]
        sliced: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Tensor):
                sliced[f.name] = value[keep]
        extras = {
            k: (v[keep] if isinstance(v, Tensor) and v.dim() > 0 and v.shape[0] == self.batch_size else v)
            for k, v in self.extras.items()
        }
        sliced["group"] = new_id[old_group]  # [B']
        return dataclasses.replace(self, extras=extras, **sliced)


def _validate(r: Rollout) -> None:
    def fail(msg: str) -> None:
        raise RolloutError(f"Rollout: {msg}")

    for name in ("group", "mask", "reward"):
        if not isinstance(getattr(r, name), Tensor):
            fail(f"{name} must be a torch.Tensor, got {type(getattr(r, name)).__name__}")
    if r.group.dim() != 1:
        fail(f"group must be 1-D [B], got shape {list(r.group.shape)}")
    if r.group.dtype not in (torch.int64, torch.int32):
        fail(f"group must hold integer prompt indices (long), got {r.group.dtype}")
    B = r.group.shape[0]
    if B == 0:
        fail("the batch is empty (B = 0)")
    if r.mask.dtype != torch.bool:
        fail(f"mask must be bool [B, T], got {r.mask.dtype}; convert with mask.bool()")
    if r.mask.dim() != 2 or r.mask.shape[0] != B:
        fail(f"mask must be [B, T] with B = {B} (from group), got shape {list(r.mask.shape)}")
    T = r.mask.shape[1]
    device = r.group.device
    for name in ("mask", "reward", "rewards", "truncated", *TOKEN_FIELDS):
        value = getattr(r, name)
        if value is not None and (not isinstance(value, Tensor) or value.device != device):
            where = value.device if isinstance(value, Tensor) else type(value).__name__
            fail(f"{name} must be a tensor on {device} like group, got {where}")

    # group ids: 0..P-1, every one present
    if bool((r.group < 0).any()):
        fail(f"group ids must be 0..P-1, found negative ids {sorted(set(r.group[r.group < 0].tolist()))}")
    P = int(r.group.max().item()) + 1
    missing = (torch.bincount(r.group, minlength=P) == 0).nonzero().flatten().tolist()
    if missing:
        fail(f"group ids must be 0..P-1 with every prompt present; ids {missing[:10]} of 0..{P - 1} are missing")

    empty = (~r.mask.any(dim=-1)).nonzero().flatten().tolist()
    if empty:
        fail(f"completions {empty[:10]} have no unmasked token; drop them (Rollout.select) or fix the mask")

    if r.reward.shape != (B,):
        fail(f"reward must be [B] = [{B}], got shape {list(r.reward.shape)}")
    if not r.reward.is_floating_point():
        fail(f"reward must be floating point, got {r.reward.dtype}")
    bad = (~torch.isfinite(r.reward)).nonzero().flatten().tolist()
    if bad:
        fail(f"reward is NaN or inf at completions {bad[:10]}: {r.reward[bad[:10]].tolist()}")

    if r.rewards is not None:
        if r.rewards.dim() != 2 or r.rewards.shape[0] != B:
            fail(f"rewards must be [B, K] with B = {B}, got shape {list(r.rewards.shape)}")
        if len(r.reward_names) != r.rewards.shape[1]:
            fail(f"reward_names must name the {r.rewards.shape[1]} columns of rewards, got {list(r.reward_names)}")
        if not bool(torch.isfinite(r.rewards).all()):
            fail("rewards (per objective) hold NaN or inf")
    elif r.reward_names:
        fail("reward_names given without rewards")

    for name in TOKEN_FIELDS:
        value = getattr(r, name)
        if value is None:
            continue
        if value.shape != (B, T):
            fail(f"{name} must be [B, T] = [{B}, {T}] like mask, got shape {list(value.shape)}")
        if not value.is_floating_point():
            fail(f"{name} must be floating point, got {value.dtype}")
        if not bool(torch.isfinite(value[r.mask]).all()):
            fail(f"{name} holds NaN or inf at unmasked tokens")

    if r.truncated is not None and (r.truncated.shape != (B,) or r.truncated.dtype != torch.bool):
        fail(f"truncated must be bool [B] = [{B}], got {r.truncated.dtype} {list(r.truncated.shape)}")
    if not isinstance(r.extras, dict):
        fail(f"extras must be a dict, got {type(r.extras).__name__}")
