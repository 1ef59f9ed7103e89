"""CAPO: GRPO whose tokens with a too-large predicted objective or policy shift leave the loss."""

from grpolab.algorithms.preset import Part, Preset

PRESET = Preset(
    name="capo",
    paper="Stabilizing Policy Gradients for Sample-Efficient Reinforcement Learning in LLM Reasoning",
    arxiv="2510.00819",
    # per-token curvature coefficients of the LM-head update (top-k 50: the rollout top-k of the paper's runs)
    rollout=(Part("capo_curvature", {"top_k": 50}),),
    # GRPOEntropyTrainer._compute_advantages: (r − mean) / (std·advantage_target_std + 1e-4), torch std (ddof 1),
    # advantage_target_std defaults to 1.0 (configs.py) and the recipe leaves it; the recipe's
    # normalize_advantages: false is read only by its actor-critic trainers (the std-free variant is Dr.CAPO)
    advantage=Part("grpo", {"scale": "group", "ddof": 1, "eps": 1e-4}),
    # CAPO-only recipe: fisher_token_mask_tau 1e-4, hessian_token_mask_tau 0.01, hessian_symmetric_clipping true
    selectors=(Part("capo", {"tau_f": 1e-4, "tau_h": 0.01, "symmetric": True}),),
    loss=Part("ppo_clip", {"epsilon": 0.2}),  # TRL GRPO loss with its default ε (the recipe does not set it)
    aggregation="seq_mean_token_mean",  # the paper code's _compute_final_loss: token mean, then sequence mean
    # recipe: G = 8, one update per batch. Its sampler runs at 0.9 (the pinned TRL GRPOConfig default) with top-k 50
    # (transformers' GenerationConfig default), but its log-probs and curvature model are untempered; grpolab
    # tempers both with one temperature, so T stays 1, the code's training policy (--temperature 0.9 --top-k 50
    # gives its sampler instead)
    trainer={"num_generations": 8, "num_iterations": 1},
    notes="Best config (recipes/Qwen2.5-Math-7B/grpo/config_grpo_efficient_grpo_adam_fisher_mask_token_1e-4_"
    "hessian_mask_token_0.01_capo_only.yaml): "
    "Qwen2.5-Math-7B, lr 1.5e-5 cosine with 10% warm-up ('aggressive'), G = 8, max completion 1024, β = 0 (no "
    "KL), sampling at temperature 0.9 with top-k 50 (its log-probs untempered: grpolab keeps T = 1), "
    "group-std-normalised advantages (ε = 1e-4: the code's default advantage_target_std 1.0; the recipe's "
    "normalize_advantages flag is not read by its GRPOEntropyTrainer), Adam-modelled step, token-level mask only "
    "(< 8% of tokens rejected). Interpretation choices: (1) Δψ is Adam's step for the token's own gradient built "
    "from the trainer's real AdamW state of the LM head (exp_avg_sq, step, betas, eps, the group's lr), with that "
    "gradient in the prospective second moment at |A| = 1 and the old first moment left out, then scaled linearly "
    "in A so the strategy can store A-independent coefficients before the advantages exist (the code's step for a "
    "zero old first moment at |A| = 1; for other |A| the two agree wherever the stored second moment dominates "
    "the token's (1 − β2)·A²·g², and differ at Adam's first step and on rarely-updated rows, where the code's "
    "step saturates instead of growing with |A|; before any step it is Adam's first step). The paper's code keeps "
    "its own sparse Adam model of the head rows (updated with the per-row mean linear-model gradient), also forms "
    "v_{t+1} with the token's gradient but adds β1·m_t to the step (so from its second step on its shifts also "
    "hold the momentum's share, and a token with A = 0 has m_F > 0), and uses SGD before its first update. The "
    "stored-moment-only step P = lr/(sqrt(v̂)+eps) (reference_advantage=None) is unbounded where v̂ is small: on "
    "the tiny test model it masked every token from the second step on. (2) Shifts follow the paper's code: m_H = "
    "gᵀΔψ + ½ΔψᵀHΔψ with the per-sample policy Hessian H = A(∇logπ∇logπᵀ + ∇²logπ) (of A·π/π_old), m_F = ½ΔψᵀFΔψ "
    "with the sampled-token Fisher ∇logπ_a∇logπ_aᵀ; hessian='logp' (H of A·log π) and fisher='exact' (softmax "
    "Fisher) are the alternatives. (3) The head is modelled on the top-k tokens plus the sampled one, "
    "probabilities renormalised over them (code _compute_entropy, k = generation_config.top_k, transformers' "
    "default 50; the code samples from that top-k, so its sampled token is always inside, while grpolab samples "
    "with --top-k, off by default, and adds the sampled token) and tempered as the trainer's log-probs (the "
    "paper's code uses untempered logits for both its log-probs and its curvature model while sampling at 0.9). "
    "With tied embeddings the AdamW second moment of the head also holds the input-embedding gradient. (4) The τ "
    "values are the paper's for a 7B model at lr 1.5e-5; the shifts scale with lr and the hidden-state norm, so "
    "re-tune them to the model (watch selector/capo_masked_frac). Measured on tiny-arith (benchmarks/methods.py): "
    "at lr 2e-4 the paper's τ mask 25-45 % of tokens, mostly of positive-advantage completions (m_F grows with A², "
    "and correct answers carry the larger |A| below 50 % accuracy), and held-out accuracy falls; τ scaled by "
    "(2e-4 / 1.5e-5)² mask nothing there, which is GRPO. Masked tokens leave the loss and its token "
    "counts; the objective is otherwise GRPO's. (5) A completion with no kept token leaves the batch (grpolab's "
    "selector contract), while the paper's code keeps it as a zero term of its mean over sequences "
    "(seq_mean_token_mean).",
)
