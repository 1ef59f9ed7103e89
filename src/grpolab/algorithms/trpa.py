"""TRPA: rule-based preference levels, a KTO-weighted pairwise preference loss and a trust-region KL to π_old."""

from grpolab.algorithms.preset import Part, Preset

PRESET = Preset(
    name="trpa",
    paper="Trust Region Preference Approximation: A simple and stable reinforcement learning algorithm for LLM "
    "reasoning",
    arxiv="2504.04524",
    # levels 1 correct / 2 wrong / 3 unparseable / 4 format error, from a reward of 1 / 0 / -0.5 / -1
    shaping=(Part("reward_levels", {"thresholds": (0.5, -0.25, -0.75)}),),
    advantage=Part("grpo", {"scale": "group"}),  # not read by the loss: logged only (adv_abs_mean)
    loss=Part(
        "trpa",
        {
            "beta": 0.1,  # trpa_beta (main_TRPA.sh)
            "anisotropy": 2.5,  # trpa_anisotropy: β·2.5 for level-1 winners (KTPO)
            "tr_coef": 0.001,  # tr_kl_loss_coef: trust-region KL(π_θ‖π_old), low_var_kl
            "fallback": "batch",  # −log σ(±h) only when no pair exists at all (the code's rule)
        },
    ),
    aggregation="token_mean",  # the trust-region KL is a masked token mean in the code
    # rollout_n 16, temperature 1; pairs are formed within a group, so mini-batches hold whole groups
    trainer={"num_generations": 16, "temperature": 1.0, "minibatch_groups": True},
    notes="Official scripts: lr 4e-7, 4 prompts per step, mini-batch 256, micro-batch 64, max response 4096, "
    "Qwen2.5-7B-Instruct-1M on Knights-and-Knaves. Its reward is 3 / -0.5 / -1 / -3 for the four levels: pass "
    "thresholds (1.0, -0.75, -2.0) to reward_levels for that scale; the default thresholds map 1 / 0 / -0.5 / -1 "
    "(and binary 1 / 0 to levels 1 / 2). h = token-mean(logp − ref_logp); pairs of all groups are pooled into one "
    "mean, as the code does. The reference KL (kl_loss_coef 0.001) is only logged in the code's TRPA mode, so it "
    "is a metric (ref_kl) here, not a term. The optional sqrt(KL + 0.25) trust-region form is not built. "
    "Mini- and micro-batches hold whole prompt groups (minibatch_groups), so every pair of a group is seen together "
    "(the code's micro-batches may split groups; --minibatch-groups false reproduces that).",
)
