"""S-GRPO (GUI-Critic-R1, arXiv 2506.04614): the critic task, its three rewards, and the s_grpo preset on it."""

import functools
import json

import pytest
import torch

from grpolab.algorithms import PRESETS
from grpolab.algorithms.grpo import OBJECTIVE
from grpolab.data import TASKS
from grpolab.data.arith import arith_problems, solve
from grpolab.data.critic import critic_answer, critic_prompt, critic_rows, critic_task
from grpolab.models import CHARS, char_tokenizer
from grpolab.rewards.critic import (
    CRITIC_WEIGHTS,
    critic_accuracy,
    critic_format,
    critic_suggestion,
    parse_critique,
)
from grpolab.rewards.scoring import score_completions
from grpolab.trainer.config import resolve
from grpolab.trainer.loop import Trainer

WRONG = {"label": "0", "correct": "68", "proposed": "67", "answer": "0,68"}  # "23+45=67," proposes a wrong answer
RIGHT = {"label": "1", "correct": "68", "proposed": "68", "answer": "1"}  # "23+45=68,"


@functools.cache
def small_task():
    return critic_task(n_eval=20)


def total(completion, row):
    """The task's combined reward of one completion (format + accuracy + suggestion, weights 1, 1, 1)."""
    task = small_task()
    columns = {k: [v] for k, v in row.items()}
    scores = score_completions(task.reward_funcs, task.reward_weights, ["p"], [completion], columns)
    return scores.reward.item(), scores.rewards[0].tolist()


def test_parse_and_each_reward_by_hand():
    assert parse_critique("0,68") == ("0", "68") and parse_critique("1") == ("1", None)
    assert parse_critique("") == (None, None)
    completions = ["1", "0,68", "0,66", "1,68", "0", "x"]
    assert critic_format([""] * 6, completions) == [1.0, 1.0, 1.0, 0.0, 0.0, 0.0]
    labels = ["0"] * 6
    assert critic_accuracy([""] * 6, completions, label=labels) == [0.0, 1.0, 1.0, 0.0, 1.0, 0.0]
    # on a wrong proposal the suggestion must be the correct answer; "1,68" has it (format catches the rest)
    assert critic_suggestion([""] * 6, completions, label=labels, correct=["68"] * 6) == [0, 1, 0, 1, 0, 0]
    # on a correct proposal the suggestion reward does not apply
    assert critic_suggestion(["", ""], ["1", "0,5"], label=["1", "1"], correct=["5", "5"]) == [None, None]


def test_right_label_with_wrong_suggestion_scores_below_right_suggestion():
    """The spec's test: a correct label with a wrong suggestion < a correct label with a correct suggestion."""
    right_suggestion, parts_right = total("0,68", WRONG)
    wrong_suggestion, parts_wrong = total("0,66", WRONG)
    assert parts_right == [1.0, 1.0, 1.0] and parts_wrong == [1.0, 1.0, 0.0]
    assert wrong_suggestion < right_suggestion and (wrong_suggestion, right_suggestion) == (2.0, 3.0)
    # and both beat the wrong label; on a correct proposal the sum has two terms (suggestion: None)
    assert total("1", WRONG)[0] == 1.0  # well formed, wrong label, no suggestion
    reward, parts = total("1", RIGHT)
    assert reward == 2.0 and parts[:2] == [1.0, 1.0] and parts[2] != parts[2]  # NaN: not applicable
    assert total("0,68", RIGHT)[0] == 1.0  # flags a correct proposal: format only
    assert CRITIC_WEIGHTS == (1.0, 1.0, 1.0)


def test_critic_rows_format_and_balance():
    task = small_task()
    assert TASKS["critic"] is critic_task and task.accuracy is critic_accuracy
    tok = char_tokenizer()
    for row in [*task.eval, *task.train[:200]]:
        assert set(row["prompt"] + row["answer"]) <= set(CHARS)
        assert tok.unk_token_id not in tok(row["prompt"] + row["answer"])["input_ids"]
        _, proposed = row["prompt"][:-1].rsplit("=", 1)
        assert row["prompt"].endswith(",") and proposed == row["proposed"]
        assert (row["label"] == "1") == (row["proposed"] == row["correct"])
        assert row["answer"] == ("1" if row["label"] == "1" else f"0,{row['correct']}")
    # exactly half the proposals are wrong, in both splits
    assert sum(r["label"] == "0" for r in task.eval) == 10
    assert sum(r["label"] == "0" for r in task.train) == round(len(task.train) / 2)
    # the eval problems are arith's held-out ones, the correct answers exact
    for row, (a, op, b) in zip(task.eval, arith_problems("eval", n_eval=20), strict=True):
        assert row["prompt"].startswith(f"{a}{op}{b}=") and row["correct"] == str(solve(a, op, b))
    # the reference completion of each row scores the maximum
    for row in task.eval[:6]:
        assert total(row["answer"], row)[0] == (3.0 if row["label"] == "0" else 2.0)


def test_critic_rows_are_deterministic_and_options_checked():
    assert critic_rows("eval", n_eval=8) == critic_rows("eval", n_eval=8)
    assert all(r["label"] == "1" for r in critic_rows("eval", n_eval=8, wrong_fraction=0.0))
    assert critic_prompt(3, "-", 5, -2) == "3-5=-2," and critic_answer(-2, 7) == "0,-2"
    with pytest.raises(ValueError, match="wrong_fraction"):
        critic_task(wrong_fraction=1.5)


def test_s_grpo_preset_is_grpo_on_the_critic_rewards():
    preset = PRESETS["s_grpo"]
    assert preset.arxiv == "2506.04614"
    assert preset.advantage == OBJECTIVE["advantage"] and preset.loss == OBJECTIVE["loss"]
    assert preset.aggregation == OBJECTIVE["aggregation"] and preset.regularizers == OBJECTIVE["regularizers"]
    assert "--task critic" in preset.notes


def test_s_grpo_trains_three_steps_on_the_critic_task(tmp_path):
    config = resolve(
        None,
        {
            "model": "random-tiny",
            "task": "critic",
            "task_args": {"n_eval": 8},
            "algo": "s_grpo",
            "name": "critic",
            "output_dir": str(tmp_path),
            "steps": 3,
            "num_prompts": 2,
            "num_generations": 4,
            "max_new_tokens": 6,  # "0,152" and EOS
            "eval_prompts": 4,
            "eval_every": 0,
            "save_every": 0,
            "progress": False,
            "learning_rate": 1e-3,
        },
    )
    trainer = Trainer(config)
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer.run()
    logged = [json.loads(line) for line in (tmp_path / "critic" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logged] == [0, 1, 2, 3]
    for name in ("critic_format", "critic_accuracy", "critic_suggestion"):
        assert f"eval/reward/{name}" in logged[-1] and f"reward/{name}" in logged[1]  # each logged separately
    assert all(abs(r["loss"]) < 1e6 for r in logged[1:])
    assert any(not torch.equal(before[k], v) for k, v in trainer.model.state_dict().items())
