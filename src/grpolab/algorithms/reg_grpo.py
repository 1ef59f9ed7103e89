"""Reg-GRPO (DeepVideo-R1): regress the group-normalised sequence log-ratio onto the GRPO advantage."""

from grpolab.algorithms.preset import Part, Preset

PRESET = Preset(
    name="reg_grpo",
    paper="DeepVideo-R1: Video Reinforcement Fine-Tuning via Difficulty-aware Regressive GRPO",
    arxiv="2506.07464",
    advantage=Part("grpo", {"scale": "group"}),  # the regression target Â = (r − mean_G r) / std_G r
    loss=Part("reg_grpo", {"eps": 1e-6, "ddof": 1}),  # MSE between Â and (ρ − mean ρ)/(std ρ + ε); no min, no clip
    aggregation="seq_mean_token_mean",  # GRPO's 1/|o| Σ_t for the KL term
    regularizers=(Part("kl", {"coef": 0.1, "estimator": "k3"}),),  # β = 0.1 (SEED-Bench-R1 setting)
    trainer={"num_generations": 8, "minibatch_groups": True},  # G = 8; the group std of ρ needs whole groups
    notes="Paper scale: Qwen2.5-VL-3B/7B, 16 frames at 252², vision encoder frozen. The difficulty-aware data "
    "augmentation (a replay-buffer difficulty ΔR; hints from a ground-truth-guided trace for hard prompts, "
    "frame-level Gaussian noise for easy ones) is video-specific and not built here: only Reg-GRPO is. 'Regression' "
    "is read as mean squared error (the equation images were not decoded). ρ is the summed sequence log-ratio. "
    "At θ = θ_old every ρ is 0 and std ρ = 0: ε (1e-6, outside the root as in GRPO) keeps the loss finite; with one "
    "update per rollout and one mini-batch (the trainer defaults) every step is that case and the gradient is GRPO's "
    "sequence-level policy gradient scaled by 2/(ε·N), which gradient clipping and Adam normalise (with "
    "--minibatches > 1 or --num-iterations > 1 the later updates see ρ ≠ 0). The normalisation needs whole groups: "
    "mini- and micro-batches hold whole prompt groups (minibatch_groups), so --minibatches and --grad-accum are free.",
)
