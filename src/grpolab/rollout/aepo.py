"""AEPO's rollout strategy: re-sample a quarter of the prompts at an entropy-chosen temperature and let the positive
completions overwrite the first rows of the batch (Arbitrary Entropy Policy Optimization, arXiv 2510.08141; code
597358816/AEPO ``verl/trainer/ray_trainer.py::fit``, branch ``alg == "AEPO"``).

The math (temperature choice, positive selection, count) is in :mod:`grpolab.core.aepo`; this module samples.
"""

from __future__ import annotations

from dataclasses import replace

import torch

from grpolab.core.aepo import (
    OVERWRITTEN_KEY,
    REINFORCE_KEY,
    choose_temperature,
    regularizer_count,
    select_positives,
)
from grpolab.core.stats import masked_mean
from grpolab.rollout.strategies import ROLLOUT_STRATEGIES, RolloutContext, Sampled

ENTROPY_ESTIMATORS = ("sampled", "exact")


@ROLLOUT_STRATEGIES.register("aepo")
def aepo(
    ctx: RolloutContext,
    sampled: Sampled,
    *,
    target: float = 0.5,
    t_high: float = 1.2,
    t_low: float = 0.8,
    num_generations: int = 5,
    prompt_fraction: float = 0.25,
    threshold: float = 0.05,
    reinforce_sample_num: int = 60,
    entropy_estimator: str = "sampled",
    state: dict,
) -> tuple[Sampled, dict[str, float]]:
    """AEPO's regulariser batch (arXiv 2510.08141, §4; the official ``ray_trainer.py``), one extra generation:

    1. T from the entropy H of the *previous* step (``state["entropy"]``; none yet → 0 → T_high, as the code's
       ``entropy = 0`` start): :func:`~grpolab.core.aepo.choose_temperature`.
    2. Re-sample the first ``max(1, int(P · prompt_fraction))`` prompts of the batch at T, ``num_generations``
       completions each (code: ``gen_batch[: len // 4]``, ``n = rollout.n``), scored by the task.
    3. Keep those with GRPO advantage > ``threshold`` (:func:`~grpolab.core.aepo.select_positives`), the first
       k = :func:`~grpolab.core.aepo.regularizer_count` of them in sampling order.
    4. They overwrite the first k rows of the main batch (code: ``concat([positives[:k], batch[k:]])``): they are
       appended, flagged in ``extras["aepo_reinforce"]`` (bool), and the ``aepo`` advantage gives them 1; they get
       group ids of their own (no group statistics are shared with the main rows). The k overwritten main rows stay
       in the returned batch, flagged in ``extras["aepo_overwritten"]``, because the code computes the GRPO
       advantages of the batch before the overwrite: the ``aepo`` advantage counts them in their groups' statistics
       and the ``aepo_overwritten`` filter then drops them, so P·G rows are trained as in the code (a preset using
       this strategy needs that filter). Rows: the P·G main rows in order, then the k regulariser rows.
    5. Measure H for the next step on the training rows (all but the overwritten ones) with the current policy
       (``ctx.token_outputs``, one forward pass without gradient) and store it in ``state["entropy"]``: the code
       uses ``actor/entropy_loss`` of the update, i.e. the entropy of this policy on this step's training batch,
       read at the next step.

    Why the previous step's entropy and not one measured on the current batch before choosing T: it is what the
    code does (the paper's H(π_θold) is read from the last update's metrics), and the state then carries the
    controller across checkpoints exactly (``state`` is saved with them). Both cost the same forward pass.

    Args:
        target: H_target (``entropy_base``); paper 0.5, README's best 0.75; usually 0.3 to 1.0.
        t_high, t_low: temperatures below / above the target; paper 1.2 / 0.8.
        num_generations: n completions per re-sampled prompt; paper 5 (= ``rollout.n``); usually 4 to 16.
        prompt_fraction: share of the batch's prompts re-sampled; code 1/4 (at least one prompt here, the code's
            ``len // 4`` would be empty below 4 prompts); in (0, 1].
        threshold: GRPO-advantage threshold of a positive, code 0.05.
        reinforce_sample_num: maximum regulariser rows per step; paper 60 (halved above the target).
        entropy_estimator: ``"sampled"`` (code: ``actor/entropy_loss = −masked_mean(log_probs)``, the mean negative
            log-prob of the sampled tokens, an unbiased estimate of the token entropy) or ``"exact"`` (the entropy
            of the full next-token distribution, averaged over tokens).
        state: run-supplied; holds ``entropy`` (float, H for the next step) and ``temperature`` (the last T).
    """
    if not 0.0 < prompt_fraction <= 1.0:
        raise ValueError(f"aepo: prompt_fraction must be in (0, 1] (code 0.25), got {prompt_fraction}")
    if isinstance(num_generations, bool) or not isinstance(num_generations, int) or num_generations < 2:
        raise ValueError(
            f"aepo: num_generations must be an int >= 2 (GRPO needs a group; paper 5), got {num_generations!r}"
        )
    if entropy_estimator not in ENTROPY_ESTIMATORS:
        raise ValueError(
            f"aepo: entropy_estimator must be one of {list(ENTROPY_ESTIMATORS)}, got {entropy_estimator!r}"
        )
    entropy = state.get("entropy")  # H of the previous step (None before the first)
    temperature = choose_temperature(entropy, target=target, t_high=t_high, t_low=t_low)
    P = len(sampled.rows)
    q = max(1, int(P * prompt_fraction))
    extra = ctx.sample(sampled.rows[:q], num_generations, temperature=temperature)  # one extra generation
    positives = select_positives(extra.reward, extra.group, valid=extra.valid, threshold=threshold)  # [K]
    k = min(regularizer_count(len(positives), entropy=entropy, target=target, limit=reinforce_sample_num), sampled.size)
    N = sampled.size
    device = sampled.group.device
    gone = torch.arange(N, device=device) < k  # [N]: AEPO: the regulariser rows overwrite the first k main rows
    flags = {REINFORCE_KEY: torch.zeros(N, dtype=torch.bool, device=device), OVERWRITTEN_KEY: gone}
    main = replace(sampled, extras={**sampled.extras, **flags})  # all P·G rows: the GRPO groups stay whole
    reg = extra.take(positives[:k])
    reg = replace(
        reg,
        group=reg.group.to(device) + P,  # own groups: they share no statistics with the main rows
        extras={REINFORCE_KEY: torch.ones(k, dtype=torch.bool, device=device)},
    )
    # a fill for every key, even those both sides have: Sampled.append evaluates its fill eagerly
    fill = {key: _fill_value(value) for key, value in main.extras.items()}
    out = main.append(reg, ctx.pad_id, fill=fill)  # reg's prompt_index points at rows[:q] = the same prompts
    out = replace(out, group=torch.unique(out.group, return_inverse=True)[1])  # ids 0..P'-1, every one present

    trained = out.take(torch.arange(k, N + k, device=device))  # the P·G rows the update sees (code: entropy_batch)
    logp, ent = ctx.token_outputs(trained.gen)  # [N, T] each, current policy, no gradient
    mask = trained.gen.completion_mask.to(logp.device)  # [N, T]
    measured = masked_mean(-logp if entropy_estimator == "sampled" else ent, mask).item()
    state["entropy"] = measured  # read by the next step (code: entropy = metrics["actor/entropy_loss"])
    state["temperature"] = temperature
    metrics = {
        "aepo/temperature": temperature,
        "aepo/entropy": measured,
        "aepo/positives": float(len(positives)),
        "aepo/reinforce_rows": float(k),
        "aepo/resample_reward": extra.reward.mean().item(),
    }
    return out, metrics


def _fill_value(value: object) -> object:
    """Fill value for an extra the regulariser rows lack (0 / False), so earlier strategies may add extras."""
    if isinstance(value, torch.Tensor):
        return False if value.dtype == torch.bool else 0
    return None
