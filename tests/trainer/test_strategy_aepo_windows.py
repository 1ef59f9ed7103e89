"""The AEPO and T-PPO window rollout strategies on a random tiny model, and their state across a checkpoint."""

from __future__ import annotations

import io
import json
from dataclasses import replace

import pytest
import torch

from grpolab.core.advantages import ADVANTAGES
from grpolab.core.aepo import OVERWRITTEN_KEY, REINFORCE_KEY
from grpolab.core.filters import FILTERS
from grpolab.core.selection import SELECTORS
from grpolab.core.types import Rollout
from grpolab.data import TASKS, Task
from grpolab.data.arith import arith_task
from grpolab.rollout.strategies import ROLLOUT_STRATEGIES
from grpolab.trainer import checkpoint
from grpolab.trainer.config import resolve
from grpolab.trainer.loop import Trainer

TINY = dict(
    model="random-tiny",
    task="first_digit",
    steps=2,
    num_prompts=8,
    num_generations=4,
    max_new_tokens=8,
    eval_prompts=2,
    eval_every=0,
    save_every=0,
    progress=False,
    learning_rate=1e-3,
)


def first_digit_task(**kwargs):
    """arith prompts with a 0/1 reward a random model earns about half the time: the completion starts with a digit."""
    base = arith_task()

    def first_digit(prompts, completions, **_):
        return [float(bool(text) and text[0].isdigit()) for text in completions]

    return Task("first_digit", base.train, base.eval, [first_digit])


if "first_digit" not in TASKS:
    TASKS.register("first_digit")(first_digit_task)


def make_trainer(tmp_path, **overrides):
    config = resolve(None, {**TINY, "output_dir": str(tmp_path), "name": "t", **overrides})
    return Trainer(config)


def main_batch(trainer):
    rows = [trainer.task.train[i] for i in range(trainer.config.num_prompts)]
    return trainer.context.sample(rows, trainer.config.num_generations)


def recording(ctx):
    """The context with ``sample_fn`` wrapped to record each call's temperature and result."""
    calls = []

    def sample_fn(rows, n, **kw):
        out = ctx.sample_fn(rows, n, **kw)
        calls.append((kw.get("temperature"), out))
        return out

    return replace(ctx, sample_fn=sample_fn), calls


def as_rollout(sampled) -> Rollout:
    return Rollout(
        group=sampled.group,
        mask=sampled.gen.completion_mask,
        reward=sampled.reward,
        truncated=sampled.gen.truncated,
        extras=dict(sampled.extras),
    )


# ============================================================================================ AEPO
def test_aepo_low_entropy_samples_hot_keeps_only_correct_samples_with_advantage_one(tmp_path):
    torch.manual_seed(0)
    trainer = make_trainer(tmp_path)
    sampled = main_batch(trainer)
    ctx, calls = recording(trainer.context)
    state = {"entropy": 0.1}  # mocked: below the target 0.5
    out, metrics = ROLLOUT_STRATEGIES["aepo"](ctx, sampled, reinforce_sample_num=60, state=state)

    ((temperature, extra),) = calls  # exactly one extra generation
    assert temperature == 1.2 and metrics["aepo/temperature"] == 1.2
    assert len(extra.rows) == 2 and extra.size == 2 * 5  # a quarter of the 8 prompts, n = 5 each
    flag, gone = out.extras[REINFORCE_KEY], out.extras[OVERWRITTEN_KEY]
    k = int(flag.sum())
    N = sampled.size
    assert k > 0 and out.size == N + k  # the k overwritten rows stay until the filter (GRPO sees whole groups)
    assert gone.tolist() == [True] * k + [False] * (N - k) + [False] * k  # the first k main rows are overwritten
    assert flag.tolist() == [False] * N + [True] * k
    assert bool((out.reward[flag] == 1.0).all())  # only r = 1 samples
    assert set(out.gen.texts[i] for i in flag.nonzero().flatten().tolist()) <= set(extra.gen.texts)
    assert out.gen.texts[:N] == sampled.gen.texts
    rollout = as_rollout(out)
    adv = ADVANTAGES["aepo"](rollout)
    mask = out.gen.completion_mask
    assert bool((adv[flag][mask[flag]] == 1.0).all())  # the regulariser uses advantage 1
    # the main rows keep the GRPO advantage of their full group (code: advantages computed before the overwrite)
    full = ADVANTAGES["grpo"](as_rollout(sampled))
    torch.testing.assert_close(adv[k:N, : full.shape[1]], full[k:], atol=1e-6, rtol=0)
    keep, _ = FILTERS["aepo_overwritten"](rollout)
    assert keep.tolist() == (~gone).tolist() and int(keep.sum()) == N  # P·G rows are trained, as in the code
    # the entropy of this step's training rows is kept for the next step (code: actor/entropy_loss)
    logp, _ = trainer.context.token_outputs(out.gen)
    assert state["entropy"] == pytest.approx((-logp[keep][mask[keep]]).mean().item(), rel=1e-5)
    assert state["temperature"] == 1.2


