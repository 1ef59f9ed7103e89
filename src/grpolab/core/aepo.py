"""AEPO: a REINFORCE regulariser on temperature-adjusted samples that holds the policy entropy near a target.

Arbitrary Entropy Policy Optimization Breaks The Exploration Bottleneck of Reinforcement Learning (Wang et al.,
arXiv 2510.08141; code 597358816/AEPO ``verl/trainer/ray_trainer.py``). The gradient is

    ∇J_AEPO = ∇J_GRPO + α · E_{o ~ π_θ^T} [ ∇log π_θ(o|q) · R(q, o) ],

where the second expectation is over completions sampled at a temperature T chosen from the policy entropy H:
T_high (1.2) while H ≤ H_target raises the entropy, T_low (0.8) above it lowers it. In the code the expectation is
formed from the *positive* completions of a re-sampled quarter of the prompts (GRPO advantage > 0.05), each given
advantage 1, and up to ``reinforce_sample_num`` (60) of them overwrite the first rows of the GRPO batch (half as
many while H > H_target); α is thus the share of those rows in the batch.

This module holds the pure parts (temperature choice, positive selection, the regulariser count) and the
``ADVANTAGES`` entry ``aepo``; ``grpolab.rollout.aepo`` samples and assembles the batch.
"""

from __future__ import annotations

import torch
from torch import Tensor

from grpolab.core.advantages import ADVANTAGES, grpo
from grpolab.core.types import Rollout

#: extras key of the bool [B] flag the ``aepo`` rollout strategy writes: True for a regulariser row.
REINFORCE_KEY = "aepo_reinforce"


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


@ADVANTAGES.register("aepo", requires=(REINFORCE_KEY,))
def aepo(
    rollout: Rollout,
    *,
    key: str = REINFORCE_KEY,
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

    Convention choice: the code computes the GRPO advantages of the main batch *before* the regulariser rows
    overwrite its first rows, so the surviving members of a partly overwritten group keep advantages normalised
    with the overwritten members. Here the survivors are normalised among themselves (the rewards of overwritten
    rows are gone). This touches at most one group per step (the paper: 1 of 512).

    Args:
        key: extras key of the bool [B] regulariser flag, default ``"aepo_reinforce"`` (the ``aepo`` strategy).
        reinforce_advantage: advantage of a regulariser row, paper 1.0 (the REINFORCE weight R = 1 of a correct
            sample); usually 1.
        scale, ddof, eps: GRPO options for the other rows, see ``core.advantages.grpo`` (code: group std, ddof 1,
            eps 1e-6).

    Example: groups [0, 0, 0, 1], rewards [1, 0, 0, 1], flags [F, F, F, T] → GRPO over rows 0-2 gives
    [1/√(1/3)·(2/3), ...] = [1.1547, −0.5774, −0.5774] and row 3 gets 1.
    """
    flag = rollout.extras.get(key)
    B = rollout.batch_size
    if flag is None:
        raise ValueError(f"aepo: rollout.extras[{key!r}] is missing; the 'aepo' rollout strategy writes it (bool [B])")
    if not isinstance(flag, Tensor) or flag.shape != (B,):
        raise ValueError(f"aepo: rollout.extras[{key!r}] must be a bool tensor [B] = [{B}]")
    flag = flag.to(rollout.mask.device).bool()  # [B]
    out = torch.where(
        rollout.mask, torch.full_like(rollout.reward, reinforce_advantage)[:, None], 0.0
    )  # [B, T]: REINFORCE weight 1 on every valid token of a regulariser row
    main = ~flag  # [B]
    if bool(main.any()):
        sub = rollout.select(main)  # regulariser rows leave the group statistics; groups renumbered
        out[main] = grpo(sub, scale=scale, ddof=ddof, eps=eps).to(out)  # [B_main, T]
    return out  # [B, T]
