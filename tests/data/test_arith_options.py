"""The arith task's options: the ``hints`` column (Scaf-GRPO-style tiered hinted prompts in the tokenizer's
characters) and the reward (any verifier; the accuracy stays exact)."""

import re

import pytest

from grpolab.data.arith import arith_exact_reward, arith_hints, arith_task, solve
from grpolab.models import CHARS, char_tokenizer


def test_hints_by_hand():
    # 47 + 38 = 85: ones 7+8=15, tens 40+30=70 (70 + 15 = 85); answer prefixes "8", "85"
    assert arith_hints(47, "+", 38) == [
        "(7+8=15) 47+38=",
        "(7+8=15,40+30=70) 47+38=",
        "(8) 47+38=",
        "(85) 47+38=",
    ]
    # 5 - 61 = -56: ones 5-1=4, tens 0-60=-60 (-60 + 4 = -56); prefixes "-", "-5", "-56"
    assert arith_hints(5, "-", 61) == [
        "(5-1=4) 5-61=",
        "(5-1=4,0-60=-60) 5-61=",
        "(-) 5-61=",
        "(-5) 5-61=",
        "(-56) 5-61=",
    ]
    assert arith_hints(47, "+", 38, solution_levels=1)[2:] == ["(85) 47+38="]


def test_hints_column_is_optional_and_well_formed_for_every_problem():
    plain = arith_task()
    assert "hints" not in plain.train[0] and plain.info["hints"] is False
    task = arith_task(hints=True)
    assert task.info["hints"] is True
    assert [r["prompt"] for r in task.train[:50]] == [r["prompt"] for r in plain.train[:50]]  # same rows, same order
    tok = char_tokenizer()
    longest = 0
    for row in [*task.train, *task.eval]:
        hints = row["hints"]
        assert len(hints) >= 3 and all(h.endswith(") " + row["prompt"]) for h in hints)
        assert hints[-1] == f"({row['answer']}) {row['prompt']}"  # the last Solution level is the whole answer
        a, op, b = re.fullmatch(r"(\d+)([+-])(\d+)=", row["prompt"]).groups()
        ones, tens = re.fullmatch(r"\((.*)\) .*", hints[1]).group(1).split(",")
        partial = [int(x.split("=")[1]) for x in (ones, tens)]
        assert sum(partial) == solve(int(a), op, int(b)) == int(row["answer"])  # the Knowledge hints add up
        longest = max(longest, *map(len, hints))
    assert set("".join(h for r in task.train[:2000] for h in r["hints"])) <= set(CHARS)  # no <unk> for the tiny model
    assert 3 not in tok(task.train[0]["hints"][1]).input_ids
    assert longest + 1 + 5 <= 64  # BOS + prompt + a 4-character answer + EOS fit the tiny models' 64 positions


def test_rewards_ignore_the_hints_column():
    row = arith_task(hints=True).train[0]
    assert arith_exact_reward([row["prompt"]], [row["answer"]], answer=[row["answer"]], hints=[row["hints"]]) == [1.0]


def test_arith_reward_option_takes_verifier_names_and_keeps_the_exact_accuracy():

    task = arith_task(reward=["exact", "dual"], reward_weights=[1.0, 0.5])
    assert task.reward_funcs[0] is arith_exact_reward and task.reward_weights == [1.0, 0.5]
    assert task.accuracy is arith_exact_reward and task.info["reward"] == ["exact", "dual"]
    dual = arith_task(reward="dual").reward_funcs[0]
    # 68 vs 68: exact 1 + closeness 1; 67 vs 68: exact 0 + closeness in (0, 1)
    right, near = dual(["23+45=", "23+45="], ["68", "67"], answer=["68", "68"])
    assert right == 2.0 and 0.0 < near < 1.0
    with pytest.raises(ValueError, match="unknown verifier"):
        arith_task(reward="nope")
