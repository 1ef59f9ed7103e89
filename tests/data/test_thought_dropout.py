"""TON's thought dropout (arXiv 2505.16854, Sec. 3) and the "ton" preset (plain GRPO on accuracy + format)."""

import random

import pytest

from grpolab.algorithms import PRESETS
from grpolab.data.thought_dropout import thought_dropout


def gold_rows(n):
    return [{"prompt": f"{i}+1=", "thought": f"{i % 10}+1={i % 10 + 1}", "answer": str(i + 1)} for i in range(n)]


@pytest.mark.parametrize("p", [0.5, 0.3, 0.9])
def test_the_fraction_emptied_is_about_p_and_answers_never_change(p):
    rows = gold_rows(20_000)
    out = thought_dropout(rows, p, seed=1)
    emptied = sum(r["thought"] == "" for r in out) / len(out)
    # binomial std at n = 20,000 is at most 0.0035: 0.02 is more than 5 std
    assert emptied == pytest.approx(p, abs=0.02)
    for before, after in zip(rows, out, strict=True):
        assert after["answer"] == before["answer"] and after["prompt"] == before["prompt"]
        assert after["thought"] in ("", before["thought"])
        assert set(after) == set(before)


def test_hand_example_seed_0():
    # random.Random(0).random() draws 0.844, 0.758, 0.421, 0.259: with p = 0.5 the last two rows are emptied
    rows = gold_rows(4)
    out = thought_dropout(rows, 0.5, seed=0)
    assert [r["thought"] for r in out] == ["0+1=1", "1+1=2", "", ""]
    draws = random.Random(0)
    assert [draws.random() < 0.5 for _ in range(4)] == [False, False, True, True]


def test_edges_determinism_and_no_mutation():
    rows = gold_rows(200)
    snapshot = [dict(r) for r in rows]
    assert thought_dropout(rows, 0.0, seed=3) == rows  # p = 0: plain SFT data
    assert all(r["thought"] == "" for r in thought_dropout(rows, 1.0, seed=3))
    assert thought_dropout(rows, 0.5, seed=7) == thought_dropout(rows, 0.5, seed=7)
    assert thought_dropout(rows, 0.5, seed=7) != thought_dropout(rows, 0.5, seed=8)
    assert rows == snapshot  # the input rows are untouched
    custom = thought_dropout([{"prompt": "x", "cot": "because", "answer": "1"}], 1.0, column="cot", empty="\n\n")
    assert custom == [{"prompt": "x", "cot": "\n\n", "answer": "1"}]  # the paper's <think>\n\n</think>


@pytest.mark.parametrize("p", [-0.1, 1.5, float("nan"), "0.5", True])
def test_bad_probability_raises(p):
    with pytest.raises(ValueError, match="probability"):
        thought_dropout(gold_rows(2), p)


def test_missing_thought_column_raises():
    with pytest.raises(ValueError, match="no 'thought' column"):
        thought_dropout([{"prompt": "1+1=", "answer": "2"}], 0.5)


def test_ton_preset_is_plain_grpo():
    # TON's RL stage is vanilla GRPO: its objective is GRPO's, hand-checked in tests/algorithms/test_presets.py
    ton, grpo = PRESETS["ton"], PRESETS["grpo"]
    assert ton.arxiv == "2505.16854"
    assert (ton.advantage, ton.loss, ton.aggregation) == (grpo.advantage, grpo.loss, grpo.aggregation)
    assert ton.regularizers == grpo.regularizers
    assert not (ton.shaping or ton.filters or ton.selectors or ton.rollout)
    assert dict(ton.trainer) == {"num_iterations": 1, "num_generations": 8, "temperature": 1.0}
    assert "24 new tokens" in ton.notes and "--thought-dropout 0.5" in ton.notes
