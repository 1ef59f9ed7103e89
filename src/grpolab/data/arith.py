"""Task ``arith``: two-operand integer arithmetic with a held-out split and an exact verifier.

Every problem is ``a op b`` with operands 0..99 and ``op`` in ``+``/``-`` (20,000 problems; results from -99
to 198). The format is minimal and character-level friendly: the prompt is ``"23+45="`` and the completion the
answer digits ``"68"`` (a minus sign for negative results, ``"-22"``), then EOS.

The split is deterministic: all problems are enumerated in a fixed order, shuffled with ``random.Random(seed)``
and the first ``n_eval`` form the eval split; the rest form the train split. The built-in ``tiny-arith`` model
(``grpolab.models``) was pre-trained on the train split of the default split (``n_eval=500, seed=0``) only, so
its eval split is held out from the pre-training data too (so is any ``n_eval <= 500`` with ``seed=0``: that
eval split is a prefix of the default one). Other values give eval problems the shipped model may have seen
during pre-training; ``Task.info["held_out_from_tiny_arith"]`` says which case holds.

>>> task = arith_task()
>>> len(task.train), len(task.eval)
(19500, 500)
>>> sorted(task.train[0])
['answer', 'prompt']
>>> arith_exact_reward(["23+45=", "3-5="], ["68", " -2\\n"], answer=["68", "-2"])
[1.0, 1.0]

With ``arith_task(hints=True)`` every row also has a ``"hints"`` column: cumulative hinted prompts for prompt
scaffolding (Scaf-GRPO's tiers Knowledge → Solution; see ``arith_hints``), read by the ``scaf_grpo`` and
``difficulty_augment`` rollout strategies and ignored by the reward functions.
"""

from __future__ import annotations

import random
from typing import Any

from grpolab.core.scaffold import HINT_TEMPLATE, answer_prefix_hints, apply_hint
from grpolab.data.task import TASKS, Task
from grpolab.rewards.verifiers import RewardSpec, build_rewards

#: Smallest and largest operand.
MIN_OPERAND, MAX_OPERAND = 0, 99
#: The operators, in enumeration order.
OPERATORS = ("+", "-")
#: The default split: the one the shipped ``tiny-arith`` model was pre-trained on (train split only).
DEFAULT_N_EVAL, DEFAULT_SEED = 500, 0

Problem = tuple[int, str, int]


def solve(a: int, op: str, b: int) -> int:
    """The exact result of ``a op b``.

    >>> solve(23, "+", 45), solve(3, "-", 5)
    (68, -2)
    """
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    raise ValueError(f"unknown operator {op!r}; arith knows {OPERATORS}")


def format_prompt(a: int, op: str, b: int) -> str:
    """The prompt string of a problem: no spaces, ``=`` at the end.

    >>> format_prompt(23, "+", 45)
    '23+45='
    """
    return f"{a}{op}{b}="


def format_answer(value: int) -> str:
    """The reference completion of a result: its decimal digits, with ``-`` for a negative number.

    >>> format_answer(68), format_answer(-2), format_answer(0)
    ('68', '-2', '0')
    """
    return str(int(value))


def all_problems() -> list[Problem]:
    """Every problem ``(a, op, b)`` in the fixed enumeration order (operator, then a, then b): 20,000 of them."""
    ops = range(MIN_OPERAND, MAX_OPERAND + 1)
    return [(a, op, b) for op in OPERATORS for a in ops for b in ops]


def arith_problems(split: str, *, n_eval: int = DEFAULT_N_EVAL, seed: int = DEFAULT_SEED) -> list[Problem]:
    """The problems of one split (``"train"``, ``"eval"`` or ``"all"``), in the split's (shuffled) order.

    - ``n_eval``: size of the held-out eval split; default 500 (the shipped model's split), usually 200 to 2,000.
    - ``seed``: seed of the shuffle that decides the split; default 0 (the shipped model's split).

    The two splits are disjoint and together hold all 20,000 problems.

    >>> arith_problems("eval", n_eval=3)
    [(60, '+', 6), (75, '+', 77), (21, '-', 58)]
    """
    total = len(all_problems())
    if not 0 < n_eval < total:
        raise ValueError(f"n_eval must be in 1..{total - 1} (there are {total} problems), got {n_eval}")
    problems = all_problems()
    random.Random(seed).shuffle(problems)  # a fixed-seed shuffle: the same split on every machine and Python
    if split == "eval":
        return problems[:n_eval]
    if split == "train":
        return problems[n_eval:]
    if split == "all":
        return problems
    raise ValueError(f"unknown split {split!r}; use 'train', 'eval' or 'all'")


