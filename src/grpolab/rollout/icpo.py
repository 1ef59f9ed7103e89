"""The ``icpo_expert`` rollout strategy: ICPO's implicit expert forcing (IEF) with a demonstration cache.

ICPO (Think Outside the Policy: In-Context Steered Policy Optimization, arXiv 2510.26519; code Celine-hxy/ICPO
``verl/recipe/icpo/trainer/icpo_trainer.py``, ``utils/demo_cache.py``, ``utils/prompt_builder.py``,
``utils/reward_score.py``). Per prompt the group holds G_on on-policy completions plus n_off completions that the
*same* policy wrote under an n_demo-shot demonstration prompt ``[demonstrations; question]`` (the in-context
"implicit expert"). Before the update the demonstration prompt is swapped back to the plain question
(``_reorganize_batch`` in the code), so the expert-steered answer is trained as a completion of the plain prompt,
off-policy (``extras["off_policy"]``; ``POLICY_LOSSES["mixed_policy"]`` weights it with f(π) = π/(π + λ)). Two
stabilisers act on those completions here:

- expert region reject sampling: an IEF completion is kept only if its reward ≥ δ (δ = 1: correct); the others
  are dropped (never appended), so a group gets between 0 and n_off of them;
- annealed expert bonus: a kept IEF completion's reward gets ``+ β·max(0, 1 − t/T)``
  (:func:`grpolab.core.mixed_policy.annealed_expert_bonus`), i.e. ``R = 1 + β·max(0, 1 − t/T)`` for a correct
  one under a 0/1 verifier, as in the code's ``compute_score_icpo_bonus``.

The demonstration cache lives in the strategy's run ``state`` (saved in checkpoints): ``state["demos"]``, a list of
``[question, solution]`` pairs, oldest first, filled from the task rows seen in batches that have a reference
column (``answer_key``); it keeps at most ``cache_size`` pairs (FIFO: the oldest leave first; a question seen again
moves to the newest end, as the code's timestamp refresh does). The paper's cache is a cold-start file of
MATH / OpenR1 solved problems (random match strategy, at most 75k); here the training rows' own reference solutions
play that role, and a row is never shown its own solution. Draws use torch's global generator (seeded by the
trainer and restored on resume).

The default templates suit the built-in char-level ``arith`` task (its tokenizer knows only digits, ``+ - * / =
( ) . ,`` and space): one demonstration is ``"{prompt}{solution}"`` (``"12+30=42"``), demonstrations are joined by
``" "`` and the IEF prompt is ``"{demos} {prompt}"`` → ``"12+30=42 23+45="``. The code's builder writes
``"Question: …\\nAnswer: …"`` blocks joined by blank lines before the question, inside the chat template; pass such
templates for text / chat tasks (for chat prompts the last user message's content is the question and is replaced,
as :func:`grpolab.core.scaffold.map_prompt_text` does for hints; a chat prompt without a user message raises).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch

from grpolab.core.checks import check_int
from grpolab.core.dagrpo import first_member
from grpolab.core.mixed_policy import OFF_POLICY_KEY, annealed_expert_bonus, expert_region_keep
from grpolab.core.scaffold import map_prompt_text, prompt_text
from grpolab.rollout.strategies import ROLLOUT_STRATEGIES, RolloutContext, Sampled, check_fillable_extras

#: the state key of the demonstration cache
DEMOS_KEY = "demos"


# ---------------------------------------------------------------------------------------------------- prompts
def with_demonstrations(prompt: Any, demos: str, *, template: str) -> Any:
    """The IEF prompt: ``template.format(demos=demos, prompt=question)`` with the question of a string prompt, or
    for a chat prompt a copy whose last user message carries that text
    (:func:`~grpolab.core.scaffold.map_prompt_text`; a chat prompt without a user message raises ValueError).

    >>> with_demonstrations("23+45=", "12+30=42", template="{demos} {prompt}")
    '12+30=42 23+45='
    """
    return map_prompt_text(prompt, lambda question: template.format(demos=demos, prompt=question))


# ---------------------------------------------------------------------------------------------------- cache
def update_demo_cache(demos: list, rows: list[dict], *, answer_key: str, capacity: int) -> list[list[str]]:
    """The cache ``demos`` (``[question, solution]`` pairs, oldest first) after seeing ``rows``, FIFO-capped.

    A row enters with its question (:func:`~grpolab.core.scaffold.prompt_text`) and ``str(row[answer_key])``; rows
    without the column (or with None) are skipped. A question already cached is refreshed: it moves to the newest
    end with the new solution. Then the oldest pairs leave until at most ``capacity`` remain.

    >>> update_demo_cache([["1+1=", "2"], ["2+2=", "4"]], [{"prompt": "3+3=", "answer": "6"},
    ...                   {"prompt": "1+1=", "answer": "2"}], answer_key="answer", capacity=3)
    [['2+2=', '4'], ['3+3=', '6'], ['1+1=', '2']]
    """
    cache = {str(q): str(s) for q, s in demos}  # insertion order = age
    for row in rows:
        solution = row.get(answer_key)
        if solution is None:
            continue
        question = prompt_text(row["prompt"])
        cache.pop(question, None)  # a question seen again becomes the newest
        cache[question] = str(solution)
    pairs = [[q, s] for q, s in cache.items()]
    return pairs[max(0, len(pairs) - capacity) :]  # FIFO: the oldest leave first


def draw_demonstrations(size: int, own: int | None, n_demo: int) -> list[int] | None:
    """``n_demo`` distinct indices of a cache of ``size`` pairs, uniformly at random (torch's global generator),
    never ``own`` (the index of the row's own question, or None); None when fewer than ``n_demo`` others exist.

    >>> _ = torch.manual_seed(0)
    >>> all(draw_demonstrations(3, 1, 1)[0] != 1 for _ in range(50)), draw_demonstrations(1, 0, 1)
    (True, None)
    """
    others = size - (own is not None)
    if others < n_demo:
        return None
    # uniform over the others: one draw, or n_demo distinct ones
    picks = [int(torch.randint(others, (1,)).item())] if n_demo == 1 else torch.randperm(others)[:n_demo].tolist()
    return [j + 1 if own is not None and j >= own else j for j in picks]  # skip the row's own question


# ---------------------------------------------------------------------------------------------------- strategy
@ROLLOUT_STRATEGIES.register("icpo_expert")
def icpo_expert(
    ctx: RolloutContext,
    sampled: Sampled,
    *,
    step: int,
    total_steps: int,
    state: dict,
    n_off: int = 1,
    n_demo: int = 1,
    answer_key: str = "answer",
    demo_template: str = "{prompt}{solution}",
    separator: str = " ",
    template: str = "{demos} {prompt}",
    cache_size: int = 75_000,
    delta: float | None = 1.0,
    beta: float = 1.0,
    anneal_steps: float | None = 400,
) -> tuple[Sampled, dict[str, float]]:
    """Append to each group up to ``n_off`` IEF completions (ICPO, arXiv 2510.26519), trained under the plain
    prompt and marked ``extras["off_policy"]``.

    Steps: (1) the batch's rows enter the demonstration cache ``state["demos"]`` (:func:`update_demo_cache`);
    (2) each row gets ``n_demo`` random demonstrations of *other* questions, written with ``demo_template``,
    joined with ``separator`` and put before its question with ``template``; rows for which the cache holds too few
    other questions get no IEF completion this step; (3) ONE ``ctx.generate(demo_rows, n_off)`` call generates all
    IEF completions with the current policy; (4) their prompt ids are replaced by the original row's (from
    ``sampled.gen``), ``prompt_index`` and ``group`` by the original row's, and they are scored once, under the
    original rows (the code recomputes rewards after the swap; the scores under the demonstration rows are never
    used, so they are never computed); (5) expert region reject sampling keeps those with combined reward ≥ δ
    (:func:`~grpolab.core.mixed_policy.expert_region_keep`); (6) the annealed bonus
    β·max(0, 1 − t/T) is added to the kept ones' *combined* reward (``Sampled.reward``, which the advantage reads;
    the per-function ``rewards`` columns and ``accuracy`` keep the verifier's values), so under a 0/1 verifier a
    kept completion has R = 1 + β·max(0, 1 − t/T), and from t ≥ T on it equals an on-policy correct one.

    Args:
        step, total_steps, state: run arguments (t of the bonus; T when ``anneal_steps`` is None; the cache).
        n_off: IEF completions per prompt; paper 1 (with 7 on-policy: the preset's num_generations is 7).
        n_demo: demonstrations per IEF prompt; paper 1 (usually 1 to 3).
        answer_key: task column with the reference solution; default ``"answer"`` (the built-in arith task).
        demo_template: one demonstration from ``{prompt}`` (the cached question) and ``{solution}``; default
            ``"{prompt}{solution}"`` ("12+30=42", arith's own format). The code: "Question: …\\nAnswer: …".
        separator: between demonstrations; default ``" "`` (the code: a blank-line splitter).
        template: the IEF prompt from ``{demos}`` and ``{prompt}`` (the question); default ``"{demos} {prompt}"``.
        cache_size: most cached pairs (FIFO); code 75,000 (``cache_max_size``), usually 1k to 100k.
        delta: δ of expert region reject sampling, applied to the combined reward; paper 1 (correct under a 0/1
            verifier). None keeps every IEF completion (the ablation without reject sampling).
        beta: β of the annealed expert bonus; paper 1 (``reward_kwargs.beta=1``); 0 turns the bonus off.
        anneal_steps: T of the bonus; paper 400 (= its run length, ``total_training_steps=400``); None uses the
            run's ``total_steps``.

    Metrics: ``ief_frac`` (rows that got a demonstration prompt), ``ief_accuracy`` (task accuracy of the IEF
    completions before rejection), ``ief_accept_rate`` (kept / generated), ``ief_bonus`` (β·max(0, 1 − t/T)),
    ``demo_cache_size``.

    Must come before strategies that add per-completion extras other than ``off_policy`` / ``prefix_len``. A step
    that appends nothing returns the batch as it is (the trainer fills ``off_policy`` False for it).
    """
    for name, value in (("n_off", n_off), ("n_demo", n_demo), ("cache_size", cache_size)):
        check_int(name, value, minimum=1, where="icpo_expert")
    if not isinstance(state, dict):
        raise ValueError(f"icpo_expert: state must be a dict (the run argument), got {type(state).__name__}")
    for name, text, fields in (
        ("demo_template", demo_template, {"prompt": "1+1=", "solution": "2"}),
        ("template", template, {"demos": "1+1=2", "prompt": "2+2="}),
    ):
        try:
            text.format(**fields)
        except (KeyError, IndexError, ValueError, AttributeError) as err:
            raise ValueError(
                f"icpo_expert: {name} {text!r} must be a format string using only {sorted(fields)} ({err!r})"
            ) from None
    if "{prompt}" not in template:
        raise ValueError(f"icpo_expert: template {template!r} must contain {{prompt}} (the question)")
    if delta is not None:
        expert_region_keep(torch.zeros(0), delta=delta)  # validates δ before any generation
    T = max(int(total_steps), 1) if anneal_steps is None else anneal_steps
    bonus = annealed_expert_bonus(step, beta=beta, anneal_steps=T)  # validates step, beta and T
    check_fillable_extras(sampled, "icpo_expert")
    device = sampled.reward.device

    # (1) the batch's rows enter the FIFO demonstration cache
    demos = update_demo_cache(state.get(DEMOS_KEY, []), sampled.rows, answer_key=answer_key, capacity=cache_size)
    state[DEMOS_KEY] = demos

    # (2) one demonstration prompt per row that has at least n_demo other cached questions
    gen = sampled.gen
    present = sorted(set(gen.prompt_index.tolist()))  # rows with a completion in the batch
    demo_rows, sources = [], []
    position = {q: i for i, (q, _) in enumerate(demos)}
    for p in present:
        row = sampled.rows[p]
        picks = draw_demonstrations(len(demos), position.get(prompt_text(row["prompt"])), n_demo)
        if picks is None:
            continue
        text = separator.join(demo_template.format(prompt=demos[j][0], solution=demos[j][1]) for j in picks)
        demo_rows.append({**row, "prompt": with_demonstrations(row["prompt"], text, template=template)})
        sources.append(p)
    metrics = {
        "ief_frac": len(sources) / max(1, len(present)),
        "ief_bonus": bonus,
        "demo_cache_size": float(len(demos)),
    }
    if not demo_rows:
        return sampled, {**metrics, "ief_accept_rate": 0.0, "ief_accuracy": 0.0}

    # (3) every IEF completion of the step in one generate call, not scored: only the scores under the original
    # rows count (4), so the demonstration rows are never scored
    ief = ctx.generate(demo_rows, n_off)

    # (4) swap the demonstration prompt back to the original question (code: _reorganize_batch) and score
    gen_device = gen.prompt_index.device
    src = torch.tensor(sources, dtype=torch.long, device=gen_device)[ief.prompt_index.to(gen_device)]  # [M]
    origin = first_member(gen.prompt_index, len(sampled.rows))[src]  # [M]: a completion of the original row
    swapped = replace(
        ief,
        prompt_ids=gen.prompt_ids[origin],  # [M, Lp]: the plain question, as the on-policy rows have it
        prompt_mask=gen.prompt_mask[origin],  # [M, Lp]
        prompt_index=src,  # [M]
    )
    scored = ctx.score(sampled.rows, swapped)

    # (5) expert region reject sampling; (6) annealed expert bonus on the combined reward
    # delta None: the ablation without reject sampling (completions whose reward failed still leave)
    keep = scored.valid.bool() if delta is None else expert_region_keep(scored.reward, scored.valid, delta=delta)  # [M]
    M = int(keep.shape[0])
    metrics["ief_accuracy"] = scored.accuracy.float().mean().item()
    metrics["ief_accept_rate"] = int(keep.sum()) / M
    if not bool(keep.any()):
        return sampled, metrics
    kept_index = torch.nonzero(keep).flatten()  # [K]
    kept = scored.take(kept_index)
    kept = replace(
        kept,
        reward=kept.reward + bonus,  # [K]: R = 1 + β·max(0, 1 − t/T) for a correct one under a 0/1 verifier
        group=sampled.group[origin.to(sampled.group.device)[kept_index.to(sampled.group.device)]],  # [K]
        extras={OFF_POLICY_KEY: torch.ones(kept.size, dtype=torch.bool, device=device)},  # [K]
    )
    return sampled.append(kept, ctx.pad_id), metrics  # the on-policy rows get off_policy False
