"""CAPO's rollout strategy on a random tiny model: finite [N, T] coefficients aligned with the trainer's log-probs,
the optimizer's Adam state read (never written) after a step, and the linear-head check."""

import pytest
import torch

from grpolab.core.curvature import lm_head_coefficients
from grpolab.rollout.strategies import ROLLOUT_STRATEGIES
from grpolab.trainer.config import resolve
from grpolab.trainer.loop import Trainer

from .test_loop import TINY

strategy = ROLLOUT_STRATEGIES["capo_curvature"]


def trainer(tmp_path, name="run", **overrides):
    return Trainer(resolve(None, {**TINY, "algo": "capo", "output_dir": str(tmp_path), "name": name, **overrides}))


def reference(t, gen, **kw):
    """The coefficients recomputed token by token from the trainer's own forward (hidden states of the model)."""
    weight = t.model.get_output_embeddings().weight.detach()
    input_ids = torch.cat([gen.prompt_ids, gen.completion_ids], dim=1)
    attention = torch.cat([gen.prompt_mask, gen.completion_mask], dim=1).long()
    with torch.no_grad():
        out = t.model(
            input_ids=input_ids,
            attention_mask=attention,
            position_ids=(attention.cumsum(1) - 1).clamp(min=0),
            output_hidden_states=True,
        )
    T = gen.completion_ids.shape[1]
    hidden = out.hidden_states[-1][:, -T - 1 : -1]  # [N, T, H]
    lin, quad = torch.zeros(gen.completion_ids.shape), torch.zeros(gen.completion_ids.shape)
    for i, j in gen.completion_mask.nonzero().tolist():
        one = lm_head_coefficients(
            hidden[i, j][None], weight, gen.completion_ids[i, j][None], temperature=t.config.temperature, **kw
        )
        lin[i, j], quad[i, j] = one[0].item(), one[1].item()
    return lin, quad, hidden, weight


def test_coefficients_are_finite_zero_at_padding_and_match_a_token_by_token_recomputation(tmp_path):
    t = trainer(tmp_path, temperature=0.7, num_prompts=3)
    sampled = t._sample([t.task.train[i] for i in range(3)], 4)
    out, metrics = strategy(t.context, sampled, top_k=5, chunk_size=3, forward_rows=5)
    lin, quad = out.extras["capo_lin"], out.extras["capo_quad"]
    mask = sampled.gen.completion_mask
    assert lin.shape == quad.shape == mask.shape == (12, mask.shape[1])
    assert torch.isfinite(lin).all() and torch.isfinite(quad).all() and (quad >= 0).all() and (lin[mask] > 0).all()
    assert (lin[~mask] == 0).all() and (quad[~mask] == 0).all()
    assert metrics["rollout/capo_adam_step"] == 0.0 and metrics["rollout/capo_time"] > 0
    ref_lin, ref_quad, hidden, weight = reference(t, sampled.gen, lr=t.config.learning_rate, betas=(0.9, 0.99), top_k=5)
    torch.testing.assert_close(lin, ref_lin, rtol=1e-4, atol=1e-9)
    torch.testing.assert_close(quad, ref_quad, rtol=1e-4, atol=1e-10)
    # the hidden states sit where the trainer's log-probs read them: logits h·Wᵀ/τ give the same log π(token)
    logp, _ = t.context.token_outputs(sampled.gen)
    mine = torch.log_softmax(hidden @ weight.T / 0.7, dim=-1).gather(-1, sampled.gen.completion_ids[..., None])[..., 0]
    torch.testing.assert_close(mine[mask], logp[mask], rtol=1e-4, atol=1e-4)


