"""The ``icpo_expert`` rollout strategy on a random tiny model: demonstration prompts from the FIFO demo cache, one
generate call, the prompt swapped back, off-policy flags, expert region reject sampling and the annealed bonus;
and DaGRPO's anchors read by ``mixed_policy``."""

import copy
import io
import math

import pytest
import torch

from grpolab.core.losses import POLICY_LOSSES
from grpolab.core.types import Rollout
from grpolab.data import TASKS, Task
from grpolab.data.arith import arith_task
from grpolab.models import random_tiny_model
from grpolab.rollout.hf import HFEngine
from grpolab.rollout.icpo import draw_demonstrations, icpo_expert, update_demo_cache, with_demonstrations
from grpolab.rollout.strategies import ROLLOUT_STRATEGIES, RolloutContext, Sampled
from grpolab.trainer.config import resolve
from grpolab.trainer.loop import Trainer, reward_inputs

ROWS = [
    {"prompt": "12+30=", "answer": "42"},
    {"prompt": "5-7=", "answer": "-2"},
    {"prompt": "60+6=", "answer": "66"},
    {"prompt": "9+9=", "answer": "18"},
]


def always(value):
    return lambda prompts, completions, **_: [value] * len(completions)


def digit_first(prompts, completions, **_):
    """1 when the completion starts with a digit: a reward a random model earns about half of the time."""
    return [1.0 if text[:1].isdigit() else 0.0 for text in completions]


def make_ctx(reward_fn, *, seed=0, max_new_tokens=3):
    """A RolloutContext over a random tiny model whose scoring is ``reward_fn`` (TRL convention); records every
    ``sample`` call (rows, n, Sampled) in ``ctx.calls``."""
    torch.manual_seed(seed)
    model, tok = random_tiny_model(seed=seed)
    engine = HFEngine(tok, max_new_tokens=max_new_tokens)
    calls = []

    def score(rows, gen):
        prompts, completions, columns = reward_inputs(rows, gen)
        reward = torch.tensor(reward_fn(prompts, completions, **columns), dtype=torch.float32)  # [N]
        return Sampled(
            rows=rows,
            gen=gen,
            reward=reward,
            rewards=reward[:, None],
            reward_names=("r",),
            valid=torch.ones(len(reward), dtype=torch.bool),
            accuracy=(reward >= 1).float(),
            group=gen.prompt_index,
        )

    def sample(rows, n, *, greedy=False, temperature=None, max_new_tokens=None):
        gen = engine.generate(model, [r["prompt"] for r in rows], num_generations=n, greedy=greedy,
                              temperature=temperature, max_new_tokens=max_new_tokens)  # fmt: skip
        out = score(rows, gen)
        calls.append((rows, n, out))
        return out

    ctx = RolloutContext(
        sample_fn=sample,
        score_fn=score,
        continue_fn=None,
        outputs_fn=None,
        model=model,
        optimizer=None,
        pad_id=engine.pad_id,
        tokenizer=tok,
        device=torch.device("cpu"),
        num_generations=4,
        max_new_tokens=max_new_tokens,
        temperature=1.0,
    )
    ctx.calls = calls
    return ctx


def main_batch(ctx, rows=ROWS, n=4):
    sampled = ctx.sample(rows, n)
    ctx.calls.clear()
    return sampled


def run(ctx, sampled, *, step=0, total_steps=100, state=None, **hp):
    return icpo_expert(ctx, sampled, step=step, total_steps=total_steps, state={} if state is None else state, **hp)


def plain_ids(gen, i):
    return gen.prompt_ids[i][gen.prompt_mask[i]].tolist()


