"""GRPO + LLDS: likelihood-preserving regulariser against Lazy Likelihood Displacement (Search-R1 GRPO)."""

from grpolab.algorithms.preset import Part, Preset

PRESET = Preset(
    name="grpo_llds",
    paper="On GRPO Collapse in Search-R1: The Lazy Likelihood-Displacement Death Spiral",
    arxiv="2512.04220",
    advantage=Part("grpo", {"scale": "group"}),  # Search-R1 GRPO: group-normalised outcome advantage
    loss=Part("ppo_clip", {"epsilon": 0.2}),  # Search-R1 / verl clip_ratio 0.2
    aggregation="token_mean",  # the LLDS code's verl: masked_mean over response tokens for loss, KL and LLDS
    regularizers=(
        Part("kl", {"coef": 0.001, "estimator": "k3"}),  # kl_loss_coef 0.001, low_var_kl (= k3 clamped to ±10)
        Part("llds", {"coef": 0.2, "gate": "action"}),  # NO_REDUCE_LAMBDA 0.2, chunk_noreduce=true (A-gate)
    ),
    # one PPO epoch in 2 mini-batches (512 prompts, mini-batch 256), so the penalty acts on the second; T = 1
    trainer={"num_iterations": 1, "minibatches": 2, "temperature": 1.0},
    notes="Official code: vengdeng/LLDS-On-Group-Relative-Policy-Optimization-Collapse-in-Search-R1 "
    "(verl/workers/actor/dp_actor.py, train_grpo_nqhot.sh); v2 of the paper is titled 'On Group Relative Policy "
    "Optimization Collapse in Agent Search: The Lazy Likelihood-Displacement'. The penalty is 0 while π_θ = π_old: "
    "it acts from the second mini-batch of a batch on (the paper: 512 prompts per batch, mini-batch 256, so "
    "minibatches = 2, set here). Retrieved (observation) "
    "tokens are masked out of the loss (state_masking), which makes the A-gate's chunks the model's actions. verl's "
    "low_var_kl clamps k3 to [−10, 10]; the kl regulariser here does not clamp. Paper scale: Qwen2.5-3B/7B, G = 5, "
    "lr 1e-6 with warm-up ratio 0.285, 3 turns, top-3 retrieval; the optional smaller weight on answer tokens "
    "(answer_no_reduce_lambda) is off by default and not implemented.",
)
