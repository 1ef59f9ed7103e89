"""Task ``arith_think``: ``arith`` with a bracketed thought before the answer, TON's think-or-not format.

TON (Think-or-Not; "Think or Not? Selective Reasoning via Reinforcement Learning for Vision-Language Models",
arXiv 2505.16854) trains completions ``<think> T </think><answer> S </answer>`` where the thought ``T`` may be
empty (``<think>\\n\\n</think>``). The built-in character tokenizer has no letters or angle brackets, so here the
thought sits in round brackets and the answer follows the closing bracket::

    "23+45="  ->  "(3+5=8,20+40=60)68"     a full thought
    "23+45="  ->  "()68"                   an empty thought (the model chose not to think)

The gold thought (column ``thought``, ``grpolab.data.arith.reverse_thought``) is TON's "reverse thinking" done by
rule: the paper prompts the base model with the question AND the known answer to explain how to reach it (Sec. 3);
a rule can write that explanation exactly from the operands and the known result. It splits each operand into ones
and tens and solves the two columns: ``ones_a op ones_b = r1, tens_a op tens_b = r2`` with ``r2 + r1`` = the answer
(for ``+`` and ``-`` alike, so a carry or a borrow shows as ``r1`` outside 0..9: ``"27+45="`` gives
``"(7+5=12,20+40=60)72"``, ``"63-28="`` gives ``"(3-8=-5,60-20=40)35"``). Single-digit operands keep both steps
(``"0+0=0"``), so every thought has the same shape.

Length: the prompt is at most 6 characters + BOS = 7 tokens; the longest completion (``"(9+9=18,90+90=180)198"``)
is 21 characters + EOS = 22 tokens, so ``--max-new-tokens 24`` holds every gold completion and a sequence never
exceeds 31 of the tiny models' 64 positions. The task suggests it (``info["max_new_tokens"]``), and
``grpolab train`` uses the suggestion unless ``--max-new-tokens`` is given (8, the limit of the plain arith task,
would cut full thoughts off).

Rewards (TRL plain-callable convention; the combined reward is ``think_accuracy + format_weight * think_format``):

- ``think_accuracy``: 1.0 when the completion is ``(<thought>)<answer>`` with no bracket inside the thought and
  the text after the closing bracket, stripped, equals the answer exactly; else 0.0 (also the task's accuracy).
- ``think_format``: 1.0 for ``(<thought>)<integer>`` whether the thought is empty or not (TON: both formats are
  valid, the model is free to choose), else 0.0. The thought's content is not checked, as TON's format reward
  checks the tags only.
- ``empty_thought`` (weight 0, a metric): 1.0 when the completion has the format and an empty thought, else 0.0;
  its logged mean ``reward/empty_thought`` is the fraction of completions that skipped thinking.
- ``thought_length`` (weight 0, a metric): characters (= tokens) inside the brackets, None without the format;
  ``reward/thought_length`` is the mean thought length of the well-formed completions.

Weight-0 functions change no reward and no advantage of parts that read the combined ``reward``; parts that read
the per-function columns (``rollout.rewards``, e.g. BNPO's ``decompose=True``) see them as extra columns.

>>> task = arith_think_task()
>>> task.train[0]["prompt"], task.train[0]["thought"], task.train[0]["answer"]
('87-8=', '7-8=-1,80-0=80', '79')
>>> think_accuracy([""] * 3, ["(7-8=-1,80-0=80)79", "()79", "79"], answer=["79"] * 3)
[1.0, 1.0, 0.0]
"""

from __future__ import annotations

import re
from typing import Any

from grpolab.data.arith import (
    DEFAULT_N_EVAL,
    DEFAULT_SEED,
    arith_problems,
    format_answer,
    format_prompt,
    reverse_thought,
    solve,
)
from grpolab.data.task import TASKS, Task
from grpolab.rewards.verifiers import completion_text

#: The completion template of a row for supervised fine-tuning (``grpolab sft`` reads it from ``Task.info``).
COMPLETION_TEMPLATE = "({thought}){answer}"
#: The empty thought (TON's ``<think>\n\n</think>``).
EMPTY_THOUGHT = ""
#: Generation limit that holds every gold completion plus EOS (22 tokens), with a little slack.
MAX_NEW_TOKENS = 24

_COMPLETION = re.compile(r"\(([^()]*)\)(.*)", re.DOTALL)  # "(thought)rest": the thought holds no bracket
_ANSWER = re.compile(r"-?\d+")


def format_completion(thought: str, answer: str) -> str:
    """A completion of the think-or-not format.

    >>> format_completion("3+5=8,20+40=60", "68"), format_completion("", "68")
    ('(3+5=8,20+40=60)68', '()68')
    """
    return COMPLETION_TEMPLATE.format(thought=thought, answer=answer)


def parse_completion(completion: Any) -> tuple[str, str] | None:
    """``(thought, answer text)`` of a completion ``(<thought>)<answer>`` (surrounding whitespace stripped), or None
    when it does not start with a bracketed thought free of inner brackets.

    >>> parse_completion("(3+5=8,20+40=60)68"), parse_completion(" ()68 "), parse_completion("68")
    (('3+5=8,20+40=60', '68'), ('', '68'), None)
    """
    match = _COMPLETION.fullmatch(completion_text(completion).strip())
    if match is None:
        return None
    return match.group(1), match.group(2).strip()


