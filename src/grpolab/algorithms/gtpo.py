"""GTPO: GRPO advantages re-weighted on conflict tokens, entropy filter and shaping, no KL (arXiv 2508.03772)."""

from grpolab.algorithms.preset import Part, Preset

PRESET = Preset(
    name="gtpo",
    paper="GTPO: Trajectory-Based Policy Optimization in Large Language Models",
    arxiv="2508.03772",
    rollout=(Part("token_ids"),),  # the conflict test compares token ids: store them in extras["token_ids"]
    # the paper's A_i: GRPO's group-normalised advantage. The official code divides by no std (r - mean_g r, its
    # std division is commented out in _prepare_inputs): {"scale": "none"} reproduces the code.
    advantage=Part("grpo", {"scale": "group"}),
    selectors=(
        Part(
            "gtpo",
            {
                "conflict_weight": 2.0,  # W: conflict tokens of positive completions amplified (code W_RAW = 2.0)
                "entropy_threshold": 0.7,  # mean entropy > 0.7 -> A = 0 (code ENT_THRESHOLD; paper v5: ln 2)
                "entropy_coef": 0.1,  # A <- A - 0.1 * mean entropy (code ENT_SCALE)
                "normalize_by_conflicts": False,  # code-only division of a completion's loss by its conflict count
            },
        ),
    ),
    loss=Part("ppo_clip", {"epsilon": 0.2}),  # ratio 1 on-policy (code: exp(logp - logp.detach())): clip inactive
    aggregation="seq_mean_token_mean",  # code: per completion -1/L Σ_t δ_t A ρ_t, then mean over completions
    trainer={"num_generations": 8, "num_iterations": 1},  # config.yaml: num_generations 8, one update per batch
    notes="Sources: paper abstract (arXiv 2508.03772, v5 retitled 'GTPO: Stabilizing Group Relative Policy "
    "Optimization via Gradient and Entropy Control') and the official code winstonsmith1897/GTPO "
    "(gtpo/gtpo_training.py, config.yaml); the spec part A §7. No KL and no reference model (beta 0). "
    "Advantage: GRPO's (r - mean_g)/(std_g + eps) as the paper's A_i; the official code uses r - mean_g only (the "
    "std division is commented out in _prepare_inputs), so with its 1.5/10/20 rewards the 0.1*H penalty is small "
    "next to A; advantage {'scale': 'none'} reproduces the code. "
    "Conflict tokens: same (position, token id) in >= 1 A>0 and >= 1 A<0 completion of the group, only the "
    "contiguous run from the start and, right-aligned, from the end; weights 0 (negative) / W=2 (positive) / 1, "
    "the two directions multiplied (so 4 in both runs of a positive completion), as the code does. The sign of a "
    "completion is taken before the entropy shaping (as the code). Entropy: mean token entropy of the completion "
    "under the rollout policy at the sampling temperature (extras['old_entropy']); the code uses the current "
    "policy at temperature 1, the same for the first on-policy update at temperature 1. Threshold: the code's "
    "fixed 0.7 (config.yaml; H = 0.7 is kept, H > 0.7 filtered). The paper v5 objective (repo README) writes "
    "delta_i = 0 iff <H>_ini < ln 2 and <H>_i > ln 2, with <H>_ini the initial policy's entropy (no filtering at "
    "all when <H>_ini > ln 2); that gate is not in the code and not implemented here (the colab notebook disables "
    "the filter, ent_threshold 777, for Qwen). Objective: 1/G sum_i 1/|o_i| sum_t delta_it (A_i - 0.1 H_i) rho_it "
    "(paper); the code sums its per-completion losses instead of averaging them (a constant factor G, which "
    "Adam absorbs). The code's division of "
    "each completion's loss by its conflict-token count is not in the paper's objective (spec: 'check before "
    "copying'): off by default, option normalize_by_conflicts. Paper scale: lr 1e-6, cosine schedule, warm-up "
    "ratio 0.005, weight decay 0.1, Adam betas 0.999999 / 0.999999, grad clip 0.1, LoRA r 128, batch 1 prompt x "
    "G=8, LLaMA-3.1-8B / Qwen2.5-3B. With a random model (mean entropy ~ln V) every completion is above 0.7 and "
    "is filtered, so nothing is learnt until the policy is confident; the threshold is in nats.",
)
