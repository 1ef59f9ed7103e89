"""Rollout strategies that re-sample prompts under a modified prompt: ``scaf_grpo`` (Scaf-GRPO's tiered hints for
true-hard groups) and ``difficulty_augment`` (DeepVideo-R1's difficulty-aware augmentation).

The math (which groups are hard, the minimal-level choice, which row is replaced, ΔR and its scalings, the hint and
noise text) is in :mod:`grpolab.core.scaffold`; this module builds the modified rows, samples them in one
``ctx.sample`` call per step and splices the completions into the batch *in place* (the batch keeps its order; only
the replaced rows change).

Hint source (both strategies): the row's ``hints`` column (a list of cumulative hinted prompts, least guidance
first, e.g. ``arith_task(hints=True)``), or, where a row lacks it, the generic Solution-tier fallback built from the
reference ``answer`` column: growing prefixes of the answer put in front of the prompt, ``"(6) 23+45="`` then
``"(68) 23+45="`` (:func:`grpolab.core.scaffold.answer_prefix_hints`, :data:`~grpolab.core.scaffold.HINT_TEMPLATE`).
"""

from __future__ import annotations

import random
from dataclasses import replace
from typing import Any

import torch

from grpolab.core.checks import check_choice, check_int
from grpolab.core.dagrpo import first_member
from grpolab.core.scaffold import (
    HINT_TEMPLATE,
    answer_prefix_hints,
    apply_hint,
    augmentation_strength,
    buffer_reference,
    difficulty_gap,
    group_member_positions,
    hint_level_for,
    noise_count,
    scaffold_replacement,
    space_noise,
    splice_index,
    true_hard_groups,
    update_buffer,
)
from grpolab.rollout.strategies import (
    ROLLOUT_STRATEGIES,
    RolloutContext,
    Sampled,
    check_fillable_extras,
    with_default_extras,
)

#: The strategies' own per-completion extras, with the value of the completions they do not touch (besides the
#: fixed ``off_policy`` / ``prefix_len``). Both strategies return every one of them on every row.
FILL: dict[str, Any] = {"hint_level": 0, "noise": 0}
TRAIN_PROMPTS = ("hinted", "original")
HARD_MODES = ("hint", "none")
EASY_MODES = ("space_noise", "none")


def level_prompts(
    row: dict[str, Any],
    *,
    hints_key: str | None = "hints",
    answer_key: str = "answer",
    template: str = HINT_TEMPLATE,
    fallback_levels: int = 4,
) -> list[Any]:
    """The hinted prompts of a task row, level 1 (least guidance) first: ``row[hints_key]`` when the row has it,
    else ``template`` applied to the answer prefixes of ``row[answer_key]``. Raises ValueError when neither exists."""
    if hints_key is not None and row.get(hints_key):
        hints = row[hints_key]
        if not isinstance(hints, (list, tuple)):
            raise ValueError(
                f"the {hints_key!r} column must hold a list of hinted prompts (least guidance first), got {hints!r}"
            )
        return list(hints)
    if answer_key not in row:
        raise ValueError(
            f"task rows have neither a {hints_key!r} column (hinted prompts) nor a {answer_key!r} column to build "
            f"answer-prefix hints from (columns: {sorted(row)}); set hints_key / answer_key to the task's columns"
        )
    return [
        apply_hint(row["prompt"], h, template=template)
        for h in answer_prefix_hints(row[answer_key], levels=fallback_levels)
    ]


def _prepare(name: str, sampled: Sampled) -> Sampled:
    """The batch checked for extras the re-sampled completions cannot fill, with every extra these strategies write
    present (``off_policy`` False, ``prefix_len`` 0 and ``FILL`` for the completions they do not touch)."""
    check_fillable_extras(sampled, name, FILL)
    return with_default_extras(sampled, FILL)


def _splice(ctx: RolloutContext, base: Sampled, new: Sampled, replace_at: torch.Tensor) -> Sampled:
    """``base`` with row ``replace_at[m]`` replaced by row m of ``new`` (completions of ``base.rows``)."""
    combined = base.append(new, ctx.pad_id, fill=FILL)
    index = splice_index(base.size, replace_at.cpu(), torch.arange(new.size))  # [N]
    return combined.take(index.to(base.reward.device))


