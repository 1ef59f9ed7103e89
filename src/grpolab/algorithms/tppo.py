"""T-PPO: PPO on windows of l tokens per step with Extended GAE for unfinished responses."""

from grpolab.algorithms.preset import Part, Preset

PRESET = Preset(
    name="tppo",
    paper="Truncated Proximal Policy Optimization",
    arxiv="2506.15050",
    rollout=(Part("windows", {"window": 0.25, "successive": True}),),  # l = 1/4 of max_new_tokens (not recovered)
    shaping=(Part("kl_reward", {"coef": 0.05, "estimator": "k1", "level": "token"}),),  # as the ppo preset
    advantage=Part("egae", {"gamma": 1.0, "lam": 0.95}),  # EGAE; γ, λ not recovered: LM-PPO defaults
    selectors=(Part("mask_prefix"),),  # train only the tokens sampled this step (the window)
    loss=Part("ppo_clip", {"epsilon": 0.2}),
    aggregation="token_mean",
    value_loss={"clip_eps": 0.2, "finished_only": True},  # T-PPO: the critic learns from completed responses only
    trainer={"vf_coef": 0.5, "num_iterations": 4},  # as the ppo preset
    notes="Verified (paper abstract, arXiv 2506.15050): EGAE for incomplete responses, independent policy and value "
    "optimisation, prompt and truncated tokens filtered, Qwen2.5-32B base on AIME24, up to 2.5x efficiency. "
    "From secondary summaries (project spec §16; no official code): windows of l tokens per step with successive "
    "batching (finished responses replaced by new prompts), V(s_l) := V(s_{l-1}) for unfinished responses, "
    "standard GAE for finished ones, critic trained on completed sequences only. Chosen (not recovered): window "
    "l = 0.25 x max_new_tokens, γ = 1, λ = 0.95, ε = 0.2, and everything not specific to T-PPO (k1 KL in the "
    "reward 0.05, 4 epochs, vf_coef 0.5) from this library's ppo preset. An unfinished response's task score "
    "is not used as a reward (egae truncated_reward=False); a response that reaches max_new_tokens is complete "
    "(terminal, task reward, critic target), as in PPO. Limitations of this trainer: the new completions are "
    "generated at full length and cut to l tokens (no generation time is saved). The critic trains on every token "
    "of a response completed this step (the trainer's value mask is the loss mask before mask_prefix), against "
    "standard GAE λ-returns computed with the current critic; tokens of unfinished rows count 0 in the value loss "
    "but stay in its token normaliser (value_loss finished_only). The EGAE advantages are whitened over this step's "
    "window tokens (as the gae entry; the paper's normalisation was not recovered). Measured on tiny-arith "
    "(max_new_tokens 8, so l = 2): answers of 3 tokens span two windows, and the bootstrap V(s_l) := V(s_{l-1}) "
    "gives the last token of every unfinished window a zero advantage, so the second digit of an answer never gets "
    "a policy gradient: held-out accuracy falls (benchmarks/methods.py); with --rollout '[{name: windows, params: "
    "{window: 0.5}}]' answers end inside one window and T-PPO tracks PPO (window 1.0 reproduces the ppo preset "
    "exactly). On CPU with 8-token answers the update dominates the step, so the windows cost time instead of "
    "saving it: T-PPO's gain is generation time on long responses.",
)
