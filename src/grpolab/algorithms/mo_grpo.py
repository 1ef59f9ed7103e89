"""Multi-objective GRPO (HydroX): GRPO on a weighted sum of K objectives, e.g. the heads of a multi-label reward
regression model (shaping ``multi_objective``, math in ``core/reward_combination.py``)."""

from grpolab.algorithms.grpo import OBJECTIVE
from grpolab.algorithms.preset import Part, Preset

PRESET = Preset(
    name="mo_grpo",
    paper="Optimizing Safe and Aligned Language Generation: A Multi-Objective GRPO Approach",
    arxiv="2503.21819",
    # R(x, y) = Σ_k w_k R_k(x, y) is the GRPO reward (HydroX §3); the paper reports no special weighting: equal
    # weights 1/K (weights=None), configurable
    shaping=(Part("multi_objective", {"mode": "weighted_sum", "weights": None}),),
    # then standard GRPO: group-normalised advantage, PPO clip, k3 KL to π_ref (DeepSeekMath, Eq. 3), unchanged
    **OBJECTIVE,
    trainer={"num_iterations": 1},
    notes="Sources: the HydroX paper's abstract and method summary (spec part B §7; the aggregation weights were not "
    "found, so w_k = 1/K, the spec's default). The paper trains ONE reward model with K = 4 regression heads "
    "(politeness, meaningfulness, actionability, safety; MSE on per-aspect labels) and uses R = Σ_k w_k R_k as GRPO's "
    "reward, with GRPO's group normalisation and a KL to π_ref; LoRA at 0.5B, 7B and 14B (learning rate and batch not "
    "read). GRPO's parts and defaults as in the grpo preset (β = 0.04, ε = 0.2). The objectives are the reward "
    "columns named rm_... (every reward-model head), else every reward column (so on a one-reward task this is GRPO "
    "exactly); other columns are only logged (others_weight 0). Each objective is logged as reward/<name> and "
    "multi_objective/<name>, with its within-group std (a scale mismatch shows there). "
    "With a multi-head reward model: python scripts/train_reward_models.py --out rms --multi-head, then "
    'grpolab train --algo mo_grpo --task arith --task-args "{reward: [exact, {reward_model_heads: {path: '
    "rms/rm_multi}}]}\". MO-GRPO's fix for one objective dominating by its scale (arXiv 2509.22047: each objective "
    'normalised by its group std before the sum): --shaping "[{name: multi_objective, params: {mode: '
    'normalize_then_sum}}]"; weights: params {weights: [0.7, 0.3]} (one per selected column, in order).',
)
