"""Independent cross-check of multi-turn rollouts (rollout/multiturn.py) and their use by the trainer (trainer/loop.py,
core/advantages.compute_gae).

Checked against what a multi-turn episode means (Search-R1, arXiv 2503.09516 §3.1 "retrieved token masking"; the
Environment protocol in envs/base.py):

- the transcript (model turns + observations) is ONE completion: a model token after an observation is scored with
  the observation in its context, exactly as it was generated (greedy tokens are the argmax of the log-prob pass);
- environment tokens never enter the loss, its gradient, the advantages or the generated-token count;
- GAE jumps over environment tokens: it equals plain GAE on the model tokens alone (compressed sequence);
- an episode's transcript does not depend on which other episodes share its generation batch.
"""

from __future__ import annotations

import pytest
import torch

from grpolab.core.advantages import compute_gae
from grpolab.core.losses import POLICY_LOSSES
from grpolab.data import TASKS, Task
from grpolab.envs import Environment, Reply
from grpolab.models import TEXT_CHARS, char_tokenizer, random_tiny_model
from grpolab.rollout.hf import HFEngine
from grpolab.rollout.multiturn import run_episodes
from grpolab.trainer.config import resolve
from grpolab.trainer.logprob import completion_outputs
from grpolab.trainer.loop import Trainer, loss_mask, sampled_tokens


class Script(torch.nn.Module):
    """A stand-in causal LM for ``generate``: the next turn is ``rule(context_text)`` (cut at max_new_tokens),
    right-padded after the context, as transformers' generate returns it."""

    def __init__(self, tok, rule, max_positions):
        super().__init__()
        self.p = torch.nn.Parameter(torch.zeros(1))
        self.tok, self.rule = tok, rule
        self.config = type("C", (), {"max_position_embeddings": max_positions})()

    def generate(self, input_ids, attention_mask, max_new_tokens, **_):
        outs = []
        for ids, m in zip(input_ids, attention_mask.bool(), strict=True):
            text, eos = self.rule(self.tok.decode(ids[m], skip_special_tokens=True))
            new = self.tok(text, add_special_tokens=False).input_ids + ([self.tok.eos_token_id] if eos else [])
            outs.append(new[:max_new_tokens])
        width = max(len(o) for o in outs)
        pad = torch.full((len(outs), width), self.tok.pad_token_id, dtype=torch.long)
        for i, o in enumerate(outs):
            pad[i, : len(o)] = torch.tensor(o)
        return torch.cat([input_ids, pad], dim=1)


class Adder(Environment):
    stop = ("]",)
    max_turns = 3

    def step(self, state, row, turn):
        a, b = turn[turn.rindex("[") + 1 : -1].split("+")
        return Reply(text=f"={int(a) + int(b)};", tool_call=True)


def call_then_answer(context):
    if "=" not in context.split("|")[-1]:
        return "[1+2]", False
    return "a" + context.rsplit("=", 1)[1].rstrip(";"), True


@pytest.fixture(scope="module")
def tok():
    return char_tokenizer(chars=TEXT_CHARS, model_max_length=256)


# ------------------------------------------------------------------------------------------------ scripted
def test_scripted_episode_masks_and_counts(tok):
    engine = HFEngine(tok, max_new_tokens=8)
    gen, extras = run_episodes(
        engine, Script(tok, call_then_answer, 256), Adder(), [{"prompt": "q|"}], num_generations=2
    )
    assert gen.texts == ["[1+2]=3;a3"] * 2
    env = [False] * 5 + [True] * 3 + [False] * 3  # "[1+2]" model, "=3;" env, "a3"+EOS model
    assert extras["env_mask"].tolist() == [env] * 2
    lm = loss_mask(gen, extras)
    assert lm.tolist() == [[not e for e in env]] * 2
    assert sampled_tokens(gen, extras) == 2 * 8  # 8 model tokens per episode, env tokens not counted
    assert extras["turns"].tolist() == [2, 2] and extras["tool_calls"].tolist() == [1, 1]


def test_an_episode_does_not_depend_on_its_batch_mates(tok):
    engine = HFEngine(tok, max_new_tokens=8)
    model = Script(tok, call_then_answer, 24)
    alone, _ = run_episodes(engine, model, Adder(), [{"prompt": "q|"}], num_generations=1)
    assert alone.texts == ["[1+2]=3;a3"] and alone.truncated.tolist() == [False]
    both, _ = run_episodes(engine, model, Adder(), [{"prompt": "q|"}, {"prompt": "x" * 18 + "|"}], num_generations=1)
    assert both.texts[0] == "[1+2]=3;a3" and not bool(both.truncated[0])


# ------------------------------------------------------------------------------------------------ a real model
class Echo(Environment):
    """Every space ends a turn (a random greedy model writes spaces); the reply "OK:" is then in the context."""

    stop = (" ",)
    max_turns = 3

    def step(self, state, row, turn):
        return Reply(text="OK:", tool_call=True)


