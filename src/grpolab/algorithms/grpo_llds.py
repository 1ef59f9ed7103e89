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
        # actor.entropy_coeff 0.001: the default of the repo's verl/trainer/config/ppo_trainer.yaml, not
        # overridden by train_grpo_nqhot.sh; dp_actor.py: policy_loss = pg_loss − entropy_coeff·masked_mean(H)
        Part("entropy", {"coef": 0.001}),
    ),
    # G = 5 (rollout.n_agent=5); one PPO epoch (ppo_epochs 1); T = 1 and top_p 0.95 (rollout config defaults, passed
    # to vLLM's SamplingParams); minibatches: the official run makes 10 optimizer steps per batch, 2 here (see notes)
    trainer={"num_generations": 5, "num_iterations": 1, "minibatches": 2, "temperature": 1.0, "top_p": 0.95},
    notes="Official code: vengdeng/LLDS-On-Group-Relative-Policy-Optimization-Collapse-in-Search-R1 "
    "(verl/workers/actor/dp_actor.py, train_grpo_nqhot.sh); v2 of the paper is titled 'On Group Relative Policy "
    "Optimization Collapse in Agent Search: The Lazy Likelihood-Displacement'. The penalty is 0 while π_θ = π_old: "
    "it acts from the second mini-batch of a batch on. The official run splits each batch of 512 prompts x 5 = 2560 "
    "completions into mini-batches of ppo_mini_batch_size = 256 completions (Search-R1's verl multiplies it by "
    "rollout.n = 1, not by n_agent = 5: verl/workers/fsdp_workers.py), i.e. 10 optimizer steps per batch: use "
    "--minibatches 10 at paper scale. The preset sets 2, the smallest split under which the penalty acts, so that it "
    "also runs on small batches (fewer than 10 completions). Retrieved (observation) "
    "tokens are masked out of the loss (state_masking), which makes the A-gate's chunks the model's actions. verl's "
    "low_var_kl clamps k3 to [−10, 10]; the kl regulariser here does not clamp. The official runs also keep verl's "
    "default entropy bonus 0.001 (token mean of the current policy's entropy; the paper does not mention it), "
    "included here as the entropy regulariser. Paper scale: Qwen2.5-3B/7B, G = 5, "
    "lr 1e-6 with warm-up ratio 0.285, 3 turns, top-3 retrieval; the optional smaller weight on answer tokens "
    "(answer_no_reduce_lambda) is off by default and not implemented.",
)
