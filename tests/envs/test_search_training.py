"""Real-Trainer runs on the multi-turn ``search`` task from ``tiny-tools``: otc_grpo, otc_ppo and grpo_llds train
3 steps; environment tokens stay out of the loss; OTC's shaping sees the rollout's tool calls."""

import json

import pytest
import torch

from grpolab.data.search import tool_calls
from grpolab.trainer.config import resolve
from grpolab.trainer.loop import Trainer

# tests/trainer/test_loop.py's TINY settings, on the search task with the built-in tool model; the per-turn limit
# is the task's (48 tokens), the other sizes are TINY's
TINY = dict(
    model="tiny-tools",
    task="search",
    steps=3,
    num_prompts=2,
    num_generations=4,
    eval_prompts=4,
    eval_every=0,
    save_every=0,
    progress=False,
    learning_rate=1e-3,
)


def trainer(algo, tmp_path, **overrides):
    return Trainer(resolve(None, {**TINY, "algo": algo, "name": algo, "output_dir": str(tmp_path), **overrides}))


@pytest.mark.parametrize("algo", ["otc_grpo", "otc_ppo", "grpo_llds"])
def test_presets_train_three_steps_on_search(algo, tmp_path):
    t = trainer(algo, tmp_path)
    assert t.config.max_new_tokens == 48  # the task's per-turn suggestion
    before = {k: v.clone() for k, v in t.model.state_dict().items()}
    t.run()
    logged = [json.loads(line) for line in (tmp_path / algo / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logged] == [0, 1, 2, 3]
    for r in logged[1:]:
        assert not r.get("skipped") and abs(r["loss"]) < 1e6
        assert 0.0 <= r["accuracy"] <= 1.0 and r["reward/tool_calls"] >= 0.0
    for r in (logged[0], logged[-1]):
        assert "eval/pass@1" in r and "eval/reward/tool_calls" in r
    if algo.startswith("otc"):
        assert all("otc/r_tool" in r for r in logged[1:])
    if algo == "otc_grpo":  # OTC-GRPO's per-question n is kept across steps, keyed by the trainer's prompt_id
        remembered = t.part_state["shaping.0.otc"]["n"]
        assert remembered and all(0 <= q < len(t.task.train) and n >= 0 for q, n in remembered.items())
    assert any(not torch.equal(before[k], v) for k, v in t.model.state_dict().items())


def test_environment_tokens_are_masked_out_of_the_loss(tmp_path):
    t = trainer("otc_grpo", tmp_path, num_prompts=4)
    torch.manual_seed(0)
    batch = t.rollout_batch()
    rollout, gen = batch.rollout, batch.gen
    rows = rollout.extras["row"]  # [B] rows of the generation
    env_mask = rollout.extras["env_mask"]  # [B, T]
    calls = rollout.extras["tool_calls"]  # [B]
    assert bool(env_mask.any()), "the sampled episodes made no tool call; the test needs at least one"
    assert not bool((rollout.mask & env_mask).any())  # the loss never sees an environment token
    assert (batch.advantages[env_mask] == 0).all()
    # sampled tokens stay in: every valid completion token is either in the loss mask or an environment token
    assert torch.equal(gen.completion_mask[rows], rollout.mask | (env_mask & gen.completion_mask[rows]))
    # the environment tokens decode to exactly the <result>...</result> replies, one per tool call
    for b in range(rollout.batch_size):
        ids = gen.completion_ids[rows[b]][env_mask[b]]
        text = t.tokenizer.decode(ids, skip_special_tokens=True)
        assert text.count("<result>") == int(calls[b]) and (not text or text.endswith("</result>"))
        transcript = gen.texts[rows[b]]
        assert tool_calls([""], [transcript]) == [float(calls[b])]
    # OTC read those counts: every trained completion's reward is α·r_tool·r_φ ∈ [0, 1]
    assert ((rollout.reward >= 0) & (rollout.reward <= 1)).all()