# ---------------------------------------------------------------------------------------------------- Scaf-GRPO
@ROLLOUT_STRATEGIES.register("scaf_grpo")
def scaf_grpo(
    ctx: RolloutContext,
    sampled: Sampled,
    *,
    step: int,
    warmup_steps: int = 50,
    hints_key: str | None = "hints",
    answer_key: str = "answer",
    template: str = HINT_TEMPLATE,
    fallback_levels: int = 4,
    threshold: float = 0.0,
    train_prompt: str = "hinted",
) -> tuple[Sampled, dict[str, float]]:
    """Scaf-GRPO's progressive scaffolding (arXiv 2510.19807, §3; code ``ray_trainer.py::fit``, ``with_hint``):

    1. Guidance exemption: nothing happens before ``warmup_steps`` training steps (code: ``global_steps >
       warmup_steps`` with ``global_steps`` counted from 1, i.e. ``step >= warmup_steps`` here).
    2. True-hard groups: every completion's accuracy ``<= threshold`` (:func:`~grpolab.core.scaffold.true_hard_groups`).
    3. Each hard group is re-tried under each of its K hinted prompts (:func:`level_prompts`), ONE completion per
       level (code: the hinted batch is built once per question and level, rollout n = 1), all hard groups in one
       ``ctx.sample`` call, scored by the task.
    4. Per group the correct hinted completion with the minimal level replaces the group's first failing completion
       (``replace_num = 1``; :func:`~grpolab.core.scaffold.scaffold_replacement`), in place. Groups without a correct
       hinted completion stay as they are.

    The rescuing completion keeps its hinted prompt ids (``train_prompt="hinted"``, the released script's
    ``replace_hint_prompt=False``: tensors and prompt are copied) or is trained under the plain prompt
    (``"original"``, the code's ``replace_hint_prompt=True``). Only in the second case is it off-policy (sampled
    under another prompt than the one it is trained under), so ``extras["off_policy"]`` is True for it then and
    False with ``"hinted"``; ``extras["hint_level"]`` (long, 0 = none) holds its level. Its group is the hard
    group, so the GRPO advantage gives it the positive value and the failures negative.

    Args:
        step: run argument (training steps completed before this one).
        warmup_steps: guidance-exemption period; paper/script 50, usually 0 to 100.
        hints_key: the task column holding the hinted prompts (least guidance first); None: always the fallback.
        answer_key: reference-answer column of the fallback hints; default ``"answer"``.
        template: fallback hinted-prompt format with ``{hint}`` and ``{prompt}``; default ``"({hint}) {prompt}"``.
        fallback_levels: the most answer-prefix levels of the fallback; default 4 (Scaf-GRPO: 4 parts per tier).
        threshold: accuracy at or below which a completion failed (and above which a hinted one is correct);
            default 0.0 for a 0/1 verifier.
        train_prompt: ``"hinted"`` (default, the released recipe) or ``"original"``.

    Metrics: ``scaf/active``, ``scaf/hard_frac`` (hard groups / groups), ``scaf/rescued_frac`` (rescued / hard
    groups), ``scaf/mean_level`` (mean level of the rescuing completions; 0 when none), ``scaf/hint_samples``,
    ``scaf/hint_accuracy``. Must come before strategies that add other per-completion extras.
    """
    name = "scaf_grpo"
    check_int("warmup_steps", warmup_steps, minimum=0, where=name)
    check_int("fallback_levels", fallback_levels, minimum=1, where=name)
    check_choice(name, "train_prompt", train_prompt, TRAIN_PROMPTS)
    base = _prepare(name, sampled)
    device = sampled.reward.device
    group = sampled.group.to(device)  # [N]
    P = int(group.max().item()) + 1 if sampled.size else 0
    accuracy = sampled.accuracy.to(device)  # [N]
    first = first_member(group, P)  # [P]: in a true-hard group every member failed, so the first one did
    hard = true_hard_groups(accuracy, group, P, threshold=threshold)  # [P]
    active = step >= warmup_steps
    metrics = {
        "scaf/active": float(active),
        "scaf/hard_frac": hard.float().mean().item() if P else 0.0,
        "scaf/rescued_frac": 0.0,
        "scaf/mean_level": 0.0,
        "scaf/hint_samples": 0.0,
        "scaf/hint_accuracy": 0.0,
    }
    if not active or not bool(hard.any()):
        return base, metrics

    # one hinted row per (hard group, level), all sampled together with one completion each
    prompt_index = sampled.gen.prompt_index.to(device)  # [N]
    hinted_rows: list[dict[str, Any]] = []
    hint_group: list[int] = []
    hint_level: list[int] = []
    for g in hard.nonzero().flatten().tolist():
        row = sampled.rows[int(prompt_index[first[g]])]
        levels = level_prompts(
            row, hints_key=hints_key, answer_key=answer_key, template=template, fallback_levels=fallback_levels
        )
        for k, prompt in enumerate(levels, start=1):
            hinted_rows.append({**row, "prompt": prompt})
            hint_group.append(g)
            hint_level.append(k)
    if not hinted_rows:
        return base, metrics
    hinted = ctx.sample(hinted_rows, 1)  # M completions, row order
    levels_t = torch.tensor(hint_level, dtype=torch.long, device=device)  # [M]
    groups_t = torch.tensor(hint_group, dtype=torch.long, device=device)  # [M]
    replace_at, take, hard, _ = scaffold_replacement(
        accuracy, group, hinted.accuracy.to(device), levels_t, groups_t, P, threshold=threshold
    )  # [R], [R], [P], [P]
    metrics["scaf/hint_samples"] = float(len(hinted_rows))
    metrics["scaf/hint_accuracy"] = hinted.accuracy.float().mean().item()
    R = int(replace_at.numel())
    if R == 0:
        return base, metrics

    rescue = hinted.take(take)
    gen_device = sampled.gen.prompt_ids.device
    at_gen = replace_at.to(gen_device)  # [R]
    gen = replace(rescue.gen, prompt_index=sampled.gen.prompt_index[at_gen])  # [R]: the hard group's own row
    if train_prompt == "original":  # the code's replace_hint_prompt=True: train it as a completion of the question
        gen = replace(gen, prompt_ids=sampled.gen.prompt_ids[at_gen], prompt_mask=sampled.gen.prompt_mask[at_gen])
    rescue = replace(
        rescue,
        rows=sampled.rows,
        gen=gen,
        group=group[replace_at],  # [R]: the hard group
        extras={
            # [R]: off-policy only when trained under another prompt than the hinted one it was sampled with
            "off_policy": torch.full((R,), train_prompt == "original", dtype=torch.bool, device=device),
            "hint_level": levels_t[take],  # [R]
        },
    )
    out = _splice(ctx, base, rescue, replace_at)
    metrics["scaf/rescued_frac"] = R / max(int(hard.sum()), 1)
    metrics["scaf/mean_level"] = levels_t[take].float().mean().item()
    return out, metrics


