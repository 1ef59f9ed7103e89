"""DisCO: the DRO form (log-mean-exp over the negatives) of the discriminative objective, under a KL trust region."""

from grpolab.algorithms.preset import Part, Preset

PRESET = Preset(
    name="disco_dro",
    paper="DisCO: Reinforcing Large Reasoning Models with Discriminative Constrained Optimization",
    arxiv="2505.12366",
    advantage=Part("grpo", {"scale": "group"}),  # not read by the loss: logged only (adv_abs_mean)
    loss=Part(
        "disco",
        {
            "variant": "dro",  # s̄+ − τ·log mean_{o−} exp(s(o−)/τ): up-weights hard negatives (data imbalance)
            "score": "log_l",  # log-likelihood score, token mean (the paper's recommended scoring function)
            "tau": 10.0,  # τ = 10 for log-L (1 for L-ratio), official scripts
            "delta": 1e-4,  # KL budget δ
            "beta": 1e3,  # squared-hinge penalty weight β
            "threshold": 0.5,  # binary rewards: 1 positive, 0 negative
            "kl_estimator": "k1",  # KL = token mean of old − logp (ppo_kl_type=kl)
        },
    ),
    aggregation="seq_mean_token_mean",  # token mean per sequence, then per question (not read by the loss)
    # G = 8, 1 PPO epoch, T = 0.6; mini-batches of whole prompt groups (the paper: 128 prompts, mini-batch 32)
    trainer={"num_generations": 8, "num_iterations": 1, "temperature": 0.6, "minibatch_groups": True},
    notes="The paper's main objective (DisCO). Paper scale: lr 2e-6, 128 prompts per step in mini-batches of 32 "
    "prompts (use --minibatches 4), max response 8k. The log-mean-exp is computed exactly (the official code uses a "
    "surrogate with the same gradient whose value is off by a constant). For the L-ratio score use "
    "score='l_ratio' with tau=1: the DRO form is then the paper's, not the official code's L-ratio branch (which "
    "passes tau to the DisCO-b function and so never uses the DRO form). KL penalty and micro-batching as in disco.",
)
