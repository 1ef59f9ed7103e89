"""The ``cgpo_baseline`` rollout strategy: CGPO's reference completion ȳ, scored (and optionally trained on).

CGPO (The Perfect Blend, arXiv 2409.20370) calibrates the reward model against the reference completion ȳ of each
prompt, R_cal = σ(r(x, y) − r(x, ȳ)); TRL's ``CGPOTrainer`` takes ȳ from the dataset (the prompt's completion in
its chat data) and scores it with the reward model at every step. Here ȳ is built from the task row's reference
column (``row[answer_key]`` through ``template``, then EOS, as ``expert_anchors`` builds its anchors) and scored with
every reward function of the task (``ctx.score``), so judges and reward model see it exactly like a sampled
completion. No generation is run.

Extras written for every completion (aligned with its prompt's ȳ):

- ``baseline_reward`` float [N]: the combined (weighted) reward of ȳ;
- ``baseline_rewards`` float [N, K]: each reward function's value on ȳ (NaN where it returned None or failed);
- ``baseline_row`` bool [N]: True on the appended ȳ rows (``append=True``), False on sampled completions.

With ``append=True`` (CRRAFT's fallback: when none of a prompt's responses passes the judges and the KL check,
CRRAFT trains on ȳ if ȳ passes them) one ȳ per prompt joins the batch as an off-policy completion of the prompt's
group (``extras["off_policy"]`` True). The ``cgpo_judges`` shaping excludes those rows from every optimizer's
candidates; only CRRAFT's fallback can select them.
"""

from __future__ import annotations

from dataclasses import replace

import torch

from grpolab.core.cgpo import BASELINE_REWARD, BASELINE_REWARDS, BASELINE_ROW
from grpolab.core.checks import check_int
from grpolab.core.dagrpo import first_member
from grpolab.rollout.anchors import reference_token_lists
from grpolab.rollout.hf import Generation
from grpolab.rollout.strategies import ROLLOUT_STRATEGIES, RolloutContext, Sampled, check_fillable_extras


@ROLLOUT_STRATEGIES.register("cgpo_baseline")
def cgpo_baseline(
    ctx: RolloutContext,
    sampled: Sampled,
    *,
    max_len: int,
    answer_key: str = "answer",
    template: str = "{answer}",
    append: bool = True,
) -> tuple[Sampled, dict[str, float]]:
    """Score the reference completion ȳ of every prompt group and store its rewards in the extras (see the module
    docstring); with ``append`` also add ȳ to the group as an off-policy completion.

    Args:
        max_len: run argument (the generation limit): ȳ is cut to it (a cut ȳ has no EOS and is marked truncated).
        answer_key: the task column holding the reference completion; default ``"answer"`` (the built-in tasks).
        template: format string of ȳ with ``{answer}``; default ``"{answer}"`` (the column is the completion).
        append: add ȳ to the batch (CRRAFT's fallback needs it); default True. Costs one more row per prompt in the
            log-prob passes; False only scores ȳ.

    Must come before strategies that add per-completion extras of their own (as ``expert_anchors``).
    Metrics: ``cgpo/baseline_reward_mean`` (mean combined reward of ȳ over the prompts).
    """
    name = "cgpo_baseline"
    check_int("max_len", max_len, minimum=1, where=name, hint="the generation limit")
    if not isinstance(append, bool):
        raise ValueError(f"{name}: append must be True or False, got {append!r}")
    if append:
        check_fillable_extras(sampled, name)
    device = sampled.reward.device
    group = sampled.group.to(device)  # [N]
    P = int(group.max().item()) + 1
    src = first_member(group, P)  # [P]: one source completion per group, for its prompt ids
    gen = sampled.gen
    src_gen = src.to(gen.completion_ids.device)  # [P]
    rows = [sampled.rows[i] for i in gen.prompt_index[src_gen].tolist()]
    missing = [i for i, row in enumerate(rows) if answer_key not in row]
    if missing:
        raise ValueError(
            f"{name}: task rows have no {answer_key!r} column (columns: {sorted(rows[missing[0]])}); set answer_key "
            "to the column holding the reference completion, or drop the strategy (then r(x, ȳ) = 0)"
        )
    token_lists, cut = reference_token_lists(
        ctx.tokenizer, rows, answer_key=answer_key, template=template, max_len=max_len
    )
    ref_gen = Generation.from_token_lists(
        token_lists,
        prompt_ids=gen.prompt_ids[src_gen],  # [P, Lp]
        prompt_mask=gen.prompt_mask[src_gen],  # [P, Lp]
        prompt_index=gen.prompt_index[src_gen],  # [P]
        pad_id=ctx.pad_id,
        truncated=cut,  # [P]
        texts=ctx.tokenizer.batch_decode(token_lists, skip_special_tokens=True),
    )
    scored = ctx.score(sampled.rows, ref_gen)  # reward [P], rewards [P, K]: scored by every reward function
    ref_reward = scored.reward.to(device)  # [P]; group j's ȳ is row j
    ref_rewards = scored.rewards.to(device)  # [P, K]
    extras = {
        **sampled.extras,
        BASELINE_REWARD: ref_reward[group],  # [N]
        BASELINE_REWARDS: ref_rewards[group],  # [N, K]
        BASELINE_ROW: torch.zeros(sampled.size, dtype=torch.bool, device=device),  # [N]
    }
    out = replace(sampled, extras=extras)
    metrics = {"cgpo/baseline_reward_mean": torch.nan_to_num(ref_reward, nan=0.0).mean().item()}
    if not append:
        return out, metrics
    refs = replace(
        scored,
        group=torch.arange(P, device=device),  # [P]: group j's ȳ joins group j
        extras={
            BASELINE_REWARD: ref_reward,  # [P]
            BASELINE_REWARDS: ref_rewards,  # [P, K]
            BASELINE_ROW: torch.ones(P, dtype=torch.bool, device=device),  # [P]
            "off_policy": torch.ones(P, dtype=torch.bool, device=device),  # [P]: not sampled from the policy
        },
    )
    return out.append(refs, ctx.pad_id), metrics