# ---------------------------------------------------------------------------------------------------- swap back
def test_ief_completions_are_trained_under_the_plain_prompt_in_their_own_group():
    ctx = make_ctx(always(1.0))
    sampled = main_batch(ctx)
    sampled.group = torch.tensor([2, 2, 2, 2, 0, 0, 0, 0, 3, 3, 3, 3, 1, 1, 1, 1])  # groups need not be row ids
    out, m = run(ctx, sampled, n_off=2)
    # one generate call for all IEF completions: every row, a 1-shot demonstration of another row, n_off = 2
    assert len(ctx.calls) == 1
    demo_rows, n, ief = ctx.calls[0]
    assert n == 2 and len(demo_rows) == 4
    questions = {r["prompt"]: r["answer"] for r in ROWS}
    for row, demo_row in zip(ROWS, demo_rows, strict=True):
        demo, question = demo_row["prompt"].split(" ")  # default template "{demos} {prompt}": "12+30=42 5-7="
        assert question == row["prompt"] and demo_row["answer"] == row["answer"]
        demo_q, demo_a = demo.split("=")[0] + "=", demo.split("=")[1]
        assert demo_q != row["prompt"] and questions[demo_q] == demo_a  # another row, with its reference answer
    assert out.size == 16 + 8 and m["ief_accept_rate"] == 1.0 and m["ief_frac"] == 1.0
    assert out.extras["off_policy"].tolist() == [False] * 16 + [True] * 8
    for k in range(8):
        i, src = 16 + k, k // 2  # IEF row k came from demo row k // 2 = original row k // 2
        assert out.gen.prompt_index[i].item() == src
        assert out.group[i].item() == [2, 0, 3, 1][src]
        assert plain_ids(out.gen, i) == plain_ids(sampled.gen, 4 * src)  # the plain question's ids
        assert plain_ids(ief.gen, k) != plain_ids(out.gen, i)  # it was generated under the demonstration prompt
        length = int(ief.gen.completion_mask[k].sum())
        assert out.gen.completion_ids[i, :length].tolist() == ief.gen.completion_ids[k, :length].tolist()
        assert out.gen.texts[i] == ief.gen.texts[k]
    # the on-policy rows are untouched
    assert out.reward[:16].tolist() == sampled.reward.tolist() and out.group[:16].tolist() == sampled.group.tolist()


def test_the_swapped_batch_trains_in_the_real_trainer(tmp_path):
    """Through the trainer: the IEF rows' log-probs are those of the completion after the plain prompt."""
    if "icpo_always_right" not in TASKS:
        base = arith_task()
        TASKS.register("icpo_always_right")(lambda **_: Task("icpo_always_right", base.train, base.eval, [always(1.0)]))
    config = resolve(
        None,
        {"model": "random-tiny", "task": "icpo_always_right", "algo": "icpo", "num_prompts": 3, "num_generations": 2,
         "max_new_tokens": 3, "progress": False, "output_dir": str(tmp_path), "name": "t", "eval_every": 0},
    )  # fmt: skip
    trainer = Trainer(config)
    batch = trainer.rollout_batch()
    off = batch.rollout.extras["off_policy"]
    assert int(off.sum()) == 3 and batch.metrics["ief_accept_rate"] == 1.0
    rows = batch.rollout.extras["row"]
    gen = batch.gen
    for i in torch.nonzero(off).flatten().tolist():
        j = int(rows[i])
        same = [k for k in range(gen.prompt_index.shape[0]) if gen.prompt_index[k] == gen.prompt_index[j] and k != j]
        assert all(plain_ids(gen, k) == plain_ids(gen, j) for k in same)
        assert batch.rollout.reward[i].item() == pytest.approx(2.0)  # 1 + β·(1 − 0/400)
    from grpolab.trainer.logprob import completion_outputs

    full = trainer._outputs(trainer.model, gen).logp  # the trainer's pass (shared prompt forward)
    alone = completion_outputs(trainer.model, gen.prompt_ids, gen.prompt_mask, gen.completion_ids,
                               gen.completion_mask).logp  # fmt: skip
    assert torch.allclose(full[gen.completion_mask], alone[gen.completion_mask], atol=1e-5)
    assert math.isfinite(trainer.update(batch)["loss"])


# ---------------------------------------------------------------------------------------------------- reject, bonus
def test_expert_region_reject_sampling_keeps_only_rewards_at_least_delta():
    ctx = make_ctx(digit_first, seed=3)
    rows = arith_task().train[:6]
    sampled = main_batch(ctx, rows, n=2)
    out, m = run(ctx, sampled, n_off=3)
    _, _, ief = ctx.calls[0]
    right = [t[:1].isdigit() for t in ief.gen.texts]
    assert 0 < sum(right) < len(right)  # the seed gives both outcomes
    assert out.size == sampled.size + sum(right)
    assert out.gen.texts[sampled.size :] == [t for t, ok in zip(ief.gen.texts, right, strict=True) if ok]
    assert m["ief_accept_rate"] == pytest.approx(sum(right) / len(right))
    assert m["ief_accuracy"] == pytest.approx(sum(right) / len(right))
    assert out.extras["off_policy"][sampled.size :].all()
    # δ = None (no reject sampling) appends every IEF completion, the wrong ones with no bonus-free reward change
    ctx2 = make_ctx(digit_first, seed=3)
    sampled2 = main_batch(ctx2, rows, n=2)
    out2, m2 = run(ctx2, sampled2, n_off=3, delta=None, beta=0.0)
    assert out2.size == sampled2.size + 18 and m2["ief_accept_rate"] == 1.0
    assert out2.reward[sampled2.size :].tolist() == ctx2.calls[0][2].reward.tolist()


