"""CurES: GRPO trained on a curriculum: prompts drawn by a Bayesian difficulty distribution, rolled out in proportion
to their gradient spread (the ``cures`` prompt sampler)."""

from grpolab.algorithms.preset import Part, Preset

PRESET = Preset(
    name="cures",
    paper="CurES: From Gradient Analysis to Efficient Curriculum Learning for Reasoning LLMs",
    arxiv="2510.01037",
    # run_epic.sh: algorithm.adv_estimator=grpo — CurES changes which prompts and how many rollouts, not the objective
    advantage=Part("grpo", {"scale": "group"}),
    # policy_loss=plusplus = verl's compute_policy_loss: clip 0.2 (ppo_trainer.yaml clip_ratio) with dual clip 3.0
    loss=Part("ppo_clip", {"epsilon": 0.2, "dual_clip": 3.0}),
    aggregation="token_mean",  # ppo_trainer.yaml loss_agg_mode: token-mean (the script keeps it)
    regularizers=(Part("kl", {"coef": 0.001, "estimator": "k3"}),),  # run_epic.sh: kl_loss_coef 0.001, low_var_kl
    trainer={
        "num_iterations": 1,
        "temperature": 1.0,  # stage_0 and the rollout sample at temperature 1.0
        "sampler": "cures",
        "sampler_args": {
            "n_min": 4,  # run_epic.sh num_rollout_min=4
            "n_max": 8,  # run_epic.sh num_rollout_max=8 (argparse default 16)
            "update_every": 10,  # 15 outer iterations of 10 steps (EpicSampler.__len__ = 10, global_step_10)
            "pool_size": 64,  # not the paper's: it re-estimates the whole iteration's data (see grpolab.data.cures)
            "threshold": 0.5,  # correct_threshold=0.5: "Accepted" = reward > 0.5
            "form": "code",  # EpicSampler: score = exp(sqrt(p̂(1−p̂)) / t), t = (c + 1)/1e-2
        },
    },
    notes="Paper scale (run_epic.sh): Qwen2.5-Math-1.5B/7B, 1024 prompts per step, lr 1e-6, KL 0.001 (low_var_kl = "
    "k3), N_min 4 estimation rollouts, N_max 8, GRPO advantage, 15 iterations x 10 steps each re-estimating the prompt "
    "difficulties (Beta(c+1, N-c+1) mean) and the per-prompt gradient spread sigma from one backward of -log pi(y|x) "
    "per estimation rollout (w.r.t. the embedding matrix; here the first trainable tensor). The code's sampling "
    "distribution exp(sqrt(p(1-p))/t), t = (c+1)/0.01, is within 0.5% of uniform: the curriculum acts through the "
    "allocation n_i = round(B N_max sigma_i / sum sigma), which gives all-correct / all-wrong prompts 0 rollouts "
    "(dropped and replaced by the next draw here). Interpretations (grpolab.data.cures): a 64-prompt estimation pool "
    "per refresh instead of the whole data chunk; the B N_max budget is shared over the drawn batch (the code shares "
    "it over every estimated prompt); training groups update the counts (the paper's Bayesian update; the script "
    "runs without it); all sigma = 0 falls back to N_max per prompt. The paper's closed-form distribution is offered "
    "as form='entropy' (unverified). n_max defaults to the run's num_generations when the preset's 8 is removed. "
    "Difference: verl's GRPO advantage gives a group of one completion A = r (mean 0, std 1); grpolab's gives 0, so a "
    "prompt allocated n_i = 1 trains nothing here.",
)
