"""Multi-turn episodes: turn logic, environment-token masks, counts and limits, with a scripted policy; then the
trainer on a multi-turn task with a random text model (environment tokens never enter the loss)."""

import pytest
import torch

from grpolab.data import TASKS, Task
from grpolab.envs import Environment, Reply
from grpolab.models import TEXT_CHARS, char_tokenizer, random_tiny_model
from grpolab.rollout.hf import HFEngine
from grpolab.rollout.multiturn import run_episodes
from grpolab.trainer.config import resolve
from grpolab.trainer.loop import Trainer, evaluate, loss_mask


class ScriptedLM(torch.nn.Module):
    """A stand-in policy whose next turn is ``script(context_text)``: ``generate`` appends those tokens (cut at
    ``max_new_tokens``), right-padded, as transformers' generate returns them."""

    def __init__(self, tokenizer, script, max_positions=256):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.tok = tokenizer
        self.script = script
        self.config = type("Config", (), {"max_position_embeddings": max_positions})()
        self.calls = 0

    def generate(self, input_ids, attention_mask, max_new_tokens, **kwargs):
        self.calls += 1
        turns = []
        for ids, mask in zip(input_ids, attention_mask.bool(), strict=True):
            context = self.tok.decode(ids[mask], skip_special_tokens=True)
            text, eos = self.script(context)
            new = self.tok(text, add_special_tokens=False).input_ids + ([self.tok.eos_token_id] if eos else [])
            turns.append(new[:max_new_tokens])
        width = max(len(t) for t in turns)
        out = torch.full((len(turns), width), self.tok.pad_token_id, dtype=torch.long)  # [M, width]
        for m, t in enumerate(turns):
            out[m, : len(t)] = torch.tensor(t)
        return torch.cat([input_ids, out], dim=1)


class Calc(Environment):
    """Answers "[a+b]" with "=<sum>;"; an "[x]" it cannot read gets "?;" and no tool call."""

    stop = ("]",)
    max_turns = 3

    def reset(self, row):
        return {"seen": []}

    def step(self, state, row, turn):
        state["seen"].append(turn)
        expr = turn[turn.rindex("[") + 1 : -1]
        try:
            a, b = expr.split("+")
            return Reply(text=f"={int(a) + int(b)};", tool_call=True)
        except ValueError:
            return Reply(text="?;")


def calc_then_answer(context):
    """Call the calculator once, then answer with what it said."""
    if "=" not in context:
        return "[1+2]", False
    return "a" + context.rsplit("=", 1)[1].rstrip(";"), True


@pytest.fixture
def tok():
    return char_tokenizer(chars=TEXT_CHARS, model_max_length=256)


def test_one_tool_call_then_answer(tok):
    engine = HFEngine(tok, max_new_tokens=8)
    model = ScriptedLM(tok, calc_then_answer)
    gen, extras = run_episodes(engine, model, Calc(), [{"prompt": "q1 "}, {"prompt": "q22 "}], num_generations=2)
    assert gen.texts == ["[1+2]=3;a3"] * 4
    assert gen.prompt_index.tolist() == [0, 0, 1, 1]
    # transcript tokens: "[1+2]" (5, model) "=3;" (3, env) "a3" + EOS (3, model)
    expected_env = [False] * 5 + [True] * 3 + [False] * 3
    assert extras["env_mask"].tolist() == [expected_env] * 4
    assert gen.completion_mask.sum(-1).tolist() == [11] * 4
    assert extras["tool_calls"].tolist() == [1] * 4
    assert extras["turns"].tolist() == [2] * 4
    assert gen.truncated.tolist() == [False] * 4
    assert model.calls == 2  # every active episode's turn is generated in one batched call
    # the loss mask drops exactly the environment's tokens
    assert loss_mask(gen, extras)[0].tolist() == [not e for e in expected_env]


def test_max_turns_cuts_an_episode_that_keeps_calling(tok):
    engine = HFEngine(tok, max_new_tokens=8)
    always_call = ScriptedLM(tok, lambda context: ("[2+2]", False))
    gen, extras = run_episodes(engine, always_call, Calc(), [{"prompt": "q "}], num_generations=1)
    assert gen.texts == ["[2+2]=4;" * 3]
    assert extras["turns"].tolist() == [3] and extras["tool_calls"].tolist() == [3]
    assert gen.truncated.tolist() == [True]  # still calling when the turns ran out


def test_turn_limit_and_unreadable_call(tok):
    engine = HFEngine(tok, max_new_tokens=4)
    rambling = ScriptedLM(tok, lambda context: ("abcdefgh", False))
    gen, extras = run_episodes(engine, rambling, Calc(), [{"prompt": "q "}], num_generations=1)
    assert gen.texts == ["abcd"] and gen.truncated.tolist() == [True] and extras["turns"].tolist() == [1]
    not_a_sum = ScriptedLM(tok, lambda context: ("[x]", False) if "?" not in context else ("ok", True))
    gen, extras = run_episodes(engine, not_a_sum, Calc(), [{"prompt": "q "}], num_generations=1)
    assert gen.texts == ["[x]?;ok"]
    assert extras["tool_calls"].tolist() == [0] and extras["turns"].tolist() == [2]  # a reply that is no tool call