def column_steps(a: int, op: str, b: int) -> tuple[str, str]:
    """The two column steps of ``a op b``: the ones column, then the tens column, each written ``x op y=r``; their
    results sum to the answer for ``+`` and ``-`` alike (a carry or a borrow shows as a ones result outside 0..9).

    >>> column_steps(23, "+", 45), column_steps(63, "-", 28)
    (('3+5=8', '20+40=60'), ('3-8=-5', '60-20=40'))
    """
    ones_a, ones_b = a % 10, b % 10
    tens_a, tens_b = a - ones_a, b - ones_b
    ones, tens = solve(ones_a, op, ones_b), solve(tens_a, op, tens_b)
    return f"{ones_a}{op}{ones_b}={ones}", f"{tens_a}{op}{tens_b}={tens}"


def reverse_thought(a: int, op: str, b: int) -> str:
    """The worked solution of ``a op b`` written from its known answer (TON's "reverse thinking", arXiv 2505.16854,
    done by rule): both column steps, ones first (:func:`column_steps`). ``arith_think``'s gold thought and the
    second Knowledge hint of :func:`arith_hints`.

    >>> reverse_thought(23, "+", 45), reverse_thought(63, "-", 28), reverse_thought(3, "-", 5)
    ('3+5=8,20+40=60', '3-8=-5,60-20=40', '3-5=-2,0-0=0')
    """
    return ",".join(column_steps(a, op, b))


def arith_hints(a: int, op: str, b: int, *, solution_levels: int = 4) -> list[str]:
    """Cumulative hinted prompts of a problem, least guidance first: Scaf-GRPO's tiers Knowledge → Solution
    (Scaf-GRPO, arXiv 2510.19807, §3.2; its released code leaves the Planning tier out, and so does this).

    - Knowledge tier (2 levels): the ones-digit partial result, then also the tens partial result
      (``3+5=8`` then ``3+5=8,20+40=60`` for 23+45; for ``-`` the partial differences, ``3-5=-2,20-40=-20``): the
      answer is their sum, which the hint does not state.
    - Solution tier: growing prefixes of the answer (``grpolab.core.scaffold.answer_prefix_hints``, at most
      ``solution_levels`` of them, the last is the whole answer): ``6`` then ``68``.

    Each level is a full prompt ``"(hint) 23+45="`` (``grpolab.core.scaffold.HINT_TEMPLATE``): the hint comes first
    so the completion still follows the ``=``, and only the built-in tokenizer's characters are used (digits,
    ``+ - * / = ( ) . ,`` and space; it has no letters). Within a tier the hints accumulate, as Scaf-GRPO's
    ``first k parts``; a Solution-tier prompt does not repeat the Knowledge hints (the code builds each tier alone).

    >>> arith_hints(23, "+", 45)
    ['(3+5=8) 23+45=', '(3+5=8,20+40=60) 23+45=', '(6) 23+45=', '(68) 23+45=']
    >>> arith_hints(3, "-", 25)[1:3]
    ['(3-5=-2,0-20=-20) 3-25=', '(-) 3-25=']
    """
    ones, _ = column_steps(a, op, b)
    # Knowledge 1: the ones-digit partial result; Knowledge 2: also the tens partial result (the whole thought)
    knowledge = [ones, reverse_thought(a, op, b)]
    solution = answer_prefix_hints(format_answer(solve(a, op, b)), levels=solution_levels)
    prompt = format_prompt(a, op, b)
    return [apply_hint(prompt, hint, template=HINT_TEMPLATE) for hint in [*knowledge, *solution]]


def arith_rows(
    split: str, *, n_eval: int = DEFAULT_N_EVAL, seed: int = DEFAULT_SEED, hints: bool = False
) -> list[dict[str, Any]]:
    """The rows ``{"prompt": "23+45=", "answer": "68"}`` of one split (see ``arith_problems``); with ``hints`` also
    ``"hints"``: the problem's cumulative hinted prompts (``arith_hints``)."""
    rows: list[dict[str, Any]] = []
    for a, op, b in arith_problems(split, n_eval=n_eval, seed=seed):
        row: dict[str, Any] = {"prompt": format_prompt(a, op, b), "answer": format_answer(solve(a, op, b))}
        if hints:
            row["hints"] = arith_hints(a, op, b)
        rows.append(row)
    return rows


def wrong_answer(value: int, rng: random.Random) -> int:
    """A plausible wrong result near ``value``: one digit changed, or ``value`` ±1 or ±10 (never ``value``).

    Used by ``scripts/pretrain_tiny.py`` to corrupt a fixed fraction of the pre-training answers, so the shipped
    model samples wrong answers often while the right one stays the mode of its distribution. Each of the three
    kinds of mistake is drawn with probability 1/3; a changed leading digit is never 0 (no ``"07"``) and the
    hundreds digit never changes (the wrong result stays within 99 of ``value``).

    >>> rng = random.Random(0)
    >>> all(wrong_answer(v, rng) != v for v in range(-99, 199) for _ in range(20))
    True
    """
    while True:
        kind = rng.randrange(3)
        if kind == 0:  # one digit changed
            sign, digits = ("-", str(-value)) if value < 0 else ("", str(value))
            pos = rng.randrange(len(digits))
            low = 1 if pos == 0 and len(digits) > 1 else 0
            digits = digits[:pos] + str(rng.randint(low, 9)) + digits[pos + 1 :]
            wrong = int(sign + digits)  # int("-0") == 0: no "-0" answers
        elif kind == 1:
            wrong = value + rng.choice((-1, 1))
        else:
            wrong = value + rng.choice((-10, 10))
        if wrong != value and abs(wrong - value) < 100:  # a changed hundreds digit (100 -> 300) is not plausible
            return wrong