def test_aepo_high_entropy_samples_cold_and_halves_the_count(tmp_path):
    torch.manual_seed(0)
    trainer = make_trainer(tmp_path)
    sampled = main_batch(trainer)
    ctx, calls = recording(trainer.context)
    state = {"entropy": 0.9}
    out, metrics = ROLLOUT_STRATEGIES["aepo"](ctx, sampled, reinforce_sample_num=4, state=state)
    assert calls[0][0] == 0.8
    positives = int(metrics["aepo/positives"])
    k = min(4, positives) // 2
    assert int(out.extras[REINFORCE_KEY].sum()) == int(out.extras[OVERWRITTEN_KEY].sum()) == k


def test_aepo_state_survives_a_save_and_load(tmp_path):
    """The strategy's state is plain numbers: a checkpoint round trip gives the same next temperature."""
    torch.manual_seed(1)
    trainer = make_trainer(tmp_path)
    state: dict = {}
    ROLLOUT_STRATEGIES["aepo"](trainer.context, main_batch(trainer), state=state)
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=True)
    assert loaded == state and isinstance(loaded["entropy"], float)
    ctx, calls = recording(trainer.context)
    ROLLOUT_STRATEGIES["aepo"](ctx, main_batch(trainer), state=loaded)
    assert calls[0][0] == (1.2 if state["entropy"] <= 0.5 else 0.8)  # the random model's entropy is ~3: 0.8


# ============================================================================================ windows
def test_windows_cut_new_completions_and_continue_the_unfinished_ones(tmp_path):
    torch.manual_seed(0)
    trainer = make_trainer(tmp_path)
    ctx, strategy = trainer.context, ROLLOUT_STRATEGIES["windows"]
    state: dict = {}
    out, _ = strategy(ctx, main_batch(trainer), window=0.25, max_len=8, state=state)  # l = 2
    lengths = out.gen.completion_mask.sum(-1)
    assert out.size == 32 and bool((lengths <= 2).all()) and out.extras["prefix_len"].tolist() == [0] * 32
    ended = (out.gen.completion_ids == ctx.tokenizer.eos_token_id).any(-1)
    assert out.gen.truncated.tolist() == ((lengths == 2) & ~ended).tolist()
    pending = state["pending"]
    assert len(pending) == int(out.gen.truncated.sum()) > 0
    assert out.reward.tolist() == ctx.score(out.rows, out.gen).reward.tolist()  # rewards of the cut texts

    out2, metrics = strategy(ctx, main_batch(trainer), window=0.25, max_len=8, state=state)
    M = len(pending)
    assert out2.size == 32 and metrics["window/continued"] == M  # constant batch size; new prompts fill the rest
    prefix = out2.extras["prefix_len"]
    assert prefix[: 32 - M].tolist() == [0] * (32 - M)
    for j, record in enumerate(pending):
        i = 32 - M + j
        assert prefix[i] == len(record["tokens"]) == 2
        assert out2.gen.completion_ids[i, :2].tolist() == record["tokens"]  # the given prefix
        assert out2.gen.prompt_ids[i][out2.gen.prompt_mask[i]].tolist() == record["prompt"]
        assert out2.rows[int(out2.gen.prompt_index[i])] == record["row"]
        assert 3 <= int(out2.gen.completion_mask[i].sum()) <= 4  # one window more
    # only the window tokens are trained
    rollout = as_rollout(out2)
    _, keep, _ = SELECTORS["mask_prefix"](rollout, torch.zeros(rollout.mask.shape))
    assert keep.sum(-1)[32 - M :].tolist() == (out2.gen.completion_mask.sum(-1)[32 - M :] - 2).tolist()


