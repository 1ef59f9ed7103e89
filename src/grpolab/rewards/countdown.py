"""The ``countdown`` verifier: a binary check of a Countdown answer, evaluated with an AST walker (never ``eval``).

Countdown (the numbers round of the TV game; the RL task of TinyZero, Pan et al. 2025, and reasoning-gym's
``countdown`` generator): given numbers and a target, write an arithmetic expression that equals the target using
the numbers. A completion scores 1.0 when ALL of these hold, else 0.0:

1. an expression can be found (``extract_answer``): the content of the LAST ``<answer>...</answer>`` pair, else the
   last non-empty line (``extract="auto"``, the default; see ``EXTRACT_MODES`` for the others);
2. it is made of digits, ``+ - * /``, parentheses and whitespace only, and at most ``MAX_EXPRESSION_CHARS`` long
   (no ``=``, no ``**``/``//``, no unary plus, no decimals, no names). A unary minus is allowed (``-1 + 72*12``):
   reasoning-gym's own solutions write it, and it never changes which targets are reachable (an expression with
   negations equals ± one without);
3. its integer literals use the given numbers as the task states: with ``use_all=True`` (default) each given number
   exactly once (the same multiset: reasoning-gym's question says "using all of these numbers" and its scorer
   checks ``sorted(used) == sorted(numbers)``; TinyZero checks the same); with ``use_all=False`` each at most once
   (a sub-multiset, the classic TV rule);
4. evaluated exactly with ``fractions.Fraction`` (so ``1/3*3`` is exactly 1; intermediate fractions are allowed, as
   in TinyZero's and reasoning-gym's checks), with no division by zero, it equals the target.

reasoning-gym's own scorer is shaped (0.01 empty or unparsable, 0.05 wrong numbers or value, 1.0 right) and parses
with sympy (``parse_expr``, which calls ``eval``); ``grpolab.data.reasoning_gym_tasks`` offers it as
``countdown(shaped=True)`` behind a character filter. This module's verifier is the binary accuracy either way.

>>> fn = VERIFIERS["countdown"]()
>>> fn(prompts=["", "", ""], completions=["<answer>(6 + 4) * 3</answer>", "6*4+3", "6 * 5"],
...    target=[30, 27, 30], numbers=[[3, 4, 6], [3, 4, 6], [5, 6]])
[1.0, 1.0, 1.0]
>>> judge_countdown("<answer>6*3+6</answer>", 24, [3, 6, 4])
(0.0, 'numbers')
"""

from __future__ import annotations

import ast
import re
from collections import Counter
from collections.abc import Sequence
from fractions import Fraction
from typing import Any

from grpolab.core.checks import check_choice, is_number
from grpolab.rewards.verifiers import VERIFIERS, completion_text

#: How the answer is found in a completion: "auto" = the last <answer>...</answer> content, else the last non-empty
#: line; "tag" = only the tag's content (no tag: no answer); "last_line" = the last non-empty line; "whole" = the whole
#: completion.
EXTRACT_MODES = ("auto", "tag", "last_line", "whole")
#: Longest expression (characters, after stripping) that is evaluated; longer ones score 0.0 ("too long").
MAX_EXPRESSION_CHARS = 1000

_ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
#: The characters an arithmetic answer may hold (digits, + - * /, parentheses, whitespace).
ARITHMETIC_CHARS = re.compile(r"[0-9+\-*/()\s]+")
_OPERATORS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/"}

#: Reasons ``judge_countdown`` gives, in the order they are checked.
REASONS = ("no answer", "characters", "too long", "syntax", "operator", "numbers", "division by zero", "value", "ok")


def extract_answer(text: str, *, extract: str = "auto") -> str | None:
    """The answer part of a completion, stripped, or None when there is none (see ``EXTRACT_MODES``).

    reasoning-gym's convention is ``<answer>...</answer>`` (its ``extract_answer`` also takes the last pair); the
    fallback to the last non-empty line serves base models that write the expression alone.

    >>> extract_answer("<think>hm</think><answer> 1 + 2 </answer>"), extract_answer("work\\n\\n 1+2 \\n")
    ('1 + 2', '1+2')
    >>> extract_answer("1+2", extract="tag"), extract_answer("  \\n"), extract_answer("<answer> </answer>")
    (None, None, None)
    """
    check_choice("extract_answer", "extract", extract, EXTRACT_MODES)
    if extract in ("auto", "tag"):
        matches = _ANSWER_TAG.findall(text)
        if matches:
            return matches[-1].strip() or None  # an empty tag: the model gave no answer
        if extract == "tag":
            return None
    if extract == "whole":
        return text.strip() or None
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else None


class _Rejected(Exception):
    """The expression breaks a rule; ``args[0]`` is the reason (one of ``REASONS``)."""


