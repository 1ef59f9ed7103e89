"""Verifiers: hand cases for each entry, chat completions, GSM8K references, pickling, threads."""

import pickle
import sys
import threading

import pytest

from grpolab.core.registry import UnknownNameError
from grpolab.rewards.verifiers import VERIFIERS, completion_text, last_number, reference_number, strip_gsm8k


def chat(text):
    return [{"role": "assistant", "content": text}]


def test_registry_lists_the_three_verifiers():
    assert {"exact", "numeric", "math"} <= set(VERIFIERS)
    with pytest.raises(UnknownNameError, match=r"known: .*exact"):
        VERIFIERS["nope"]


def test_completion_text():
    assert completion_text("  hi ") == "  hi "
    assert completion_text(chat("42")) == "42"
    # the LAST assistant message counts, other roles are skipped
    msgs = [
        {"role": "assistant", "content": "1"},
        {"role": "tool", "content": "x"},
        {"role": "assistant", "content": "2"},
    ]
    assert completion_text(msgs) == "2"
    assert completion_text({"role": "assistant", "content": "one"}) == "one"
    assert completion_text(chat([{"type": "text", "text": "a"}, {"type": "text", "text": "b"}])) == "ab"
    assert completion_text(chat(None)) == ""
    with pytest.raises(ValueError, match="no assistant message"):
        completion_text([{"role": "user", "content": "q"}])
    with pytest.raises(TypeError, match="string or chat"):
        completion_text(42)


def test_exact():
    fn = VERIFIERS["exact"]()
    assert fn.__name__ == "exact"
    completions = [" Paris\n", "paris", chat("Paris "), "7"]
    out = fn(prompts=["q"] * 4, completions=completions, answer=["Paris", "Paris", "Paris", 7])
    assert out == [1.0, 0.0, 1.0, 1.0]  # stripped, case-sensitive, chat, non-string reference str()-ed
    strict = VERIFIERS["exact"](strip=False)
    assert strict(["q", "q"], [" Paris", "Paris"], answer=["Paris", "Paris"]) == [0.0, 1.0]


def test_exact_reads_another_column_and_names_itself_after_it():
    fn = VERIFIERS["exact"](answer_column="label")
    assert fn.__name__ == "exact_label"
    assert fn(prompts=["q"], completions=["A"], label=["A"], answer=["B"], completion_ids=[[1]]) == [1.0]
    with pytest.raises(ValueError, match=r"'label'.*\['answer'\]"):
        fn(prompts=["q"], completions=["A"], answer=["A"])


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("72", 72.0),
        ("The answer is 72.", 72.0),
        ("first 3 then 4", 4.0),  # the LAST number counts
        ("It is -5", -5.0),
        ("3-5", 5.0),  # a minus glued to a number is subtraction, not a sign
        ("3.25 dollars", 3.25),
        ("x = .5", 0.5),
        ("$1,234.50 total", 1234.5),
        ("1,234,567", 1234567.0),
        ("1,2,3", 3.0),  # a list, not thousands separators
        ("half: 1/2", 0.5),
        ("-3/4", -0.75),
        ("no number", None),
    ],
)
def test_last_number(text, expected):
    assert last_number(text) == expected


def test_last_number_without_fractions_and_zero_denominator():
    assert last_number("1/2", fractions=False) == 2.0
    value = last_number("1/0")
    assert value != value  # NaN: equals nothing


def test_numeric():
    fn = VERIFIERS["numeric"]()
    assert fn.__name__ == "numeric"
    completions = ["so 72", "so 72.0", chat("I get -3"), "1,000 apples", "0.75", "nothing", "71.9999999", "73"]
    answers = ["#### 72", 72, "-3", "1000", "3/4", "5", "72", "72"]
    # 71.9999999 vs 72: |diff| 1e-7 <= rel_tol 1e-6 * 72, so equal
    assert fn(prompts=["q"] * 8, completions=completions, answer=answers) == [1, 1, 1, 1, 1, 0, 1, 0]


