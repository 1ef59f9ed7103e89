"""T-PPO's window rollouts with successive batching (Truncated Proximal Policy Optimization, arXiv 2506.15050).

Each response advances by at most l tokens per step. A response that has not ended is kept in the strategy's
``state`` (its task row, prompt ids and tokens so far: plain lists, so checkpoints carry it) and continued by the
next window at the next step; the slots of finished responses are filled by new prompts, so the batch size stays
P·G. The policy trains on the window tokens only (``extras["prefix_len"]`` + the ``mask_prefix`` selector); EGAE
(:mod:`grpolab.core.egae`) bootstraps the unfinished ones.

Trainer limitation: the trainer samples the P·G new completions at the full ``max_new_tokens`` before any strategy
runs; this strategy keeps their first l tokens (the same distribution as sampling l tokens) and drops the rows that
continued responses replace. The generation time T-PPO saves is therefore not saved here.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch
from torch import Tensor

from grpolab.core.egae import unfinished, window_length
from grpolab.rollout.hf import Generation
from grpolab.rollout.strategies import ROLLOUT_STRATEGIES, RolloutContext, Sampled


@ROLLOUT_STRATEGIES.register("windows")
def windows(
    ctx: RolloutContext,
    sampled: Sampled,
    *,
    window: float = 0.25,
    successive: bool = True,
    max_len: int,
    state: dict,
) -> tuple[Sampled, dict[str, float]]:
    """Window rollouts (T-PPO, arXiv 2506.15050, §3): at most ``l = window_length(max_len, window=window)`` new
    tokens per response per step.

    With ``successive`` (the paper's successive batching): the M responses left unfinished by the last step
    (``state["pending"]``) are continued by one window in one ``ctx.continue_from`` call (their earlier tokens are
    given: ``extras["prefix_len"]``), and the first P·G − M of this step's new completions, cut to l tokens, fill the
    batch. Responses that are still unfinished and shorter than ``max_len`` go back to ``state["pending"]``. Without
    ``successive``: every new completion is cut to l tokens and the rest of it is never generated (per-step window
    truncation; EGAE bootstraps the cut responses).

    In the returned batch ``gen.truncated`` means *unfinished*: cut by a window below ``max_len`` and not ended by
    EOS or a stop string. A response that reaches ``max_len`` is complete (reward = its return, as in PPO; the
    critic learns from it). Rewards are recomputed on the cut texts (``egae`` ignores the score of an unfinished
    text). A continued response forms its own group. Must be the first rollout strategy (it rebuilds the batch).

    Args:
        window: l as a fraction of ``max_len`` in (0, 1]; default 0.25 (T-PPO's window length was not recovered
            from the paper; 1 gives ordinary PPO rollouts).
        successive: continue unfinished responses at the next step (paper) or drop them after one window.
        max_len, state: run-supplied (the response length limit; the pending responses).
    """
    if sampled.extras:
        raise ValueError(f"windows: must be the first rollout strategy, found extras {sorted(sampled.extras)}")
    l = window_length(max_len, window=window)  # noqa: E741 (the paper's l)
    N, device = sampled.size, sampled.group.device
    pending: list[dict[str, Any]] = list(state.get("pending", [])) if successive else []
    carried, later = pending[:N], pending[N:]  # at most a batch of continuations; the rest wait
    M = len(carried)

    fresh = sampled.take(torch.arange(N - M, device=device))  # slots left for new prompts
    fresh = _rescore(ctx, fresh, _cut(ctx, fresh.gen, torch.full((N - M,), l, device=device)))
    fresh = replace(fresh, extras={"prefix_len": torch.zeros(N - M, dtype=torch.long, device=device)})
    out = fresh
    if M:
        carry = _carry_batch(ctx, carried)
        lengths = carry.gen.completion_mask.sum(-1)  # [M]
        cont = ctx.continue_from(carry, torch.arange(M, device=device), lengths, 1, max_new_tokens=l)
        capped = _cut(ctx, cont.gen, torch.full((M,), max_len, device=device))  # a response ends at max_len
        if not torch.equal(capped.completion_mask, cont.gen.completion_mask):
            cont = _rescore(ctx, cont, capped)
        out = _join(ctx, fresh, cont)

    lengths = out.gen.completion_mask.sum(-1)  # [N]
    open_rows = unfinished(lengths, out.gen.truncated, max_len=max_len)  # [N]
    # from here on `truncated` means "unfinished": a response that reached max_len is complete (its task reward is
    # its return, as in PPO), so EGAE ends it and the critic (value_loss finished_only) learns from it
    out = replace(out, gen=replace(out.gen, truncated=open_rows))
    if successive:
        state["pending"] = [_record(out, i) for i in open_rows.nonzero().flatten().tolist()] + later
    metrics = {
        "window/len": float(l),
        "window/continued": float(M),
        "window/unfinished_frac": open_rows.float().mean().item(),
        "window/pending": float(len(state.get("pending", []))),
        "window/reward_finished": _mean(out.reward, ~out.gen.truncated),
    }
    return out, metrics


def _cut(ctx: RolloutContext, gen: Generation, limit: Tensor) -> Generation:
    """``gen`` with completion i cut to its first ``limit[i]`` tokens; a cut completion is ``truncated`` (it did not
    end), the others keep their flag. Texts are decoded again."""
    lengths = gen.completion_mask.sum(-1)  # [N]
    cut = lengths > limit  # [N]
    T = max(1, int(torch.minimum(lengths, limit).max())) if lengths.numel() else 1
    t = torch.arange(T, device=gen.completion_ids.device)  # [T]
    mask = gen.completion_mask[:, :T] & (t[None, :] < limit[:, None])  # [N, T]
    ids = torch.where(mask, gen.completion_ids[:, :T], ctx.pad_id)  # [N, T]
    texts = ctx.tokenizer.batch_decode(ids, skip_special_tokens=True) if len(ids) else []
    return replace(gen, completion_ids=ids, completion_mask=mask, truncated=gen.truncated | cut, texts=texts)


def _rescore(ctx: RolloutContext, sampled: Sampled, gen: Generation) -> Sampled:
    """``sampled`` with ``gen`` and its task rewards (group and extras kept)."""
    if gen.completion_ids.shape[0] == 0:
        return replace(sampled, gen=gen)
    scored = ctx.score(sampled.rows, gen)
    return replace(scored, group=sampled.group, extras=sampled.extras)


def _record(out: Sampled, i: int) -> dict[str, Any]:
    """One unfinished response as plain Python data (checkpoint-safe): task row, prompt ids, tokens so far."""
    gen = out.gen
    return {
        "row": out.rows[int(gen.prompt_index[i])],
        "prompt": gen.prompt_ids[i][gen.prompt_mask[i]].tolist(),
        "tokens": gen.completion_ids[i][gen.completion_mask[i]].tolist(),
    }


def _carry_batch(ctx: RolloutContext, records: list[dict[str, Any]]) -> Sampled:
    """The stored unfinished responses as a Sampled (one row per response, prompts left-padded) to continue from."""
    M, device = len(records), ctx.device
    Lp = max(len(r["prompt"]) for r in records)
    T = max(len(r["tokens"]) for r in records)
    prompt_ids = torch.full((M, Lp), ctx.pad_id, dtype=torch.long, device=device)  # [M, Lp]
    prompt_mask = torch.zeros(M, Lp, dtype=torch.bool, device=device)  # [M, Lp]
    ids = torch.full((M, T), ctx.pad_id, dtype=torch.long, device=device)  # [M, T]
    mask = torch.zeros(M, T, dtype=torch.bool, device=device)  # [M, T]
    for m, r in enumerate(records):
        p, c = r["prompt"], r["tokens"]
        prompt_ids[m, Lp - len(p) :] = torch.tensor(p, dtype=torch.long)
        prompt_mask[m, Lp - len(p) :] = True
        ids[m, : len(c)] = torch.tensor(c, dtype=torch.long)
        mask[m, : len(c)] = True
    gen = Generation(
        prompt_ids=prompt_ids,
        prompt_mask=prompt_mask,
        completion_ids=ids,
        completion_mask=mask,
        truncated=torch.ones(M, dtype=torch.bool, device=device),
        texts=ctx.tokenizer.batch_decode(ids, skip_special_tokens=True),
        prompt_index=torch.arange(M, device=device),
    )
    zeros = torch.zeros(M, device=device)  # [M]: not scored; continue_from scores the continuations
    return Sampled(
        rows=[r["row"] for r in records],
        gen=gen,
        reward=zeros,
        rewards=zeros[:, None],
        reward_names=(),
        valid=torch.ones(M, dtype=torch.bool, device=device),
        accuracy=zeros,
        group=torch.arange(M, device=device),
    )


def _join(ctx: RolloutContext, fresh: Sampled, cont: Sampled) -> Sampled:
    """New completions followed by continued ones, as one batch over the rows of both (each continued response in
    a group of its own; group ids renumbered 0..P'-1)."""
    P = len(fresh.rows)
    cont_gen = replace(cont.gen, prompt_index=cont.gen.prompt_index + P)  # its rows follow the new prompts
    group = torch.cat([fresh.group, P + torch.arange(cont.size, device=fresh.group.device)])  # [N]
    return Sampled(
        rows=[*fresh.rows, *cont.rows],
        gen=Generation.cat([fresh.gen, cont_gen], ctx.pad_id),
        reward=torch.cat([fresh.reward, cont.reward]),  # [N]
        rewards=torch.cat([fresh.rewards, cont.rewards]),  # [N, K]
        reward_names=cont.reward_names,
        valid=torch.cat([fresh.valid, cont.valid]),  # [N]
        accuracy=torch.cat([fresh.accuracy, cont.accuracy]),  # [N]
        group=torch.unique(group, return_inverse=True)[1],  # [N] ids 0..P'-1, every one present
        extras={"prefix_len": torch.cat([fresh.extras["prefix_len"], cont.extras["prefix_len"].to(group.device)])},
        metrics=fresh.metrics,
    )


def _mean(x: Tensor, where: Tensor) -> float:
    return x[where].mean().item() if bool(where.any()) else float("nan")
