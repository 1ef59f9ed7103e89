"""The ``dataset_reset`` rollout strategy: DR-PO's rollouts that start inside a reference response.

Dataset Reset Policy Optimization for RLHF (arXiv 2404.08495; code github.com/Cornell-RL/drpo ``src/tldr/drpo.py``
with ``RollinProcessor`` from github.com/Cornell-RL/tril). For a reset prompt, the first h tokens of its reference
(chosen) response y* are forced and the policy samples the rest; the completion is the whole y*_{<h} + sampled
text, scored as one response. The math (which groups reset, the roll-in lengths) is in :mod:`grpolab.core.reset`.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch

from grpolab.core.checks import check_int, check_number
from grpolab.core.dagrpo import first_member
from grpolab.core.reset import reset_groups, rollin_lengths
from grpolab.rollout.anchors import reference_token_lists
from grpolab.rollout.hf import Generation
from grpolab.rollout.strategies import (
    ROLLOUT_STRATEGIES,
    RolloutContext,
    Sampled,
    check_fillable_extras,
    cut_to_limit,
    with_default_extras,
)


def _generator(state: dict[str, Any], seed: int | None) -> torch.Generator:
    """The strategy's private CPU generator, continued from ``state["rng"]`` (saved in checkpoints, so a resumed run
    draws the same roll-ins). First call: seeded with ``seed``, or else with a draw from torch's global generator,
    which the trainer seeds from the run's seed (so runs with different seeds reset differently)."""
    g = torch.Generator()
    if "rng" in state:
        g.set_state(state["rng"])
    else:
        g.manual_seed(int(torch.randint(0, 2**62, (1,)).item()) if seed is None else seed)
    return g