def test_nothing_is_appended_when_every_ief_completion_is_wrong():
    ctx = make_ctx(always(0.0))
    sampled = main_batch(ctx)
    out, m = run(ctx, sampled)
    assert out.size == sampled.size and m["ief_accept_rate"] == 0.0
    assert out is sampled  # the batch as it is: the trainer fills off_policy (False) for every row


def test_a_step_without_ief_completions_trains_with_the_off_policy_flag_all_false(tmp_path):
    """No row has n_demo other cached questions: nothing is generated or appended, and the trainer's Rollout still
    carries off_policy (all False) and prefix_len (all 0) for the mixed_policy loss."""
    config = resolve(
        None,
        {"model": "random-tiny", "task": "arith", "algo": "icpo", "num_prompts": 3, "num_generations": 2,
         "max_new_tokens": 3, "progress": False, "output_dir": str(tmp_path), "name": "t", "eval_every": 0,
         "rollout": [{"name": "icpo_expert", "params": {"n_demo": 10}}]},
    )  # fmt: skip
    trainer = Trainer(config)
    batch = trainer.rollout_batch()
    r = batch.rollout
    assert batch.metrics["ief_frac"] == 0.0 and r.batch_size == 6
    assert r.extras["off_policy"].dtype == torch.bool and r.extras["off_policy"].tolist() == [False] * 6
    assert r.extras["prefix_len"].tolist() == [0] * 6
    assert math.isfinite(trainer.update(batch)["loss"])


def test_ief_completions_are_scored_once_under_the_plain_prompt_and_counted_as_generated(tmp_path):
    """Through the trainer: the reward functions never see a demonstration prompt (the IEF completions are generated
    unscored and scored once, after the swap), and their tokens count in generated_tokens."""
    seen: list[list[str]] = []

    def recording(prompts, completions, **_):
        seen.append(list(prompts))
        return [1.0] * len(completions)

    if "icpo_recording" not in TASKS:
        base = arith_task()
        TASKS.register("icpo_recording")(lambda **_: Task("icpo_recording", base.train, base.eval, [recording]))
    config = resolve(
        None,
        {"model": "random-tiny", "task": "icpo_recording", "algo": "icpo", "num_prompts": 3, "num_generations": 2,
         "max_new_tokens": 3, "progress": False, "output_dir": str(tmp_path), "name": "t", "eval_every": 0},
    )  # fmt: skip
    trainer = Trainer(config)
    batch = trainer.rollout_batch()
    assert int(batch.rollout.extras["off_policy"].sum()) == 3 and batch.metrics["ief_accept_rate"] == 1.0
    # two scoring passes: the main batch (3 prompts x 2, row p's question at 2p), then the 3 IEF completions under
    # their row's plain question
    assert len(seen) == 2 and len(seen[0]) == 6
    assert seen[1] == [seen[0][2 * i] for i in batch.gen.prompt_index[6:].tolist()]
    assert all(" " not in p for p in seen[0])  # a demonstration prompt "{demos} {prompt}" has a space
    # every generated token is in the batch (all IEF completions were kept): main batch + IEF completions
    assert trainer.generated_tokens == batch.gen.num_tokens > int(batch.gen.completion_mask[:6].sum())


@pytest.mark.parametrize(("step", "expected"), [(0, 2.0), (100, 1.75), (200, 1.5), (399, 1.0025), (400, 1.0),
                                                (1000, 1.0)])  # fmt: skip
