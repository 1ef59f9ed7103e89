"""The ``expert_anchors`` rollout strategy: DaGRPO's off-policy data augmentation for hard prompts.

DaGRPO (arXiv 2512.06337, abstract: "Off-policy Data Augmentation, which introduces high-quality anchors to
recover training signals for challenging tasks"). Interpretation (no code or full text; spec part A §6, as in
LUFFY / ICPO): for every group whose completions all scored 0, one expert completion is appended to that group,
built from the task row's reference answer. Without it such a group has zero variance and no gradient; with it the
anchor gets a positive advantage and the failed samples a negative one.

How anchors enter the loss: *plainly*, as one more completion of the group. The trainer computes every row's
old log-probs (and, on-policy, the ratio) with the current policy, so the anchor's ratio is
``π_θ / π_θ_old`` (1 at the first update) and its clipped surrogate is an advantage-weighted log-likelihood (SFT)
term. This is *not* LUFFY's regularised importance sampling ``f(π_θ / π_expert)``: the expert policy's
probabilities are unknown (a reference answer, not a model), and LUFFY itself sets π_expert = 1. Anchors are
marked in ``extras["off_policy"]`` (bool [N]) so a loss or a metric can treat them differently.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch

from grpolab.core.checks import check_choice, check_int
from grpolab.core.dagrpo import first_member, hard_groups
from grpolab.rollout.hf import Generation
from grpolab.rollout.strategies import ROLLOUT_STRATEGIES, RolloutContext, Sampled, check_fillable_extras

HARD_SIGNALS = ("accuracy", "reward")


def reference_token_lists(
    tokenizer: Any, rows: list[dict], *, answer_key: str, template: str, max_len: int
) -> tuple[list[list[int]], list[bool]]:
    """Token ids of each row's reference completion: ``template.format(answer=row[answer_key])`` tokenised without
    special tokens, then EOS, cut to ``max_len`` tokens; and whether it was cut (then it has no EOS: truncated).
    Shared by ``expert_anchors`` and ``dataset_reset``; pass them to ``Generation.from_token_lists``."""
    token_lists, cut = [], []
    for row in rows:
        text = template.format(answer=row[answer_key])
        ids = [*tokenizer(text, add_special_tokens=False)["input_ids"], tokenizer.eos_token_id]
        cut.append(len(ids) > max_len)
        token_lists.append(ids[:max_len])
    return token_lists, cut


@ROLLOUT_STRATEGIES.register("expert_anchors")
def expert_anchors(
    ctx: RolloutContext,
    sampled: Sampled,
    *,
    max_len: int,
    answer_key: str = "answer",
    template: str = "{answer}",
    hard_signal: str = "accuracy",
    threshold: float = 0.0,
) -> tuple[Sampled, dict[str, float]]:
    """Append one expert completion (the reference answer, then EOS) to each group where every completion scored
    at most ``threshold``; mark it in ``extras["off_policy"]``.

    The anchor's text is ``template.format(answer=row[answer_key])``, tokenised with ``ctx.tokenizer`` (no special
    tokens) and ended with EOS; it is cut to ``max_len`` tokens (the run's generation limit, so an anchor is never
    longer than a sampled completion; a cut anchor has no EOS and is marked truncated). Its prompt ids are those of
    the group's first completion in ``sampled.gen``, its group that completion's group, and it is scored with the
    task's rewards (``ctx.score``), so a wrong template shows up as a low ``anchor_reward``. No generation is run.

    Args:
        max_len: run argument (the generation limit).
        answer_key: the task column holding the reference answer; default ``"answer"`` (the built-in arith task).
        template: format string of the anchor completion with ``{answer}``; default ``"{answer}"`` (arith's
            completion format: the answer digits, then EOS).
        hard_signal: ``"accuracy"`` (default: the task's 0/1 verifier, "no positive sample") or ``"reward"`` (the
            combined reward).
        threshold: a group is hard when every completion's signal is <= threshold; default 0.0.

    Must come before strategies that add per-completion extras (e.g. ``token_ids``), except ``prefix_len`` and
    ``off_policy``, which are filled (0 and False) for the other side. A step without a hard group returns the batch
    as it is (the trainer fills ``off_policy`` False for it).
    """
    check_choice("expert_anchors", "hard_signal", hard_signal, HARD_SIGNALS)
    check_int("max_len", max_len, minimum=1, where="expert_anchors", hint="the generation limit")
    check_fillable_extras(sampled, "expert_anchors")
    device = sampled.reward.device
    signal = sampled.accuracy if hard_signal == "accuracy" else sampled.reward  # [N]
    signal = torch.nan_to_num(signal.float(), nan=0.0)  # [N]
    group = sampled.group.to(device)  # [N]
    P = int(group.max().item()) + 1
    hard = hard_groups(signal, group, threshold=threshold)  # [P]
    if not bool(hard.any()):
        return sampled, {"anchor_frac": 0.0}
    src = first_member(group, P)[hard]  # [M]: one source completion per hard group
    gen = sampled.gen
    rows = [sampled.rows[i] for i in gen.prompt_index[src].tolist()]
    if any(answer_key not in row for row in rows):
        raise ValueError(
            f"expert_anchors: task rows have no {answer_key!r} column (columns: {sorted(rows[0])}); set answer_key "
            "to the column that holds the reference solution"
        )
    token_lists, cut = reference_token_lists(
        ctx.tokenizer, rows, answer_key=answer_key, template=template, max_len=max_len
    )
    M = len(token_lists)
    src_gen = src.to(gen.completion_ids.device)  # [M]
    anchor_gen = Generation.from_token_lists(
        token_lists,
        prompt_ids=gen.prompt_ids[src_gen],  # [M, Lp]: the hard group's own prompt
        prompt_mask=gen.prompt_mask[src_gen],  # [M, Lp]
        prompt_index=gen.prompt_index[src_gen],  # [M]
        pad_id=ctx.pad_id,
        truncated=cut,  # [M]
        texts=ctx.tokenizer.batch_decode(token_lists, skip_special_tokens=True),
    )
    scored = ctx.score(sampled.rows, anchor_gen)
    anchors = replace(
        scored,
        group=group[src],  # [M]: the advantage group of the hard prompt
        extras={"off_policy": torch.ones(M, dtype=torch.bool, device=device)},  # [M]
    )
    out = sampled.append(anchors, ctx.pad_id)  # the sampled rows get off_policy False
    metrics = {"anchor_frac": M / P, "anchor_reward": anchors.reward.mean().item()}
    return out, metrics
