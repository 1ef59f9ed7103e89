"""The loop end to end on a random tiny model: every preset trains for 3 steps; faults stop the run cleanly."""

import json

import pytest
import torch

from grpolab.algorithms import PRESETS
from grpolab.data import TASKS, Task
from grpolab.data.arith import arith_task
from grpolab.rewards.scoring import RewardError
from grpolab.trainer import loop
from grpolab.trainer.config import resolve
from grpolab.trainer.loop import NonFiniteLossError, Trainer

TINY = dict(
    model="random-tiny",
    task="digits",
    steps=2,
    num_prompts=2,
    num_generations=4,
    max_new_tokens=4,
    eval_prompts=4,
    eval_every=0,
    save_every=0,
    progress=False,
    learning_rate=1e-3,
)


def digits_task(**kwargs):
    """arith prompts with a dense reward a random model can earn: the fraction of digits in its completion."""
    base = arith_task()

    def digit_fraction(prompts, completions, **_):
        return [sum(c.isdigit() for c in text) / max(1, len(text)) for text in completions]

    return Task("digits", base.train, base.eval, [digit_fraction])


if "digits" not in TASKS:
    TASKS.register("digits")(digits_task)


def records(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


# Presets whose paper defaults leave a random model (almost) nothing to learn from: GTPO zeroes the advantage of
# completions whose mean entropy exceeds 0.7 nats (a random model has ~3.2); CAPO's curvature thresholds (tuned for a
# 7B model) mask most tokens of a random model's near-uniform softmax. On the random model they must still run; that
# they update the policy is checked on the built-in pre-trained model, whose entropy is in their papers' range.
NEEDS_TRAINED_MODEL = {"gtpo", "capo"}


def train_three_steps(algo, tmp_path, **overrides):
    config = resolve(None, {**TINY, "steps": 3, "algo": algo, "name": algo, "output_dir": str(tmp_path), **overrides})
    trainer = Trainer(config)
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer.run()
    run_dir = tmp_path / algo
    logged = records(run_dir)
    assert [r["step"] for r in logged] == [0, 1, 2, 3]
    assert "eval/pass@1" in logged[0] and "eval/pass@1" in logged[-1]
    for r in logged[1:]:
        assert r.get("skipped") or (r["loss"] is not None and abs(r["loss"]) < 1e6)
        assert 0.0 <= r["accuracy"] <= 1.0 and r["response_length"] >= 1
    assert (run_dir / "final" / "config.json").is_file() and (run_dir / "config.yaml").is_file()
    assert (run_dir / "curves.png").stat().st_size > 1000
    assert len(list((run_dir / "checkpoints").glob("step-*.pt"))) == 1
    updated = any(not torch.equal(before[k], v) for k, v in trainer.model.state_dict().items())
    return logged, updated


@pytest.mark.parametrize("algo", sorted(PRESETS))
def test_every_preset_trains_three_steps(algo, tmp_path):
    logged, updated = train_three_steps(algo, tmp_path)
    if algo not in NEEDS_TRAINED_MODEL:
        assert not any(r.get("skipped") for r in logged[1:])
        assert updated


@pytest.mark.parametrize("algo", sorted(NEEDS_TRAINED_MODEL))
def test_presets_with_llm_scale_thresholds_update_the_pretrained_model(algo, tmp_path):
    logged, updated = train_three_steps(algo, tmp_path, model="tiny-arith", task="arith")
    assert not any(r.get("skipped") for r in logged[1:])
    assert updated


def test_reference_model_is_loaded_only_when_a_part_reads_it(tmp_path):
    with_kl = Trainer(resolve(None, {**TINY, "algo": "grpo", "output_dir": str(tmp_path), "name": "a"}))
    without = Trainer(resolve(None, {**TINY, "algo": "dr_grpo", "output_dir": str(tmp_path), "name": "b"}))
    assert with_kl.ref_model is not None and without.ref_model is None
    assert with_kl.on_policy and not with_kl.old_at_rollout  # one update per rollout: no extra forward pass


@pytest.mark.filterwarnings("ignore:Seems like:UserWarning")
def test_gradient_accumulation_matches_one_big_batch(tmp_path):
    """Micro-batches with global counts give the same update as one batch (gradient accumulation)."""
    grads = []
    for accum in (1, 4):
        config = resolve(
            None, {**TINY, "steps": 1, "grad_accum": accum, "name": f"acc{accum}", "output_dir": str(tmp_path)}
        )
        trainer = Trainer(config)
        batch = trainer.rollout_batch()
        trainer.optimizer.step = lambda: None  # keep the weights: compare the accumulated gradients only
        trainer.update(batch)
        grads.append(torch.cat([p.grad.flatten() for p in trainer.model.parameters() if p.grad is not None]))
    torch.testing.assert_close(grads[0], grads[1], atol=1e-6, rtol=1e-5)


def flaky_task(**kwargs):
    base = arith_task()

    def flaky_reward(prompts, completions, answer, **_):
        if any(a.endswith("7") for a in answer):  # about one prompt in ten
            raise ZeroDivisionError("boom")
        return [1.0] * len(prompts)

    return Task("flaky", base.train, base.eval, [flaky_reward])


if "flaky" not in TASKS:
    TASKS.register("flaky")(flaky_task)


def test_a_raising_reward_stops_the_run_naming_function_and_sample(tmp_path):
    config = resolve(None, {**TINY, "task": "flaky", "output_dir": str(tmp_path), "name": "r", "num_prompts": 32})
    with pytest.raises(RewardError, match="flaky_reward") as info:
        Trainer(config).run()
    assert "boom" in str(info.value) or "boom" in str(info.value.__cause__)
    assert "=" in str(info.value)  # the failing sample's prompt is quoted


def test_skip_masks_the_failing_samples_and_counts_them(tmp_path):
    config = resolve(
        None,
        {
            **TINY,
            "task": "flaky",
            "output_dir": str(tmp_path),
            "name": "s",
            "num_prompts": 64,
            "on_reward_error": "skip",
            "steps": 1,
        },
    )
    Trainer(config).run()
    step = records(tmp_path / "s")[1]
    assert step["reward_errors"] > 0 and step["step"] == 1


def test_a_non_finite_loss_stops_after_saving_a_checkpoint(tmp_path, monkeypatch):
    config = resolve(None, {**TINY, "steps": 3, "output_dir": str(tmp_path), "name": "nan"})
    trainer = Trainer(config)
    real = loop.completion_outputs

    def poisoned(*args, **kwargs):
        out = real(*args, **kwargs)
        if trainer.step >= 1 and torch.is_grad_enabled():
            out.logp = out.logp * float("nan")
        return out

    monkeypatch.setattr(loop, "completion_outputs", poisoned)
    with pytest.raises(NonFiniteLossError, match="the loss is nan"):
        trainer.run()
    assert (tmp_path / "nan" / "checkpoints" / "step-0000001.pt").is_file()


@pytest.mark.parametrize("options", [{"lora": True, "lora_r": 4}, {"dtype": "bf16"}], ids=["lora", "bf16"])
def test_lora_and_bf16_train(options, tmp_path):
    config = resolve(None, {**TINY, **options, "output_dir": str(tmp_path), "name": "x"})
    trainer = Trainer(config)
    trainable = [n for n, p in trainer.model.named_parameters() if p.requires_grad]
    if config.lora:
        assert trainer.ref_model is None  # the base model with adapters off is the reference
        assert trainable and all("lora_" in n for n in trainable)
    else:
        assert next(trainer.model.parameters()).dtype == torch.bfloat16
    trainer.run()
    logged = records(tmp_path / "x")
    assert all(r["loss"] is not None for r in logged[1:])
    assert (tmp_path / "x" / "final" / "model.safetensors").is_file()


def test_a_file_task_with_two_weighted_rewards_is_logged_per_objective(tmp_path):
    rows = [{"prompt": f"{a}+{a}=", "answer": str(2 * a)} for a in range(30)]
    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    task_args = {"train": str(data), "reward": ["exact", "numeric"], "reward_weights": [1.0, 0.5]}
    config = resolve(None, {**TINY, "task": "file", "task_args": task_args, "output_dir": str(tmp_path), "name": "f"})
    Trainer(config).run()
    step = records(tmp_path / "f")[1]
    assert {"reward/exact", "reward/numeric"} <= set(step)
    assert step["reward"] == pytest.approx(step["reward/exact"] + 0.5 * step["reward/numeric"], abs=1e-5)


def test_cli_eval_reports_pass_at_k(capsys):
    from grpolab.cli import main

    assert main(["eval", "--model", "random-tiny", "--prompts", "4", "--samples", "3", "--max-new-tokens", "3"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert 0.0 <= result["eval/pass@1"] <= result["eval/pass@3"] <= 1.0


def test_a_finished_run_is_not_overwritten_by_a_new_one_with_the_same_name(tmp_path):
    config = resolve(None, {**TINY, "steps": 1, "output_dir": str(tmp_path), "name": "same"})
    Trainer(config).run()
    with pytest.raises(FileExistsError, match="--resume"):
        Trainer(config)


def test_presets_with_other_rollout_sampling_are_evaluated_alike(tmp_path):
    # grpo_llds samples rollouts with top_p 0.95; evaluation keeps its own settings (plain sampling by default),
    # so two presets on the same model and seed start from the same held-out score.
    plain = Trainer(resolve(None, {**TINY, "algo": "grpo", "output_dir": str(tmp_path), "name": "a"}))
    nucleus = Trainer(resolve(None, {**TINY, "algo": "grpo_llds", "output_dir": str(tmp_path), "name": "b"}))
    assert nucleus.config.top_p == 0.95 and nucleus.config.eval_top_p == 1.0
    assert plain.evaluate() == nucleus.evaluate()
    narrowed = Trainer(resolve(None, {**TINY, "eval_top_p": 0.5, "output_dir": str(tmp_path), "name": "c"}))
    assert narrowed.evaluate() != plain.evaluate()
    with pytest.raises(ValueError, match="eval-top-p"):
        resolve(None, {**TINY, "eval_top_p": 0.0})