def test_annealed_bonus_on_the_combined_reward(step, expected):
    ctx = make_ctx(always(1.0))
    sampled = main_batch(ctx)
    out, m = run(ctx, sampled, step=step, total_steps=1000)
    off = out.extras["off_policy"]
    assert out.reward[off].tolist() == pytest.approx([expected] * 4)  # R = 1 + β·max(0, 1 − t/400)
    assert m["ief_bonus"] == pytest.approx(expected - 1)
    assert out.rewards[off].flatten().tolist() == [1.0] * 4 and out.accuracy[off].tolist() == [1.0] * 4
    if step >= 400:  # spec: at t ≥ T a hinted correct rollout's reward equals an on-policy correct one
        assert out.reward[off][0].item() == out.reward[~off][0].item() == 1.0


def test_bonus_horizon_defaults_to_the_run_length_when_anneal_steps_is_none():
    ctx = make_ctx(always(1.0))
    out, m = run(ctx, main_batch(ctx), step=5, total_steps=10, anneal_steps=None, beta=0.5)
    assert m["ief_bonus"] == pytest.approx(0.25) and out.reward[out.extras["off_policy"]].tolist() == [1.25] * 4


# ---------------------------------------------------------------------------------------------------- demo cache
def test_demo_cache_is_a_fifo_in_the_strategy_state():
    state = {}
    ctx = make_ctx(always(1.0))
    _, m = run(ctx, main_batch(ctx, ROWS[:3], n=2), state=state, cache_size=4)
    assert state["demos"] == [["12+30=", "42"], ["5-7=", "-2"], ["60+6=", "66"]] and m["demo_cache_size"] == 3
    more = [
        {"prompt": "1+2=", "answer": "3"},
        {"prompt": "4+4=", "answer": "8"},
        ROWS[1],
        {"prompt": "7+0=", "answer": None},
    ]
    _, m = run(ctx, main_batch(ctx, more, n=2), state=state, cache_size=4, step=1)
    # 1+2 and 4+4 enter, 5-7 is seen again (moves to the newest end), the row without an answer never enters;
    # capacity 4: the oldest (12+30, 60+6 ... in age order) leave first
    assert state["demos"] == [["60+6=", "66"], ["1+2=", "3"], ["4+4=", "8"], ["5-7=", "-2"]]
    # demonstrations come from the cache and never show a row its own question
    cached = {q + a for q, a in state["demos"]}
    for row, demo_row in zip(more, ctx.calls[-1][0], strict=True):
        demo, question = demo_row["prompt"].split(" ")
        assert question == row["prompt"] and demo in cached and not demo.startswith(row["prompt"])
    # the state survives a checkpoint round trip (plain lists of strings)
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    assert torch.load(buffer, weights_only=False) == state


def test_same_state_and_seed_draw_the_same_demonstrations():
    ctx = make_ctx(always(1.0))
    sampled = main_batch(ctx)
    state = {"demos": [[f"{i}+1=", str(i + 1)] for i in range(50)]}
    saved = copy.deepcopy(state)
    torch.manual_seed(7)
    run(ctx, sampled, state=state)
    torch.manual_seed(7)
    run(ctx, sampled, state=saved)
    assert [r["prompt"] for r in ctx.calls[0][0]] == [r["prompt"] for r in ctx.calls[1][0]]


def test_no_demonstration_no_generation():
    ctx = make_ctx(always(1.0))
    sampled = main_batch(ctx, ROWS[:1], n=2)  # the cache holds only the row's own question
    out, m = run(ctx, sampled)
    assert ctx.calls == [] and out.size == sampled.size and m["ief_frac"] == 0.0


