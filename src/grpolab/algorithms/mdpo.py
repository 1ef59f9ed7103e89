"""MDPO (on-policy): m SGD steps on ρ·A − (1/t_k)·KL(π_θ ‖ π_k) per batch, t_k annealed, no clipping."""

from grpolab.algorithms.preset import Part, Preset

PRESET = Preset(
    name="mdpo",
    paper="Mirror Descent Policy Optimization",
    arxiv="2005.09814",
    advantage=Part("gae", {"gamma": 1.0, "lam": 0.95}),  # GAE λ 0.95 (paper code); γ 1 for LM episodes
    loss=Part("mdpo", {"t_min": 0.01}),  # KL(π_θ ‖ π_k), weight 1/t_k with t_k = 1 − k/K (annealed, floor 0.01)
    aggregation="token_mean",  # the code's reduce_mean over sampled steps
    value_loss={"clip_eps": 0.2},  # the code's clipped value loss, cliprange_vf 0.2
    trainer={"num_iterations": 10, "vf_coef": 0.5},  # m = 10 SGD steps per batch (sgd_steps=10)
    notes="Verified in the paper and its code (manantomar/Mirror-Descent-Policy-Optimization, mdpo_on/mdpo.py): the "
    "proximal term is KL(π_θ ‖ π_k) = policy_pi.kl(old_policy) (third-party ports that use KL(π_k ‖ π_θ) with a "
    "fixed 0.1 differ), the objective mean(ρ·A) − KL / t_k has no clipping, t_k = 1 − (k − 1)/K per iteration, "
    "m = sgd_steps = 10 full-batch steps, advantages GAE (λ 0.95) standardised over the batch. The KL over the "
    "vocabulary is estimated per sampled token by ρ·log ρ − (ρ − 1) (unbiased under π_k's samples, zero with zero "
    "gradient at θ = θ_k). γ = 1 (the paper's 0.99 is a MuJoCo discount). The paper trains the critic with its own "
    "Adam (3e-4, 5 iterations per batch); here it shares the optimizer with weight vf_coef 0.5 (the ppo preset's "
    "value). Paper scale (MuJoCo): 2048 steps per batch, Adam lr 3e-4 (ε 1e-5). An LLM variant with a leave-one-out "
    "advantage and no critic (Apple's MDLOO, arXiv 2407.21075) is advantage 'rloo' with this loss; a fixed KL weight "
    "is kl_coef. The m = 10 passes per batch multiply the update budget: the tiny default lr 2e-4 (tuned for one "
    "pass) over-optimises on tiny-arith (held-out 0.41 -> 0.38 at 100 steps, benchmarks/methods.py), while "
    "--learning-rate 5e-5 reaches 0.74 (seed 0); PPO with 10 passes at 2e-4 collapses to 0.18, so MDPO's KL step "
    "is the gentler of the two.",
)
