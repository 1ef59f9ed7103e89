"""CAPO's rollout strategy: per-token curvature coefficients of the next update, from the policy and its optimizer.

Stabilizing Policy Gradients for Sample-Efficient Reinforcement Learning in LLM Reasoning (arXiv 2510.00819).
The strategy samples nothing. It runs the policy once more (no gradient) on the sampled batch for the final
hidden states, reads the LM head ``W`` and the optimizer's Adam second moment of ``W``, and writes the
advantage-independent coefficients of ``grpolab.core.curvature`` to ``extras["capo_lin"]`` and
``extras["capo_quad"]`` (float [N, T], 0 at padding); the selector ``capo`` turns them into the token mask once
the advantages are known. The model and the optimizer are only read.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import torch
from torch import Tensor

from grpolab.core.curvature import lm_head_coefficients
from grpolab.rollout.strategies import ROLLOUT_STRATEGIES, RolloutContext, Sampled


@ROLLOUT_STRATEGIES.register("capo_curvature")
def capo_curvature(
    ctx: RolloutContext,
    sampled: Sampled,
    *,
    top_k: int = 50,
    reference_advantage: float | None = 1.0,
    chunk_size: int = 256,
    forward_rows: int = 32,
) -> tuple[Sampled, dict[str, float]]:
    """Write CAPO's per-token coefficients ``extras["capo_lin"]``, ``extras["capo_quad"]`` (float [N, T]).

    The update modelled is the one the optimizer would take on the LM head ``W`` for each token's own gradient
    (``grpolab.core.curvature.step_scale``), from the AdamW state of ``W``: ``exp_avg_sq`` (``max_exp_avg_sq``
    with amsgrad), its ``step`` count, the group's betas and eps, and the group's ``lr`` (the scheduler's rate
    for the coming step). Before the first optimizer step the state is empty: Adam's first step (or SGD,
    ``P = lr``, with ``reference_advantage=None``, the paper code's fallback). A frozen head (LoRA) has no state
    and keeps that first-step model. Weight decay is left out. With tied input/output embeddings the second
    moment read is that of the shared matrix, so it also holds the input-embedding gradient. The head is assumed
    linear (``logits = W h``): this is checked once per call on the last position of the first rows, and a model
    whose logits differ (a logit scale, soft-capping) is refused.

    Cost: one extra no-gradient forward pass of the policy (``forward_rows`` completions at a time, only the last
    position's logits), then per ``chunk_size`` tokens one [chunk, V] logit product for the top-k and
    [chunk, k+1, H] elementwise step sizes of the support rows.

    Args:
        top_k: support of the curvature model, paper default 50 (the rollout's top-k: transformers'
            GenerationConfig default, which the paper's trainer keeps), usually 20 to 100; >= V models the whole
            vocabulary exactly.
        reference_advantage: |A| at which the token's own gradient enters Adam's second moment (default 1, the
            scale of a normalised advantage); None: the stored second moment only (see ``step_scale``).
        chunk_size: tokens per chunk (bounds the [chunk, V] and [chunk, k+1, H] memory), default 256.
        forward_rows: completions per forward pass (bounds the activation memory), default 32.
    """
    for name, value in (("top_k", top_k), ("chunk_size", chunk_size), ("forward_rows", forward_rows)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"capo_curvature: {name} must be an int >= 1, got {value!r}")
    t0 = time.perf_counter()
    head = ctx.model.get_output_embeddings()
    if head is None or not isinstance(getattr(head, "weight", None), Tensor):
        raise ValueError("capo_curvature: the model has no output embedding (LM head) weight to model")
    weight = head.weight  # [V, H]
    adam = _adam_state(ctx.optimizer, weight)
    gen = sampled.gen
    N, T = gen.completion_ids.shape
    lin = torch.zeros(N, T, dtype=torch.float32, device=gen.completion_ids.device)  # [N, T]
    quad = torch.zeros_like(lin)  # [N, T]
    with torch.no_grad():
        w = weight.detach()  # [V, H]
        for start in range(0, N, forward_rows):
            rows = slice(start, start + forward_rows)
            mask = gen.completion_mask[rows]  # [n, T]
            hidden = _last_hidden(
                ctx.model, gen.prompt_ids[rows], gen.prompt_mask[rows], gen.completion_ids[rows], mask, w, start == 0
            )  # [n, T, H]
            h = hidden[mask]  # [m, H] the valid completion tokens, row by row
            tokens = gen.completion_ids[rows][mask]  # [m]
            parts = [
                lm_head_coefficients(
                    h[c : c + chunk_size],
                    w,
                    tokens[c : c + chunk_size],
                    **adam,
                    reference_advantage=reference_advantage,
                    temperature=ctx.temperature,
                    top_k=top_k,
                )
                for c in range(0, h.shape[0], chunk_size)
            ]
            if parts:
                lin[rows][mask] = torch.cat([p[0] for p in parts]).to(lin)  # [m]
                quad[rows][mask] = torch.cat([p[1] for p in parts]).to(quad)  # [m]
    count = gen.completion_mask.sum().clamp(min=1)
    metrics = {
        "rollout/capo_adam_step": float(adam["step"]),
        "rollout/capo_lin_mean": (lin.sum() / count).item(),
        "rollout/capo_quad_mean": (quad.sum() / count).item(),
        "rollout/capo_time": time.perf_counter() - t0,
    }
    return replace(sampled, extras={**sampled.extras, "capo_lin": lin, "capo_quad": quad}), metrics


def _adam_state(optimizer: Any, weight: Tensor) -> dict[str, Any]:
    """Keyword arguments of ``lm_head_coefficients`` describing the optimizer's next step on ``weight``."""
    if optimizer is None or not getattr(optimizer, "param_groups", None):
        raise ValueError("capo_curvature: the rollout context has no optimizer to read the learning rate from")
    group = next((g for g in optimizer.param_groups if any(p is weight for p in g["params"])), None)
    source = group or optimizer.param_groups[0]
    out: dict[str, Any] = {"lr": float(source["lr"]), "exp_avg_sq": None, "step": 0}
    if "betas" in source:
        out["betas"] = (float(source["betas"][0]), float(source["betas"][1]))
    if "eps" in source:
        out["eps"] = float(source["eps"])
    state = optimizer.state.get(weight, {}) if group is not None else {}
    second = state.get("max_exp_avg_sq") if group is not None and group.get("amsgrad") else state.get("exp_avg_sq")
    if second is not None and "step" in state and int(state["step"]) >= 1:
        out.update(exp_avg_sq=second.detach(), step=int(state["step"]))
    return out


def _last_hidden(
    model: Any,
    prompt_ids: Tensor,
    prompt_mask: Tensor,
    completion_ids: Tensor,
    completion_mask: Tensor,
    weight: Tensor,
    check: bool,
) -> Tensor:
    """Final hidden states [n, T, H] before each completion token (positions as ``trainer.logprob._full_forward``)."""
    input_ids = torch.cat([prompt_ids, completion_ids], dim=1)  # [n, Lp + T]
    attention = torch.cat([prompt_mask, completion_mask], dim=1).long()  # [n, Lp + T]
    positions = (attention.cumsum(dim=1) - 1).clamp(min=0)  # [n, Lp + T] left padding does not shift positions
    out = model(
        input_ids=input_ids,
        attention_mask=attention,
        position_ids=positions,
        output_hidden_states=True,
        use_cache=False,
        logits_to_keep=1,  # the head's input is all CAPO needs; one position of logits for the check below
    )
    states = out.hidden_states[-1]  # [n, Lp + T, H] the LM head's input (after the final norm)
    if check:
        ref = states[:, -1].float() @ weight.float().T  # [n, V]
        got = out.logits[:, -1].float()  # [n, V]
        if not torch.allclose(ref, got, rtol=2e-2, atol=2e-2 * float(got.abs().max()) + 1e-4):
            raise ValueError(
                "capo_curvature models the LM head as logits = W h (W = get_output_embeddings().weight, h the last "
                "hidden state); this model's logits differ (a logit scale, soft-capping or bias?), so CAPO's "
                "curvature model does not apply to it"
            )
    T = completion_ids.shape[1]
    return states[:, -T - 1 : -1]  # [n, T, H] the state before each completion token