def test_cache_helpers():
    assert update_demo_cache([], [{"prompt": "1+1=", "answer": 2}], answer_key="answer", capacity=5) == [["1+1=", "2"]]
    assert update_demo_cache([["a", "1"], ["b", "2"]], [], answer_key="answer", capacity=1) == [["b", "2"]]
    chat = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "2+2="}]
    assert update_demo_cache([], [{"prompt": chat, "sol": "4"}], answer_key="sol", capacity=3) == [["2+2=", "4"]]
    demo = with_demonstrations(chat, "1+1=2", template="{demos}\n\n{prompt}")
    assert demo[-1]["content"] == "1+1=2\n\n2+2=" and chat[-1]["content"] == "2+2=" and demo[0] == chat[0]
    # the question is the LAST user message; a chat prompt without one has no question: a ValueError, not a guess
    turns = [
        {"role": "user", "content": "1+1="},
        {"role": "assistant", "content": "2"},
        {"role": "user", "content": "3+3="},
    ]
    assert with_demonstrations(turns, "D", template="{demos} {prompt}") == [
        *turns[:2],
        {"role": "user", "content": "D 3+3="},
    ]
    no_user = [{"role": "system", "content": "2+2="}]
    with pytest.raises(ValueError, match="user message"):
        with_demonstrations(no_user, "1+1=2", template="{demos} {prompt}")
    with pytest.raises(ValueError, match="user message"):
        update_demo_cache([], [{"prompt": no_user, "answer": "4"}], answer_key="answer", capacity=3)
    torch.manual_seed(0)
    draws = [draw_demonstrations(4, 2, 1)[0] for _ in range(400)]
    assert set(draws) == {0, 1, 3}  # uniform over the others, never the own index
    assert sorted(draw_demonstrations(3, 0, 2)) == [1, 2] and draw_demonstrations(3, 0, 3) is None
    assert len(set(draw_demonstrations(10, None, 3))) == 3


@pytest.mark.parametrize(
    ("hp", "message"),
    [
        (dict(n_off=0), "n_off"),
        (dict(n_demo=0), "n_demo"),
        (dict(cache_size=0), "cache_size"),
        (dict(template="{demos}"), r"must contain \{prompt\}"),
        (dict(template="{demos} {question}"), "format string"),
        (dict(demo_template="{prompt}{answer}"), "format string"),
        (dict(delta=float("nan")), "delta"),
        (dict(beta=-1.0), "beta"),
        (dict(anneal_steps=0), "anneal_steps"),
    ],
)
def test_bad_hyper_parameters_raise(hp, message):
    ctx = make_ctx(always(1.0))
    with pytest.raises(ValueError, match=message):
        run(ctx, main_batch(ctx), **hp)


def test_existing_unfillable_extras_raise():
    ctx = make_ctx(always(1.0))
    sampled = main_batch(ctx)
    sampled.extras = {"token_ids": [[1]] * sampled.size}
    with pytest.raises(ValueError, match="before the strategies"):
        run(ctx, sampled)


# ---------------------------------------------------------------------------------------------------- DaGRPO anchors
def test_mixed_policy_treats_dagrpo_anchors_with_the_regularised_weight():
    """DaGRPO's ``expert_anchors`` marks its reference-answer completions ``off_policy``: ``mixed_policy`` gives them
    −A·π/(π + 0.1) (no ratio, no clip) and the sampled ones dual-clip PPO."""
    ctx = make_ctx(always(0.0))  # every group scores 0: every group gets an anchor
    sampled = main_batch(ctx, ROWS[:2], n=3)
    out, _ = ROLLOUT_STRATEGIES["expert_anchors"](ctx, sampled, max_len=3)
    off = out.extras["off_policy"]
    assert off.tolist() == [False] * 6 + [True] * 2
    mask = out.gen.completion_mask
    g = torch.Generator().manual_seed(5)
    logp = -torch.rand(mask.shape, generator=g, dtype=torch.float64) * 2
    old = logp + 0.5  # ratio e^−0.5 ≈ 0.61: below the band, so the anchors' PPO term would differ from f(π)
    adv = torch.randn(mask.shape, generator=g, dtype=torch.float64)
    rollout = Rollout(group=out.group, mask=mask, reward=out.reward.double(), old_logp=old, extras={"off_policy": off})
    loss, m = POLICY_LOSSES["mixed_policy"](logp, rollout, adv, aggregation="token_mean")
    total = 0.0
    for i in range(out.size):
        for t in range(mask.shape[1]):
            if not mask[i, t]:
                continue
            a, lp = adv[i, t].item(), logp[i, t].item()
            if off[i]:
                total += -a * math.exp(lp) / (math.exp(lp) + 0.1)
            else:
                rho = math.exp(lp - old[i, t].item())
                pol = max(-a * rho, -a * min(max(rho, 0.8), 1.2))
                total += min(pol, -3 * a) if a < 0 else pol
    assert loss.item() == pytest.approx(total / int(mask.sum()), rel=1e-10)
    assert m["off_policy_frac"] == pytest.approx(int(mask[off].sum()) / int(mask.sum()))