@ROLLOUT_STRATEGIES.register("dataset_reset")
def dataset_reset(
    ctx: RolloutContext,
    sampled: Sampled,
    *,
    max_len: int,
    state: dict[str, Any],
    reset_prob: float = 1.0,
    answer_key: str = "answer",
    template: str = "{answer}",
    min_rollin: int = 1,
    seed: int | None = None,
) -> tuple[Sampled, dict[str, float]]:
    """Replace the completions of reset groups by DR-PO reset rollouts: the row's reference response rolled in up
    to a random length h, then sampled by the policy.

    Per prompt group, with probability ``reset_prob`` (``core.reset.reset_groups``) every completion of the group is
    replaced. The reference y* is ``template.format(answer=row[answer_key])`` tokenised, then EOS, cut to
    ``max_len`` (as ``expert_anchors`` builds it). Each replacing completion draws its own roll-in length h uniform
    on {min_rollin, ..., len(y*) − 1} (``core.reset.rollin_lengths``; min_rollin 1 is the code's
    ``RollinProcessor``: per row, EOS never forced), and all of them are generated in ONE ``ctx.continue_from`` call
    on a Generation holding the references. The completion is y*_{<h} + the sampled tokens, at most ``max_len``
    tokens in all (the roll-in spends the generation budget, as in the code; a longer one is cut, marked truncated
    and scored again), scored by the task as a whole, and keeps its group. ``extras["prefix_len"]`` = h marks the
    given tokens (the preset's ``mask_prefix`` selector keeps them out of the policy loss, the code's
    ``~rollin_mask``); ``off_policy`` stays False: the sampled tokens are the current policy's given the prefix.
    Both extras are written for every row (0 / False for groups that were not reset). Completions keep their
    positions in the batch.

    Generation cost: the main batch is sampled before the strategy runs, so the completions of reset groups are
    sampled and then dropped: with ``reset_prob`` 1 the whole main sample is wasted, and a step samples it plus
    the reset suffixes (1.5x PPO's sampled tokens in a 30-step arith run; the dropped ones are logged as
    ``reset_dropped_tokens``). A hook that picks the reset groups before the
    main sample would remove that waste (a trainer change, not available to a strategy).

    Randomness: a private ``torch.Generator`` whose state lives in ``state["rng"]`` (checkpointed, so a resumed
    run draws the same groups and lengths); the sampled tokens use torch's global generator as every rollout.

    Args:
        max_len: run argument (the generation limit).
        state: run argument (this part's checkpointed dict).
        reset_prob: probability that a group is reset, the code's ``beta``; default 1.0 (always reset, the code's
            default); in [0, 1], usually 0.5 to 1.0.
        answer_key: task column of the reference (chosen) response; default ``"answer"`` (the built-in arith task).
        template: format string of the reference completion with ``{answer}``; default ``"{answer}"``.
        min_rollin: shortest roll-in; default 1 (the code); 0 makes the prompt itself one of the reset states, so
            a reset row may train its first token (see ``core.reset.rollin_lengths``). Usually 0 or 1.
        seed: seed of the generator on the first call; default None (a draw from the run-seeded global generator).

    Must come before strategies that add per-completion extras other than ``prefix_len`` / ``off_policy``.
    """
    check_number("reset_prob", reset_prob, minimum=0, maximum=1, where="dataset_reset", hint="a probability")
    check_int("max_len", max_len, minimum=1, where="dataset_reset", hint="the generation limit")
    check_int("min_rollin", min_rollin, minimum=0, where="dataset_reset", hint="usually 0 or 1")
    if not isinstance(state, dict):
        raise ValueError("dataset_reset: state must be a dict (the trainer passes the part's checkpointed state)")
    check_fillable_extras(sampled, "dataset_reset")
    device = sampled.reward.device
    group = sampled.group.to(device)  # [N]
    P = int(group.max().item()) + 1
    sampled = with_default_extras(sampled)  # documented: both extras on every row, also when no group is reset

    g = _generator(state, seed)
    reset = reset_groups(torch.rand(P, generator=g, dtype=torch.float64), reset_prob=reset_prob).to(device)  # [P]
    replaced = reset[group]  # [N]: completions whose group is reset
    M = int(replaced.sum())
    u = torch.rand(M, generator=g, dtype=torch.float64)  # [M]: one roll-in draw per replacing completion
    state["rng"] = g.get_state()
    if M == 0:
        return sampled, {"reset_frac": 0.0}

    gen = sampled.gen
    gen_device = gen.completion_ids.device
    src = first_member(group, P)[reset]  # [R]: one source completion (its prompt) per reset group
    rows = [sampled.rows[i] for i in gen.prompt_index[src.to(gen_device)].tolist()]
    if any(answer_key not in row for row in rows):
        raise ValueError(
            f"dataset_reset: task rows have no {answer_key!r} column (columns: {sorted(rows[0])}); set answer_key "
            "to the column that holds the reference (chosen) response"
        )
    token_lists, cut = reference_token_lists(
        ctx.tokenizer, rows, answer_key=answer_key, template=template, max_len=max_len
    )
    src_gen = src.to(gen_device)  # [R]
    ref_gen = Generation.from_token_lists(
        token_lists,
        prompt_ids=gen.prompt_ids[src_gen],  # [R, Lp]: the group's own prompt
        prompt_mask=gen.prompt_mask[src_gen],  # [R, Lp]
        prompt_index=gen.prompt_index[src_gen],  # [R]
        pad_id=ctx.pad_id,
        truncated=cut,  # [R]
        texts=ctx.tokenizer.batch_decode(token_lists, skip_special_tokens=True),
    )
    references = replace(sampled.take(src), gen=ref_gen)  # R rows: the references of the reset groups

    positions = replaced.nonzero().flatten()  # [M]: batch positions of the replaced completions
    ref_row = (torch.cumsum(reset.long(), 0) - 1)[group[positions]]  # [M]: the reference of each one's group
    ref_len = torch.tensor([len(ids) for ids in token_lists], dtype=torch.long, device=device)[ref_row]  # [M]
    h = rollin_lengths(ref_len.cpu(), u, min_rollin=min_rollin).to(device)  # [M]: DR-PO's roll-in lengths
    # one call for all reset rollouts; the budget left after the shortest roll-in, then each cut to max_len in all
    cont = ctx.continue_from(references, ref_row, h, 1, max_new_tokens=max_len - int(h.min()))
    cont = cut_to_limit(ctx, cont, max_len)
    cont = replace(
        cont,
        extras={
            "prefix_len": cont.extras["prefix_len"].to(device).long(),  # [M]: = h, the rolled-in tokens
            "off_policy": torch.zeros(M, dtype=torch.bool, device=device),  # [M]: sampled by the current policy
        },
    )

    keep = (~replaced).nonzero().flatten()  # [N − M]
    out = sampled.take(keep).append(cont, ctx.pad_id)
    order = torch.argsort(torch.cat([keep, positions]))  # [N]: back to the original batch positions
    out = out.take(order)
    width = int(out.gen.completion_mask.sum(-1).max())  # drop columns only the dropped completions used
    ids, mask = out.gen.completion_ids[:, :width], out.gen.completion_mask[:, :width]  # [N, width]
    out = replace(out, gen=replace(out.gen, completion_ids=ids, completion_mask=mask))
    dropped = int(gen.completion_mask[replaced.to(gen_device)].sum())
    metrics = {
        "reset_frac": float(reset.float().mean()),
        "rollin_len": float(h.float().mean()),
        "rollin_frac": float((h.float() / ref_len.float().clamp(min=1)).mean()),
        "reset_reward": float(cont.reward.float().mean()),
        "reset_accuracy": float(cont.accuracy.float().mean()),
        "reset_dropped_tokens": float(dropped),
    }
    return out, metrics
