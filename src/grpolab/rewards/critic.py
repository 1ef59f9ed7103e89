"""S-GRPO's three rewards for a critic: format, accuracy (the label) and suggestion (the correction).

Paper: "Look Before You Leap: A GUI-Critic-R1 Model for Pre-Operative Error Diagnosis in GUI Automation" (Wanyan et
al., arXiv 2506.04614). Its critic reads a state and a proposed action and outputs a correctness label l ∈ {0, 1},
a critique and a corrective suggestion; S-GRPO (Suggestion-aware GRPO) trains it with GRPO on the sum of a format
reward, an accuracy reward (the predicted label equals the ground truth) and a suggestion reward (when the proposed
action is wrong, the suggestion matches the correct action). Here the critic judges an arithmetic answer (task
``critic``, ``grpolab.data.critic``) and writes, in the built-in character tokenizer's alphabet:

- ``"1"`` when the proposed answer is correct;
- ``"0,<answer>"`` when it is wrong: the label 0, a comma, then the corrected answer (``"0,68"``).

The paper's free-text critique has no counterpart (the built-in tokenizer has no letters). Each reward is a
separate TRL-convention function, so each is logged separately (``reward/critic_format`` ...):

- ``critic_format``: 1.0 when the completion (stripped) is exactly ``1`` or ``0,<integer>``, else 0.0;
- ``critic_accuracy``: 1.0 when the predicted label (the first character, ``0`` or ``1``) equals the ``label``
  column, else 0.0 (no label: 0.0);
- ``critic_suggestion``: on a WRONG proposal (``label`` 0): 1.0 when the suggestion (the text after the first comma,
  stripped) equals the ``correct`` column exactly, else 0.0 (no suggestion, as after a predicted ``1``: 0.0). On a
  CORRECT proposal (``label`` 1): None, "does not apply" (the paper defines the suggestion reward for wrong actions;
  the format reward already rules out a suggestion there), so the sum has two terms on those rows and the logged
  ``reward/critic_suggestion`` is the suggestion accuracy on wrong proposals.

Weights: the paper's weights were not found (spec part B §13: "weights not found"); the task sums the three with
weight 1 each (``CRITIC_WEIGHTS``), so a right label with a wrong suggestion (format 1 + accuracy 1 + suggestion 0
= 2) scores strictly below a right label with the right suggestion (3).

>>> cols = dict(label=["0", "0", "1"], correct=["68", "68", "5"])
>>> critic_suggestion(["23+45=67,"] * 2 + ["2+3=5,"], ["0,68", "0,66", "1"], **cols)
[1.0, 0.0, None]
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from grpolab.rewards.verifiers import completion_text

#: The critic's labels: the proposed answer is correct / wrong.
LABEL_CORRECT, LABEL_WRONG = "1", "0"
#: Between the label and the suggestion.
SEPARATOR = ","
#: A well-formed critique: ``1``, or ``0,`` and an integer.
CRITIQUE_RE = re.compile(rf"{LABEL_CORRECT}|{LABEL_WRONG}{SEPARATOR}-?\d+")


def parse_critique(text: str) -> tuple[str | None, str | None]:
    """``(label, suggestion)`` of a critique: the first character when it is ``0`` or ``1`` (else None), and the
    stripped text after the first comma (None without a comma).

    >>> parse_critique("0,68"), parse_critique(" 1"), parse_critique("x,3")
    (('0', '68'), ('1', None), (None, '3'))
    """
    text = text.strip()
    label = text[:1] if text[:1] in (LABEL_CORRECT, LABEL_WRONG) else None
    suggestion = text.split(SEPARATOR, 1)[1].strip() if SEPARATOR in text else None
    return label, suggestion


def _check_lengths(name: str, completions: Sequence[Any], **columns: Sequence[Any]) -> None:
    for key, values in columns.items():
        if len(values) != len(completions):
            raise ValueError(f"{name}: {len(completions)} completions but {len(values)} values in column {key!r}")


def critic_format(prompts: list, completions: list, **columns: Any) -> list[float]:
    """1.0 when the critique is well formed: exactly ``1`` or ``0,<integer>`` (surrounding whitespace ignored).

    >>> critic_format([""] * 4, ["1", "0,-12", "1,5", "0"])
    [1.0, 1.0, 0.0, 0.0]
    """
    return [1.0 if CRITIQUE_RE.fullmatch(completion_text(c).strip()) else 0.0 for c in completions]


def critic_accuracy(prompts: list, completions: list, label: list, **columns: Any) -> list[float]:
    """1.0 when the predicted label equals the ``label`` column (``"1"`` correct / ``"0"`` wrong proposal).

    >>> critic_accuracy([""] * 3, ["1", "0,68", "x"], label=["1", "1", "0"])
    [1.0, 0.0, 0.0]
    """
    _check_lengths("critic_accuracy", completions, label=label)
    return [
        1.0 if parse_critique(completion_text(c))[0] == str(gold).strip() else 0.0
        for c, gold in zip(completions, label, strict=True)
    ]


def critic_suggestion(prompts: list, completions: list, label: list, correct: list, **columns: Any) -> list:
    """On a wrong proposal (``label`` 0): 1.0 when the suggestion equals the ``correct`` column exactly, else 0.0;
    on a correct proposal: None (does not apply). See the module docstring.

    >>> critic_suggestion([""] * 3, ["0,68", "1", "0,068"], label=["0", "0", "0"], correct=["68", "68", "68"])
    [1.0, 0.0, 0.0]
    """
    _check_lengths("critic_suggestion", completions, label=label, correct=correct)
    out: list[float | None] = []
    for c, gold, answer in zip(completions, label, correct, strict=True):
        if str(gold).strip() == LABEL_CORRECT:
            out.append(None)  # the proposal is right: no correction to score
            continue
        suggestion = parse_critique(completion_text(c))[1]
        out.append(1.0 if suggestion is not None and suggestion == str(answer).strip() else 0.0)
    return out


#: The critic task's reward functions, in order, and their default weights (paper weights not found: 1 each).
CRITIC_REWARDS = (critic_format, critic_accuracy, critic_suggestion)
CRITIC_WEIGHTS = (1.0, 1.0, 1.0)

__all__ = [
    "CRITIC_REWARDS",
    "CRITIC_WEIGHTS",
    "LABEL_CORRECT",
    "LABEL_WRONG",
    "SEPARATOR",
    "critic_accuracy",
    "critic_format",
    "critic_suggestion",
    "parse_critique",
]
