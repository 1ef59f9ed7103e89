"""GRPO-S (DR-IRL): rewards scaled by task difficulty, with a mean-only advantage so the scale survives."""

from grpolab.algorithms.preset import Part, Preset

PRESET = Preset(
    name="grpo_s",
    paper="Inverse Reinforcement Learning with Dynamic Reward Scaling for LLM Alignment",
    arxiv="2503.18991",
    shaping=(
        Part(
            "difficulty_scale",
            {
                "hardness_weight": 1.0,  # a: not reported, assumed (unverified)
                "gap_weight": 1.0,  # b: not reported, assumed (unverified)
                "hardness_key": "hardness",  # extras["hardness"] float [B] when the dataset has the column
                "min_scale": 0.5,  # clip of the normalised factor: assumed
                "max_scale": 2.0,
            },
        ),
    ),
    # mean-only (Dr. GRPO) advantage: a per-prompt factor cancels in GRPO's (r − μ)/σ, so it must not be divided out
    advantage=Part("dr_grpo"),
    loss=Part("ppo_clip", {"epsilon": 0.2}),  # GRPO's clipped surrogate, ε = 0.2
    aggregation="seq_mean_token_mean",  # GRPO's 1/G Σ_i 1/|o_i| Σ_t
    regularizers=(Part("kl", {"coef": 0.04, "estimator": "k3"}),),  # GRPO's k3 KL, β = 0.04 (not reported)
    trainer={"num_iterations": 1},
    notes="The scaling formula is not in the available text (abstract, ICLR 2026 page). Implemented: r' = s(x)·r "
    "with s = 1 + a·h + b·g normalised to mean 1 over the batch's prompts and clipped to [0.5, 2]; h = data-level "
    "hardness from rollout.extras['hardness'] (the paper: 1 − CLIP/text-encoder cosine similarity; 0 when the "
    "trainer provides no such column); g = model-level responsiveness read as the reward gap to a demonstration "
    "scoring 1, i.e. 1 − the group's mean reward (objective='accuracy' uses that reward column). Because s is "
    "constant within a group it cancels under GRPO's std normalisation, so the preset uses Dr. GRPO's mean-only "
    "advantage (the advantage then scales by s); the rest is GRPO (clip 0.2, per-sequence token mean, k3 KL 0.04), "
    "the base the paper modifies. The paper trains category-specific IRL reward models for safety; here the task's "
    "reward functions play that role.",
)