def test_numeric_gsm8k_full_answer_field():
    fn = VERIFIERS["numeric"]()
    reference = "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\nShe sold 48+24 = <<48+24=72>>72 clips.\n#### 72"
    assert fn(prompts=["q", "q"], completions=["72", "24"], answer=[reference, reference]) == [1.0, 0.0]


def test_numeric_tolerances():
    loose = VERIFIERS["numeric"](abs_tol=0.01, rel_tol=0.0)
    assert loose(["q", "q"], ["3.141", "3.16"], answer=["3.14", "3.14"]) == [1.0, 0.0]
    with pytest.raises(ValueError, match="tolerances"):
        VERIFIERS["numeric"](rel_tol=-1)


def test_numeric_reference_without_a_number_is_an_error():
    with pytest.raises(ValueError, match="holds no number"):
        VERIFIERS["numeric"]()(["q"], ["3"], answer=["unknown"])


def test_reference_number_and_the_gsm8k_cut():
    assert strip_gsm8k("3 + 4 = 7 #### 7") == " 7" and strip_gsm8k("a #### b #### 9") == " 9"
    assert strip_gsm8k("no cut") == "no cut"
    assert reference_number(7) == 7.0 and reference_number(-2.5) == -2.5
    assert reference_number("12 apples #### 1,234") == 1234.0  # the number after the last "####"
    assert reference_number("1/4") == 0.25 and reference_number("1/4", fractions=False) == 4.0
    with pytest.raises(ValueError, match=r"^dual verifier: the reference 'none' holds no number$"):
        reference_number("none", where="dual verifier")
    with pytest.raises(ValueError, match=r"^numeric verifier: .* holds no number"):
        reference_number("1/0")  # a zero denominator: NaN, no number


def test_length_mismatch_is_an_error():
    with pytest.raises(ValueError, match="2 completions but 1 references"):
        VERIFIERS["exact"]()(["q", "q"], ["a", "b"], answer=["a"])


def test_verifiers_pickle():
    fn = pickle.loads(pickle.dumps(VERIFIERS["numeric"](abs_tol=0.5)))
    assert fn.__name__ == "numeric" and fn.options["abs_tol"] == 0.5
    assert fn(["q"], ["1.4"], answer=["1"]) == [1.0]


def test_math():
    pytest.importorskip("math_verify")
    fn = VERIFIERS["math"]()
    assert fn.__name__ == "math"
    completions = ["\\boxed{1/2}", "So $\\frac{1}{2}$", chat("\\boxed{0.5}"), "\\boxed{0.6}", "no idea", "72"]
    answers = ["0.5", "\\boxed{0.5}", "1/2", "0.5", "0.5", "#### 72"]
    assert fn(prompts=["q"] * 6, completions=completions, answer=answers) == [1.0, 1.0, 1.0, 0.0, 0.0, 1.0]


def test_math_unparsable_reference_does_not_apply():
    pytest.importorskip("math_verify")
    assert VERIFIERS["math"]()(["q"], ["\\boxed{2}"], answer=["no math here"]) == [None]


def test_math_works_outside_the_main_thread():
    pytest.importorskip("math_verify")
    fn = VERIFIERS["math"]()
    result = {}

    def work():
        try:
            result["out"] = fn(["q", "q"], ["\\boxed{1/2}", "\\boxed{3}"], answer=["0.5", "2"])
        except Exception as e:  # surfaced in the main thread below
            result["err"] = e

    t = threading.Thread(target=work)
    t.start()
    t.join()
    assert result == {"out": [1.0, 0.0]}


def test_math_rejects_bad_timeout():
    pytest.importorskip("math_verify")
    with pytest.raises(ValueError, match="timeout_seconds"):
        VERIFIERS["math"](timeout_seconds=0)


def test_math_without_math_verify_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "math_verify", None)  # makes `import math_verify` raise ImportError
    with pytest.raises(ImportError, match=r"grpolab\[data\]"):
        VERIFIERS["math"]()
