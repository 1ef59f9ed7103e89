"""The ``brpo_budgets`` rollout strategy: cut each completion at S thinking budgets and sample summaries there.

Optimizing Anytime Reasoning via Budget Relative Policy Optimization (AnytimeReasoner, arXiv 2505.13438). The math
(budgets, priors, returns, the BRPO baseline) is in :mod:`grpolab.core.brpo`; this module only samples.
"""

from __future__ import annotations

from dataclasses import replace

import torch

from grpolab.core.brpo import budget_cuts, budget_positions, budget_rewards
from grpolab.rollout.strategies import ROLLOUT_STRATEGIES, RolloutContext, Sampled


@ROLLOUT_STRATEGIES.register("brpo_budgets")
def brpo_budgets(
    ctx: RolloutContext,
    sampled: Sampled,
    *,
    num_budgets: int = 4,
    n_summary: int = 4,
    summary_tokens: int = 128,
    summary_marker: str = "",
    max_len: int,
) -> tuple[Sampled, dict[str, float]]:
    """Cut every completion ("thinking") at the budgets ``b_j = ⌊j·L/S⌋`` (L = ``max_len``), append
    ``summary_marker`` and sample ``n_summary`` summaries of at most ``summary_tokens`` tokens after each cut, all
    in ONE ``ctx.continue_from`` call; score them; append them to the batch (they are trained: the decoupled
    summary policy of arXiv 2505.13438 §3.2) and store the extras the ``brpo`` advantage reads
    (``brpo_budget_reward``, ``brpo_cuts``, ``brpo_budget``, ``brpo_source``, ``prefix_len``; see
    :mod:`grpolab.core.brpo`). A completion that ended (EOS) within a budget is not cut there: its own reward is
    the budget reward. Summary rows share the prompt group of their thinking row; their ``prefix_len`` (thinking
    prefix + marker) keeps the given tokens out of the loss with the ``mask_prefix`` selector.

    Args:
        num_budgets: S, paper default 4 (budgets 2k/4k/6k/8k of 8000 tokens); usually 1 to 8; S <= max_len.
        n_summary: summaries per (completion, budget), paper default 4 (the GRPO recipe uses 1); usually 1 to 8.
        summary_tokens: limit of each summary, paper default 128 at L = 8000 (the code samples 118 after its
            10-token delimiter); for the character-level arith task a few tokens (the answer and EOS) suffice.
        summary_marker: text placed between the cut thinking and the summary, tokenised with ``ctx.tokenizer``
            (no special tokens added). The paper inserts ``"...\\n\\n...\\n\\n</think>\\n\\n**Final Answer**\\n"``;
            default ``""`` (the answer is read directly): the built-in ``arith`` task has no thinking/answer
            separator, its completions are the answer digits, and a marker would make every summary text wrong.
        max_len: the run's generation limit (supplied by the trainer).

    Metrics: ``brpo_summaries`` (summaries sampled), ``brpo_ended_frac`` (cells whose completion ended within the
    budget), ``brpo_score_b<b_j>`` (mean budget reward at each budget: the anytime curve).
    """
    if isinstance(n_summary, bool) or not isinstance(n_summary, int) or n_summary < 1:
        raise ValueError(f"brpo_budgets: n_summary must be an int >= 1, got {n_summary!r}; paper default 4")
    if isinstance(summary_tokens, bool) or not isinstance(summary_tokens, int) or summary_tokens < 1:
        raise ValueError(f"brpo_budgets: summary_tokens must be an int >= 1, got {summary_tokens!r}; paper 128")
    if not isinstance(summary_marker, str):
        raise ValueError(f"brpo_budgets: summary_marker must be a string, got {type(summary_marker).__name__}")
    budgets = budget_positions(max_len, num_budgets)
    gen = sampled.gen
    dev = sampled.reward.device
    N = sampled.size
    lengths = gen.completion_mask.sum(-1).to(dev)  # [N]
    cuts, needs = budget_cuts(lengths, ~gen.truncated.to(dev), budgets)  # [N, S], [N, S]
    src, bud = needs.nonzero(as_tuple=True)  # [M], [M]: the cells that get summaries
    suffix = ctx.tokenizer.encode(summary_marker, add_special_tokens=False) if summary_marker else []
    source = torch.arange(N, device=dev)  # [N]
    main_extras = {
        "brpo_cuts": cuts,  # [N, S]
        "brpo_budget": torch.full((N,), -1, dtype=torch.long, device=dev),  # [N]: thinking rows
        "brpo_source": source,  # [N]
        "prefix_len": torch.zeros(N, dtype=torch.long, device=dev),  # [N]: thinking tokens are all sampled
    }
    metrics = {"brpo_summaries": 0.0, "brpo_ended_frac": (~needs).float().mean().item()}
    if src.numel() == 0:  # every completion ended within the first budget: nothing to summarise
        rbar = budget_rewards(sampled.reward, needs, sampled.reward[:0], src, bud)  # [N, S]
        out = replace(sampled, extras={**sampled.extras, **main_extras, "brpo_budget_reward": rbar})
    else:
        summaries = ctx.continue_from(
            sampled, src, cuts[src, bud], n_summary, suffix_ids=suffix, max_new_tokens=summary_tokens
        )  # M * n_summary rows, in the order of (src, bud) repeated n_summary times
        s_src = src.repeat_interleave(n_summary)  # [M * n]
        s_bud = bud.repeat_interleave(n_summary)  # [M * n]
        rbar = budget_rewards(sampled.reward, needs, summaries.reward, s_src, s_bud, summaries.valid)  # [N, S]
        summary_extras = {
            "brpo_budget_reward": rbar[s_src],  # [M * n, S]: the source's, for alignment only
            "brpo_cuts": cuts[s_src],  # [M * n, S]
            "brpo_budget": s_bud,  # [M * n]
            "brpo_source": s_src,  # [M * n]
            "prefix_len": summaries.extras["prefix_len"].to(dev).long(),  # [M * n]: thinking prefix + marker
        }
        main_extras = {**sampled.extras, **main_extras, "brpo_budget_reward": rbar}
        out = replace(sampled, extras=main_extras).append(replace(summaries, extras=summary_extras), ctx.pad_id)
        metrics["brpo_summaries"] = float(s_src.numel())
    for j, b in enumerate(budgets):
        metrics[f"brpo_score_b{b}"] = rbar[:, j].mean().item()
    return out, metrics