def _completion_text(completion: Any) -> str:
    """The text of a completion: a string, or chat messages whose last message's ``content`` is the text."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list) and completion and isinstance(completion[-1], dict):
        return str(completion[-1].get("content", ""))
    if isinstance(completion, dict):
        return str(completion.get("content", ""))
    raise ValueError(
        f"a completion must be a string or chat messages [{{'role': 'assistant', 'content': ...}}], got {completion!r}"
    )


def arith_exact_reward(prompts: list, completions: list, answer: list, **kwargs: Any) -> list[float]:
    """1.0 where the completion, stripped of surrounding whitespace, equals the answer exactly, else 0.0.

    TRL plain-callable convention: ``completions`` are strings, or chat messages
    ``[{"role": "assistant", "content": text}]`` (the last message's content is scored). ``answer`` is the
    rows' ``answer`` column; other columns arrive in ``kwargs`` and are ignored. No partial credit: ``"068"``,
    ``"+68"`` and ``"68."`` are wrong for ``"68"``.

    >>> arith_exact_reward([""] * 4, ["68", "-2", [{"role": "assistant", "content": "5 "}], "068"],
    ...                    answer=["68", "-3", "5", "68"])
    [1.0, 0.0, 1.0, 0.0]
    """
    if len(completions) != len(answer):
        raise ValueError(f"{len(completions)} completions but {len(answer)} answers; pass one answer per completion")
    return [
        1.0 if _completion_text(c).strip() == str(ref).strip() else 0.0
        for c, ref in zip(completions, answer, strict=True)
    ]


@TASKS.register("arith")
def arith_task(
    *,
    n_eval: int = DEFAULT_N_EVAL,
    seed: int = DEFAULT_SEED,
    hints: bool = False,
    reward: RewardSpec = "exact",
    reward_weights: list[float] | None = None,
) -> Task:
    """The ``arith`` task: two-operand integer arithmetic (operands 0..99, ``+``/``-``) with an exact verifier.

    - ``n_eval``: size of the held-out eval split; default 500, usually 200 to 2,000.
    - ``seed``: seed of the split's shuffle; default 0. The shipped ``tiny-arith`` model never saw the eval
      split of ``seed=0, n_eval<=500``; with other values its eval problems may be in its pre-training data.
    - ``hints``: add the ``"hints"`` column (``arith_hints``: Knowledge- then Solution-tier hinted prompts) that the
      ``scaf_grpo`` and ``difficulty_augment`` rollout strategies read; default False (without it they fall back
      to answer-prefix hints built from the ``answer`` column).

    - ``reward``: the reward, a name or a list of names: ``"exact"`` (default: ``arith_exact_reward``) or any
      ``grpolab.rewards.VERIFIERS`` name reading the ``answer`` column (``"numeric"``, ``"dual"``: exact plus a
      continuous closeness); a list is summed with ``reward_weights`` (default 1 each). An entry may also be a
      mapping ``{name: {options}}`` (``grpolab.rewards.verifiers.build_rewards``), e.g. reward models:
      ``[exact, {reward_model: {path: rms/rm_0}}, {reward_model: {path: rms/rm_1}}]``; ``{reward_model_heads:
      {path: ...}}`` adds one function per head of a multi-head reward model.

    Rows are ``{"prompt": "23+45=", "answer": "68"}``; the accuracy is always ``arith_exact_reward`` (which
    ignores the ``hints`` column), whatever the reward.

    >>> from grpolab.rewards.scoring import reward_name
    >>> [reward_name(f) for f in arith_task(reward=["exact", "dual"], reward_weights=[1.0, 0.5]).reward_funcs]
    ['arith_exact_reward', 'dual']
    """
    # an unknown name raises UnknownNameError (a ValueError) listing the known ones
    funcs = build_rewards(reward, answer_column="answer", builtins={"exact": arith_exact_reward})
    return Task(
        name="arith",
        train=arith_rows("train", n_eval=n_eval, seed=seed, hints=hints),
        eval=arith_rows("eval", n_eval=n_eval, seed=seed, hints=hints),
        reward_funcs=funcs,
        reward_weights=reward_weights,
        accuracy=arith_exact_reward,
        info={
            "n_eval": n_eval,
            "seed": seed,
            "hints": hints,
            "reward": reward,
            # with seed 0, a smaller eval split is a prefix of the default one, so it stays held out too
            "held_out_from_tiny_arith": seed == DEFAULT_SEED and n_eval <= DEFAULT_N_EVAL,
        },
    )
