"""Rollout strategies and the trainer hooks new methods use: continuations from a prefix, appending completions,
part state saved in checkpoints, run arguments, selectors narrowing the loss mask."""

import dataclasses

import pytest
import torch

from grpolab.algorithms import PRESETS, Part
from grpolab.algorithms.preset import with_run_arguments
from grpolab.core.selection import SELECTORS
from grpolab.core.shaping import SHAPING
from grpolab.data.sampler import SAMPLERS, Request, UniformSampler
from grpolab.models import random_tiny_model
from grpolab.rollout.hf import Generation, HFEngine
from grpolab.rollout.strategies import ROLLOUT_STRATEGIES
from grpolab.trainer.config import resolve
from grpolab.trainer.loop import Trainer

from .test_loop import TINY, records


def test_take_and_cat_keep_rows_aligned_and_pad_on_the_right_sides():
    torch.manual_seed(0)
    model, tok = random_tiny_model(seed=0)
    engine = HFEngine(tok, max_new_tokens=4)
    a = engine.generate(model, ["1+1=", "22+33="], num_generations=2)
    b = engine.generate(model, ["1+1=", "22+33="], num_generations=1, max_new_tokens=2)
    assert b.completion_ids.shape[1] <= 2
    both = Generation.cat([a, b.take(torch.tensor([1]))], engine.pad_id)
    assert both.completion_ids.shape == (5, a.completion_ids.shape[1])
    assert both.prompt_index.tolist() == [0, 0, 1, 1, 1]
    assert both.texts == [*a.texts, b.texts[1]]
    row = both.take(torch.tensor([4]))
    n = int(b.completion_mask[1].sum())
    assert torch.equal(row.completion_ids[0, :n], b.completion_ids[1, :n]) and not row.completion_mask[0, n:].any()
    assert torch.equal(row.prompt_ids[0][row.prompt_mask[0]], b.prompt_ids[1][b.prompt_mask[1]])


