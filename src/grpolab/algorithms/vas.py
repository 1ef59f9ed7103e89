"""MMR1's Variance-Aware Sampling: GRPO trained on batches half drawn by Variance Promotion Score."""

from grpolab.algorithms.preset import Part, Preset

PRESET = Preset(
    name="vas",
    paper="MMR1: Enhancing Multimodal Reasoning with Variance-Aware Sampling and Open Resources",
    arxiv="2509.21268",  # the LengSicong/MMR1 README and its citation block
    advantage=Part("grpo", {"scale": "group"}),  # examples/mmr1.yaml: adv_estimator grpo
    loss=Part("ppo_clip", {"epsilon": 0.2}),  # MMR1's actor config: clip_low = clip_high = 0.2
    aggregation="seq_mean_token_mean",  # GRPO's (see notes for the code's token mean)
    # examples/mmr1.yaml: use_kl_loss, kl_penalty low_var_kl (k3), kl_coef 1e-2
    regularizers=(Part("kl", {"coef": 0.01, "estimator": "k3"}),),
    trainer={
        "num_generations": 8,  # examples/mmr1.yaml: rollout n = 8
        "temperature": 0.6,  # examples/mmr1.yaml: rollout temperature 0.6
        "num_iterations": 1,  # MMR1's actor config: ppo_epochs 1
        "sampler": "vas",
        "sampler_args": {
            "mixture_ratio": 0.5,  # curriculum_mixture_ratio (yaml)
            "update_every": 4,  # curriculum_update_freq (yaml)
            "pool_size": 64,  # ours: the paper re-scores the whole set (see notes)
            "curriculum_rollouts": 8,  # curriculum_rollout_n (yaml)
            "weights": (0.8, 0.2),  # (OVS, TDS): TRAIN.MD's multi-metric example, which pairs them with self-BLEU
            "diversity": "self_bleu",  # TDS = 1 - self-BLEU-123 (the code adds raw self-BLEU: see notes)
            "momentum": 0.0,  # curriculum_momentum (yaml)
        },
    },
    notes="Training is plain GRPO (examples/mmr1.yaml: grpo advantages, k3 'low_var_kl' KL loss with coefficient 1e-2, "
    "n = 8, temperature 0.6, one PPO epoch, clip 0.2); only the prompt sampler differs. Paper scale: lr 1e-6, 512"
    " prompts per step, weight decay 1e-2. The official code (EasyR1) averages the policy loss over all tokens of"
    " a micro-batch (token_mean) and clamps k3 to [-10, 10]; here GRPO's per-sequence mean is kept so that the "
    "preset differs from grpo only by its sampler, KL and temperature. VAS: each batch takes int(B * 0.5) prompts"
    " drawn with replacement by VPS weight and the rest from a uniform epoch order, interleaved "
    "(MixedCurriculumSampler). Every 4 steps an estimation round scores prompts with 8 rollouts each: VPS = 0.8 *"
    " OVS + 0.2 * TDS, OVS = p(1 - p), min-max normalised, momentum 0, TDS = 1 - self-BLEU-123. Interpretation "
    "choices: (1) the paper re-scores the whole training set at each refresh; here a random pool of 64 rows "
    "(every row on tasks that small), costing 64 * 8 completions per refresh (about the training generation of 4 "
    "steps of 16 prompts x 8); rows outside the latest pool weigh 0 in the weighted half (momentum > 0 keeps a "
    "decaying memory of earlier pools). (2) TDS is 1 - self-BLEU-123, the diversity form the paper describes (the"
    " code adds raw self-BLEU, which rewards similar rollouts); diversity='edit_distance' gives the mean pairwise"
    " Levenshtein distance over token ids divided by the longer length, in [0, 1] (the code averages raw "
    "distances, whose scale would swamp OVS). (3) Weights 0.8 / 0.2 follow the repository's multi-metric example "
    "(TRAIN.MD); its yaml default scores OVS alone (weights [1.0]). update_every = 0 (once per epoch in the code)"
    " is not offered.",
)
