"""RiskPO: a Mixed Value-at-Risk objective over bundles of prompts, with tracked quantiles."""

from grpolab.algorithms.preset import Part, Preset

PRESET = Preset(
    name="riskpo",
    paper="RiskPO: Risk-based Policy Optimization via Verifiable Reward for LLM Post-Training",
    arxiv="2510.00911",
    advantage=Part(
        "riskpo",
        {
            "bundle_size": 5,  # B = 5 prompts per bundle (every released script)
            "alpha": 0.2,  # quantile_down, MATH script
            "beta": 0.9,  # quantile_up, MATH script (0.8 in the DAPO-Math script)
            "lr_q": 0.1,  # quantile-tracking SGD step, every script
            "mode": "track",  # use_q_track_mode, MATH script (the yaml default is "mix")
            "measure": "mvar",  # use_mixing_risk_measure=True: MVaR = (w·CVaR + RVaR)/(w + 1)
            "w_mix": 1.5,  # every script
            "natural_baseline": True,  # natural_baseline_adv, MATH script (False in DAPO-Math)
            "std_norm": True,  # norm_adv_by_std_in_grpo
            "credit": "std",  # credit_assign_mode, MATH script ("sum-mean" in DAPO-Math, "uniform" in the yaml)
        },
    ),
    # verl's vanilla policy loss, which the scripts keep: clip_ratio 0.2 and, always on for A < 0, the dual clip
    # clip_ratio_c = 3.0 (verl/trainer/config/actor/actor.yaml, core_algos.py::compute_policy_loss)
    loss=Part("ppo_clip", {"epsilon": 0.2, "dual_clip": 3.0}),
    aggregation="token_mean",  # verl's default loss_agg_mode "token-mean"; the scripts do not change it
    trainer={"temperature": 1.0, "top_p": 1.0},  # verl rollout defaults
    notes="Defaults are those of the official MATH script (RTkenny/RiskPO scripts/run_qwen2.5_1.5b_MVaR_math.sh): "
    "alpha 0.2, beta 0.9, bundle 5, lr_q 0.1, mode track, MVaR with w 1.5, natural baseline, std credit. The MATH "
    "script is the paper's easy-math setting (Qwen2.5-1.5B-Instruct on GSM8K + MATH), the closest to a small model "
    "on arithmetic, and a complete configuration the authors ran. The third-party summary's alpha 0.2 / beta 0.8 / "
    "B 5 matches only the DAPO-Math script, which also changes the credit (sum-mean) and drops the natural baseline "
    "(credit='sum-mean', beta=0.8, natural_baseline=False reproduce it). Paper scale: G = 5 (MATH) or 10 "
    "(DAPO-Math), 1024 prompts per step, lr 1e-6, no KL, no entropy bonus; G is left to the trainer (papers per "
    "bundle = min group size). Bundles are B consecutive prompt groups (group ids), the last one partial when P is "
    "not a multiple of B; completions beyond a bundle's smallest group get advantage 0. The tracked quantile grid "
    "(0.05..0.95) lives in the run's part state (checkpointed); it is used from the second step on (the code "
    "writes it after the advantage of each batch, so there it never reaches the advantage: batch quantiles). A "
    "bundle's paper-score std at or below 1e-3 (a constant bundle) is replaced by 1 (the code's per-question rule) "
    "instead of dividing by std + 1e-6; β − α, α and 1 − β are divided exactly (the code adds 1e-6: a relative "
    "difference below 1e-5). The script's PPO mini-batch is 512 of the 1024 prompts (2 optimizer steps per batch, "
    "--minibatches 2), where the dual clip (c = 3) can bind. With the natural baseline, g(S) <= 0 and the CVaR term "
    "<= 0, so every advantage is <= 0 (papers above q_up get 0): the method only pushes down completions of "
    "low-scoring papers, correct ones included under 'std' credit. On tiny-arith at lr 2e-4 this lowers held-out "
    "accuracy (benchmarks/methods.py); the paper trains at lr 1e-6.",
)