def _literals(node: ast.AST) -> list[int]:
    """The integer literals of an expression tree of binary + - * / over integer constants (else ``_Rejected``)."""
    if isinstance(node, ast.BinOp):
        if type(node.op) not in _OPERATORS:
            raise _Rejected("operator")
        return _literals(node.left) + _literals(node.right)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):  # -6: reasoning-gym's solutions write it
        return _literals(node.operand)
    if isinstance(node, ast.Constant) and type(node.value) is int:
        return [node.value]
    raise _Rejected("operator")  # unary plus, a call, a name, a float ... none is + - * / on the numbers


def _evaluate(node: ast.AST) -> Fraction:
    """The exact value of a tree ``_literals`` accepted; a zero divisor raises ``_Rejected("division by zero")``."""
    if isinstance(node, ast.Constant):
        return Fraction(node.value)
    if isinstance(node, ast.UnaryOp):
        return -_evaluate(node.operand)  # _literals let only unary minus through
    assert isinstance(node, ast.BinOp)  # guaranteed by _literals, which runs first
    left, right = _evaluate(node.left), _evaluate(node.right)
    op = _OPERATORS[type(node.op)]
    if op == "+":
        return left + right
    if op == "-":
        return left - right
    if op == "*":
        return left * right
    if right == 0:
        raise _Rejected("division by zero")
    return left / right


def _value(text: str) -> Fraction:
    """``_evaluate`` of a text ``_check_syntax`` accepted. Evaluation recurses one frame deeper than the syntax
    check, so a nesting just under the interpreter's recursion limit is rejected here as "syntax" too."""
    try:
        return _evaluate(ast.parse(text, mode="eval").body)
    except RecursionError:
        raise _Rejected("syntax") from None


def evaluate_expression(expression: str) -> tuple[Fraction, list[int]]:
    """The exact value of an arithmetic expression and its integer literals, without ``eval``.

    Accepts digits, binary ``+ - * /``, unary minus, parentheses and whitespace only; anything else raises
    ``ValueError`` whose message starts with the reason (one of ``REASONS``). The tree comes from
    ``ast.parse(mode="eval")`` and is walked by hand: only ``BinOp`` nodes with Add/Sub/Mult/Div, ``UnaryOp`` nodes
    with USub and ``int`` constants are accepted.

    >>> evaluate_expression("(6 + 4) * 3 / 4")
    (Fraction(15, 2), [6, 4, 3, 4])
    >>> evaluate_expression("2 ** 3")
    Traceback (most recent call last):
    ...
    ValueError: operator: only + - * / (and a unary minus) on integers and parentheses are allowed: '2 ** 3'
    """
    text = expression.strip()
    try:
        literals = _check_syntax(text)
        return _value(text), literals
    except _Rejected as e:
        raise ValueError(f"{e.args[0]}: {_DESCRIPTIONS[e.args[0]]}: {expression!r}") from None


_DESCRIPTIONS = {
    "characters": "only digits, + - * /, parentheses and whitespace are allowed",
    "too long": f"the expression is longer than {MAX_EXPRESSION_CHARS} characters",
    "syntax": "not a well-formed arithmetic expression",
    "operator": "only + - * / (and a unary minus) on integers and parentheses are allowed",
    "division by zero": "the expression divides by zero",
}


def _check_syntax(text: str) -> list[int]:
    """Rules 2 of the module docstring; returns the integer literals or raises ``_Rejected``."""
    if not ARITHMETIC_CHARS.fullmatch(text):
        raise _Rejected("characters")  # also keeps out "1_000", "0x1f", names and "=": ast never sees them
    if len(text) > MAX_EXPRESSION_CHARS:
        raise _Rejected("too long")
    try:
        tree = ast.parse(text, mode="eval")
        return _literals(tree.body)
    except (SyntaxError, ValueError, RecursionError, MemoryError):  # "06", "1 2", "(((...": not an expression
        raise _Rejected("syntax") from None


def _numbers(numbers: Any) -> list[int]:
    """The given numbers as ints: a list/tuple of ints (or integral floats / numeric strings), or a string holding them
    (``"[3, 4, 6]"``, ``"3 4 6"``)."""
    if isinstance(numbers, str):
        return [int(n) for n in re.findall(r"-?\d+", numbers)]
    if isinstance(numbers, Sequence):
        out = []
        for n in numbers:
            integral = is_number(n) and float(n).is_integer()
            if integral or (isinstance(n, str) and re.fullmatch(r"\s*-?\d+\s*", n)):
                out.append(int(n))
            else:
                raise ValueError(f"countdown verifier: the given numbers must be integers, got {numbers!r}")
        return out
    raise ValueError(f"countdown verifier: the numbers column must hold a list of integers, got {numbers!r}")