# ------------------------------------------------------------------------------------------ DeepVideo-R1
@ROLLOUT_STRATEGIES.register("difficulty_augment")
def difficulty_augment(
    ctx: RolloutContext,
    sampled: Sampled,
    *,
    state: dict,
    step: int,
    window: int = 100,
    scale: float = 1.0,
    margin: float = 0.0,
    hard: str = "hint",
    easy: str = "space_noise",
    max_noise: int = 4,
    hints_key: str | None = "hints",
    answer_key: str = "answer",
    template: str = HINT_TEMPLATE,
    fallback_levels: int = 4,
    seed: int = 0,
) -> tuple[Sampled, dict[str, float]]:
    """DeepVideo-R1's difficulty-aware data augmentation (arXiv 2506.07464; spec part A §5), for text prompts.

    1. Difficulty of each group: ``ΔR = reference − mean_G r`` with ``reference`` the mean of the replay buffer of
       the last ``window`` rewards of earlier steps (``state["buffer"]``, checkpointed; the batch mean at the first
       step), then this batch's (un-augmented) rewards enter the buffer
       (:func:`~grpolab.core.scaffold.difficulty_gap`, :func:`~grpolab.core.scaffold.update_buffer`).
    2. Strength ``s = min(1, |ΔR| / scale)`` (UNVERIFIED monotone scaling).
    3. Hard groups (ΔR > margin): the prompt becomes the hinted prompt of level ``ceil(s·K)`` of its K levels
       (:func:`level_prompts`: the ``hints`` column or answer prefixes; the paper inserts a partial reasoning
       trace of a ground-truth-guided completion, longer for larger |ΔR|). Easy groups (ΔR < −margin): ``ceil(s ·
       max_noise)`` spaces inserted where they split no number or word
       (:func:`~grpolab.core.scaffold.space_noise`; the paper adds Gaussian noise to video frames, which text does
       not have).
    4. Every augmented group is re-sampled under its augmented prompt (as many completions as it had, all groups in
       one ``ctx.sample`` call) and its new completions replace the old ones in place. They are trained under the
       prompt they were sampled with, so they are on-policy (``extras["off_policy"]`` False); ``extras
       ["hint_level"]`` and ``extras["noise"]`` (long) say how each completion's prompt was changed.

    Args:
        state: run argument; holds ``buffer`` (the last ``window`` rewards).
        step: run argument; seeds the noise (with ``seed``), so a resumed run draws the same noise.
        window: replay-buffer size W; paper 100, usually 50 to 1,000.
        scale: |ΔR| of full strength; default 1.0 (a 0/1 reward), usually the reward range.
        margin: |ΔR| at or below which a group is left alone; default 0.0 (the paper's sign test), usually 0 to 0.3
            (a margin saves re-sampling groups that are about average).
        hard: ``"hint"`` (default) or ``"none"`` (hard groups are left alone).
        easy: ``"space_noise"`` (default) or ``"none"`` (for tasks where whitespace matters).
        max_noise: spaces at full strength; default 4 (our choice), usually 1 to 8.
        hints_key, answer_key, template, fallback_levels: the hint source, as ``scaf_grpo``.
        seed: seed of the noise positions; default 0.

    Metrics (``aug/``): ``reference``, ``hard_frac`` / ``easy_frac`` (augmented groups / groups), ``mean_hint_level``,
    ``mean_noise``, ``reward_before`` / ``reward_after`` (mean reward of the augmented groups before and after),
    ``zero_var_before`` / ``zero_var_after`` (groups whose rewards are all equal, over all groups).
    """
    name = "difficulty_augment"
    check_int("window", window, minimum=1, where=name)
    check_int("max_noise", max_noise, minimum=1, where=name)
    check_int("fallback_levels", fallback_levels, minimum=1, where=name)
    if not scale > 0:
        raise ValueError(f"{name}: scale must be > 0 (the |ΔR| of full strength; 1 for a 0/1 reward), got {scale}")
    if not margin >= 0:
        raise ValueError(f"{name}: margin must be >= 0, got {margin}")
    check_choice(name, "hard", hard, HARD_MODES)
    check_choice(name, "easy", easy, EASY_MODES)
    base = _prepare(name, sampled)
    device = sampled.reward.device
    group = sampled.group.to(device)  # [N]
    P = int(group.max().item()) + 1 if sampled.size else 0
    valid = sampled.valid.to(device)  # [N]
    reward = torch.where(valid, torch.nan_to_num(sampled.reward.float(), nan=0.0), 0.0)  # [N]

    buffer = list(state.get("buffer", []))
    reference = buffer_reference(buffer, reward[valid])
    gap = difficulty_gap(reward, group, P, reference=reference)  # [P]
    state["buffer"] = update_buffer(buffer, reward[valid], window=window)  # the un-augmented rewards
    strength = augmentation_strength(gap, scale=scale)  # [P]
    is_hard = (gap > margin) & (hard != "none")  # [P]
    is_easy = (gap < -margin) & (easy != "none")  # [P]

    first = first_member(group, P)  # [P]: the group's row
    prompt_index = sampled.gen.prompt_index.to(device)  # [N]
    rng = random.Random(f"difficulty_augment:{seed}:{step}")  # deterministic per step (and so across resumes)
    noise = noise_count(strength, max_noise=max_noise)  # [P]
    aug_groups: list[int] = []
    aug_rows: list[dict[str, Any]] = []
    aug_level: list[int] = []
    aug_noise: list[int] = []
    for g in range(P):
        if not (bool(is_hard[g]) or bool(is_easy[g])):
            continue
        row = sampled.rows[int(prompt_index[first[g]])]
        if bool(is_hard[g]):
            levels = level_prompts(
                row, hints_key=hints_key, answer_key=answer_key, template=template, fallback_levels=fallback_levels
            )
            k = int(hint_level_for(strength[g : g + 1], torch.tensor([len(levels)], device=device))[0])
            if k == 0:
                continue
            prompt, level, spaces = levels[k - 1], k, 0
        else:
            prompt, level, spaces = space_noise(row["prompt"], int(noise[g]), rng), 0, int(noise[g])
            if prompt == row["prompt"]:  # nothing to perturb: the group stays as it is
                continue
        aug_groups.append(g)
        aug_rows.append({**row, "prompt": prompt})
        aug_level.append(level)
        aug_noise.append(spaces)

    zero_var_before = _zero_variance_frac(reward, group, P)
    metrics = {
        "aug/reference": reference,
        "aug/hard_frac": 0.0,
        "aug/easy_frac": 0.0,
        "aug/mean_hint_level": 0.0,
        "aug/mean_noise": 0.0,
        "aug/reward_before": 0.0,
        "aug/reward_after": 0.0,
        "aug/zero_var_before": zero_var_before,
        "aug/zero_var_after": zero_var_before,
    }
    if not aug_groups:
        return base, metrics
    groups_t = torch.tensor(aug_groups, dtype=torch.long, device=device)  # [A]
    positions, counts = group_member_positions(group, groups_t)  # [M], [A]
    new = ctx.sample(aug_rows, counts.tolist())  # one call: counts[a] completions of each augmented prompt
    gen_device = sampled.gen.prompt_ids.device
    rows_of = sampled.gen.prompt_index[positions.to(gen_device)]  # [M]: the original row of each replaced slot
    level_t = torch.tensor(aug_level, dtype=torch.long, device=device).repeat_interleave(counts)  # [M]
    noise_t = torch.tensor(aug_noise, dtype=torch.long, device=device).repeat_interleave(counts)  # [M]
    new = replace(
        new,
        rows=sampled.rows,
        gen=replace(new.gen, prompt_index=rows_of),
        group=groups_t.repeat_interleave(counts),  # [M]: the original group
        extras={
            "off_policy": torch.zeros(new.size, dtype=torch.bool, device=device),  # trained under its own prompt
            "hint_level": level_t,
            "noise": noise_t,
        },
    )
    out = _splice(ctx, base, new, positions)
    new_reward = torch.where(new.valid.to(device), torch.nan_to_num(new.reward.float(), nan=0.0), 0.0)  # [M]
    out_reward = torch.where(out.valid.to(device), torch.nan_to_num(out.reward.float(), nan=0.0), 0.0)  # [N]
    levels_a = torch.tensor(aug_level, dtype=torch.float)  # [A]
    noise_a = torch.tensor(aug_noise, dtype=torch.float)  # [A]
    metrics.update(
        {
            "aug/hard_frac": float((levels_a > 0).sum()) / P,
            "aug/easy_frac": float((noise_a > 0).sum()) / P,
            "aug/mean_hint_level": levels_a[levels_a > 0].mean().item() if bool((levels_a > 0).any()) else 0.0,
            "aug/mean_noise": noise_a[noise_a > 0].mean().item() if bool((noise_a > 0).any()) else 0.0,
            "aug/reward_before": reward[positions].mean().item(),
            "aug/reward_after": new_reward.mean().item(),
            "aug/zero_var_after": _zero_variance_frac(out_reward, out.group.to(device), P),
        }
    )
    return out, metrics


def _zero_variance_frac(reward: torch.Tensor, group: torch.Tensor, num_groups: int) -> float:
    """Fraction of groups whose rewards are all equal (no GRPO signal)."""
    if num_groups == 0:
        return 0.0
    high = torch.full((num_groups,), -float("inf"), device=reward.device).scatter_reduce(0, group, reward, "amax")
    low = torch.full((num_groups,), float("inf"), device=reward.device).scatter_reduce(0, group, reward, "amin")
    return (high == low).float().mean().item()
