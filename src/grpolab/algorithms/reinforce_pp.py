"""REINFORCE++: k1 KL in the token rewards, returns normalised over the whole batch, PPO clipping."""

from grpolab.algorithms.preset import Part, Preset

PRESET = Preset(
    name="reinforce_pp",
    paper="REINFORCE++: Stabilizing Critic-Free Policy Optimization with Global Normalization",
    arxiv="2501.03262",
    shaping=(Part("kl_reward", {"coef": 0.01, "estimator": "k1", "level": "token"}),),  # r_t = 1[EOS]·r − β·KL(t)
    advantage=Part("reinforce_pp", {"gamma": 1.0, "baseline": "none"}),  # global batch normalisation
    loss=Part("ppo_clip", {"epsilon": 0.2}),
    aggregation="token_mean",
    notes="Paper: one sample per prompt (k = 1) in the general setting. "
    "KL(t) = log π_old/π_ref (k1) subtracted in the reward. β = 0.01 is a common setting of the paper's "
    "OpenRLHF recipes (usually 0.001 to 0.01). For groups of k > 1 use advantage "
    "reinforce_pp(baseline='group') (REINFORCE++-baseline).",
)
