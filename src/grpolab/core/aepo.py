"""AEPO: a REINFORCE regulariser on temperature-adjusted samples that holds the policy entropy near a target.

Arbitrary Entropy Policy Optimization Breaks The Exploration Bottleneck of Reinforcement Learning (Wang et al.,
arXiv 2510.08141; code 597358816/AEPO ``verl/trainer/ray_trainer.py``). The gradient is

    ∇J_AEPO = ∇J_GRPO + α · E_{o ~ π_θ^T} [ ∇log π_θ(o|q) · R(q, o) ],

where the second expectation is over completions sampled at a temperature T chosen from the policy entropy H:
T_high (1.2) while H ≤ H_target raises the entropy, T_low (0.8) above it lowers it. In the code the expectation is
formed from the *positive* completions of a re-sampled quarter of the prompts (GRPO advantage > 0.05), each given
advantage 1, and up to ``reinforce_sample_num`` (60) of them overwrite the first rows of the GRPO batch (half as
many while H > H_target); α is thus the share of those rows in the batch. The GRPO advantages of the batch are
computed *before* that overwrite, over the full groups.

This module holds the pure parts (temperature choice, positive selection, the regulariser count), the
``ADVANTAGES`` entry ``aepo`` and the ``FILTERS`` entry ``aepo_overwritten``; ``grpolab.rollout.aepo`` samples and
assembles the batch.
"""

from __future__ import annotations

import torch
from torch import Tensor

from grpolab.core.advantages import ADVANTAGES, grpo
from grpolab.core.filters import FILTERS
from grpolab.core.types import Rollout

#: extras key of the bool [B] flag the ``aepo`` rollout strategy writes: True for a regulariser row.
REINFORCE_KEY = "aepo_reinforce"
#: extras key of the bool [B] flag of the main rows the regulariser rows overwrite: they complete their groups'
#: GRPO statistics (the code normalises before the overwrite) and then leave the batch (filter ``aepo_overwritten``).
OVERWRITTEN_KEY = "aepo_overwritten"


def _check_temperatures(t_high: float, t_low: float) -> None:
    if not (t_high > 0 and t_low > 0):
        raise ValueError(f"aepo: temperatures must be > 0, got t_high={t_high}, t_low={t_low}; usually 1.2 and 0.8")


def choose_temperature(entropy: float | None, *, target: float = 0.5, t_high: float = 1.2, t_low: float = 0.8) -> float:
    """The sampling temperature of AEPO's regulariser batch from the policy entropy H (arXiv 2510.08141, §4).

    ``T = t_high`` if ``H ≤ target`` else ``t_low``: sampling hotter than the policy and reinforcing the positives
    pulls the entropy up, sampling colder pulls it down. The README writes ``H < H_target``; the official code
    (``ray_trainer.py``, ``if entropy <= entropy_base``) uses ``≤``, which is followed here. ``entropy=None`` (no
    measurement yet, the first step) counts as 0 as in the code (``entropy = 0`` before the loop), so the first
    step samples at ``t_high``.

    Args:
        entropy: H, the mean token entropy of the previous step (None before the first measurement).
        target: H_target (``entropy_base``); paper default 0.5, the README's best run 0.75; usually 0.3 to 1.0.
        t_high: temperature below the target; paper default 1.2 (usually 1.1 to 1.5).
        t_low: temperature above the target; paper default 0.8 (usually 0.5 to 0.9).

    >>> choose_temperature(0.3), choose_temperature(0.5), choose_temperature(0.9), choose_temperature(None)
    (1.2, 1.2, 0.8, 1.2)
    """
    _check_temperatures(t_high, t_low)
    h = 0.0 if entropy is None else float(entropy)
    return t_high if h <= target else t_low


def regularizer_count(num_positive: int, *, entropy: float | None, target: float = 0.5, limit: int = 60) -> int:
    """How many positive re-sampled completions join the batch: ``min(limit, num_positive)``, halved (floor)
    while ``H > target`` (code: ``min(reinforce_sample_num, len(positives)) // 2``).

    Args:
        num_positive: number of completions that passed the advantage threshold.
        entropy: H as in :func:`choose_temperature` (None counts as 0).
        target: H_target, paper default 0.5.
        limit: ``reinforce_sample_num``, paper default 60 (of 512 prompts x 5 = 2560 rows, about 2 %);
            the authors advise "as small as possible when entropy is controllable". Must be >= 0.

    >>> regularizer_count(75, entropy=0.2), regularizer_count(75, entropy=0.9), regularizer_count(7, entropy=0.9)
    (60, 30, 3)
    """
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise ValueError(f"aepo: reinforce_sample_num must be an int >= 0 (paper 60), got {limit!r}")
    k = min(limit, int(num_positive))
    h = 0.0 if entropy is None else float(entropy)
    return k // 2 if h > target else k


