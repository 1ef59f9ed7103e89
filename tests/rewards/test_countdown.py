"""The countdown verifier: hand-made cases for every rule, exact arithmetic, extraction, and an independent check of
the AST evaluator against expressions built with known exact values."""

import pickle
import random
from fractions import Fraction

import pytest

from grpolab.rewards import VERIFIERS
from grpolab.rewards.countdown import REASONS, evaluate_expression, extract_answer, judge_countdown

NUMS = [6, 4, 3]  # target 30: (6 + 4) * 3 = 10 * 3 = 30


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # correct: every number once, value (6 + 4) * 3 = 30
        ("<answer>(6 + 4) * 3</answer>", (1.0, "ok")),
        ("<think>try 6*4=24, no</think>\n<answer>\n 3 * (4 + 6) \n</answer>", (1.0, "ok")),
        ("I think it is\n(6+4)*3\n", (1.0, "ok")),  # no tag: the last non-empty line
        # wrong value: 6 * 4 + 3 = 27, 6 + 4 + 3 = 13
        ("<answer>6*4+3</answer>", (0.0, "value")),
        ("6 + 4 + 3", (0.0, "value")),
        # numbers: 6 reused (6 * 6 - 6 = 30 but uses 6 three times), 3 missing, 5 not given
        ("<answer>6*6-6</answer>", (0.0, "numbers")),
        ("<answer>(6+4)*3*1</answer>", (0.0, "numbers")),  # 1 is not a given number
        ("<answer>6*5</answer>", (0.0, "numbers")),
        # a unary minus is allowed, as reasoning-gym's own solutions write it: -(-6 - 4) * 3 = 10 * 3 = 30
        ("<answer>-(-6-4)*3</answer>", (1.0, "ok")),
        ("<answer>-3 + 6*4 + 9</answer>", (0.0, "numbers")),  # 9 is not given (-3 + 24 + 9 = 30)
        # disallowed operators: power, floor division, unary plus, caret, a call, a float, "="
        ("<answer>(6+4)*3**1</answer>", (0.0, "operator")),
        ("<answer>(6+4)//1*3</answer>", (0.0, "operator")),
        ("<answer>(6+4)*+3</answer>", (0.0, "operator")),
        ("<answer>(6+4)^3</answer>", (0.0, "characters")),
        ("<answer>abs(6+4)*3</answer>", (0.0, "characters")),
        ("<answer>(6.0+4)*3</answer>", (0.0, "characters")),
        ("<answer>(6+4)*3 = 30</answer>", (0.0, "characters")),
        ("<answer>__import__('os').system('true')</answer>", (0.0, "characters")),
        # garbage and empty answers
        ("", (0.0, "no answer")),
        ("<answer></answer>", (0.0, "no answer")),  # an empty tag: nothing to evaluate
        ("I don't know", (0.0, "characters")),
        ("<answer>6 4 3</answer>", (0.0, "syntax")),
        ("<answer>((6+4)*3</answer>", (0.0, "syntax")),
        ("<answer>06+4*3</answer>", (0.0, "syntax")),  # a leading zero is not a Python int literal
        ("<answer>" + "(" * 300 + "6" + ")" * 300 + "</answer>", (0.0, "syntax")),  # nesting beyond the parser
        ("<answer>" + "6+" * 600 + "6</answer>", (0.0, "too long")),
    ],
)
def test_hand_made_cases(text, expected):
    assert judge_countdown(text, 30, NUMS) == expected
    assert expected[1] in REASONS


def test_division_by_zero_scores_zero_instead_of_raising():
    # 6 / (4 - 4) divides by zero: 0.0, not a ZeroDivisionError; 6 / (4 / 4) * 3 + 4 - 4 = 6 * 3 + 0 = 18 is fine
    assert judge_countdown("<answer>6/(4-4)+3</answer>", 30, [6, 4, 4, 3]) == (0.0, "division by zero")
    assert judge_countdown("<answer>6/(4/4)*3+4-4</answer>", 18, [6, 4, 4, 4, 4, 3]) == (1.0, "ok")


def test_division_is_exact():
    # 1/49*49 is 0.9999999999999999 in floats; exactly 1 with fractions
    assert 1 / 49 * 49 != 1
    assert judge_countdown("1/49*49", 1, [1, 49, 49]) == (1.0, "ok")
    # intermediate fractions are allowed: (3 / 4) * 8 = 6
    assert judge_countdown("(3/4)*8", 6, [3, 4, 8]) == (1.0, "ok")
    # a fractional target works (a string or a float reference): 3 / 4 = 0.75
    assert judge_countdown("3/4", "0.75", [3, 4]) == (1.0, "ok")


def test_use_all_false_allows_unused_numbers_but_not_reuse():
    # 6 * 5 = 30 leaves 3 unused: wrong under the "use all" rule, right under "at most once"
    assert judge_countdown("6*5", 30, [6, 5, 3], use_all=True) == (0.0, "numbers")
    assert judge_countdown("6*5", 30, [6, 5, 3], use_all=False) == (1.0, "ok")
    assert judge_countdown("6*5*1", 30, [6, 5, 3], use_all=False) == (0.0, "numbers")  # 1 not given
    assert judge_countdown("6*6-6", 30, [6, 5, 3], use_all=False) == (0.0, "numbers")  # 6 three times
    assert judge_countdown("6*6-6", 30, [6, 6, 6], use_all=False) == (1.0, "ok")  # given three times