def test_after_one_optimizer_step_the_adam_state_is_read_and_left_untouched(tmp_path):
    # loose bounds: the paper's τ mask every token of a random model at lr 1e-3, which would leave a zero moment
    t = trainer(tmp_path, selectors=[{"name": "capo", "params": {"tau_f": 1e9, "tau_h": 1e9}}])
    batch = t.rollout_batch()
    assert batch.metrics["rollout/capo_adam_step"] == 0.0 and 0.0 <= batch.metrics["selector/capo_masked_frac"] <= 1
    t.update(batch)  # one AdamW step: the head now has a second moment
    weight = t.model.get_output_embeddings().weight
    state = t.optimizer.state[weight]
    assert int(state["step"]) == 1 and float(state["exp_avg_sq"].sum()) > 0
    sampled = t._sample([t.task.train[0], t.task.train[1]], 4)
    before = {k: v.clone() for k, v in t.model.state_dict().items()}
    moments = {k: v.clone() for k, v in state.items()}
    out, metrics = strategy(t.context, sampled)
    assert metrics["rollout/capo_adam_step"] == 1.0
    assert all(torch.equal(before[k], v) for k, v in t.model.state_dict().items())
    assert all(torch.equal(moments[k], v) for k, v in state.items())
    lr = t.optimizer.param_groups[0]["lr"]
    kw = dict(lr=lr, betas=(0.9, 0.99), top_k=50)
    ref_lin, ref_quad, _, _ = reference(t, sampled.gen, exp_avg_sq=state["exp_avg_sq"], step=1, **kw)
    torch.testing.assert_close(out.extras["capo_lin"], ref_lin, rtol=1e-4, atol=1e-9)
    torch.testing.assert_close(out.extras["capo_quad"], ref_quad, rtol=1e-4, atol=1e-10)
    fresh_lin, _, _, _ = reference(t, sampled.gen, **kw)  # the same tokens without the state
    assert not torch.allclose(out.extras["capo_lin"], fresh_lin)
    # a larger second moment means a smaller Adam step: every coefficient shrinks
    state["exp_avg_sq"].mul_(100.0)
    scaled, _ = strategy(t.context, sampled)
    mask = sampled.gen.completion_mask
    assert (scaled.extras["capo_lin"][mask] < out.extras["capo_lin"][mask]).all()
    # the stored-moment-only model (reference_advantage=None) reads the same state
    plain, _ = strategy(t.context, sampled, reference_advantage=None)
    ref_plain, _, _, _ = reference(
        t, sampled.gen, exp_avg_sq=state["exp_avg_sq"], step=1, reference_advantage=None, **kw
    )
    torch.testing.assert_close(plain.extras["capo_lin"], ref_plain, rtol=1e-4, atol=1e-9)


def test_the_selector_masks_tokens_of_the_rollout_batch_and_the_update_runs(tmp_path):
    t = trainer(tmp_path, selectors=[{"name": "capo", "params": {"tau_f": 1e-12, "tau_h": None}}])
    batch = t.rollout_batch()
    assert batch.metrics["selector/capo_masked_frac"] > 0.5  # only tokens that ask for no update (A = 0) stay
    assert batch.metrics.get("skipped") == 1.0 or (batch.advantages[batch.rollout.mask] == 0).all()
    t = trainer(tmp_path, "loose", selectors=[{"name": "capo", "params": {"tau_f": 1e9, "tau_h": 1e9}}])
    batch = t.rollout_batch()
    assert batch.metrics["selector/capo_masked_frac"] == 0.0 and batch.metrics["kept_token_frac"] == 1.0
    assert torch.isfinite(torch.tensor(t.update(batch)["loss"]))


def test_a_head_that_is_not_logits_equal_w_h_is_refused(tmp_path):
    t = trainer(tmp_path)
    sampled = t._sample([t.task.train[0]], 2)
    head = t.model.get_output_embeddings()
    scaled = torch.nn.Linear(head.in_features, head.out_features, bias=False)
    scaled.weight = torch.nn.Parameter(head.weight.detach() * 3.0)  # logits no longer W·h for the read W
    original = t.model.get_output_embeddings
    t.model.get_output_embeddings = lambda: scaled
    try:
        with pytest.raises(ValueError, match="logits = W h"):
            strategy(t.context, sampled)
    finally:
        t.model.get_output_embeddings = original
    with pytest.raises(ValueError, match="top_k"):
        strategy(t.context, sampled, top_k=0)
