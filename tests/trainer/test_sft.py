"""Supervised fine-tuning (grpolab sft): masked loss, a short run on a random tiny model, the saved folder training
GRPO with the ton preset, crash saving, bad options, and the command line."""

import json

import pytest
import torch
import torch.nn.functional as F

from grpolab.cli import main
from grpolab.data import Task
from grpolab.data.arith import arith_task
from grpolab.models import char_tokenizer, random_tiny_model
from grpolab.models.policy import load_policy
from grpolab.rewards.scoring import RewardError
from grpolab.trainer import sft as sft_module
from grpolab.trainer.config import resolve
from grpolab.trainer.loop import Trainer, evaluate
from grpolab.trainer.sft import SFTTrainer, build_sft_batch, resolve_sft, sft_loss

TINY = dict(
    model="random-tiny",
    task="arith_think",
    steps=3,
    batch_size=8,
    eval_prompts=4,
    progress=False,
    learning_rate=3e-3,
    lr_schedule="constant",
    warmup_steps=0,
)


def records(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_batch_masks_the_prompt_and_pads_on_the_right():
    tok = char_tokenizer()
    batch = build_sft_batch(tok, ["1+2=", "10-3="], ["()3", "7"])
    # ids: <bos> 1, '0'..'9' 4..13, '+' 14, '-' 15, '=' 18, '(' 19, ')' 20, <eos> 2, <pad> 0
    assert batch.input_ids.tolist() == [[1, 5, 14, 6, 18, 19, 20, 7, 2], [1, 5, 4, 15, 7, 18, 11, 2, 0]]
    assert batch.attention_mask.tolist() == [[1] * 9, [1] * 8 + [0]]
    assert batch.labels.tolist() == [[-100] * 5 + [19, 20, 7, 2], [-100] * 6 + [11, 2, -100]]
    assert batch.num_tokens == 6
    with pytest.raises(ValueError, match="positions"):
        build_sft_batch(tok, ["1+2="], ["3" * 80], max_length=64)


def test_loss_is_the_token_mean_over_completion_tokens_loop_check():
    model, tok = random_tiny_model(seed=1)
    batch = build_sft_batch(tok, ["1+2=", "10-3=", "7+7="], ["()3", "(0-3=-3,10-0=10)7", "14"])
    loss = sft_loss(model, batch)
    total, count = 0.0, 0
    with torch.no_grad():
        for i in range(3):  # one sequence at a time, no padding: the obvious re-implementation
            n = int(batch.attention_mask[i].sum())
            ids = batch.input_ids[i, :n]
            logits = model(input_ids=ids[None]).logits[0]  # [n, V]
            start = int((batch.labels[i] == -100).long().argmin())  # first completion position
            for t in range(start, n):  # token t is predicted at position t - 1
                total += F.cross_entropy(logits[t - 1][None], ids[t][None]).item()
                count += 1
    assert count == batch.num_tokens == 4 + 18 + 3
    assert loss.item() == pytest.approx(total / count, rel=1e-5)


def test_sft_steps_lower_the_loss_and_the_saved_model_trains_ton(tmp_path):
    config = resolve_sft(None, {**TINY, "thought_dropout": 0.5, "steps": 25, "output_dir": str(tmp_path), "name": "s"})
    trainer = SFTTrainer(config)
    fixed = trainer.batch(trainer.task.train[:16])[0]
    with torch.no_grad():
        before = sft_loss(trainer.model, fixed).item()
    last = trainer.run()
    with torch.no_grad():
        after = sft_loss(trainer.model, fixed).item()
    assert after < before - 0.5  # a random model first learns the format's characters
    logged = records(tmp_path / "s")
    assert [r["step"] for r in logged] == list(range(26))
    assert "eval/pass@1" in logged[0] and "eval/pass@1" in logged[-1] and "loss" not in logged[0]
    assert {"eval/reward/empty_thought", "eval/reward/thought_length", "eval/truncated_frac"} <= set(last)
    dropped = [r["empty_thought_frac"] for r in logged[1:]]
    assert 0.3 < sum(dropped) / len(dropped) < 0.7  # about half the thoughts dropped (25 batches of 8)
    assert not list(tmp_path.glob("s/.model*")) and not (tmp_path / "s" / "interrupted").exists()

    model, tokenizer = load_policy(str(tmp_path / "s" / "model"))
    for key, value in trainer.model.state_dict().items():
        torch.testing.assert_close(model.state_dict()[key], value)
    assert tokenizer("12+3=").input_ids == char_tokenizer()("12+3=").input_ids

    grpo = {
        "model": str(tmp_path / "s" / "model"),
        "algo": "ton",
        "task": "arith_think",
        "steps": 2,
        "num_prompts": 2,
        "num_generations": 4,
        "max_new_tokens": 24,
        "eval_prompts": 4,
        "eval_every": 0,
        "save_every": 0,
        "progress": False,
        "output_dir": str(tmp_path),
        "name": "ton",
    }
    rl = Trainer(resolve(None, grpo))
    rl.run()
    steps = records(tmp_path / "ton")
    assert [r["step"] for r in steps] == [0, 1, 2]
    assert {"reward/empty_thought", "reward/thought_length", "reward/think_format"} <= set(steps[1])
    assert 0.0 <= steps[1]["reward/empty_thought"] <= 1.0


def test_a_crash_saves_the_last_completed_step_and_a_finished_run_is_kept(tmp_path, monkeypatch):
    config = resolve_sft(None, {**TINY, "output_dir": str(tmp_path), "name": "c", "task": "arith"})
    trainer = SFTTrainer(config)
    assert trainer.template == "{answer}"  # arith has no thought: plain answers
    real = trainer.train_step

    def failing():
        if trainer.step == 2:
            raise KeyboardInterrupt
        return real()

    monkeypatch.setattr(trainer, "train_step", failing)
    with pytest.raises(KeyboardInterrupt):
        trainer.run()
    saved, _ = load_policy(str(tmp_path / "c" / "interrupted"))
    for key, value in trainer.model.state_dict().items():
        torch.testing.assert_close(saved.state_dict()[key], value)
    assert [r["step"] for r in records(tmp_path / "c")] == [0, 1, 2]  # metrics written as the run went
    assert not (tmp_path / "c" / "model").exists()
    with pytest.raises(FileExistsError, match="another --name"):
        SFTTrainer(config)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"thought_dropout": 1.5}, "thought-dropout"),
        ({"steps": 0}, "--steps must be a positive integer"),
        ({"batch_size": 2.5}, "--batch-size"),
        ({"learning_rate": 0}, "--learning-rate"),
        ({"lr_schedule": "step"}, "--lr-schedule"),
        ({"adam_betas": [0.9]}, "--adam-betas"),
        ({"task": "arithmetic"}, "unknown task 'arithmetic'"),
        ({"stepz": 3}, r"unknown options \['stepz'\]"),
        ({"save_model": "yes"}, "--save-model"),
    ],
)
def test_bad_options_raise_when_resolved(options, message):
    with pytest.raises(ValueError, match=message):
        resolve_sft(None, {**TINY, **options})


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"task": "arith", "thought_dropout": 0.5}, "does not use"),  # arith rows have no thought to drop
        ({"completion": "({reasoning}){answer}"}, r"\['reasoning'\].*lack"),
        ({"completion": "no fields"}, "names no column"),
        ({"completion": "<think>{thought}</think>{answer}"}, "does not know the characters"),
        ({"max_new_tokens": 8}, "--max-new-tokens 22"),  # full thoughts would be cut off at evaluation
        ({"model": "/no/such/folder"}, "neither a built-in model"),
    ],
)
def test_bad_data_options_raise_before_training(tmp_path, options, message):
    config = resolve_sft(None, {**TINY, **options, "output_dir": str(tmp_path), "name": "x"})
    with pytest.raises(ValueError, match=message):
        SFTTrainer(config)


