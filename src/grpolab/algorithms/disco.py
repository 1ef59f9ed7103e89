"""DisCO-b: a discriminative objective (mean positive minus mean negative score) under a KL trust region."""

from grpolab.algorithms.preset import Part, Preset

PRESET = Preset(
    name="disco",
    paper="DisCO: Reinforcing Large Reasoning Models with Discriminative Constrained Optimization",
    arxiv="2505.12366",
    advantage=Part("grpo", {"scale": "group"}),  # not read by the loss: logged only (adv_abs_mean)
    loss=Part(
        "disco",
        {
            "variant": "b",  # DisCO-b: s̄+ − s̄− (the basic discriminative objective)
            "score": "log_l",  # log-likelihood score, token mean (the paper's recommended scoring function)
            "delta": 1e-4,  # KL budget δ (official scripts)
            "beta": 1e3,  # squared-hinge penalty weight β (official scripts)
            "threshold": 0.5,  # binary rewards: 1 positive, 0 negative
            "kl_estimator": "k1",  # KL = token mean of old − logp (ppo_kl_type=kl in the scripts)
        },
    ),
    aggregation="seq_mean_token_mean",  # token mean per sequence, then per question (not read by the loss)
    # G = 8, 1 PPO epoch, T = 0.6; mini-batches of whole prompt groups (the paper: 128 prompts, mini-batch 32)
    trainer={"num_generations": 8, "num_iterations": 1, "temperature": 0.6, "minibatch_groups": True},
    notes="DisCO-b, the paper's basic discriminative objective (scripts run_discob_*.sh); the paper's headline "
    "DisCO is the DRO form, preset disco_dro. Paper scale (official scripts): lr 2e-6, 128 prompts per step in "
    "mini-batches of 32 prompts (use --minibatches 4), max response 8k, DeepSeek-R1-Distill-Qwen-1.5B/7B. No "
    "clipping, no reference model, no entropy term. Groups without both a correct and a wrong answer are skipped "
    "but still counted in the mean over prompts (Σ n_g·J_g / num_seqs). The penalty is the code's "
    "sg(β[KL−δ]_+)·KL, whose gradient is that of (β/2)[KL−δ]_+² (half that of the paper's β[KL−δ]_+²; β = 1e3 is "
    "the scripts' value for the code's form); its coefficient is estimated per micro-batch (exact with "
    "grad_accum 1). Mini-batches hold whole prompt groups (minibatch_groups), as the official code keeps "
    "questions whole.",
)
