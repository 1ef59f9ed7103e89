"""Judges (0/1 reward functions): rule judges, the LLM judge on a random tiny model, and cgpo trained with a judge."""

import json

import pytest
import torch

from grpolab.data import TASKS, Task
from grpolab.data.arith import arith_task
from grpolab.models import random_tiny_model
from grpolab.rewards import VERIFIERS
from grpolab.rewards.judges import (
    AllOf,
    LLMJudge,
    answer_judge,
    format_judge,
    length_judge,
    llm_judge,
    prompt_text,
    refusal_judge,
)
from grpolab.rewards.scoring import score_completions
from grpolab.trainer.config import resolve
from grpolab.trainer.loop import Trainer

# the TINY settings of tests/trainer/test_loop.py
TINY = dict(
    model="random-tiny",
    steps=3,
    num_prompts=2,
    num_generations=4,
    max_new_tokens=4,
    eval_prompts=4,
    eval_every=0,
    save_every=0,
    progress=False,
    learning_rate=1e-3,
)


# ---------------------------------------------------------------------------------------------------- rule judges
def test_rule_judges_return_zero_or_one():
    prompts = ["23+45="] * 4
    completions = ["68", " 68 ", "It is 68.", "sixty-eight"]
    assert answer_judge()(prompts, completions, answer=["68"] * 4) == [1.0, 1.0, 1.0, 0.0]
    assert answer_judge(verifier="exact")(prompts, completions, answer=["68"] * 4) == [1.0, 1.0, 0.0, 0.0]
    assert format_judge()(prompts, completions) == [1.0, 1.0, 0.0, 0.0]
    assert length_judge(max_chars=2)(prompts, completions) == [1.0, 0.0, 0.0, 0.0]
    assert refusal_judge()(prompts, ["68", "I cannot do that.", "", "As an AI, no"]) == [1.0, 0.0, 0.0, 0.0]
    chat = [[{"role": "assistant", "content": "12"}]]
    assert format_judge()(["q"], chat) == [1.0]


def test_judges_are_verifiers_named_judge_star():
    assert format_judge().__name__ == "judge_format"
    assert VERIFIERS["judge_answer"](answer_column="gold").__name__ == "judge_answer_gold"
    for name in ("judge_answer", "judge_format", "judge_length", "judge_refusal"):
        assert VERIFIERS[name]().__name__ == name
    # usable by name as a task reward: the CGPO parts find it by its judge_ prefix
    task = arith_task(reward=["exact", "judge_format"], n_eval=4)
    scores = score_completions(task.reward_funcs, None, ["1+1="] * 2, ["2", "x"], {"answer": ["2", "2"]})
    assert scores.names == ["arith_exact_reward", "judge_format"] and scores.rewards.tolist() == [[1, 1], [0, 0]]


def test_rule_judge_bad_options_raise():
    with pytest.raises(ValueError, match="regular expression"):
        format_judge(pattern="(")
    with pytest.raises(ValueError, match="max_chars"):
        length_judge(max_chars=2, min_chars=5)
    with pytest.raises(ValueError, match="phrases"):
        refusal_judge(phrases="sorry")
    with pytest.raises(ValueError, match="not among the columns"):
        answer_judge(answer_column="gold")(["p"], ["1"], answer=["1"])
    with pytest.raises(ValueError, match="another judge"):
        answer_judge(verifier="judge_format")


def test_all_of_needs_every_judge():
    both = AllOf([format_judge(), length_judge(max_chars=1)], name="judge_both")
    assert both(["p"] * 3, ["7", "77", "x"]) == [1.0, 0.0, 0.0] and both.__name__ == "judge_both"


def test_prompt_text_of_chat_messages():
    assert prompt_text("2+2=") == "2+2="
    assert prompt_text([{"role": "user", "content": "hi"}]) == "user: hi"


# ---------------------------------------------------------------------------------------------------- LLM judge
TEMPLATE = "{prompt}{completion}{question}="  # only characters of the built-in char tokenizer


def manual_margin(model, tok, text):
    ids = torch.tensor([tok(text)["input_ids"]])  # [1, L]: no padding
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0, -1]  # [V]
    yes, no = tok("1", add_special_tokens=False)["input_ids"][0], tok("0", add_special_tokens=False)["input_ids"][0]
    return (logits[yes] - logits[no]).item()


