"""Independent cross-check of the ``countdown`` verifier (rewards/countdown.py) against a small hand-written
recursive-descent evaluator, plus hostile inputs.

Rules re-derived from the task statement (TinyZero / reasoning-gym countdown: an arithmetic expression over the
given numbers, each used exactly once by default, equal to the target; intermediate fractions allowed; division by
zero is simply wrong) and the module's documented restrictions (digits, + - * /, parentheses, whitespace, a unary
minus; no ``**``, ``//``, decimals, exponents, names; at most 1000 characters).

Hostile inputs: huge exponents (``**`` must be refused before anything is computed), deep nesting (parentheses and
unary minus chains), unicode digits, decimals/exponent notation, leading zeros, division by zero.
"""

from __future__ import annotations

import random
import time
from fractions import Fraction

import pytest

from grpolab.rewards.countdown import MAX_EXPRESSION_CHARS, judge_countdown
from grpolab.rewards.verifiers import VERIFIERS


# ------------------------------------------------------------------------------------------------ reference
class _Bad(Exception):
    pass


def reference_eval(text: str) -> tuple[Fraction, list[int]] | str:
    """Value and literals of an expression, or a reason string ("bad", "zero")."""
    s = text.strip()
    allowed = set("0123456789+-*/() \t\n\r")
    if not s or any(c not in allowed for c in s) or len(s) > MAX_EXPRESSION_CHARS:
        return "bad"
    tokens: list[str] = []
    i = 0
    while i < len(s):
        c = s[i]
        if c.isspace():
            i += 1
        elif c.isdigit():
            j = i
            while j < len(s) and s[j].isdigit():
                j += 1
            tokens.append(s[i:j])
            i = j
        elif c in "*/" and i + 1 < len(s) and s[i + 1] == c:
            return "bad"  # ** and //
        else:
            tokens.append(c)
            i += 1
    pos = 0
    literals: list[int] = []

    def peek():
        return tokens[pos] if pos < len(tokens) else None

    def take():
        nonlocal pos
        pos += 1
        return tokens[pos - 1]

    def expr():
        value = term()
        while peek() in ("+", "-"):
            op = take()
            right = term()
            value = value + right if op == "+" else value - right
        return value

    def term():
        value = factor()
        while peek() in ("*", "/"):
            op = take()
            right = factor()
            if op == "*":
                value = value * right
            elif right == 0:
                raise ZeroDivisionError
            else:
                value = value / right
        return value

    def factor():
        t = peek()
        if t == "-":
            take()
            return -factor()
        if t == "(":
            take()
            value = expr()
            if peek() != ")":
                raise _Bad
            take()
            return value
        if t is not None and t.isdigit():
            take()
            if len(t) > 1 and t[0] == "0" and set(t) != {"0"}:
                raise _Bad  # Python refuses leading zeros ("07"); "00" is a valid 0
            literals.append(int(t))
            return Fraction(int(t))
        raise _Bad

    try:
        value = expr()
        if pos != len(tokens):
            return "bad"
    except _Bad:
        return "bad"
    except ZeroDivisionError:
        return "zero"
    return value, literals


def reference_score(text: str, target, numbers: list[int], use_all: bool = True) -> float:
    out = reference_eval(text)
    if isinstance(out, str):
        return 0.0
    value, literals = out
    pool = list(numbers)
    for n in literals:
        if n not in pool:
            return 0.0
        pool.remove(n)
    if use_all and pool:
        return 0.0
    return 1.0 if value == Fraction(target) else 0.0


def random_expression(rng: random.Random, numbers: list[int]) -> str:
    items = [str(n) for n in numbers]
    rng.shuffle(items)
    while len(items) > 1:
        a = items.pop(rng.randrange(len(items)))
        b = items.pop(rng.randrange(len(items)))
        op = rng.choice("+-*/")
        sp = rng.choice(["", " ", "  "])
        e = f"{a}{sp}{op}{sp}{b}"
        if rng.random() < 0.6:
            e = f"({e})"
        if rng.random() < 0.1:
            e = f"-{e}"
        items.append(e)
    return items[0]