def test_model_tokens_after_an_observation_are_scored_with_it_in_context():
    model, tok = random_tiny_model(chars=TEXT_CHARS, max_positions=128)
    engine = HFEngine(tok, max_new_tokens=5)
    rows = [{"prompt": "hi "}, {"prompt": "a longer prompt, left padded "}]
    gen, extras = run_episodes(engine, model, Echo(), rows, num_generations=1, greedy=True)
    env = extras["env_mask"]
    lm = loss_mask(gen, extras)
    with torch.no_grad():
        out = completion_outputs(model, gen.prompt_ids, gen.prompt_mask, gen.completion_ids, gen.completion_mask)
    after_obs = 0
    for n in range(gen.completion_ids.shape[0]):
        prompt = gen.prompt_ids[n][gen.prompt_mask[n]]
        comp = gen.completion_ids[n][gen.completion_mask[n]]
        with torch.no_grad():  # the reference: one unpadded sequence, prompt + the whole transcript
            logits = model(input_ids=torch.cat([prompt, comp])[None]).logits[0]
        logp = torch.log_softmax(logits.float(), dim=-1)
        for t in range(len(comp)):
            if not lm[n, t]:
                continue
            row = logp[len(prompt) - 1 + t]
            assert int(row.argmax()) == int(comp[t])  # greedy generation saw the same context
            assert abs(float(row[comp[t]]) - float(out.logp[n, t])) < 1e-4
            if t > 0 and bool(env[n, t - 1]):
                after_obs += 1
                # without the observation the model would have scored this token differently
                keep = ~env[n, : len(comp)]
                keep[t:] = True
                with torch.no_grad():
                    cut = model(input_ids=torch.cat([prompt, comp[keep]])[None]).logits[0]
                idx = len(prompt) - 1 + int(keep[:t].sum())
                assert abs(float(torch.log_softmax(cut.float(), -1)[idx, comp[t]]) - float(row[comp[t]])) > 1e-4
    assert after_obs >= 2 and bool(env.any())


def test_gae_jumps_over_environment_tokens():
    """compute_gae on a mask with env holes equals plain GAE on the compressed sequence of model tokens."""
    gen = torch.Generator().manual_seed(3)
    B, T = 4, 9
    mask = torch.ones(B, T, dtype=torch.bool)
    mask[0, 2:4] = False  # an observation
    mask[1, 1] = mask[1, 5:7] = False  # two observations
    mask[2, 6:] = False  # padding
    mask[3, 3] = mask[3, 7:] = False  # observation then padding (episode ended on an observation)
    rewards = torch.randn(B, T, generator=gen)
    values = torch.randn(B, T, generator=gen)
    gamma, lam = 0.9, 0.7
    adv, ret = compute_gae(rewards, values, mask, gamma=gamma, lam=lam)
    for b in range(B):
        idx = [t for t in range(T) if mask[b, t]]
        r = [float(rewards[b, t]) for t in idx]
        v = [float(values[b, t]) for t in idx]
        a, running = [0.0] * len(idx), 0.0
        for k in reversed(range(len(idx))):
            nxt = v[k + 1] if k + 1 < len(idx) else 0.0
            running = r[k] + gamma * nxt - v[k] + gamma * lam * running
            a[k] = running
        for k, t in enumerate(idx):
            assert float(adv[b, t]) == pytest.approx(a[k], abs=1e-5)
            assert float(ret[b, t]) == pytest.approx(a[k] + v[k], abs=1e-5)
        assert all(float(adv[b, t]) == 0.0 and float(ret[b, t]) == 0.0 for t in range(T) if not mask[b, t])


# ------------------------------------------------------------------------------------------------ the trainer
class Letters(Environment):
    stop = tuple("abcdefghijklmnopqrstuvwxyz")
    max_turns = 3

    def step(self, state, row, turn):
        return Reply(text="ok", tool_call=True)


def letters_task(**_):
    rows = [{"prompt": f"{i}*{i}=", "answer": str(i * i)} for i in range(6)]

    def no_ok(prompts, completions, **__):
        return [1.0 - c.count("ok") * 2 / max(1, len(c)) for c in completions]

    return Task("xc_letters", rows, rows[:2], [no_ok], env=Letters())


if "xc_letters" not in TASKS:
    TASKS.register("xc_letters")(letters_task)


@pytest.mark.parametrize("algo", ["grpo", "ppo"])
def test_trainer_keeps_environment_tokens_out_of_loss_advantages_and_counts(tmp_path, algo):
    settings = dict(
        model="random-tiny-text",
        task="xc_letters",
        algo=algo,
        steps=1,
        num_prompts=2,
        num_generations=3,
        max_new_tokens=4,
        eval_every=0,
        save_every=0,
        progress=False,
        output_dir=str(tmp_path),
        name=algo,
    )
    trainer = Trainer(resolve(None, settings))
    before = trainer.generated_tokens
    batch = trainer.rollout_batch()
    r, gen = batch.rollout, batch.gen
    env = r.extras["env_mask"][:, : gen.completion_mask.shape[1]]
    assert bool(env.any())
    model_tokens = gen.completion_mask & ~env
    assert torch.equal(r.mask, model_tokens)
    assert trainer.generated_tokens - before == int(model_tokens.sum())  # only sampled tokens are counted
    assert bool((batch.advantages[env] == 0).all())
    if batch.returns is not None:  # PPO: GAE returns are 0 at env tokens, and the critic mask excludes them
        assert bool((batch.returns[env] == 0).all()) and not bool((batch.value_mask & env).any())
    logp = torch.randn(r.mask.shape).requires_grad_()
    if r.old_logp is None:  # on-policy: the trainer passes the current log-probs, detached
        r = r.replace(old_logp=logp.detach())
    loss, _ = POLICY_LOSSES[trainer.preset.loss.name](
        logp,
        r,
        batch.advantages,
        aggregation=trainer.preset.aggregation,
        num_tokens=float(r.mask.sum()),
        num_seqs=float(r.batch_size),
        norm_constant=4,
    )
    loss.backward()
    assert bool((logp.grad[env] == 0).all()) and bool((logp.grad[r.mask] != 0).any())
    ids = r.extras["prompt_id"].tolist()
    prompts = trainer.tokenizer.batch_decode(gen.prompt_ids, skip_special_tokens=True)
    assert [trainer.task.train[i]["prompt"] for i in ids] == prompts