def test_extraction_modes():
    text = "<answer>6*4+3</answer>\n(6+4)*3"
    assert judge_countdown(text, 30, NUMS) == (0.0, "value")  # auto: the tag wins over the last line
    assert judge_countdown(text, 30, NUMS, extract="last_line") == (1.0, "ok")
    assert judge_countdown("(6+4)*3", 30, NUMS, extract="tag") == (0.0, "no answer")
    assert judge_countdown("<answer>1</answer> then <answer>(6+4)*3</answer>", 30, NUMS) == (1.0, "ok")  # last tag
    assert judge_countdown(" (6+4)*3 \n", 30, NUMS, extract="whole") == (1.0, "ok")
    assert extract_answer("a\n  \nb  \n") == "b"
    assert extract_answer("<answer>x</answer>", extract="whole") == "<answer>x</answer>"


def test_evaluate_expression_values_and_errors():
    assert evaluate_expression("(6 + 4) * 3 / 4") == (Fraction(15, 2), [6, 4, 3, 4])  # 10 * 3 / 4 = 30 / 4
    assert evaluate_expression("100 - 4 * 6") == (Fraction(76), [100, 4, 6])  # precedence: 100 - 24
    assert evaluate_expression("8 - 3 - 2") == (Fraction(3), [8, 3, 2])  # left-associative: (8 - 3) - 2
    assert evaluate_expression("8 / 4 / 2") == (Fraction(1), [8, 4, 2])  # (8 / 4) / 2
    assert evaluate_expression("-1 + 72*(89 - 77)/1") == (Fraction(863), [1, 72, 89, 77, 1])  # -1 + 72 * 12
    for bad, reason in [("1/0", "division by zero"), ("2**3", "operator"), ("x", "characters"), ("1 +", "syntax")]:
        with pytest.raises(ValueError, match=f"^{reason}"):
            evaluate_expression(bad)


def _random_expression(rng, numbers):
    """An expression string over ``numbers`` (each once) and its exact value, built bottom-up with Fractions."""
    items = [(str(n), Fraction(n)) for n in numbers]
    while len(items) > 1:
        i, j = sorted(rng.sample(range(len(items)), 2))
        (a, va), (b, vb) = items[i], items[j]
        ops = ["+", "-", "*"] + (["/"] if vb != 0 else [])
        op = rng.choice(ops)
        value = {"+": va + vb, "-": va - vb, "*": va * vb, "/": va / vb if vb else None}[op]
        items = [x for k, x in enumerate(items) if k not in (i, j)] + [(f"({a} {op} {b})", value)]
    return items[0]


def test_evaluator_matches_values_built_by_hand_on_random_expressions():
    rng = random.Random(0)
    for _ in range(300):
        numbers = [rng.randint(1, 100) for _ in range(rng.randint(2, 6))]
        text, value = _random_expression(rng, numbers)
        assert evaluate_expression(text) == (value, _literals_in_order(text))
        assert judge_countdown(f"<answer>{text}</answer>", value, list(reversed(numbers))) == (1.0, "ok")
        assert judge_countdown(f"<answer>{text}</answer>", value + 1, numbers) == (0.0, "value")


def _literals_in_order(text):
    return [int(tok) for tok in text.replace("(", " ").replace(")", " ").split() if tok.isdigit()]


def test_verifier_reads_columns_chat_completions_and_pickles():
    fn = VERIFIERS["countdown"]()
    assert fn.__name__ == "countdown"
    out = fn(
        prompts=["p", "p", "p"],
        completions=["<answer>(6+4)*3</answer>", [{"role": "assistant", "content": "6*5"}], "(6+4)*3"],
        target=[30, 30, "30"],
        numbers=[[6, 4, 3], "[6, 5]", ["6", "4", "3"]],
    )
    assert out == [1.0, 1.0, 1.0]
    again = pickle.loads(pickle.dumps(fn))
    assert again(prompts=["p"], completions=["6*4+3"], target=[27], numbers=[[6, 4, 3]]) == [1.0]
    other = VERIFIERS["countdown"](answer_column="answer", numbers_column="nums")
    assert other.__name__ == "countdown_answer"
    assert other(prompts=["p"], completions=["6*4+3"], answer=[27], nums=[[3, 4, 6]]) == [1.0]


def test_bad_options_and_data_raise_value_error():
    with pytest.raises(ValueError, match="extract must be one of"):
        VERIFIERS["countdown"](extract="first")
    with pytest.raises(ValueError, match="use_all must be True or False"):
        VERIFIERS["countdown"](use_all="yes")
    fn = VERIFIERS["countdown"]()
    with pytest.raises(ValueError, match="reads column 'numbers'"):
        fn(prompts=["p"], completions=["1"], target=[1])
    with pytest.raises(ValueError, match="target must be a number"):
        fn(prompts=["p"], completions=["1"], target=["abc"], numbers=[[1]])
    with pytest.raises(ValueError, match="must be integers"):
        fn(prompts=["p"], completions=["1"], target=[1], numbers=[[1.5]])
    with pytest.raises(ValueError, match="1 completions, 2 targets"):
        fn(prompts=["p"], completions=["1"], target=[1, 2], numbers=[[1], [2]])
