"""The arith task: a deterministic disjoint split, the exact verifier, the row shape, the wrong-answer helper."""

import random

import pytest

from grpolab.data.arith import (
    all_problems,
    arith_exact_reward,
    arith_hints,
    arith_problems,
    arith_rows,
    arith_task,
    column_steps,
    format_prompt,
    reverse_thought,
    solve,
    wrong_answer,
)
from grpolab.data.task import TASKS, Task


def test_all_problems_cover_both_operators_and_the_operand_range():
    problems = all_problems()
    assert len(problems) == 2 * 100 * 100 == len(set(problems))
    assert {op for _, op, _ in problems} == {"+", "-"}
    assert min(a for a, _, _ in problems) == 0 and max(b for _, _, b in problems) == 99


def test_splits_are_disjoint_and_cover_everything():
    train, held_out = arith_problems("train"), arith_problems("eval")
    assert len(held_out) == 500 and len(train) == 19_500
    assert not set(train) & set(held_out)
    assert set(train) | set(held_out) == set(all_problems())
    # the prompts are disjoint too (a prompt determines its problem)
    assert not {r["prompt"] for r in arith_rows("train")} & {r["prompt"] for r in arith_rows("eval")}


def test_split_is_deterministic_and_seeded():
    assert arith_problems("eval") == arith_problems("eval")
    assert arith_problems("eval", seed=1) != arith_problems("eval")
    # with the default seed a smaller eval split is a prefix of the default one (still held out of pretraining)
    assert arith_problems("eval", n_eval=100) == arith_problems("eval")[:100]
    # pinned so that a change of the shuffle (which would leak the shipped model's pre-training data) is caught
    assert arith_problems("eval")[:3] == [(60, "+", 6), (75, "+", 77), (21, "-", 58)]


def test_bad_split_arguments_raise():
    with pytest.raises(ValueError, match="unknown split"):
        arith_problems("test")
    with pytest.raises(ValueError, match="n_eval"):
        arith_problems("eval", n_eval=0)
    with pytest.raises(ValueError, match="unknown operator"):
        solve(1, "*", 2)


def test_prompt_and_answer_format():
    assert format_prompt(23, "+", 45) == "23+45="
    assert format_prompt(0, "-", 99) == "0-99="
    rows = {r["prompt"]: r["answer"] for r in arith_rows("all")}
    assert rows["23+45="] == "68"
    assert rows["0-99="] == "-99"
    assert rows["99+99="] == "198"
    assert rows["7-7="] == "0"


def test_task_rows_and_registration():
    task = TASKS["arith"]()
    assert isinstance(task, Task) and task.name == "arith"
    assert len(task.train) == 19_500 and len(task.eval) == 500
    for row in [*task.train[:5], *task.eval[:5]]:
        assert set(row) == {"prompt", "answer"}
        assert isinstance(row["prompt"], str) and row["prompt"].endswith("=")
        assert isinstance(row["answer"], str)
    assert task.reward_funcs == [arith_exact_reward] and task.accuracy is arith_exact_reward
    assert task.info["held_out_from_tiny_arith"] is True
    assert arith_task(seed=3).info["held_out_from_tiny_arith"] is False
    assert arith_task(n_eval=100).info["held_out_from_tiny_arith"] is True


def test_verifier_hand_cases():
    completions = ["68", " 68\n", "068", "+68", "68.", "6 8", "", "-2", "2", "- 2", "0"]
    answers = ["68", "68", "68", "68", "68", "68", "68", "-2", "-2", "-2", "0"]
    expected = [1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 1.0]
    assert arith_exact_reward([""] * len(answers), completions, answer=answers) == expected


def test_verifier_chat_format_and_extra_columns():
    chat = [[{"role": "assistant", "content": " 12 "}], [{"role": "assistant", "content": "13"}]]
    prompts = [[{"role": "user", "content": "5+7="}]] * 2
    assert arith_exact_reward(prompts, chat, answer=["12", "12"], other=[1, 2]) == [1.0, 0.0]


def test_verifier_rejects_misaligned_or_malformed_input():
    with pytest.raises(ValueError, match="answers"):
        arith_exact_reward(["1+1="], ["2", "2"], answer=["2"])
    with pytest.raises(ValueError, match="completion must be"):
        arith_exact_reward(["1+1="], [2], answer=["2"])


def test_wrong_answer_is_wrong_and_near():
    rng = random.Random(0)
    for value in [-99, -10, -1, 0, 1, 9, 10, 55, 99, 100, 198]:
        for _ in range(200):
            wrong = wrong_answer(value, rng)
            assert wrong != value
            assert not str(wrong).lstrip("-").startswith("0") or wrong == 0  # no leading zeros
            assert abs(wrong - value) <= 90  # one digit, ±1 or ±10: never far off


def test_column_steps_and_the_knowledge_hints_are_the_reverse_thought():
    # 27+45: ones 7+5=12 (a carry), tens 20+40=60; 12 + 60 = 72
    assert column_steps(27, "+", 45) == ("7+5=12", "20+40=60")
    assert reverse_thought(27, "+", 45) == "7+5=12,20+40=60"
    for a, op, b in [(27, "+", 45), (3, "-", 25), (0, "+", 0), (99, "-", 9)]:
        ones, tens = column_steps(a, op, b)
        assert int(ones.split("=")[1]) + int(tens.split("=")[1]) == solve(a, op, b)  # the columns sum to the answer
        prompt = format_prompt(a, op, b)
        assert arith_hints(a, op, b)[:2] == [f"({ones}) {prompt}", f"({reverse_thought(a, op, b)}) {prompt}"]