def _target(target: Any) -> Fraction:
    if isinstance(target, Fraction) or is_number(target):
        return Fraction(target)
    if isinstance(target, str):
        try:
            return Fraction(target.strip())
        except (ValueError, ZeroDivisionError):
            pass
    raise ValueError(f"countdown verifier: the target must be a number, got {target!r}")


def judge_countdown(
    text: str, target: Any, numbers: Any, *, use_all: bool = True, extract: str = "auto"
) -> tuple[float, str]:
    """``(score, reason)`` of one completion text: 1.0 and "ok" when it solves the puzzle, else 0.0 and the first rule
    it breaks (one of ``REASONS``; module docstring). ``target`` and ``numbers`` are the row's values; a malformed
    target or numbers list is a data error (``ValueError``).

    >>> judge_countdown("<answer>(6+4)*3</answer>", 30, [6, 4, 3])
    (1.0, 'ok')
    >>> judge_countdown("6*4+3", 30, [6, 4, 3]), judge_countdown("6/(4-4)+3", 30, [6, 4, 4, 3])
    ((0.0, 'value'), (0.0, 'division by zero'))
    """
    goal, given = _target(target), _numbers(numbers)
    expression = extract_answer(text, extract=extract)
    if expression is None:
        return 0.0, "no answer"
    try:
        literals = _check_syntax(expression)
        used, allowed = Counter(literals), Counter(given)
        if (used != allowed) if use_all else (used - allowed):  # Counter subtraction keeps only the excess uses
            return 0.0, "numbers"
        value = _value(expression)
    except _Rejected as e:
        return 0.0, e.args[0]
    return (1.0, "ok") if value == goal else (0.0, "value")


class CountdownReward:
    """The ``countdown`` verifier as a TRL-convention reward function (picklable: a top-level class, not a closure).

    ``fn(prompts, completions, **columns) -> list[float]`` reads the targets from ``columns[answer_column]`` and the
    given numbers from ``columns[numbers_column]``; other columns are ignored.
    """

    def __init__(self, *, answer_column: str, numbers_column: str, use_all: bool, extract: str) -> None:
        self.__name__ = "countdown" if answer_column == "target" else f"countdown_{answer_column}"
        self.__qualname__ = self.__name__
        self.answer_column, self.numbers_column = answer_column, numbers_column
        self.use_all, self.extract = use_all, extract

    def __call__(self, prompts: Sequence[Any] | None = None, completions: Sequence[Any] = (), **columns: Any):
        for column in (self.answer_column, self.numbers_column):
            if column not in columns:
                raise ValueError(
                    f"reward {self.__name__!r} reads column {column!r}, which is not among the columns "
                    f"{sorted(columns)}; pass answer_column=/numbers_column= naming the target and numbers columns"
                )
        targets, numbers = columns[self.answer_column], columns[self.numbers_column]
        if not len(targets) == len(numbers) == len(completions):
            raise ValueError(
                f"reward {self.__name__!r}: {len(completions)} completions, {len(targets)} targets, "
                f"{len(numbers)} number lists"
            )
        return [
            judge_countdown(completion_text(c), t, n, use_all=self.use_all, extract=self.extract)[0]
            for c, t, n in zip(completions, targets, numbers, strict=True)
        ]

    def __repr__(self) -> str:
        return (
            f"CountdownReward(answer_column={self.answer_column!r}, numbers_column={self.numbers_column!r}, "
            f"use_all={self.use_all!r}, extract={self.extract!r})"
        )


@VERIFIERS.register("countdown")
def countdown(
    *, answer_column: str = "target", numbers_column: str = "numbers", use_all: bool = True, extract: str = "auto"
) -> CountdownReward:
    """1.0 when the completion's expression uses the given numbers and equals the target, else 0.0 (module docstring).

    Args:
        answer_column: the column holding each row's target number (default "target"; logged as ``countdown``, or
            ``countdown_<column>`` for another column).
        numbers_column: the column holding each row's given numbers, a list of ints (default "numbers").
        use_all: True (default): every given number exactly once, as reasoning-gym and TinyZero require; False: each
            at most once (the TV rule).
        extract: where the expression is (``EXTRACT_MODES``): "auto" (default: last ``<answer>`` tag, else the last
            non-empty line), "tag", "last_line" or "whole".

    >>> countdown()(prompts=["q"], completions=["<answer>100 - 4*6</answer>"], target=[76], numbers=[[4, 6, 100]])
    [1.0]
    """
    check_choice("countdown verifier", "extract", extract, EXTRACT_MODES)
    if not isinstance(use_all, bool):
        raise ValueError(f"countdown verifier: use_all must be True or False, got {use_all!r}")
    return CountdownReward(answer_column=answer_column, numbers_column=numbers_column, use_all=use_all, extract=extract)


__all__ = [
    "EXTRACT_MODES",
    "REASONS",
    "CountdownReward",
    "countdown",
    "evaluate_expression",
    "extract_answer",
    "judge_countdown",
]
