"""CGPO: a mixture of judges, the calibrated reward and three constrained RLHF optimizers (CRPG, CODPO, CRRAFT).

Paper: "The Perfect Blend: Redefining RLHF with Mixture of Judges" (Xu et al., arXiv 2409.20370), Sec. 3 (single
task, single objective); the formulas follow the TRL ``CGPOTrainer`` pull request (huggingface/trl #2190,
``cgpo_trainer.py`` / ``cgpo_config.py``), read for facts. Per prompt x the policy samples k responses; every
response y gets

- a judgement J(x, y) ∈ {0, 1}: 1 when EVERY judge passes it (rule judges, LLM judges; reward functions that return
  0/1, see ``grpolab.rewards.judges``);
- a calibrated reward R_cal(x, y) = σ(r(x, y) − r(x, ȳ)), where r is the reward model and ȳ the reference (dataset)
  completion of x, so R_cal = 0.5 when y scores like the reference;
- a sequence log-ratio KL(y) = Σ_t (log π(y_t) − log π_ref(y_t)) (the summed k1 of the sampled response, as TRL's
  ``completion_logprobs - ref_logprobs``), with π the behaviour policy at rollout time.

How the parts fit the trainer (the same pipeline as every preset):

1. ROLLOUT_STRATEGIES ``cgpo_baseline`` (``grpolab.rollout.cgpo``) scores ȳ, the task's reference answer, with the
   task's reward functions and writes ``extras["baseline_reward"]`` [B] (the combined reward of ȳ) and
   ``extras["baseline_rewards"]`` [B, K] (each function's value) for every completion of the prompt; with
   ``append=True`` it also appends ȳ as one off-policy completion per prompt, marked ``extras["baseline_row"]``,
   for CRRAFT's fallback. Without the strategy r(x, ȳ) = 0, so R_cal = σ(r).
2. SHAPING ``cgpo_judges`` (this module, whole batch, before any mini-batch split) reads the reward columns: which
   are judges and which is the reward model (``judges=[names]``, ``reward=name``; the defaults below work on a task
   with a single reward column: no judge, J = 1, r = ``rollout.reward``), computes J, R_cal and KL, and from them
   the per-completion targets of the three optimizers (so every batch-wide statistic is exact whatever the split):
   ``extras["cgpo_crpg"]``, ``extras["cgpo_crraft"]``, ``extras["cgpo_codpo"]``, plus the whole-batch counts that
   normalise the losses (``extras["cgpo_counts"]``). It sets ``rollout.reward`` to J·R_cal (logged; read by a
   non-CGPO loss if one is swapped in).
3. POLICY_LOSSES ``crpg``, ``codpo``, ``crraft`` (this module) turn those targets into the loss; the preset picks
   ``crraft`` (TRL's default ``rlhf_optimizer``); ``--loss crpg`` or ``--loss codpo`` switches.

Normalisers and micro-batches. The paper's normalisers are whole-batch counts (CRPG: the completion tokens; CRRAFT:
the selected responses; CODPO: the prompts with a pair). The shaping counts them on the whole batch; a loss call on a
part of it divides by ``count · n_call / n_batch``, where ``n_call`` is the trainer's ``num_tokens`` (CRPG) or
``num_seqs`` (CRRAFT, CODPO) of the mini-batch and ``n_batch`` the same count at shaping time. With one mini-batch per
step (the trainer's default) ``n_call = n_batch``: micro-batch (``grad_accum``) losses then sum exactly to the batch
loss. With several mini-batches each one is normalised by its expected share of the count.

>>> import torch
>>> from grpolab.core.types import Rollout
>>> r = Rollout(group=torch.tensor([0, 0]), mask=torch.ones(2, 1, dtype=torch.bool), reward=torch.tensor([2.0, 0.0]),
...             rewards=torch.tensor([[2.0, 1.0], [0.0, 0.0]]), reward_names=("rm", "judge_format"),
...             old_logp=torch.zeros(2, 1), ref_logp=torch.zeros(2, 1),
...             extras={"baseline_reward": torch.tensor([2.0, 2.0]),
...                     "baseline_rewards": torch.tensor([[2.0, 1.0]] * 2)})
>>> shaped, m = SHAPING["cgpo_judges"](r, kl_threshold=10.0)
>>> shaped.extras["cgpo_judge"].tolist(), shaped.extras["cgpo_calibrated"].tolist()   # σ(2 − 2) = 0.5
([1.0, 0.0], [0.5, 0.11920291930437088])
>>> shaped.extras["cgpo_crraft"].tolist(), shaped.extras["cgpo_codpo"].tolist()     # best passing; pair (0, 1)
([0.5, 0.0], [1, 2])
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from grpolab.core.checks import check_number
from grpolab.core.discriminative import _check_aggregation
from grpolab.core.losses import POLICY_LOSSES, _prepare
from grpolab.core.shaping import SHAPING
from grpolab.core.stats import group_max, group_sum, masked_sum
from grpolab.core.types import Rollout

Count = float | int | Tensor | None

#: A reward column whose name starts with this is a judge when ``judges`` is left to its default (the judges of
#: ``grpolab.rewards.judges`` are named ``judge_format``, ``judge_answer``, ``judge_llm`` ...).
JUDGE_PREFIX = "judge_"
#: Extras written by the ``cgpo_baseline`` rollout strategy: the combined reward of the reference completion ȳ of
#: each completion's prompt [B], each reward function's value on it [B, K], and the marker of appended ȳ rows [B].
BASELINE_REWARD, BASELINE_REWARDS, BASELINE_ROW = "baseline_reward", "baseline_rewards", "baseline_row"
#: Extras written by the ``cgpo_judges`` shaping.
JUDGE_KEY, REWARD_KEY, CALIBRATED_KEY, KL_KEY = "cgpo_judge", "cgpo_reward", "cgpo_calibrated", "cgpo_kl"
CRPG_KEY, CRRAFT_KEY, CODPO_KEY, COUNTS_KEY = "cgpo_crpg", "cgpo_crraft", "cgpo_codpo", "cgpo_counts"
#: Bits of ``extras["cgpo_codpo"]``: the completion is its prompt's chosen (1) and/or rejected (2) response.
CHOSEN, REJECTED = 1, 2


# ---------------------------------------------------------------------------------------------------- columns
def judge_columns(
    reward_names: Sequence[str], *, judges: Sequence[str] | None = None, reward: str | None = None
) -> tuple[list[int], int | None]:
    """Which reward columns are judges and which one is the reward model: ``(judge indices, reward index)``.

    - ``judges=None`` (default): every column whose name starts with ``"judge_"``; ``judges=[]``: no judge (J = 1);
      a list of names: exactly those columns (a name that is not a column raises ``ValueError``).
    - ``reward=None`` (default): with no judge column, ``None``, meaning "use ``rollout.reward``", the task's
      combined reward (a task with a single reward column: that column); with judges, the single column that is not
      a judge (several or none raise ``ValueError``: name it). ``reward=name``: that column.

    >>> judge_columns(["rm", "judge_format", "judge_answer"])
    ([1, 2], 0)
    >>> judge_columns(["digit_fraction"])
    ([], None)
    >>> judge_columns(["a", "b"], judges=["b"], reward="a")
    ([1], 0)
    """
    names = list(reward_names)

    def index(name: str, what: str) -> int:
        if name not in names:
            raise ValueError(
                f"cgpo_judges: {what} {name!r} is not a reward column; the task's reward functions are {names} "
                "(their __name__)"
            )
        return names.index(name)

    if judges is None:
        judge_idx = [i for i, n in enumerate(names) if n.startswith(JUDGE_PREFIX)]
    else:
        if isinstance(judges, str):
            raise ValueError(f"cgpo_judges: judges must be a list of column names, got the string {judges!r}")
        judge_idx = [index(n, "judge") for n in judges]
    if reward is not None:
        reward_idx = index(reward, "reward")
        if reward_idx in judge_idx:
            raise ValueError(f"cgpo_judges: column {reward!r} cannot be both the reward model and a judge")
        return judge_idx, reward_idx
    if not judge_idx:
        return judge_idx, None
    others = [i for i in range(len(names)) if i not in judge_idx]
    if len(others) != 1:
        raise ValueError(
            f"cgpo_judges: cannot tell the reward-model column: judges are {[names[i] for i in judge_idx]} and the "
            f"other columns are {[names[i] for i in others]}; pass reward=<column name>"
        )
    return judge_idx, others[0]


def judge_pass(rewards: Tensor | None, judge_idx: Sequence[int], batch: int, *, threshold: float = 0.5) -> Tensor:
    """The mixture of judges' verdict J, float [B] of 0/1: 1 when every judge column is >= ``threshold`` (judges
    return 0/1, TRL's convention; the trainer stores a judge's None as 0, so None fails), 1 when there is no judge.

    >>> judge_pass(torch.tensor([[0.3, 1.0, 1.0], [5.0, 1.0, 0.0]]), [1, 2], 2).tolist()
    [1.0, 0.0]
    """
    if not judge_idx:
        return torch.ones(batch)  # [B]
    assert rewards is not None
    cols = rewards[:, list(judge_idx)]  # [B, J]
    return (cols >= threshold).all(dim=-1).to(rewards.dtype)  # [B]


# ---------------------------------------------------------------------------------------------------- pure math
def calibrated_reward(reward: Tensor, baseline: Tensor) -> Tensor:
    """CGPO's calibrated reward R_cal = σ(r(x, y) − r(x, ȳ)) (arXiv 2409.20370, Sec. 3.2), float [B].

    It lies in (0, 1), equals 0.5 when the response scores like the reference ȳ, and removes the reward model's
    per-prompt offset (rewards of different prompts become comparable).

    >>> calibrated_reward(torch.tensor([1.0, 3.0]), torch.tensor([1.0, 1.0])).tolist()[0]
    0.5
    """
    return torch.sigmoid(reward - baseline)  # [B]


def sequence_kl(logp: Tensor, ref_logp: Tensor, mask: Tensor) -> Tensor:
    """The summed log-ratio Σ_t m·(logp − ref_logp) of each completion, float [B] (k1 of the whole response, TRL's
    ``kl_div = completion_logprobs - ref_logprobs``). It is a one-sample estimate, so it can be negative.

    >>> sequence_kl(torch.tensor([[-1.0, -2.0, 9.0]]), torch.tensor([[-1.5, -1.0, 0.0]]),
    ...             torch.tensor([[True, True, False]])).tolist()
    [-0.5]
    """
    return masked_sum(logp - ref_logp, mask, dim=-1)  # [B]


def kl_weight(seq_kl: Tensor, *, kl_threshold: float) -> Tensor:
    """CRPG's KL regulariser w = clamp(1 − KL/KL_thr, min = 0), float [B] (arXiv 2409.20370, CRPG; TRL
    ``kl_div_regularizer``): 1 at KL = 0, 0 at and beyond the threshold, above 1 for a negative log-ratio.

    >>> kl_weight(torch.tensor([0.0, 5.0, 12.0, -2.0]), kl_threshold=10.0).tolist()
    [1.0, 0.5, 0.0, 1.2000000476837158]
    """
    return torch.clamp(1.0 - seq_kl / kl_threshold, min=0.0)  # [B]


def crpg_targets(
    judge: Tensor, calibrated: Tensor, seq_kl: Tensor, candidate: Tensor, *, kl_threshold: float
) -> tuple[Tensor, Tensor]:
    """CRPG's regularised reward R̃ = J·R_cal·w and its centred coefficient R̃ − mean R̃, float [B] each.

    The mean is over the candidate (sampled) completions of the whole batch, as TRL's ``regularized_rewards.mean()``
    over the bs·k responses (not per prompt). Non-candidates (appended reference rows) get R̃ and coefficient 0. A
    judge-failing response has R̃ = 0: its reward-model score does not enter the loss.

    Worked example: J = (1, 0), R_cal = (0.8, 0.9), KL = (0, 0): R̃ = (0.8, 0), mean 0.4, coefficients (0.4, −0.4).

    >>> crpg_targets(torch.tensor([1.0, 0.0]), torch.tensor([0.8, 0.9]), torch.zeros(2), torch.tensor([True, True]),
    ...              kl_threshold=10.0)[1].tolist()
    [0.4000000059604645, -0.4000000059604645]
    """
    r_tilde = judge * calibrated * kl_weight(seq_kl, kl_threshold=kl_threshold)  # [B]; CRPG's constrained reward
    r_tilde = torch.where(candidate, r_tilde, torch.zeros_like(r_tilde))  # [B]
    n = candidate.sum().clamp(min=1).to(r_tilde.dtype)  # []
    mean = r_tilde.sum() / n  # []; batch mean over the sampled responses (TRL)
    coef = torch.where(candidate, r_tilde - mean, torch.zeros_like(r_tilde))  # [B]
    return r_tilde, coef


def _group_pick(score: Tensor, member: Tensor, group: Tensor, num_groups: int, *, largest: bool) -> Tensor:
    """Index of the first ``member`` row with the largest (``largest``) or smallest score of each group, long [P];
    B (one past the last row) for a group without a member. Ties go to the lowest index, as ``torch.argmax``."""
    B = score.shape[0]
    sign = 1.0 if largest else -1.0
    s = torch.where(member, sign * score, torch.full_like(score, -math.inf))  # [B]
    best = group_max(s, group, num_groups)  # [P]
    at = member & (s == best[group])  # [B]
    idx = torch.arange(B, device=score.device)  # [B]
    first = torch.full((num_groups,), B, dtype=torch.long, device=score.device)  # [P]
    return first.scatter_reduce(0, group[at], idx[at], reduce="amin")  # [P]


def crraft_targets(
    judge: Tensor,
    calibrated: Tensor,
    seq_kl: Tensor,
    group: Tensor,
    candidate: Tensor,
    *,
    kl_threshold: float,
) -> tuple[Tensor, Tensor]:
    """CRRAFT's selection (arXiv 2409.20370, CRRAFT; TRL ``crraft_optimization``): the weight of each completion,
    float [B] (non-zero only on the one selected response of a prompt), and whether it is a fallback pick, bool [B].

    R̃ = 1[KL ≤ KL_thr]·J·R_cal. Per prompt the best candidate (sampled) response by R̃ is selected with weight R̃
    (first index on ties). When no candidate qualifies (all R̃ = 0: every response fails a judge or the KL check),
    the prompt falls back to a non-candidate row of its group (the reference ȳ appended by ``cgpo_baseline``) if that
    passes the judges and the KL check; its weight is its own R̃ = 1·1·σ(r(ȳ) − r(ȳ)) = 0.5 (TRL's constant 0.5).
    Otherwise the prompt contributes nothing. A judge-failing response is never selected (weight 0).

    Worked example: one prompt, J = (1, 1, 0), R_cal = (0.3, 0.9, 0.99), KL = (0, 20, 0), threshold 10: R̃ =
    (0.3, 0, 0) (the second fails the KL check, the third a judge), so response 0 is selected with weight 0.3.

    >>> w, fb = crraft_targets(torch.tensor([1.0, 1.0, 0.0]), torch.tensor([0.3, 0.9, 0.99]),
    ...                        torch.tensor([0.0, 20.0, 0.0]), torch.zeros(3, dtype=torch.long),
    ...                        torch.ones(3, dtype=torch.bool), kl_threshold=10.0)
    >>> [round(x, 4) for x in w.tolist()], fb.tolist()
    ([0.3, 0.0, 0.0], [False, False, False])
    """
    B = judge.shape[0]
    P = int(group.max().item()) + 1
    ok = (seq_kl <= kl_threshold).to(judge.dtype)  # [B]; CRRAFT's hard KL constraint
    r_tilde = ok * judge * calibrated  # [B]
    best = _group_pick(r_tilde, candidate, group, P, largest=True)  # [P]
    padded = torch.cat([r_tilde, r_tilde.new_zeros(1)])  # [B + 1]; index B = "no candidate" -> 0
    best_value = padded[best]  # [P]
    # fallback: the best non-candidate (reference) row of a prompt whose candidates all have R̃ = 0
    fallback = _group_pick(r_tilde, ~candidate, group, P, largest=True)  # [P]
    fallback_ok = (best_value <= 0) & (padded[fallback] > 0)  # [P]
    pick = torch.where(best_value > 0, best, torch.where(fallback_ok, fallback, torch.full_like(best, B)))  # [P]
    weight = torch.zeros(B + 1, dtype=r_tilde.dtype, device=r_tilde.device)  # [B + 1]
    weight[pick] = padded[pick]
    is_fallback = torch.zeros(B + 1, dtype=torch.bool, device=r_tilde.device)  # [B + 1]
    is_fallback[torch.where(fallback_ok, fallback, torch.full_like(fallback, B))] = True
    return weight[:B], is_fallback[:B] & (weight[:B] > 0)


def codpo_roles(reward: Tensor, judge: Tensor, group: Tensor, candidate: Tensor) -> Tensor:
    """CODPO's pair per prompt (arXiv 2409.20370, CODPO): role bits, long [B] (1 chosen, 2 rejected, 3 both, 0 none).

    Among the candidate (sampled) responses of a prompt: chosen = argmax reward among the judge-passing ones;
    rejected = argmin reward among the failing ones, or the argmin over all of them when every one passes. Ties go to
    the lowest index (``torch.argmax``). A prompt with no passing response has no pair (TRL skips it). When all
    responses pass and tie, the argmin is the chosen response itself (role 3): the DPO term is then the constant
    log 2 and only the likelihood term trains, as in TRL.

    The selection is the spec's, with the masks done by selection: TRL's ``argmax(judgements * rewards)`` /
    ``argmin(~judgements * rewards)`` would pick a failing (resp. passing) response when rewards are negative (resp.
    positive), because the masked-out entries become 0.

    Worked example: rewards (3, 1, 4, 2), judges (1, 0, 0, 1): chosen 0 (3 beats 2), rejected 1 (1 below 4).

    >>> codpo_roles(torch.tensor([3.0, 1.0, 4.0, 2.0]), torch.tensor([1.0, 0.0, 0.0, 1.0]),
    ...             torch.zeros(4, dtype=torch.long), torch.ones(4, dtype=torch.bool)).tolist()
    [1, 2, 0, 0]
    """
    B = reward.shape[0]
    P = int(group.max().item()) + 1
    passing = candidate & (judge > 0.5)  # [B]
    failing = candidate & ~passing  # [B]
    chosen = _group_pick(reward, passing, group, P, largest=True)  # [P]
    rej_fail = _group_pick(reward, failing, group, P, largest=False)  # [P]
    rej_all = _group_pick(reward, candidate, group, P, largest=False)  # [P]
    any_fail = group_sum(failing.to(reward.dtype), group, P) > 0  # [P]
    rejected = torch.where(any_fail, rej_fail, rej_all)  # [P]
    has_pair = chosen < B  # [P]; a passing response exists
    none = torch.full_like(chosen, B)  # [P]
    role = torch.zeros(B + 1, dtype=torch.long, device=reward.device)  # [B + 1]
    role[torch.where(has_pair, chosen, none)] |= CHOSEN
    role[torch.where(has_pair, rejected, none)] |= REJECTED
    return role[:B]


# ---------------------------------------------------------------------------------------------------- shaping
def _extra(rollout: Rollout, key: str, who: str, hint: str) -> Any:
    if key not in rollout.extras:
        raise ValueError(f"{who} needs rollout.extras[{key!r}]; {hint}")
    return rollout.extras[key]


@SHAPING.register("cgpo_judges", requires=("old_logp", "ref_logp"))
def cgpo_judges(
    rollout: Rollout,
    *,
    kl_threshold: float,
    judges: Sequence[str] | None = None,
    reward: str | None = None,
) -> tuple[Rollout, dict[str, float]]:
    """CGPO's mixture of judges, calibrated reward and KL constraint, turned into the targets of its three optimizers
    (The Perfect Blend, arXiv 2409.20370, Sec. 3; TRL ``CGPOTrainer``). Runs on the whole batch; see the module
    docstring for how the parts fit.

    Reads ``rollout.rewards`` / ``reward_names`` (columns chosen by :func:`judge_columns`), ``old_logp`` (the
    policy at rollout time) and ``ref_logp``, and the ``cgpo_baseline`` strategy's extras when present
    (``baseline_reward`` [B] when the reward model is ``rollout.reward``, ``baseline_rewards`` [B, K] when it is a
    column; r(x, ȳ) = 0 without them, then R_cal = σ(r)); rows with ``extras["baseline_row"]`` True are the appended
    references ȳ: not candidates of any optimizer, only CRRAFT's fallback.

    Writes to ``extras`` (float [B] unless said): ``cgpo_judge`` J, ``cgpo_reward`` r, ``cgpo_calibrated`` R_cal,
    ``cgpo_kl`` Σ_t (old_logp − ref_logp), ``cgpo_crpg`` (:func:`crpg_targets`' coefficient), ``cgpo_crraft``
    (:func:`crraft_targets`' weight), ``cgpo_codpo`` (long, :func:`codpo_roles`) and ``cgpo_counts`` (a dict of
    Python floats: ``rows``, ``tokens``, ``candidate_tokens``, ``crraft`` selected, ``codpo`` pairs, the whole-batch
    normalisers). Sets ``reward`` = J·R_cal.

    Args:
        kl_threshold: KL_thr, the bound on the sequence log-ratio (CRPG's weight reaches 0 there; CRRAFT drops
            responses above it). Required: TRL's config has no default and refuses to train without it; the paper
            advises a loose bound for math / code / instruction following and a strict one for chat. Its scale is
            that of a whole response's summed log-ratio, so it grows with the response length; usually 1 to 50.
        judges: judge column names; default None: the columns named ``judge_*``; ``[]``: no judge (J = 1).
        reward: the reward-model column; default None: ``rollout.reward`` when there is no judge, else the one
            non-judge column.

    Metrics: ``cgpo/judge_pass_frac``, ``cgpo/calibrated_mean``, ``cgpo/kl_mean``, ``cgpo/kl_ok_frac`` (KL ≤
    KL_thr), ``cgpo/crraft_selected``, ``cgpo/crraft_fallback``, ``cgpo/codpo_pairs`` (over the candidates) and
    ``cgpo/baseline_reward`` (mean r(x, ȳ); absent without the strategy).
    """
    who = "cgpo_judges"
    check_number("kl_threshold", kl_threshold, above=0, where=who, hint="the sequence KL bound; usually 1 to 50")
    if rollout.old_logp is None or rollout.ref_logp is None:
        raise ValueError(f"{who} needs rollout.old_logp and rollout.ref_logp (the trainer computes them for it)")
    B, mask = rollout.batch_size, rollout.mask  # [B, T]
    dtype = rollout.reward.dtype
    judge_idx, reward_idx = judge_columns(rollout.reward_names, judges=judges, reward=reward)
    judge = judge_pass(rollout.rewards, judge_idx, B).to(dtype=dtype, device=mask.device)  # [B]
    if reward_idx is None:
        r = rollout.reward  # [B]
    elif rollout.rewards is None:
        raise ValueError(f"{who}: the reward column {reward_idx} is named but the rollout has no rewards [B, K]")
    else:
        r = rollout.rewards[:, reward_idx]  # [B]
    r = r.to(dtype)  # [B]

    metrics: dict[str, float] = {}
    key = BASELINE_REWARD if reward_idx is None else BASELINE_REWARDS
    if key in rollout.extras:
        base = rollout.extras[key]
        base = base if reward_idx is None else base[:, reward_idx]  # [B]
        baseline = torch.nan_to_num(base.to(dtype=dtype, device=mask.device), nan=0.0)  # [B]; a failed ȳ scores 0
        metrics["cgpo/baseline_reward"] = baseline.mean().item()
    else:  # no cgpo_baseline strategy: r(x, ȳ) = 0, so R_cal = σ(r)
        baseline = torch.zeros_like(r)  # [B]
    calibrated = calibrated_reward(r, baseline)  # [B]
    seq_kl = sequence_kl(rollout.old_logp.to(dtype), rollout.ref_logp.to(dtype), mask)  # [B]
    if BASELINE_ROW in rollout.extras:
        candidate = ~rollout.extras[BASELINE_ROW].to(device=mask.device, dtype=torch.bool)  # [B]
    else:
        candidate = torch.ones(B, dtype=torch.bool, device=mask.device)  # [B]
    if not bool(candidate.any()):
        raise ValueError(f"{who}: every row is a reference row (extras['baseline_row'] all True); nothing to train")

    _, crpg = crpg_targets(judge, calibrated, seq_kl, candidate, kl_threshold=kl_threshold)  # [B]
    crraft, fallback = crraft_targets(
        judge, calibrated, seq_kl, rollout.group, candidate, kl_threshold=kl_threshold
    )  # [B], [B]
    codpo = codpo_roles(r, judge, rollout.group, candidate)  # [B]
    lengths = rollout.lengths.to(dtype)  # [B]
    counts = {
        "rows": float(B),
        "tokens": float(lengths.sum().item()),
        "candidate_tokens": float(lengths[candidate].sum().item()),
        "crraft": float((crraft > 0).sum().item()),
        "codpo": float(((codpo & CHOSEN) > 0).sum().item()),
    }
    extras = {
        **rollout.extras,
        JUDGE_KEY: judge,
        REWARD_KEY: r,
        CALIBRATED_KEY: calibrated,
        KL_KEY: seq_kl,
        CRPG_KEY: crpg,
        CRRAFT_KEY: crraft,
        CODPO_KEY: codpo,
        COUNTS_KEY: counts,
    }
    c = candidate.to(dtype)  # [B]
    n = c.sum()  # []
    metrics.update(
        {
            "cgpo/judge_pass_frac": ((judge * c).sum() / n).item(),
            "cgpo/calibrated_mean": ((calibrated * c).sum() / n).item(),
            "cgpo/kl_mean": ((seq_kl * c).sum() / n).item(),
            "cgpo/kl_ok_frac": (((seq_kl <= kl_threshold).to(dtype) * c).sum() / n).item(),
            "cgpo/crraft_selected": counts["crraft"],
            "cgpo/crraft_fallback": float(fallback.sum().item()),
            "cgpo/codpo_pairs": counts["codpo"],
        }
    )
    return rollout.replace(reward=judge * calibrated, extras=extras), metrics


# ---------------------------------------------------------------------------------------------------- losses
def _scaled_count(total: float, batch_total: float, call: Count, local: float) -> float | Tensor:
    """The whole-batch count ``total`` scaled to this call's mini-batch: ``total · n_call / n_batch`` (see the module
    docstring). ``call`` is the trainer's count of the mini-batch (``num_tokens`` / ``num_seqs``), ``local`` this
    call's own when the trainer gives none."""
    if call is None:
        n_call: float | Tensor = local
    elif isinstance(call, Tensor):
        if call.numel() != 1 or not bool((call > 0).all()):
            raise ValueError(f"cgpo losses: the trainer's count must be a positive number, got {call}")
        n_call = call.reshape(())
    elif isinstance(call, bool) or not isinstance(call, (int, float)) or not call > 0:
        raise ValueError(f"cgpo losses: the trainer's count must be a positive number, got {call!r}")
    else:
        n_call = float(call)
    return total * n_call / batch_total


def _targets(name: str, rollout: Rollout, key: str) -> tuple[Tensor, dict[str, float]]:
    hint = "the SHAPING part 'cgpo_judges' writes it: put it in the preset's shaping (as the cgpo preset does)"
    value = _extra(rollout, key, name, hint)
    counts = _extra(rollout, COUNTS_KEY, name, hint)
    if not isinstance(value, Tensor) or value.shape != (rollout.batch_size,):
        raise ValueError(f"{name}: extras[{key!r}] must be a tensor [{rollout.batch_size}]; got {value!r}")
    return value.to(rollout.mask.device), counts


@POLICY_LOSSES.register("crpg", requires=(CRPG_KEY, COUNTS_KEY))
def crpg(
    logp: Tensor,
    rollout: Rollout,
    advantages: Tensor,
    *,
    aggregation: str = "token_mean",
    num_tokens: Count = None,
    num_seqs: Count = None,
    norm_constant: Count = None,
) -> tuple[Tensor, dict[str, float]]:
    """CRPG, the Calibrated-Regularized Policy Gradient (The Perfect Blend, arXiv 2409.20370; TRL
    ``crpg_optimization``): ``−Σ_i log π(y_i)·(R̃_i − mean R̃) / #completion tokens``, log π(y_i) = Σ_t logp.

    R̃ = J·R_cal·w and its centred coefficient come from ``extras["cgpo_crpg"]`` (the ``cgpo_judges`` shaping, whole
    batch). The normaliser is the number of completion tokens of the sampled responses of the whole batch (appended
    reference rows carry coefficient 0 and are not counted), scaled to this call (module docstring). TRL divides by
    the number of responses instead (``losses.mean() / k`` over the bs·k responses); the token count is the spec's.
    ``aggregation`` and ``advantages`` are accepted for the common signature and not used (the paper fixes the
    normaliser; the advantage slot is not read).

    Metrics: ``loss``, ``crpg_coef_abs_mean`` (mean |R̃ − mean R̃| over this call's sampled responses).

    Worked example: coefficients (0.4, −0.4), log π(y) = (−2, −1) over 3 tokens: −(0.4·−2 − 0.4·−1)/3 = 0.1333.

    >>> import torch
    >>> r = Rollout(group=torch.tensor([0, 0]), mask=torch.tensor([[True, True], [True, False]]),
    ...             reward=torch.zeros(2), extras={"cgpo_crpg": torch.tensor([0.4, -0.4]),
    ...             "cgpo_counts": {"rows": 2.0, "tokens": 3.0, "candidate_tokens": 3.0, "crraft": 0.0, "codpo": 0.0}})
    >>> round(crpg(torch.tensor([[-1.0, -1.0], [-1.0, 0.0]]), r, torch.zeros(2, 2))[0].item(), 4)
    0.1333
    """
    name = "crpg"
    _check_aggregation(aggregation)
    mask, logp, _, _ = _prepare(name, logp, rollout, advantages, needs_old=False)
    coef, counts = _targets(name, rollout, CRPG_KEY)  # [B]
    seq_logp = masked_sum(logp, mask, dim=-1)  # [B]; log π(y_i)
    n_tok = _scaled_count(counts["candidate_tokens"], counts["tokens"], num_tokens, float(mask.sum()))
    loss = -(coef.to(logp.dtype).detach() * seq_logp).sum() / n_tok  # []
    with torch.no_grad():
        sampled = coef != 0  # [B]
        metrics = {
            "loss": loss.item(),
            "crpg_coef_abs_mean": (coef.abs().sum() / sampled.sum().clamp(min=1)).item(),
        }
    return loss, metrics


@POLICY_LOSSES.register("crraft", requires=(CRRAFT_KEY, COUNTS_KEY))
def crraft(
    logp: Tensor,
    rollout: Rollout,
    advantages: Tensor,
    *,
    aggregation: str = "token_mean",
    num_tokens: Count = None,
    num_seqs: Count = None,
    norm_constant: Count = None,
) -> tuple[Tensor, dict[str, float]]:
    """CRRAFT, Calibrated-Regularized Reward Ranking Fine-Tuning (The Perfect Blend, arXiv 2409.20370, Eq. 18 as
    cited by TRL's ``crraft_optimization``): ``−Σ_prompts R̃·log π(y_best) / #selected``, log π(y) = Σ_t logp.

    ``extras["cgpo_crraft"]`` (the ``cgpo_judges`` shaping, :func:`crraft_targets`) holds R̃ on the one selected
    response of each prompt (or on its reference ȳ, the fallback, with 0.5) and 0 elsewhere; #selected counts the
    prompts with a selected response over the whole batch, scaled to this call (module docstring). TRL divides by
    ``(rewards != 0).sum()`` (the responses with a non-zero raw reward), which its comment calls "simulate skipping
    samples"; the count of selected responses is the spec's #nonzero. A batch with nothing selected gives loss 0
    (with a zero gradient). ``aggregation`` and ``advantages`` are not used.

    Metrics: ``loss``, ``crraft_selected`` (selected responses in this call), ``crraft_weight_mean`` (their mean R̃).

    Worked example: weights (0.3, 0, 0), log π(y_0) = −2: loss = −0.3·−2 / 1 = 0.6.

    >>> import torch
    >>> r = Rollout(group=torch.zeros(3, dtype=torch.long), mask=torch.ones(3, 2, dtype=torch.bool),
    ...             reward=torch.zeros(3), extras={"cgpo_crraft": torch.tensor([0.3, 0.0, 0.0]),
    ...             "cgpo_counts": {"rows": 3.0, "tokens": 6.0, "candidate_tokens": 6.0, "crraft": 1.0, "codpo": 0.0}})
    >>> round(crraft(torch.full((3, 2), -1.0), r, torch.zeros(3, 2))[0].item(), 4)
    0.6
    """
    name = "crraft"
    _check_aggregation(aggregation)
    mask, logp, _, _ = _prepare(name, logp, rollout, advantages, needs_old=False)
    weight, counts = _targets(name, rollout, CRRAFT_KEY)  # [B]
    seq_logp = masked_sum(logp, mask, dim=-1)  # [B]
    selected = weight > 0  # [B]
    total = -(weight.to(logp.dtype).detach() * seq_logp).sum()  # []; unselected rows have weight 0
    if counts["crraft"] > 0:
        loss = total / _scaled_count(counts["crraft"], counts["rows"], num_seqs, float(mask.shape[0]))  # []
    else:  # nothing selected in the whole batch: no signal
        loss = total * 0.0  # []
    with torch.no_grad():
        metrics = {
            "loss": loss.item(),
            "crraft_selected": float(selected.sum().item()),
            "crraft_weight_mean": (weight.sum() / selected.sum().clamp(min=1)).item(),
        }
    return loss, metrics


@POLICY_LOSSES.register("codpo", requires=("ref_logp", CODPO_KEY, COUNTS_KEY))
def codpo(
    logp: Tensor,
    rollout: Rollout,
    advantages: Tensor,
    *,
    aggregation: str = "token_mean",
    num_tokens: Count = None,
    num_seqs: Count = None,
    norm_constant: Count = None,
    beta: float = 0.1,
    lamb: float = 5.0,
) -> tuple[Tensor, dict[str, float]]:
    """CODPO, Constrained Online DPO (The Perfect Blend, arXiv 2409.20370, Eq. 14 as cited by TRL's
    ``codpo_optimization``): per prompt with a pair (chosen y_w, rejected y_l from ``extras["cgpo_codpo"]``,
    :func:`codpo_roles`),

        ℓ = −[ log σ(β·((log π_w − log π_l) − (log π_ref,w − log π_ref,l))) + (λ/|y_w|)·log π(y_w) ],

    log-probs summed over each response's tokens and |y_w| its token count; the loss is the mean of ℓ over the
    prompts with a pair of the whole batch (scaled to this call, module docstring), prompts without a passing
    response skipped. A pair's two rows must be in the same call: the cgpo preset sets ``minibatch_groups`` so every
    mini- and micro-batch holds whole prompt groups (a split pair raises ``ValueError``). ``aggregation`` and
    ``advantages`` are not used; ``rollout.ref_logp`` is needed.

    Args:
        beta: β, the DPO temperature; paper / TRL default 0.1, usually 0.05 to 0.5; > 0.
        lamb: λ, the weight of the chosen response's length-normalised log-likelihood (keeps the chosen likelihood
            from falling, as in RPO-style DPO); paper / TRL default 5.0, usually 0 to 10; >= 0.

    Metrics: ``loss``, ``codpo_pairs`` (pairs in this call), ``codpo_margin`` (mean β-scaled logit), ``codpo_acc``
    (share of pairs with a positive logit), ``codpo_nll`` (mean −log π(y_w)/|y_w|).

    Worked example: log π_w = −2 over 2 tokens, log π_l = −3, reference log-ratio 0: logit 1, ℓ = −log σ(0.1) −
    5·(−2)/2 = 0.6444 + 5 = 5.6444.

    >>> import torch
    >>> r = Rollout(group=torch.zeros(2, dtype=torch.long), mask=torch.tensor([[True, True], [True, False]]),
    ...             reward=torch.zeros(2), ref_logp=torch.tensor([[-1.0, -1.5], [-2.5, 0.0]]),
    ...             extras={"cgpo_codpo": torch.tensor([1, 2]),
    ...                     "cgpo_counts": {"rows": 2.0, "tokens": 3.0, "candidate_tokens": 3.0, "crraft": 0.0,
    ...                                     "codpo": 1.0}})
    >>> round(codpo(torch.tensor([[-1.0, -1.0], [-3.0, 0.0]]), r, torch.zeros(2, 2))[0].item(), 4)
    5.6444
    """
    name = "codpo"
    check_number("beta", beta, above=0, where=name, hint="the DPO temperature; paper 0.1")
    check_number("lamb", lamb, minimum=0, where=name, hint="the chosen-NLL weight; paper 5.0")
    _check_aggregation(aggregation)
    mask, logp, _, _ = _prepare(name, logp, rollout, advantages, needs_old=False)
    if rollout.ref_logp is None:
        raise ValueError(f"{name} needs rollout.ref_logp (the reference model's log-probs)")
    role, counts = _targets(name, rollout, CODPO_KEY)  # [B]
    ref = torch.where(mask, rollout.ref_logp.detach().to(logp.dtype), torch.zeros_like(logp))  # [B, T]
    seq_logp = masked_sum(logp, mask, dim=-1)  # [B]; log π(y)
    seq_ref = masked_sum(ref, mask, dim=-1)  # [B]; log π_ref(y)
    lengths = rollout.lengths.to(logp.dtype)  # [B]
    group, P = rollout.group, rollout.num_groups
    chosen = ((role & CHOSEN) > 0).to(logp.dtype)  # [B]
    rejected = ((role & REJECTED) > 0).to(logp.dtype)  # [B]
    n_chosen = group_sum(chosen, group, P)  # [P]
    n_rejected = group_sum(rejected, group, P)  # [P]
    if bool((n_chosen != n_rejected).any()) or bool((n_chosen > 1).any()):
        raise ValueError(
            f"{name}: a prompt's chosen and rejected responses are in different (micro-)batches; set the trainer "
            "option minibatch_groups=True (the cgpo preset does) so every part holds whole prompt groups"
        )
    has_pair = n_chosen > 0  # [P]
    lw = group_sum(chosen * seq_logp, group, P)  # [P]; log π(y_w)
    ll = group_sum(rejected * seq_logp, group, P)  # [P]; log π(y_l)
    rw = group_sum(chosen * seq_ref, group, P)  # [P]
    rl = group_sum(rejected * seq_ref, group, P)  # [P]
    len_w = group_sum(chosen * lengths, group, P).clamp(min=1)  # [P]; |y_w|
    logits = (lw - ll) - (rw - rl)  # [P]; DPO's implicit reward margin
    term = -(F.logsigmoid(beta * logits) + lamb / len_w * lw)  # [P]; CODPO Eq. 14
    total = torch.where(has_pair, term, torch.zeros_like(term)).sum()  # []
    if counts["codpo"] > 0:
        loss = total / _scaled_count(counts["codpo"], counts["rows"], num_seqs, float(mask.shape[0]))  # []
    else:
        loss = total * 0.0  # []
    with torch.no_grad():
        k = has_pair.sum().clamp(min=1).to(logp.dtype)  # []
        pick = has_pair.to(logp.dtype)  # [P]
        metrics = {
            "loss": loss.item(),
            "codpo_pairs": float(has_pair.sum().item()),
            "codpo_margin": ((beta * logits * pick).sum() / k).item(),
            "codpo_acc": (((logits > 0).to(logp.dtype) * pick).sum() / k).item(),
            "codpo_nll": ((-lw / len_w * pick).sum() / k).item(),
        }
    return loss, metrics


__all__ = [
    "BASELINE_REWARD",
    "BASELINE_REWARDS",
    "BASELINE_ROW",
    "JUDGE_PREFIX",
    "calibrated_reward",
    "cgpo_judges",
    "codpo",
    "codpo_roles",
    "crpg",
    "crpg_targets",
    "crraft",
    "crraft_targets",
    "judge_columns",
    "judge_pass",
    "kl_weight",
    "sequence_kl",
]
