"""Task ``critic``: judge a proposed arithmetic answer and correct it (S-GRPO's critic, on arith problems).

S-GRPO (GUI-Critic-R1, arXiv 2506.04614) trains a pre-operative critic: given a state and a proposed action it says
whether the action is correct and, when it is not, suggests the correct one. This task is that setting on the
``arith`` problems, written only with the built-in character tokenizer's characters (digits, ``+ - * / = ( ) . ,``
and space: ``grpolab.models.CHARS``), so the built-in ``tiny-arith`` model and ``random-tiny`` can read it:

- prompt: the problem, a proposed answer, then a comma: ``"23+45=67,"`` (the proposal is right or wrong, half each);
- completion: ``"1"`` when the proposal is correct, ``"0,<correct answer>"`` when it is wrong (``"0,68"``), then EOS.

Columns: ``label`` (``"1"`` / ``"0"``: the ground-truth correctness of the proposal), ``correct`` (the right
answer, ``"68"``), ``proposed`` (``"67"``) and ``answer`` (the reference critique, ``"0,68"`` or ``"1"``: what SFT or
a reference-completion strategy such as ``cgpo_baseline`` / ``expert_anchors`` reads). Wrong proposals come from
``grpolab.data.arith.wrong_answer`` (one digit changed, or ±1 / ±10: the mistakes the tiny model makes). Which rows
carry a wrong proposal is a seeded choice of exactly ``round(wrong_fraction · n)`` rows per split; the problems and
the train / eval split are ``arith``'s (``n_eval``, ``seed``), so the eval problems stay held out from the shipped
``tiny-arith`` model's pre-training with the defaults.

Rewards (``grpolab.rewards.critic``): ``critic_format``, ``critic_accuracy``, ``critic_suggestion``, summed with
weights 1, 1, 1 (paper weights not found). The accuracy metric (pass@k) is ``critic_accuracy`` (the label).

>>> task = critic_task(n_eval=4)
>>> sorted(task.eval[0])
['answer', 'correct', 'label', 'prompt', 'proposed']
>>> [(r["prompt"], r["answer"]) for r in task.eval]
[('60+6=66,', '1'), ('75+77=151,', '0,152'), ('21-58=-38,', '0,-37'), ('96+12=108,', '1')]
"""

from __future__ import annotations

import random
from typing import Any

from grpolab.core.checks import check_number
from grpolab.data.arith import DEFAULT_N_EVAL, DEFAULT_SEED, arith_problems, format_answer, solve, wrong_answer
from grpolab.data.task import TASKS, Task
from grpolab.rewards.critic import (
    CRITIC_REWARDS,
    CRITIC_WEIGHTS,
    LABEL_CORRECT,
    LABEL_WRONG,
    SEPARATOR,
    critic_accuracy,
)


def critic_prompt(a: int, op: str, b: int, proposed: int) -> str:
    """The critic's prompt: the problem with a proposed answer, then a comma.

    >>> critic_prompt(23, "+", 45, 67)
    '23+45=67,'
    """
    return f"{a}{op}{b}={format_answer(proposed)}{SEPARATOR}"


def critic_answer(correct: int, proposed: int) -> str:
    """The reference critique: ``"1"`` for a correct proposal, ``"0,<correct>"`` for a wrong one.

    >>> critic_answer(68, 68), critic_answer(68, 67)
    ('1', '0,68')
    """
    if proposed == correct:
        return LABEL_CORRECT
    return f"{LABEL_WRONG}{SEPARATOR}{format_answer(correct)}"


def critic_rows(
    split: str, *, n_eval: int = DEFAULT_N_EVAL, seed: int = DEFAULT_SEED, wrong_fraction: float = 0.5
) -> list[dict[str, Any]]:
    """The rows of one split (``"train"`` or ``"eval"``): ``arith``'s problems of that split, in its order, with
    exactly ``round(wrong_fraction · n)`` wrong proposals at seeded positions (seed ``seed``, a different stream per
    split)."""
    problems = arith_problems(split, n_eval=n_eval, seed=seed)
    rng = random.Random(f"critic-{split}-{seed}")  # a str seed is hashed deterministically (SHA-512)
    n = len(problems)
    wrong_at = set(rng.sample(range(n), round(wrong_fraction * n)))
    rows = []
    for i, (a, op, b) in enumerate(problems):
        correct = solve(a, op, b)
        proposed = wrong_answer(correct, rng) if i in wrong_at else correct
        rows.append(
            {
                "prompt": critic_prompt(a, op, b, proposed),
                "answer": critic_answer(correct, proposed),
                "label": LABEL_CORRECT if proposed == correct else LABEL_WRONG,
                "correct": format_answer(correct),
                "proposed": format_answer(proposed),
            }
        )
    return rows


@TASKS.register("critic")
def critic_task(
    *,
    n_eval: int = DEFAULT_N_EVAL,
    seed: int = DEFAULT_SEED,
    wrong_fraction: float = 0.5,
    reward_weights: list[float] | None = None,
) -> Task:
    """The ``critic`` task (see the module docstring).

    - ``n_eval``, ``seed``: ``arith``'s split (default 500 held-out problems, seed 0: held out from ``tiny-arith``).
    - ``wrong_fraction``: the share of rows whose proposal is wrong; default 0.5 (half each), in [0, 1].
    - ``reward_weights``: weights of (format, accuracy, suggestion); default (1, 1, 1) (the paper's were not found).
    """
    check_number("wrong_fraction", wrong_fraction, minimum=0, maximum=1, where="critic task")
    weights = list(CRITIC_WEIGHTS) if reward_weights is None else list(reward_weights)
    return Task(
        name="critic",
        train=critic_rows("train", n_eval=n_eval, seed=seed, wrong_fraction=wrong_fraction),
        eval=critic_rows("eval", n_eval=n_eval, seed=seed, wrong_fraction=wrong_fraction),
        reward_funcs=list(CRITIC_REWARDS),
        reward_weights=weights,
        accuracy=critic_accuracy,
        info={
            "n_eval": n_eval,
            "seed": seed,
            "wrong_fraction": wrong_fraction,
            "max_new_tokens": 8,  # "0,-99" / "0,198" and EOS: at most 6 tokens
            "held_out_from_tiny_arith": seed == DEFAULT_SEED and n_eval <= DEFAULT_N_EVAL,
        },
    )


__all__ = ["critic_answer", "critic_prompt", "critic_rows", "critic_task"]
