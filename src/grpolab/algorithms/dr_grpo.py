"""Dr. GRPO: GRPO without the two biases (no std division, constant length normaliser)."""

from grpolab.algorithms.preset import Part, Preset

PRESET = Preset(
    name="dr_grpo",
    paper="Understanding R1-Zero-Like Training: A Critical Perspective",
    arxiv="2503.20783",
    advantage=Part("dr_grpo"),  # modification 1: no division by the group std (question-difficulty bias)
    loss=Part("ppo_clip", {"epsilon": 0.2}),
    aggregation="seq_sum_const",  # modification 2: divide by the generation limit, not |o_i| (length bias)
    trainer={"temperature": 1.0, "top_p": 1.0, "num_iterations": 1},
    notes="Recipe (sail-sg/understand-r1-zero): β = 0, G = 8, lr 1e-6 constant, temperature 1, one PPO epoch. "
    "The constant is the run's generation limit (max_new_tokens).",
)