def select_positives(
    reward: Tensor, group: Tensor, *, valid: Tensor | None = None, threshold: float = 0.05, eps: float = 1e-6
) -> Tensor:
    """Indices (long [K], ascending) of the completions whose GRPO advantage exceeds ``threshold``.

    AEPO code ``_select_by_advantage(batch, threshold=0.05, absolute=False)`` on the GRPO advantages of the
    re-sampled batch: ``A_i = (r_i − mean_g r) / (std_g r + eps)`` (``core.advantages.grpo``: ddof 1, eps outside
    the root, a size-1 group gets 0). With a 0/1 reward these are exactly the correct answers of groups that are not
    all correct. Completions with ``valid`` False (the reward failed) are never selected.

    Args:
        reward: float [M] rewards of the re-sampled completions.
        group: long [M] their prompt groups (0..P-1, every id present; groups may be unequal).
        valid: bool [M] or None (all valid).
        threshold: minimum advantage, code default 0.05 (usually 0 to 0.1); positives only.
        eps: GRPO's eps, 1e-6 as in the code (EasyR1 ``compute_grpo_outcome_advantage``).

    Example: rewards [1, 0, 0, 0, 1] in groups [0, 0, 0, 0, 1] → advantages [1.5, −.5, −.5, −.5, 0] → [0].

    >>> select_positives(torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0]), torch.tensor([0, 0, 0, 0, 1])).tolist()
    [0]
    """
    if reward.dim() != 1 or group.shape != reward.shape:
        raise ValueError(
            f"select_positives: reward and group must be [M], got {list(reward.shape)} {list(group.shape)}"
        )
    ok = torch.ones_like(group, dtype=torch.bool) if valid is None else valid.to(group.device).bool()  # [M]
    index = ok.nonzero().flatten()  # [M']: a failed reward neither counts in a group's statistics nor is selected
    if index.numel() == 0:
        return index
    sub_group = torch.unique(group[index], return_inverse=True)[1]  # [M'] ids 0..P'-1
    mask = torch.ones(index.shape[0], 1, dtype=torch.bool, device=reward.device)  # [M', 1]
    adv = grpo(Rollout(group=sub_group, mask=mask, reward=reward[index].float()), eps=eps)[:, 0]  # [M']
    return index[adv > threshold]  # [K]: positives only (code: absolute=False)


def _flag(rollout: Rollout, key: str, who: str, *, required: bool) -> Tensor:
    """The bool [B] flag ``rollout.extras[key]`` (all False when it is optional and missing)."""
    B = rollout.batch_size
    flag = rollout.extras.get(key)
    if flag is None:
        if required:
            raise ValueError(
                f"{who}: rollout.extras[{key!r}] is missing; the 'aepo' rollout strategy writes it (bool [B])"
            )
        return torch.zeros(B, dtype=torch.bool, device=rollout.mask.device)  # [B]
    if not isinstance(flag, Tensor) or flag.shape != (B,):
        raise ValueError(f"{who}: rollout.extras[{key!r}] must be a bool tensor [B] = [{B}]")
    return flag.to(rollout.mask.device).bool()  # [B]