def test_done_reply_ends_the_episode_and_state_is_per_episode(tok):
    class Once(Calc):
        def step(self, state, row, turn):
            state["seen"].append(turn)
            return Reply(text=f"#{len(state['seen'])}", done=True, tool_call=True)

    engine = HFEngine(tok, max_new_tokens=8)
    gen, extras = run_episodes(
        engine, ScriptedLM(tok, lambda c: ("[1+1]", False)), Once(), [{"prompt": "q "}], num_generations=3
    )
    assert gen.texts == ["[1+1]#1"] * 3  # each episode has its own state
    assert extras["turns"].tolist() == [1, 1, 1] and gen.truncated.tolist() == [False] * 3


def test_position_limit_ends_episodes_and_long_prompts_are_refused(tok):
    engine = HFEngine(tok, max_new_tokens=8)
    short = ScriptedLM(tok, lambda context: ("[2+2]", False), max_positions=16)
    gen, extras = run_episodes(engine, short, Calc(), [{"prompt": "q "}], num_generations=1)
    # BOS + "q " = 3 positions; turn 1 "[2+2]" + "=4;" -> 11; turn 2 gets 16 - 11 = 5 tokens "[2+2]" -> 16: no room
    # for the reply, the episode is cut with prompt + transcript at exactly the 16 positions
    assert gen.texts == ["[2+2]=4;[2+2]"] and gen.truncated.tolist() == [True]
    assert extras["turns"].tolist() == [2] and extras["tool_calls"].tolist() == [2]
    assert extras["env_mask"][0].tolist() == [False] * 5 + [True] * 3 + [False] * 5
    with pytest.raises(ValueError, match="no room"):
        run_episodes(engine, short, Calc(), [{"prompt": "x" * 20}], num_generations=1)
    with pytest.raises(TypeError, match="Environment"):
        run_episodes(engine, short, object(), [{"prompt": "q"}], num_generations=1)


# ------------------------------------------------------------------------------------------------ the trainer
class Chatty(Environment):
    """Every letter ends a turn (so a random model makes many); each such turn is a tool call answered "ok"."""

    stop = tuple("abcdefghijklmnopqrstuvwxyz")
    max_turns = 3

    def step(self, state, row, turn):
        return Reply(text="ok", tool_call=True)


def chatty_task(**kwargs):
    rows = [{"prompt": f"{i}+{i}=", "answer": str(2 * i)} for i in range(8)]

    def no_ok(prompts, completions, **_):  # a dense reward: share of characters that are not the env's "ok"
        return [1.0 - c.count("ok") * 2 / max(1, len(c)) for c in completions]

    return Task("chatty", rows, rows[:4], [no_ok], env=Chatty())


if "chatty" not in TASKS:
    TASKS.register("chatty")(chatty_task)


def test_trainer_masks_environment_tokens_and_logs_calls(tmp_path):
    settings = dict(
        model="random-tiny-text",
        task="chatty",
        steps=2,
        num_prompts=2,
        num_generations=4,
        max_new_tokens=4,
        eval_prompts=2,
        eval_every=0,
        save_every=0,
        progress=False,
        output_dir=str(tmp_path),
        name="mt",
    )
    trainer = Trainer(resolve(None, settings))
    batch = trainer.rollout_batch()
    env_mask = batch.rollout.extras["env_mask"]  # [B, T]
    assert bool(env_mask.any()), "the random model should call the chatty environment"
    assert not bool((batch.rollout.mask & env_mask).any())  # no environment token in the loss
    model_tokens = batch.gen.completion_mask & ~env_mask[:, : batch.gen.completion_mask.shape[1]]
    assert torch.equal(batch.rollout.mask, model_tokens)
    assert batch.metrics["tool_calls"] > 0 and batch.metrics["turns"] >= 1
    # prompt_id: the task.train index of each completion's prompt (per-question memory such as OTC's n)
    prompts = trainer.tokenizer.batch_decode(batch.gen.prompt_ids, skip_special_tokens=True)
    ids = batch.rollout.extras["prompt_id"].tolist()
    assert [trainer.task.train[i]["prompt"] for i in ids] == prompts
    before = trainer.generated_tokens
    last = trainer.run()
    assert trainer.generated_tokens > before
    assert "tool_calls" in last and "eval/tool_calls" in last


def test_evaluate_runs_episodes(tmp_path):
    model, tok = random_tiny_model(chars=TEXT_CHARS, max_positions=256)
    out = evaluate(model, tok, chatty_task(), num_prompts=2, samples=2, max_new_tokens=4)
    assert 0.0 <= out["eval/tool_calls"] <= 3 and 1 <= out["eval/turns"] <= 3