# ------------------------------------------------------------------------------------------------ tests
def test_random_expressions_agree_with_the_reference():
    rng = random.Random(0)
    checked = zero = 0
    for _ in range(400):
        numbers = [rng.randint(0, 12) for _ in range(rng.randint(2, 5))]
        text = random_expression(rng, numbers)
        out = reference_eval(text)
        target = out[0] if not isinstance(out, str) else 24
        for tgt in (target, target + 1):
            expected = reference_score(text, tgt, numbers)
            got = judge_countdown(f"<think>x</think><answer>{text}</answer>", tgt, numbers)[0]
            assert got == expected, (text, tgt, numbers)
            checked += 1
        zero += out == "zero"
        # a number left out (use_all) or one used twice is wrong; with use_all=False a left-out number is fine
        if len(numbers) > 2 and not isinstance(out, str):
            assert judge_countdown(text, target, [*numbers, 99]) == (0.0, "numbers")
            assert judge_countdown(text, target, [*numbers, 99], use_all=False)[0] == 1.0
    assert checked == 800 and zero > 0  # division by zero was exercised


@pytest.mark.parametrize(
    ("text", "target", "numbers", "score"),
    [
        ("(6 + 4) * 3", 30, [3, 4, 6], 1.0),
        ("1/3*3", 1, [1, 3, 3], 1.0),  # exact fractions
        ("(1 - 1/3) * 3", 2, [1, 1, 3, 3], 1.0),
        ("-1 + 72*12", 863, [1, 72, 12], 1.0),  # unary minus
        ("6 * - 4", -24, [6, 4], 1.0),
        ("--6", 6, [6], 1.0),
        ("1000*1000*1000", 1e9, [1000, 1000, 1000], 1.0),  # float target given as 1e9 (exactly representable)
        ("1000*1000*1000", "1000000000", [1000, 1000, 1000], 1.0),
        ("6 / (4 - 4) + 3", 3, [6, 4, 4, 3], 0.0),  # division by zero: wrong, never raises
        ("0 / 0", 0, [0, 0], 0.0),
        ("2 ** 3", 8, [2, 3], 0.0),
        ("2 // 3", 0, [2, 3], 0.0),
        ("+6", 6, [6], 0.0),  # unary plus refused
        ("1e9", 1e9, [1], 0.0),  # exponent notation
        ("1.5 * 2", 3, [2], 0.0),  # decimals
        ("1_000", 1000, [1000], 0.0),
        ("07 + 3", 10, [7, 3], 0.0),  # leading zero: not a Python integer literal
        ("\uff16 * 4", 24, [6, 4], 0.0),  # full-width digit 6
        ("\u0666 * 4", 24, [6, 4], 0.0),  # Arabic-Indic digit 6
        ("6\u00a0* 4", 24, [6, 4], 0.0),  # a non-breaking space is not an arithmetic character for ast
        ("6 * 4 = 24", 24, [6, 4], 0.0),
        ("abs(-24)", 24, [24], 0.0),
        ("[6][0]*4", 24, [6, 4], 0.0),
        ("6*4", 24, [6, 6, 4], 0.0),  # use_all: one 6 unused
        ("6*6", 36, [6, 4], 0.0),  # a number used twice
    ],
)
def test_hand_cases(text, target, numbers, score):
    assert judge_countdown(text, target, numbers)[0] == score
    assert reference_score(text, target, numbers) == score


def test_huge_exponents_and_long_inputs_are_refused_fast():
    start = time.perf_counter()
    assert judge_countdown("9 ** 9 ** 9 ** 9", 1, [9, 9, 9, 9]) == (0.0, "operator")
    assert judge_countdown("(" * 5 + "99999**99999999" + ")" * 5, 1, [99999, 99999999])[0] == 0.0
    assert judge_countdown("9" * 999 + "**" + "9" * 999, 1, [9])[1] == "too long"
    assert judge_countdown("9" * 990, 1, [9])[1] == "numbers"  # a 990-digit literal is no given number
    assert judge_countdown("+".join(["1"] * 480), 480, [1] * 480) == (1.0, "ok")
    assert time.perf_counter() - start < 2.0


def test_deep_parentheses_score_zero_or_one_and_never_raise():
    for depth in (1, 50, 150, 199, 200, 201, 250, 400):
        text = "(" * depth + "7" + ")" * depth
        score, reason = judge_countdown(text, 7, [7])
        assert (score, reason) in ((1.0, "ok"), (0.0, "syntax"))


def test_unary_minus_chains_never_raise():
    fn = VERIFIERS["countdown"]()
    for n in range(1, 999):
        text = "-" * n + "1"
        score, _ = judge_countdown(text, (-1) ** n, [1])
        assert score in (0.0, 1.0)
        assert fn(prompts=[""], completions=[f"<answer>{text}</answer>"], target=[(-1) ** n], numbers=[[1]])[0] in (
            0.0,
            1.0,
        )