def think_accuracy(prompts: list, completions: list, answer: list, **kwargs: Any) -> list[float]:
    """1.0 when the text after the thought's closing bracket equals the answer exactly, else 0.0.

    A completion without the bracketed thought scores 0.0 (``"68"`` is wrong in this task). Whitespace around the
    answer is ignored; ``"068"``, ``"+68"`` are wrong for ``"68"``.

    >>> think_accuracy([""] * 4, ["(3+5=8,20+40=60)68", "()68", "()69", "(8)68)"], answer=["68"] * 4)
    [1.0, 1.0, 0.0, 0.0]
    """
    if len(completions) != len(answer):
        raise ValueError(f"{len(completions)} completions but {len(answer)} answers; pass one answer per completion")
    out = []
    for c, ref in zip(completions, answer, strict=True):
        parsed = parse_completion(c)
        out.append(1.0 if parsed is not None and parsed[1] == str(ref).strip() else 0.0)
    return out


def well_formed(completion: Any) -> tuple[str, str] | None:
    """``(thought, answer)`` of a completion of the format ``(<thought>)<integer>``, else None.

    >>> well_formed("()-2"), well_formed("(1+1=2)x")
    (('', '-2'), None)
    """
    parsed = parse_completion(completion)
    return parsed if parsed is not None and _ANSWER.fullmatch(parsed[1]) else None


def think_format(prompts: list, completions: list, **kwargs: Any) -> list[float]:
    """1.0 for ``(<thought>)<integer>``, the thought empty or not (TON: both formats are valid), else 0.0.

    >>> think_format([""] * 5, ["(3+5=8,20+40=60)68", "()-2", "68", "()", "(1)(2)3"])
    [1.0, 1.0, 0.0, 0.0, 0.0]
    """
    return [0.0 if well_formed(c) is None else 1.0 for c in completions]


def empty_thought(prompts: list, completions: list, **kwargs: Any) -> list[float]:
    """A metric (weight 0): 1.0 for a well-formed completion with an empty thought, else 0.0.

    >>> empty_thought([""] * 3, ["()68", "(3+5=8,20+40=60)68", "68"])
    [1.0, 0.0, 0.0]
    """
    out = []
    for c in completions:
        parsed = well_formed(c)
        out.append(1.0 if parsed is not None and parsed[0] == EMPTY_THOUGHT else 0.0)
    return out


def thought_length(prompts: list, completions: list, **kwargs: Any) -> list[float | None]:
    """A metric (weight 0): characters inside the brackets of a well-formed completion; None without the format.

    >>> thought_length([""] * 3, ["()68", "(3+5=8,20+40=60)68", "68"])
    [0.0, 14.0, None]
    """
    out: list[float | None] = []
    for c in completions:
        parsed = well_formed(c)
        out.append(None if parsed is None else float(len(parsed[0])))
    return out


def arith_think_rows(split: str, *, n_eval: int = DEFAULT_N_EVAL, seed: int = DEFAULT_SEED) -> list[dict[str, str]]:
    """Rows ``{"prompt": "23+45=", "thought": "3+5=8,20+40=60", "answer": "68"}`` of one ``arith`` split."""
    return [
        {
            "prompt": format_prompt(a, op, b),
            "thought": reverse_thought(a, op, b),
            "answer": format_answer(solve(a, op, b)),
        }
        for a, op, b in arith_problems(split, n_eval=n_eval, seed=seed)
    ]


@TASKS.register("arith_think")
def arith_think_task(*, n_eval: int = DEFAULT_N_EVAL, seed: int = DEFAULT_SEED, format_weight: float = 1.0) -> Task:
    """The ``arith_think`` task: ``arith``'s problems and split, completions ``(<thought>)<answer>``.

    - ``n_eval``: size of the held-out eval split; default 500 (as ``arith``: held out from ``tiny-arith``'s
      pre-training for ``seed=0, n_eval<=500``), usually 200 to 2,000.
    - ``seed``: seed of the split's shuffle; default 0.
    - ``format_weight``: weight of ``think_format`` in the reward; default 1.0 (R1-V's accuracy + format sum, the
      code base TON builds on), usually 0 to 1.

    Rows carry ``prompt``, ``thought`` (the gold reverse thought) and ``answer``. Generate with
    ``max_new_tokens >= 22`` (``MAX_NEW_TOKENS`` = 24), or full thoughts are cut off.
    """
    if not isinstance(format_weight, (int, float)) or isinstance(format_weight, bool) or format_weight < 0:
        raise ValueError(f"arith_think: format_weight must be a number >= 0, got {format_weight!r}")
    return Task(
        name="arith_think",
        train=arith_think_rows("train", n_eval=n_eval, seed=seed),
        eval=arith_think_rows("eval", n_eval=n_eval, seed=seed),
        reward_funcs=[think_accuracy, think_format, empty_thought, thought_length],
        reward_weights=[1.0, float(format_weight), 0.0, 0.0],
        accuracy=think_accuracy,
        info={
            "n_eval": n_eval,
            "seed": seed,
            "held_out_from_tiny_arith": seed == DEFAULT_SEED and n_eval <= DEFAULT_N_EVAL,
            "sft_completion": COMPLETION_TEMPLATE,
            "max_new_tokens": MAX_NEW_TOKENS,
        },
    )