def test_the_generation_limit_defaults_to_the_tasks_suggestion(tmp_path):
    # as grpolab train: None takes task.info["max_new_tokens"] (arith_think: 24), else DEFAULT_MAX_NEW_TOKENS (8)
    think = SFTTrainer(resolve_sft(None, {**TINY, "output_dir": str(tmp_path), "name": "a"}))
    plain = SFTTrainer(resolve_sft(None, {**TINY, "task": "arith", "output_dir": str(tmp_path), "name": "b"}))
    given = SFTTrainer(resolve_sft(None, {**TINY, "max_new_tokens": 30, "output_dir": str(tmp_path), "name": "c"}))
    assert (think.config.max_new_tokens, plain.config.max_new_tokens, given.config.max_new_tokens) == (24, 8, 30)
    assert "max_new_tokens: 24" in (tmp_path / "a" / "config.yaml").read_text()
    with pytest.raises(ValueError, match="--max-new-tokens must be a positive integer"):
        resolve_sft(None, {**TINY, "max_new_tokens": 0})


def test_the_greedy_evaluation_scores_every_reward_and_only_the_accuracy_decides_pass_at_1():
    model, tok = random_tiny_model(seed=0)
    base = arith_task()

    def always(prompts, completions, **_):  # the accuracy check: every completion passes
        return [1.0] * len(completions)

    def flaky(prompts, completions, answer, **_):  # fails on the samples whose answer is odd
        return [0.0 if int(a) % 2 == 0 else 1.0 / 0.0 for a in answer]

    def length(prompts, completions, **_):
        return [float(len(c)) for c in completions]

    task = Task("t", base.train, base.eval[:6], [flaky, length], accuracy=always)
    odd = sum(int(r["answer"]) % 2 for r in base.eval[:6])
    assert odd == 2  # -37 and -33
    out = evaluate(model, tok, task, num_prompts=6, temperature=0.0, max_new_tokens=5, on_error="skip")
    # flaky fails on the odd answers: they are counted, not made wrong (pass@1 reads the accuracy check only)
    assert out["eval/pass@1"] == 1.0 and out["eval/reward_errors"] == float(odd)
    assert out["eval/reward/always"] == 1.0 and out["eval/reward/flaky"] == 0.0  # mean where it scored
    assert 0.0 <= out["eval/truncated_frac"] <= 1.0 and 1.0 <= out["eval/response_length"] <= 5.0
    assert evaluate(model, tok, task, num_prompts=6, temperature=0.0, max_new_tokens=5, on_error="skip") == out
    with pytest.raises(RewardError, match="flaky"):
        evaluate(model, tok, task, num_prompts=6, temperature=0.0, max_new_tokens=5)
    assert evaluate(model, tok, Task("none", base.train, [], [length]), num_prompts=6) == {}