def test_continue_from_keeps_the_prefix_and_counts_the_given_tokens():
    torch.manual_seed(1)
    model, tok = random_tiny_model(seed=1)
    engine = HFEngine(tok, max_new_tokens=6)
    gen = engine.generate(model, ["12+3=", "7-70="], num_generations=2)
    lengths = gen.completion_mask.sum(-1)
    index = torch.tensor([0, 3])
    cut = torch.stack([torch.tensor(0), lengths[3].clamp(max=2)])
    suffix = tok.encode("=", add_special_tokens=False)
    out, given = engine.continue_from(model, gen, index, cut, num_generations=3, suffix_ids=suffix, max_new_tokens=3)
    assert given.tolist() == [len(suffix)] * 3 + [int(cut[1]) + len(suffix)] * 3
    assert out.prompt_index.tolist() == [0, 0, 0, 1, 1, 1]
    for n in range(6):
        src, c = int(index[n // 3]), int(cut[n // 3])
        assert torch.equal(out.completion_ids[n, :c], gen.completion_ids[src, :c])
        assert out.completion_ids[n, c : c + len(suffix)].tolist() == suffix
        new = int(out.completion_mask[n].sum()) - int(given[n])
        assert 1 <= new <= 3
    with pytest.raises(ValueError, match="cut"):
        engine.continue_from(model, gen, index, lengths[index] + 1, num_generations=1)


def test_continuation_log_probs_match_a_fresh_sample_of_the_same_text():
    """A continued completion is an ordinary completion of the original prompt: the training forward pass gives
    the same log-probs for the sampled part as the prompt+prefix forward that sampled it."""
    torch.manual_seed(2)
    model, tok = random_tiny_model(seed=2)
    engine = HFEngine(tok, max_new_tokens=5)
    gen = engine.generate(model, ["3+4="], num_generations=1)
    out, given = engine.continue_from(model, gen, torch.tensor([0]), torch.tensor([1]), num_generations=2)
    from grpolab.trainer.logprob import completion_outputs

    full = completion_outputs(model, out.prompt_ids, out.prompt_mask, out.completion_ids, out.completion_mask).logp
    prompt2 = torch.cat([out.prompt_ids[:, :], out.completion_ids[:, :1]], dim=1)
    mask2 = torch.cat([out.prompt_mask, torch.ones(2, 1, dtype=torch.bool)], dim=1)
    rest = completion_outputs(model, prompt2, mask2, out.completion_ids[:, 1:], out.completion_mask[:, 1:]).logp
    valid = out.completion_mask[:, 1:]
    assert torch.allclose(full[:, 1:][valid], rest[valid], atol=1e-5)
    assert given.tolist() == [1, 1]


def trainer(tmp_path, name="run", **overrides):
    return Trainer(resolve(None, {**TINY, "output_dir": str(tmp_path), "name": name, **overrides}))


def test_greedy_baseline_strategy_stores_the_greedy_reward_of_each_prompt(tmp_path):
    t = trainer(tmp_path, algo="remax")
    rows = [t.task.train[0], t.task.train[1]]
    sampled = t._sample(rows, 3)
    out, metrics = ROLLOUT_STRATEGIES["greedy_baseline"](t.context, sampled)
    greedy = t._sample(rows, 1, greedy=True)  # greedy decoding is deterministic
    assert torch.equal(out.extras["greedy_reward"], greedy.reward[torch.tensor([0, 0, 0, 1, 1, 1])])
    assert metrics["greedy_reward"] == pytest.approx(greedy.reward.mean().item())


def test_append_fills_missing_extras_and_refuses_without_a_fill(tmp_path):
    t = trainer(tmp_path)
    rows = [t.task.train[0]]
    a, b = t._sample(rows, 2), t._sample(rows, 1)
    a.extras["flag"] = torch.tensor([True, True])
    with pytest.raises(ValueError, match="fill"):
        a.append(b, t.context.pad_id)
    both = a.append(b, t.context.pad_id, fill={"flag": False})
    assert both.extras["flag"].tolist() == [True, True, False] and both.size == 3
    assert both.gen.completion_ids.shape[0] == 3 and both.group.tolist() == [0, 0, 0]
    b.extras["flag"] = torch.tensor([False])
    assert a.append(b, t.context.pad_id).extras["flag"].tolist() == [True, True, False]  # on both sides: no fill


# ----------------------------------------------------------------------------------- trainer hooks
calls: list[dict] = []


@SHAPING.register("_count_calls_for_test")
def _count_calls(rollout, *, step, total_steps, state):
    state["calls"] = state.get("calls", 0) + 1
    calls.append({"step": step, "total_steps": total_steps, "calls": state["calls"]})
    return rollout, {"calls_seen": float(state["calls"])}


@SELECTORS.register("_drop_last_token_and_odd_rows_for_test")
def _drop(rollout, advantages):
    keep = rollout.mask.clone()  # [B, T]
    keep[torch.arange(rollout.batch_size), rollout.last_index] = False
    keep[1::2] = False
    return advantages * 2, keep, {"dropped": 1.0}


def test_part_state_and_run_arguments_reach_parts_and_survive_resume(tmp_path):
    calls.clear()
    shaping = [{"name": "_count_calls_for_test"}]
    full = trainer(tmp_path, "full", steps=4, save_every=2, shaping=shaping)
    full.run()
    assert [c["step"] for c in calls] == [0, 1, 2, 3] and {c["total_steps"] for c in calls} == {4}
    assert [c["calls"] for c in calls] == [1, 2, 3, 4]
    calls.clear()
    first = trainer(tmp_path, "part", steps=2, save_every=2, shaping=shaping)
    first.run()
    resumed = Trainer(first.config.__class__(**{**first.config.__dict__, "steps": 4}), resume=True)
    resumed.run()
    assert [c["calls"] for c in calls] == [1, 2, 3, 4]  # the count continued from the checkpoint
    assert [r["calls_seen"] for r in records(tmp_path / "part")[1:]] == [1.0, 2.0, 3.0, 4.0]


def test_presets_may_not_set_run_arguments():
    fn = SHAPING["_count_calls_for_test"]
    assert with_run_arguments(fn, {}, {"step": 3, "total_steps": 9, "state": {}, "max_len": 4}) == {
        "step": 3,
        "total_steps": 9,
        "state": {},
    }
    with pytest.raises(ValueError, match="supplied by the trainer"):
        dataclasses.replace(PRESETS["grpo"], shaping=(Part("_count_calls_for_test", {"step": 1}),))


def test_selectors_narrow_the_loss_mask_and_drop_rows_with_nothing_left(tmp_path):
    t = trainer(tmp_path, algo="dr_grpo", selectors=["_drop_last_token_and_odd_rows_for_test"])
    batch = t.rollout_batch()
    B = t.config.num_prompts * t.config.num_generations
    assert batch.rollout.batch_size <= B // 2  # odd rows dropped (and rows of a single token)
    assert (batch.rollout.mask.sum(-1) >= 1).all()
    assert batch.metrics["dropped"] == 1.0 and 0 < batch.metrics["kept_token_frac"] < 1
    assert torch.equal(batch.advantages, batch.advantages * batch.rollout.mask)
    metrics = t.update(batch)
    assert torch.isfinite(torch.tensor(metrics["loss"]))


def test_group_minibatches_keep_every_prompt_group_whole(tmp_path):
    t = trainer(tmp_path, num_prompts=4, minibatches=2, grad_accum=2, minibatch_groups=True)
    group = torch.tensor([0, 0, 1, 1, 1, 2, 3, 3, 2, 0])
    minis = t._split(group, 2)
    assert sorted(torch.cat(minis).tolist()) == list(range(10))
    for mini in minis:
        micros = t._split(group[mini], 2, within=mini)
        assert sorted(torch.cat(micros).tolist()) == sorted(mini.tolist())
        for part in [mini, *micros]:
            inside = set(group[part].tolist())
            assert all(set(torch.nonzero(group == g).flatten().tolist()) <= set(part.tolist()) for g in inside)
    plain = trainer(tmp_path, "plain", minibatches=2)
    assert sorted(torch.cat(plain._split(group, 2)).tolist()) == list(range(10))
    with pytest.raises(ValueError, match="prompt groups"):
        resolve(None, {**TINY, "num_prompts": 2, "minibatches": 3, "minibatch_groups": True})


def test_the_critic_keeps_the_tokens_a_selector_takes_from_the_policy_loss(tmp_path):
    t = trainer(tmp_path, algo="ppo", selectors=["_drop_last_token_and_odd_rows_for_test"])
    batch = t.rollout_batch()
    assert batch.value_mask is not None and batch.value_mask.shape == batch.rollout.mask.shape
    assert (batch.value_mask | ~batch.rollout.mask).all()  # the critic's tokens include the policy's
    assert batch.value_mask.sum() > batch.rollout.mask.sum()  # ... and the last tokens the selector dropped
    metrics = t.update(batch)
    assert torch.isfinite(torch.tensor([metrics["loss"], metrics["vf_loss"]])).all()


@SHAPING.register("_fail_on_third_call_for_test")
def _fail_third(rollout, *, state):
    state["calls"] = state.get("calls", 0) + 1
    if state["calls"] == 3:
        raise RuntimeError("boom")
    return rollout, {}


def test_a_crash_saves_the_part_state_the_failed_step_started_with(tmp_path):
    t = trainer(tmp_path, steps=4, save_every=0, shaping=["_fail_on_third_call_for_test"])
    with pytest.raises(RuntimeError, match="boom"):
        t.run()
    from grpolab.trainer import checkpoint

    saved = checkpoint.load_latest(tmp_path / "run" / "checkpoints")
    assert saved["step"] == 2
    assert saved["part_state"] == {"shaping.0._fail_on_third_call_for_test": {"calls": 2}}


# ----------------------------------------------------------------------------------- prompt samplers
def test_dynamic_sampling_fills_the_batch_with_groups_that_carry_signal(tmp_path):
    t = trainer(
        tmp_path,
        model="tiny-arith",
        task="arith",
        num_prompts=4,
        num_generations=4,
        sampler="dynamic",
        sampler_args={"max_rounds": 5, "oversample": 2.0},
    )
    batch = t.rollout_batch()
    r = batch.rollout
    kept = int(batch.metrics["sampler/kept_groups"])
    assert 1 <= kept <= 4 and r.num_groups == kept and r.batch_size == 4 * kept
    assert 1 <= batch.metrics["sampler/rounds"] <= 5
    assert batch.metrics["sampler/groups_generated"] >= 8 * 1  # 2 x the 4 missing groups in the first round
    for g in range(r.num_groups):
        acc = r.reward[r.group == g]  # arith: the reward is the accuracy
        assert acc.max() > acc.min()  # neither all correct nor all wrong
    assert torch.isfinite(torch.tensor(t.update(batch)["loss"]))


def test_dynamic_sampling_out_of_rounds_trains_on_the_last_round(tmp_path):
    never = {"max_rounds": 2, "oversample": 1.0, "tol": 5.0}  # no group can have a spread above 5
    t = trainer(tmp_path, model="tiny-arith", task="arith", num_prompts=2, sampler="dynamic", sampler_args=never)
    batch = t.rollout_batch()
    assert batch.metrics["sampler/rounds"] == 2 and batch.metrics["sampler/kept_groups"] == 0
    assert batch.rollout.num_groups == 2 and batch.rollout.batch_size == 2 * t.config.num_generations


def test_unknown_samplers_and_arguments_fail_before_any_work():
    with pytest.raises(ValueError, match="unknown sampler"):
        resolve(None, {**TINY, "sampler": "vad"})
    with pytest.raises(ValueError, match="sampler-args"):
        resolve(None, {**TINY, "sampler": "dynamic", "sampler_args": {"rounds": 3}})


class _EstimatingSampler(UniformSampler):
    """Test sampler: each step first an estimation round (2 rows, 3 completions, gradient norms measured, nothing
    kept), then a training round; counts its requests in its state; raises on the request given by ``fail_at``."""

    max_rounds = 2

    def __init__(self, num_rows, *, seed=0, fail_at=0):
        super().__init__(num_rows, seed=seed)
        self.requests, self.fail_at, self.seen = 0, fail_at, []

    def request(self, num_prompts, num_generations, *, step=0, total_steps=1):
        self.requests += 1
        if self.requests == self.fail_at:
            raise RuntimeError("sampler boom")
        if self.requests % 2 == 1:
            return Request(self.next(2), [3, 3], measure=frozenset({"grad_norms", "completions"}))
        return Request(self.next(num_prompts), [num_generations] * num_prompts)

    def observe(self, obs):
        self.seen.append(obs)
        return [self.requests % 2 == 0] * len(obs.rows)

    def state_dict(self):
        return {**super().state_dict(), "requests": self.requests}

    def load_state_dict(self, state):
        super().load_state_dict(state)
        self.requests = state["requests"]


if "_estimating_for_test" not in SAMPLERS:
    SAMPLERS.add("_estimating_for_test", _EstimatingSampler)


def test_estimation_rounds_do_not_train_but_count_as_generated_and_see_gradient_norms(tmp_path):
    t = trainer(tmp_path, sampler="_estimating_for_test", num_prompts=2, num_generations=4)
    batch = t.rollout_batch()
    estimation, training = t.sampler.seen
    assert batch.metrics["sampler/rounds"] == 2 and batch.metrics["sampler/groups_generated"] == 4
    assert batch.rollout.batch_size == 8  # the training round's 2 groups of 4 only
    assert [len(c) for c in estimation.completions] == [3, 3] and training.grad_norms is None
    assert training.completions == []  # not measured: the trainer does not build token lists for nothing
    assert [g.shape for g in estimation.grad_norms] == [torch.Size([3])] * 2
    assert all(bool((g > 0).all()) for g in estimation.grad_norms)
    assert all(p.grad is None for p in t.model.parameters())  # measuring left the optimizer's gradients alone
    lengths = [len(ids) for group in estimation.completions for ids in group]
    assert t.generated_tokens == sum(lengths) + int(batch.gen.completion_mask.sum())  # both rounds count
    assert 0.0 <= batch.metrics["zero_variance_frac"] <= 1.0


def test_gradient_norms_equal_one_backward_per_completion(tmp_path):
    t = trainer(tmp_path)
    gen = t._sample([t.task.train[0]], 2).gen
    from grpolab.trainer.logprob import completion_outputs, sequence_grad_norms

    norms = sequence_grad_norms(t.model, gen.prompt_ids, gen.prompt_mask, gen.completion_ids, gen.completion_mask)
    weight = next(p for p in t.model.parameters() if p.requires_grad)
    for i in range(2):
        t.model.zero_grad()
        out = completion_outputs(
            t.model,
            gen.prompt_ids[i : i + 1],
            gen.prompt_mask[i : i + 1],
            gen.completion_ids[i : i + 1],
            gen.completion_mask[i : i + 1],
        )
        (-(out.logp * gen.completion_mask[i : i + 1]).sum()).backward()
        assert norms[i].item() == pytest.approx(weight.grad.norm().item(), rel=1e-5)


def test_a_crash_saves_the_sampler_state_the_failed_step_started_with(tmp_path):
    t = trainer(tmp_path, steps=4, save_every=0, sampler="_estimating_for_test", sampler_args={"fail_at": 5})
    with pytest.raises(RuntimeError, match="sampler boom"):
        t.run()
    from grpolab.trainer import checkpoint

    saved = checkpoint.load_latest(tmp_path / "run" / "checkpoints")
    assert saved["step"] == 2 and saved["sampler"]["requests"] == 4  # not 5: the failed step's request is undone
    assert saved["generated_tokens"] == t._tokens_at_step_start > 0


def test_a_generation_budget_stops_the_run_and_is_logged(tmp_path):
    t = trainer(tmp_path, steps=50, num_prompts=2, num_generations=2, max_generated_tokens=20)
    t.run()
    logged = records(tmp_path / "run")
    assert t.step < 50 and logged[-1]["budget_spent"] == 1.0 and "eval/pass@1" in logged[-1]
    assert logged[-1]["generated_tokens"] >= 20 > logged[-2].get("generated_tokens", 0)
    assert (tmp_path / "run" / "final" / "config.json").is_file()
    again = Trainer(t.config, resume=True)  # resuming a run whose budget is spent trains nothing more
    again.run()
    assert again.step == t.step and len(records(tmp_path / "run")) == len(logged)
    with pytest.raises(ValueError, match="max-generated-tokens"):
        resolve(None, {**TINY, "max_generated_tokens": -1})


def test_the_generation_limit_defaults_to_the_tasks_suggestion(tmp_path):
    overrides = {k: v for k, v in TINY.items() if k != "max_new_tokens"}
    think = Trainer(resolve(None, {**overrides, "task": "arith_think", "output_dir": str(tmp_path), "name": "a"}))
    plain = Trainer(resolve(None, {**overrides, "task": "arith", "output_dir": str(tmp_path), "name": "b"}))
    given = Trainer(
        resolve(None, {**overrides, "task": "arith_think", "max_new_tokens": 5, "output_dir": str(tmp_path)})
    )
    assert (think.config.max_new_tokens, plain.config.max_new_tokens, given.config.max_new_tokens) == (24, 8, 5)
    assert "max_new_tokens: 24" in (tmp_path / "a" / "config.yaml").read_text()
    with pytest.raises(ValueError, match="max-new-tokens"):
        resolve(None, {"max_new_tokens": 0})
