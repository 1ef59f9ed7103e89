"""LOOP: leave-one-out PPO (RLOO advantage, per-token PPO clipping, several epochs, no critic, no KL)."""

from grpolab.algorithms.preset import Part, Preset

PRESET = Preset(
    name="loop",
    paper="Reinforcement Learning for Long-Horizon Interactive LLM Agents",
    arxiv="2502.01600",
    advantage=Part("rloo"),  # leave-one-out baseline, no std normalisation (adv_normalization: false)
    selectors=(Part("min_abs_advantage", {"threshold": 0.01}),),  # abs_adv_threshold 0.01: drop |A| < 0.01
    # ppo_epsilon 0.1 with the band [1/(1 + ε), 1 + ε] of apple/ml-loop's _ppo_loss: 1 − 1/1.1 = 0.0909 below
    loss=Part("clip_higher", {"epsilon_low": 1 - 1 / 1.1, "epsilon_high": 0.1}),
    aggregation="seq_mean_token_mean",  # per-token loss averaged over the rollout's tokens (1/|x|), then rollouts
    # rollouts_per_scenario 6 (K), epochs_per_iteration 2; sampling temperature 1.0 (conf/llm/*_train.yaml)
    trainer={"num_generations": 6, "num_iterations": 2, "temperature": 1.0},
    notes="Source for the values: the paper plus its official code apple/ml-loop (phi_agents/rl/train.py, "
    "conf/rl/params/default.yaml). ε = 0.1 (not stated in the spec) with the clip band [1/1.1, 1.1], which is "
    "clip_higher(ε_low = 1 − 1/1.1, ε_high = 0.1); ppo_clip(epsilon=0.1) would give [0.9, 1.1]. Normalisation "
    "1/|x|: the code averages each rollout's per-token PPO loss over its LLM-emitted tokens and divides the sum over "
    "rollouts by the mini-batch size, i.e. seq_mean_token_mean (it divides by the configured mini-batch size even "
    "when filtering left fewer rollouts; this trainer divides by the kept count). Rollouts with |A| < 0.01 are "
    "dropped by the min_abs_advantage selector. Paper scale: Qwen2.5-32B-Instruct with LoRA r 16 / α 32, K = 6 "
    "rollouts per task (set here), 40 tasks per iteration, mini-batch 32 rollouts, i.e. ceil(kept / 32) optimizer "
    "steps per epoch (up to 8 for 240 rollouts; the count depends on the batch size and on how many rollouts the "
    "filter keeps, so minibatches is left to the run: use --minibatches ≈ kept rollouts / 32), 2 epochs, AdamW lr "
    "5e-5 constant, weight decay 0.01, max_grad_norm 0.1 in the code's default (the spec says 1), no KL, no value "
    "network.",
)