def test_windows_end_a_response_at_max_len(tmp_path):
    torch.manual_seed(0)
    trainer = make_trainer(tmp_path, max_new_tokens=4)
    state: dict = {}
    for _ in range(3):  # l = 2, max_len 4: a response is over after two windows
        out, _ = ROLLOUT_STRATEGIES["windows"](trainer.context, main_batch(trainer), window=0.5, max_len=4, state=state)
        lengths = out.gen.completion_mask.sum(-1)
        assert bool((lengths <= 4).all())
        assert not bool(out.gen.truncated[lengths == 4].any())  # complete: a reward, a critic target
        assert all(len(r["tokens"]) == 2 for r in state["pending"])
    assert bool((lengths == 4).any())


def test_windows_without_successive_batching_keep_nothing(tmp_path):
    torch.manual_seed(0)
    trainer = make_trainer(tmp_path)
    state: dict = {}
    out, _ = ROLLOUT_STRATEGIES["windows"](
        trainer.context, main_batch(trainer), window=0.25, successive=False, max_len=8, state=state
    )
    assert "pending" not in state and bool((out.gen.completion_mask.sum(-1) <= 2).all())


# ============================================================================================ checkpoints
@pytest.mark.parametrize("algo", ["aepo", "tppo"])
def test_strategy_state_is_restored_on_resume(algo, tmp_path, monkeypatch):
    """A run that fails in step 3 and is resumed from its step-2 checkpoint logs the same step 3 as a run that never
    stopped: the strategy's state (AEPO's entropy, T-PPO's unfinished responses) travels with the checkpoint."""
    common = dict(algo=algo, steps=3, save_every=1, num_prompts=2, max_new_tokens=4)
    full = make_trainer(tmp_path, name="full", **common)
    full.run()

    broken = make_trainer(tmp_path, name="broken", **common)
    update = broken.update

    def fail_in_step_three(batch):
        if broken.step == 2:
            raise RuntimeError("killed")
        return update(batch)

    monkeypatch.setattr(broken, "update", fail_in_step_three)
    with pytest.raises(RuntimeError, match="killed"):
        broken.run()
    saved = checkpoint.load_latest(tmp_path / "broken" / "checkpoints")
    assert saved["step"] == 2 and f"rollout.0.{'aepo' if algo == 'aepo' else 'windows'}" in saved["part_state"]

    resumed = Trainer(broken.config, resume=True)
    assert resumed.part_state == saved["part_state"]
    resumed.run()
    records = [
        [json.loads(x) for x in (tmp_path / n / "metrics.jsonl").read_text().splitlines()] for n in ("full", "broken")
    ]
    assert [r["step"] for r in records[1]] == [0, 1, 2, 3]
    a, b = records[0][3], records[1][3]
    keys = [k for k in a if k.startswith(("aepo/", "window/")) or k in ("loss", "reward", "adv_abs_mean")]
    assert {k: a[k] for k in keys} == {k: b[k] for k in keys}
