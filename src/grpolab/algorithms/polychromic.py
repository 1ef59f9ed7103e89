"""Polychromic PPO: set-level (reward × diversity) advantages from vine sampling, PPO with GAE elsewhere."""

from grpolab.algorithms.preset import Part, Preset

PRESET = Preset(
    name="polychromic",
    paper="Polychromic Objectives for Reinforcement Learning",
    arxiv="2509.25424",
    rollout=(
        Part(
            "polychromic_vines",
            {
                "num_states": 1,  # p rollout states per prompt: not recovered from the paper (our choice)
                "num_continuations": 8,  # N = 8: recalled, unverified
                "num_sets": 8,  # M: not recovered (our choice; each continuation lies in about M·n/N = 4 sets)
                "set_size": 4,  # n = 4: recalled, unverified
            },
        ),
    ),
    advantage=Part("polychromic", {"base": "gae", "gamma": 1.0, "lam": 0.95, "whiten": True}),
    selectors=(Part("mask_prefix"),),  # vine continuations: the prefix up to the rollout state was given
    loss=Part("ppo_clip", {"epsilon": 0.2}),  # PPO's clip, unchanged by the paper
    aggregation="token_mean",
    value_loss={"clip_eps": 0.2},  # the paper keeps PPO's value loss
    trainer={"vf_coef": 0.5, "num_iterations": 4},  # PPO defaults (as the ppo preset), not verified for the paper
    notes="Sources: arXiv 2509.25424 (abstract and openings of the paper, author visualisation page "
    "jubayer-hamid.github.io/set_rl_visualizations, the spec's paper notes); no official code was found. Verified: "
    "f_poly = mean reward × set diversity, vine sampling (p states, N continuations, M subsets of size n), set "
    "advantage f_poly − mean over the sets at the state, a trajectory's marginal advantage = mean over the sets "
    "containing it, PPO with GAE and a value loss elsewhere. Unverified/recalled: n = 4, N = 8; p and M are our "
    "choices. Interpretation choices: diversity = distinct stripped completion texts / n (for arith the text is the "
    "answer); states are drawn uniformly per prompt (a random trajectory of the prompt and a uniform cut in 0..len−1, "
    "0 = the prompt); a continuation keeps the run's generation limit, its given prefix included (a vine state is a "
    "state of the same episode); the marginal advantage is put on every sampled token of the continuation (prefix "
    "masked by mask_prefix); ordinary trajectories keep GAE from the value head (the paper's PPO); all advantages "
    "are whitened together over the trained tokens (PPO's advantage normalisation). Without a critic use advantage "
    "base='grpo' and drop value_loss. γ = 1, λ = 0.95, ε = 0.2, 4 epochs and vf_coef 0.5 follow the library's ppo "
    "preset; no KL penalty (the paper does not describe one).",
)
