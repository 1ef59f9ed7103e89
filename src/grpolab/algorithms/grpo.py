"""GRPO: group-relative advantages, PPO clipping, k3 KL in the loss (DeepSeekMath, Eq. 3)."""

from grpolab.algorithms.preset import Part, Preset

#: GRPO's objective (advantage, loss, aggregation, KL), shared by the presets that keep it unchanged and differ only
#: in which prompts they train on or how the data is made (vade, hard_mining, dual_reward, ton).
OBJECTIVE = {
    "advantage": Part("grpo", {"scale": "group"}),
    "loss": Part("ppo_clip", {"epsilon": 0.2}),
    "aggregation": "seq_mean_token_mean",  # Eq. 3: 1/G Σ_i 1/|o_i| Σ_t
    "regularizers": (Part("kl", {"coef": 0.04, "estimator": "k3"}),),
}

PRESET = Preset(
    name="grpo",
    paper="DeepSeekMath: Pushing the Limits of Mathematical Reasoning in Open Language Models",
    arxiv="2402.03300",
    **OBJECTIVE,
    trainer={"num_iterations": 1},
    notes="Paper: lr 1e-6, β 0.04, 64 samples per question, one update per exploration stage; ε = 0.2 is PPO's "
    "standard value (not restated in the paper). Std uses ddof 1 and ε = 1e-6 outside the root.",
)