def test_cli_help_lists_the_options(capsys):
    with pytest.raises(SystemExit) as info:
        main(["sft", "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for flag in ("--thought-dropout", "--completion", "--batch-size", "--eval-prompts", "--config"):
        assert flag in out


def test_cli_runs_a_tiny_sft_and_reports_bad_options(tmp_path, capsys):
    (tmp_path / "sft.yaml").write_text("steps: 5\nbatch_size: 4\nthought_dropout: 0.5\n")
    args = ["sft", "--config", str(tmp_path / "sft.yaml"), "--model", "random-tiny", "--steps", "2"]
    args += ["--eval-prompts", "4", "--progress", "false", "--output-dir", str(tmp_path), "--name", "cli"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert f"model: {tmp_path / 'cli' / 'model'}" in out
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["step"] == 2 and 0.0 <= summary["eval/pass@1"] <= 1.0  # --steps 2 overrides the file's 5
    config = (tmp_path / "cli" / "config.yaml").read_text()
    assert "batch_size: 4" in config and "thought_dropout: 0.5" in config
    assert main(["sft", "--model", "random-tiny", "--thought-dropout", "2", "--output-dir", str(tmp_path)]) == 2
    assert "--thought-dropout" in capsys.readouterr().err
    assert main(["sft", "--steps", "many"]) == 2
    assert "takes a number" in capsys.readouterr().err


def test_save_model_replaces_an_older_copy_atomically(tmp_path):
    model, tok = random_tiny_model(seed=0)
    sft_module.save_model(model, tok, tmp_path / "m")
    other, _ = random_tiny_model(seed=1)
    sft_module.save_model(other, tok, tmp_path / "m")
    loaded, _ = load_policy(str(tmp_path / "m"))
    torch.testing.assert_close(loaded.state_dict()["lm_head.weight"], other.state_dict()["lm_head.weight"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]  # no temporary or old folder left
