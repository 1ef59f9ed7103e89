"""BNPO: rewards centred by the group mean and normalised by an adaptive Beta density."""

from grpolab.algorithms.preset import Part, Preset

PRESET = Preset(
    name="bnpo",
    paper="BNPO: Beta Normalization Policy Optimization",
    arxiv="2506.02864",
    advantage=Part(
        "bnpo",
        {
            "min_value": 0.0,  # binary-reward range mapped onto [0, 1] (the code's defaults)
            "max_value": 1.0,
            "decompose": False,  # advantage decomposition off by default (recipe/bnpo/run.sh)
        },
    ),
    # recipe/bnpo/run.sh: clip_ratio_low 0.2, clip_ratio_high 0.28, clip_ratio_c 10 (dual clip)
    loss=Part("clip_higher", {"epsilon_low": 0.2, "epsilon_high": 0.28, "dual_clip": 10.0}),
    aggregation="seq_mean_token_sum",  # loss_agg_mode="seq-mean-token-sum" (run.sh)
    trainer={"temperature": 1.0},  # rollout temperature 1.0 (run.sh)
    notes="Recipe (changyi7231/BNPO recipe/bnpo/run.sh): Qwen2.5-Math-7B, lr 1e-6, G = 16, 32 prompts per step, "
    "mini-batch 32, max response 3072, no KL, no entropy term; G is left to the trainer. The Beta fit uses the "
    "unbiased variance of the per-prompt mean rewards p over the batch; a single prompt gives Beta(1, 1), and so "
    "(a departure: the code returns NaN there) does a batch whose prompts all have the same p. A group of one "
    "completion gets p = 0 as in the code (its advantage is r'/pdf(0), clamped to 1e6·r'). For multi-part rewards "
    "set decompose=True (one BNPO advantage per column of the task's reward functions, averaged).",
)
