"""PPO for language models: critic with GAE, clipped surrogate and value loss, KL penalty in the reward."""

from grpolab.algorithms.preset import Part, Preset

PRESET = Preset(
    name="ppo",
    paper="Proximal Policy Optimization Algorithms",
    arxiv="1707.06347",
    shaping=(Part("kl_reward", {"coef": 0.05, "estimator": "k1", "level": "token"}),),  # InstructGPT-style KL
    advantage=Part("gae", {"gamma": 1.0, "lam": 0.95}),
    loss=Part("ppo_clip", {"epsilon": 0.2}),
    aggregation="token_mean",
    value_loss={"clip_eps": 0.2},
    trainer={"vf_coef": 0.5, "num_iterations": 4},
    notes="ε = 0.2 from the paper; 4 epochs and vf_coef 0.5 are CleanRL's defaults (the paper: 3 epochs, c1 = 1 on "
    "Atari). γ = 1, λ = 0.95 and the per-token "
    "k1 KL penalty in the reward follow the language-model PPO recipe (InstructGPT, arXiv 2203.02155; "
    "β usually 0.01 to 0.1).",
)