@ADVANTAGES.register("aepo", requires=(REINFORCE_KEY,))
def aepo(
    rollout: Rollout,
    *,
    key: str = REINFORCE_KEY,
    overwritten_key: str = OVERWRITTEN_KEY,
    reinforce_advantage: float = 1.0,
    scale: str = "group",
    ddof: int = 1,
    eps: float = 1e-6,
) -> Tensor:
    """AEPO advantage: GRPO for the batch's own completions, a constant for the regulariser rows; float [B, T].

    Arbitrary Entropy Policy Optimization (arXiv 2510.08141): the regulariser term ``E_{o~π^T}[∇log π · R]``
    is a REINFORCE gradient on positive temperature-adjusted samples, implemented in the code by setting their
    advantage to 1 (``torch.ones_like(advantages)``) inside the GRPO batch. Rows with ``extras[key]`` True get
    ``reinforce_advantage``; the others get ``core.advantages.grpo`` computed over the non-regulariser rows only
    (the regulariser rows take no part in any group mean or std).

    As in the code (``_compute_adv(batch)`` runs before ``concat([positives[:k], batch[k:]])``), the GRPO statistics
    are those of the full groups of the main batch: the main rows the regulariser rows overwrite
    (``extras[overwritten_key]`` True, written by the ``aepo`` strategy) still count in their groups' mean and std,
    so the surviving members of a partly overwritten group keep the advantages the code gives them. The overwritten
    rows themselves get 0 and leave the batch through the ``aepo_overwritten`` filter (filters run after the
    advantage). Without that extra every non-regulariser row is a survivor.

    Args:
        key: extras key of the bool [B] regulariser flag, default ``"aepo_reinforce"`` (the ``aepo`` strategy).
        overwritten_key: extras key of the bool [B] overwritten-row flag, default ``"aepo_overwritten"``; optional.
        reinforce_advantage: advantage of a regulariser row, paper 1.0 (the REINFORCE weight R = 1 of a correct
            sample); usually 1.
        scale, ddof, eps: GRPO options for the other rows, see ``core.advantages.grpo`` (code: group std, ddof 1,
            eps 1e-6).

    Example: groups [0, 0, 0, 0, 1], rewards [1, 0, 0, 0, 1], regulariser flags [F, F, F, F, T], row 0 overwritten
    → GRPO over the full group 0 (mean 0.25, std 0.5): rows 1-3 get −0.5, row 0 gets 0 (it leaves the batch), and
    row 4 gets 1.

    >>> r = Rollout(group=torch.tensor([0, 0, 0, 0, 1]), mask=torch.ones(5, 1, dtype=torch.bool),
    ...             reward=torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0]),
    ...             extras={REINFORCE_KEY: torch.tensor([False, False, False, False, True]),
    ...                     OVERWRITTEN_KEY: torch.tensor([True, False, False, False, False])})
    >>> [round(a, 4) for a in aepo(r)[:, 0].tolist()]
    [0.0, -0.5, -0.5, -0.5, 1.0]
    """
    flag = _flag(rollout, key, "aepo", required=True)  # [B]
    gone = _flag(rollout, overwritten_key, "aepo", required=False) & ~flag  # [B]
    out = torch.where(
        rollout.mask, torch.full_like(rollout.reward, reinforce_advantage)[:, None], 0.0
    )  # [B, T]: REINFORCE weight 1 on every valid token of a regulariser row
    main = ~flag  # [B]: the GRPO batch as sampled, overwritten rows included
    if bool(main.any()):
        sub = rollout.select(main)  # regulariser rows leave the group statistics; groups renumbered
        out[main] = grpo(sub, scale=scale, ddof=ddof, eps=eps).to(out)  # [B_main, T]
    return torch.where(gone[:, None], torch.zeros_like(out), out)  # [B, T]: overwritten rows carry no gradient


@FILTERS.register("aepo_overwritten", requires=(OVERWRITTEN_KEY,))
def aepo_overwritten(rollout: Rollout, *, key: str = OVERWRITTEN_KEY) -> tuple[Tensor, dict[str, float]]:
    """Drop the main rows AEPO's regulariser rows overwrite (arXiv 2510.08141; code ``concat([positives[:k],
    batch[k:]])``): keep ``~extras[key]``, bool [B].

    The ``aepo`` strategy keeps those rows in the rollout only so that the ``aepo`` advantage sees the full GRPO
    groups (filters run after the advantage); they are not trained, so the batch trains on P·G rows as in the code.

    Args:
        key: extras key of the bool [B] flag, default ``"aepo_overwritten"`` (the ``aepo`` strategy writes it).

    >>> r = Rollout(group=torch.tensor([0, 0]), mask=torch.ones(2, 1, dtype=torch.bool), reward=torch.zeros(2),
    ...             extras={OVERWRITTEN_KEY: torch.tensor([True, False])})
    >>> aepo_overwritten(r)[0].tolist()
    [False, True]
    """
    gone = _flag(rollout, key, "aepo_overwritten", required=True)  # [B]
    return ~gone, {"filter/aepo_overwritten_frac": gone.float().mean().item()}