def test_llm_judge_compares_yes_and_no_logits_of_a_local_model():
    model, tok = random_tiny_model(seed=3)
    judge = LLMJudge(model, tok, question="", template=TEMPLATE, yes="1", no="0", batch_size=2)
    prompts = ["23+45=", "1+1=", "99-3=", "7+8="]
    completions = ["68", "2", "96000", "15"]  # unequal lengths: left padding within a batch
    margins = judge.margins(prompts, completions)
    expected = [manual_margin(model, tok, p + c + "=") for p, c in zip(prompts, completions, strict=True)]
    torch.testing.assert_close(margins, torch.tensor(expected), atol=1e-5, rtol=1e-5)
    assert judge(prompts, completions) == [1.0 if m > 0 else 0.0 for m in expected]
    assert judge.__name__ == "judge_llm" and model.training  # its train / eval mode is left as it was
    # a margin above every score fails everything
    strict = llm_judge(model, tok, question="", template=TEMPLATE, yes="1", no="0", margin=1e6)
    assert strict(prompts, completions) == [0.0] * 4


def test_llm_judge_loads_a_local_folder_and_restores_train_mode(tmp_path):
    model, tok = random_tiny_model(seed=4)
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    from_folder = LLMJudge(str(tmp_path), question="", template=TEMPLATE, yes="1", no="0")
    model.train()
    in_memory = LLMJudge(model, tok, question="", template=TEMPLATE, yes="1", no="0")
    prompts, completions = ["12+3="] * 2, ["15", "4"]
    torch.testing.assert_close(from_folder.margins(prompts, completions), in_memory.margins(prompts, completions))
    assert model.training  # the judge put it back in train mode


def test_llm_judge_keeps_the_end_of_a_text_longer_than_the_model():
    model, tok = random_tiny_model(seed=5, max_positions=16)
    judge = LLMJudge(model, tok, question="", template=TEMPLATE, yes="1", no="0")
    text = "1+2=" + "3" * 40 + "="
    ids = tok(text)["input_ids"][-16:]
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits[0, -1]
    yes, no = tok("1", add_special_tokens=False)["input_ids"][0], tok("0", add_special_tokens=False)["input_ids"][0]
    assert judge.margins(["1+2="], ["3" * 40]).item() == pytest.approx((logits[yes] - logits[no]).item(), abs=1e-5)


def test_llm_judge_bad_options_raise():
    model, tok = random_tiny_model()
    with pytest.raises(ValueError, match="unknown token"):
        LLMJudge(model, tok, question="", template=TEMPLATE, yes="yes", no="0")  # no letters in the alphabet
    with pytest.raises(ValueError, match="same token"):
        LLMJudge(model, tok, question="", template=TEMPLATE)  # " yes" / " no": both start with the space
    with pytest.raises(ValueError, match="same token"):
        LLMJudge(model, tok, question="", template=TEMPLATE, yes="1", no="12")
    with pytest.raises(ValueError, match="tokenizer"):
        LLMJudge(model, question="", template=TEMPLATE, yes="1", no="0")
    with pytest.raises(ValueError, match="question"):
        LLMJudge(model, tok, template="{prompt}{completion}", yes="1", no="0")


# ---------------------------------------------------------------------------------------------------- cgpo + judge
def judged_digits_task(**kwargs):
    """arith prompts, a dense reward-model stand-in (the fraction of digits) and a length judge."""
    base = arith_task()

    def rm(prompts, completions, **_):
        return [sum(ch.isdigit() for ch in text) / max(1, len(text)) for text in completions]

    return Task("judged_digits", base.train, base.eval, [rm, length_judge(max_chars=2)], reward_weights=[1.0, 0.0])


if "judged_digits" not in TASKS:
    TASKS.register("judged_digits")(judged_digits_task)


@pytest.mark.parametrize("loss", ["crraft", "codpo"])
def test_cgpo_trains_three_steps_with_a_judge(tmp_path, loss):
    config = resolve(
        None,
        {**TINY, "task": "judged_digits", "algo": "cgpo", "loss": loss, "name": loss, "output_dir": str(tmp_path)},
    )
    trainer = Trainer(config)
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer.run()
    logged = [json.loads(line) for line in (tmp_path / loss / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logged] == [0, 1, 2, 3]
    for r in logged[1:]:
        assert not r.get("skipped") and abs(r["loss"]) < 1e6
        assert 0.0 <= r["cgpo/judge_pass_frac"] <= 1.0 and "reward/judge_length" in r
        # ȳ ("68"-like answers, at most 3 characters + EOS) is scored by both functions every step
        assert "cgpo/baseline_reward" in r
    assert any(not torch.equal(before[k], v) for k, v in trainer.model.state_dict().items())
