"""Task arith_think: the think-or-not completion format, the gold reverse thoughts and the rewards, by hand."""

import re

import pytest

from grpolab.data import TASKS
from grpolab.data.arith import all_problems, arith_task
from grpolab.data.arith_think import (
    MAX_NEW_TOKENS,
    empty_thought,
    format_completion,
    parse_completion,
    reverse_thought,
    think_accuracy,
    think_format,
    thought_length,
)
from grpolab.models import CHARS
from grpolab.rewards.scoring import score_completions


@pytest.fixture(scope="module")
def task():
    return TASKS["arith_think"]()


@pytest.mark.parametrize(
    ("a", "op", "b", "thought"),
    [
        (23, "+", 45, "3+5=8,20+40=60"),  # the brief's example: 8 + 60 = 68
        (27, "+", 45, "7+5=12,20+40=60"),  # a carry shows as 12: 60 + 12 = 72
        (63, "-", 28, "3-8=-5,60-20=40"),  # a borrow shows as -5: 40 - 5 = 35
        (3, "-", 5, "3-5=-2,0-0=0"),  # single digits keep both steps
        (99, "+", 99, "9+9=18,90+90=180"),  # the longest thought
        (0, "-", 99, "0-9=-9,0-90=-90"),  # the most negative result, -99
    ],
)
def test_reverse_thought_by_hand(a, op, b, thought):
    assert reverse_thought(a, op, b) == thought


def test_every_gold_thought_derives_its_answer_and_fits_the_generation_limit():
    step = re.compile(r"(\d+)([+-])(\d+)=(-?\d+)")
    longest = 0
    for a, op, b in all_problems():
        answer = a + b if op == "+" else a - b
        thought = reverse_thought(a, op, b)
        results = []
        for part in thought.split(","):  # each step is a true equation, checked with plain int arithmetic
            x, o, y, r = step.fullmatch(part).groups()
            assert int(x) + (int(y) if o == "+" else -int(y)) == int(r)
            results.append(int(r))
        assert sum(results) == answer  # ones + tens = the known answer (reverse thinking explains it)
        completion = format_completion(thought, str(answer))
        assert set(completion) <= set(CHARS)
        longest = max(longest, len(completion) + 1)  # + EOS (one token per character)
        assert len(f"{a}{op}{b}=") + 1 <= 7  # the prompt with BOS
    assert longest == 22 <= MAX_NEW_TOKENS  # "(9+9=18,90+90=180)198" + EOS
    assert 7 + MAX_NEW_TOKENS <= 64  # the tiny models' positions


def test_rows_share_arith_split_and_answers(task):
    base = arith_task()
    assert [r["prompt"] for r in task.eval] == [r["prompt"] for r in base.eval]
    assert [r["answer"] for r in task.train[:50]] == [r["answer"] for r in base.train[:50]]
    row = next(r for r in task.eval if r["prompt"] == "60+6=")  # the first eval problem of the default split
    assert row == {"prompt": "60+6=", "thought": "0+6=6,60+0=60", "answer": "66"}
    assert task.info["sft_completion"].format_map(row) == "(0+6=6,60+0=60)66"


COMPLETIONS = [
    # completion,              accuracy, format, empty, length   (answer "68")
    ("(3+5=8,20+40=60)68", 1.0, 1.0, 0.0, 14.0),
    ("()68", 1.0, 1.0, 1.0, 0.0),  # TON: the empty thought is a valid format
    (" (3+5=8)68 ", 1.0, 1.0, 0.0, 5.0),  # surrounding whitespace ignored; the thought's content is free
    ("()69", 0.0, 1.0, 1.0, 0.0),  # well formed, wrong answer
    ("68", 0.0, 0.0, 0.0, None),  # the arith format: no thought brackets
    ("(3+5=8", 0.0, 0.0, 0.0, None),  # unclosed thought
    ("()", 0.0, 0.0, 0.0, None),  # no answer
    ("(1)(2)68", 0.0, 0.0, 0.0, None),  # a bracket inside the thought
    ("()68.", 0.0, 0.0, 0.0, None),  # not an integer
    ("()-68", 0.0, 1.0, 1.0, 0.0),  # a negative integer is the format, not the answer
]


def test_rewards_by_hand():
    texts = [c for c, *_ in COMPLETIONS]
    answers = ["68"] * len(texts)
    assert think_accuracy([""] * len(texts), texts, answer=answers) == [acc for _, acc, *_ in COMPLETIONS]
    assert think_format([""] * len(texts), texts) == [fmt for _, _, fmt, *_ in COMPLETIONS]
    assert empty_thought([""] * len(texts), texts) == [e for *_, e, _ in COMPLETIONS]
    assert thought_length([""] * len(texts), texts) == [n for *_, n in COMPLETIONS]
    chat = [{"role": "assistant", "content": "()68"}]
    assert think_accuracy([""], [chat], answer=["68"]) == [1.0]
    assert parse_completion("(3+5=8,20+40=60)68") == ("3+5=8,20+40=60", "68")
    with pytest.raises(ValueError, match="one answer per completion"):
        think_accuracy(["", ""], ["()1", "()2"], answer=["1"])


def test_task_reward_is_accuracy_plus_format_and_logs_the_skip_rate(task):
    completions = ["(3+5=8,20+40=60)68", "()68", "()69", "68"]
    scores = score_completions(
        task.reward_funcs, task.reward_weights, [""] * 4, completions, {"answer": ["68"] * 4, "thought": [""] * 4}
    )
    # accuracy + 1.0 * format; the two metric functions have weight 0
    assert scores.reward.tolist() == [2.0, 2.0, 1.0, 0.0]
    assert task.reward_weights == [1.0, 1.0, 0.0, 0.0] and task.accuracy is think_accuracy
    assert scores.metrics["reward/empty_thought"] == pytest.approx(0.5)  # 2 of 4 skipped thinking
    assert scores.metrics["reward/thought_length"] == pytest.approx(14 / 3)  # (14 + 0 + 0) / 3 well-formed
    assert scores.valid.all()


def test_format_weight_and_bad_options():
    light = TASKS["arith_think"](format_weight=0.5)
    assert light.reward_weights == [1.0, 0.5, 0.0, 0.0]
    with pytest.raises(ValueError, match="format_weight"):
        TASKS["arith_think"](format_weight=-1)
    with pytest.raises(ValueError, match="n_eval"):
        TASKS["arith_think"](n_eval=0)
