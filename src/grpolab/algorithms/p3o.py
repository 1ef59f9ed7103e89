"""P3O: a clipped pairwise policy gradient on sequence-level ratios, two responses per prompt, KL-shaped reward."""

from grpolab.algorithms.preset import Part, Preset

PRESET = Preset(
    name="p3o",
    paper="Pairwise Proximal Policy Optimization: Harnessing Relative Feedback for LLM Alignment",
    arxiv="2310.00212",
    # r = r_RM − β·KL(π‖π_SFT) per trajectory (the paper's KL-regularised reward), k1 summed over tokens
    shaping=(Part("kl_reward", {"coef": 0.05, "estimator": "k1", "level": "sequence"}),),
    advantage=Part("dr_grpo"),  # not read by the loss (it reads the shaped rewards): logged only
    loss=Part("p3o", {"epsilon": 0.2, "clip": "joint"}),  # P3O-V2, joint clipping of the pair ratio
    aggregation="seq_mean_token_mean",  # not read by the loss (trajectory-wise)
    trainer={"num_generations": 2, "minibatch_groups": True},  # two responses per prompt, kept together
    notes="Paper: TL;DR and Anthropic HH with 1B / 6B models; no official code found. Found (secondary summaries "
    "of the paper and the BAIR blog post 'Rethinking the Role of PPO in RLHF'): the pairwise policy gradient "
    "E[(r(y1) − r(y2))·∇log(π(y1)/π(y2))/2], the KL-shaped trajectory reward, that V1 clips the two ratios "
    "separately and V2 jointly, that V1 reaches slightly higher reward and V2 a better KL-reward trade-off and more "
    "stable training. Not found: the exact Sec. 4.2 formulas, ε, β and the learning rate. Chosen: V1 = a PPO-clip "
    "term per response with advantage ±(r1 − r2)/2; V2 (default, the more stable one) = one PPO-clip term on the "
    "pair ratio (π_θ(y_w)/π_old(y_w))/(π_θ(y_l)/π_old(y_l)), winner first, advantage |r1 − r2|/2; ratios are whole-"
    "trajectory ratios exp(Σ_t log ρ_t); ε = 0.2 (PPO's); β = 0.05 (TRL's PPO KL coefficient; the paper sweeps β to "
    "trace the KL-reward frontier). Groups of n != 2 use all n(n−1)/2 pairs, averaged per group.",
)
