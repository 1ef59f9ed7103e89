"""AEPO: GRPO plus a REINFORCE regulariser on positive samples drawn at an entropy-chosen temperature."""

from grpolab.algorithms.preset import Part, Preset

PRESET = Preset(
    name="aepo",
    paper="Arbitrary Entropy Policy Optimization Breaks The Exploration Bottleneck of Reinforcement Learning",
    arxiv="2510.08141",
    rollout=(
        Part(
            "aepo",
            {
                "target": 0.5,  # entropy_base H: examples/qwen-math-7b-AEPO.sh (the README's best run: 0.75)
                "t_high": 1.2,  # trainer.temperature_high (verl/trainer/config.py)
                "t_low": 0.8,  # trainer.temperature_low
                "num_generations": 5,  # n = worker.rollout.n = 5 (examples/config.yaml)
                "prompt_fraction": 0.25,  # ray_trainer.py: gen_batch[: len(gen_batch) // 4]
                "threshold": 0.05,  # _select_by_advantage(threshold=0.05, absolute=False)
                "reinforce_sample_num": 2,  # paper 60 of 512 x 5 = 2560 rows (about 2 %); 2 sized for tiny batches
                "entropy_estimator": "sampled",  # actor/entropy_loss = -masked_mean(log_probs)
            },
        ),
    ),
    advantage=Part("aepo", {"reinforce_advantage": 1.0}),  # GRPO rows as usual; regulariser rows: advantage 1
    filters=(Part("aepo_overwritten"),),  # the overwritten main rows leave after completing their GRPO groups
    loss=Part("ppo_clip", {"epsilon": 0.2, "dual_clip": 3.0}),  # EasyR1: clip_ratio_low/high 0.2, dual 3.0
    aggregation="token_mean",  # EasyR1 compute_policy_loss: masked_mean over the tokens
    trainer={"num_generations": 5, "num_iterations": 1, "temperature": 1.0, "top_p": 0.99},  # examples/config.yaml
    notes="Sources: paper arXiv 2510.08141 and the official code 597358816/AEPO (EasyR1-based; ray_trainer.py "
    "branch 'AEPO', config.py, examples/config.yaml, qwen-math-7b-AEPO.sh). Paper scale: Qwen2.5-Math-7B, "
    "512 prompts x n = 5, actor mini-batch 128 prompts (4 optimizer steps per rollout: use --minibatches 4), "
    "lr 1e-6, max response 2048 tokens, KL disabled (disable_kl=true in the script), "
    "reinforce_sample_num 60 (2 here, sized for tiny batches: set 60 at paper scale). Choices: (1) the temperature "
    "uses the entropy of the previous step (code: actor/entropy_loss of the last update, 0 before the first, so the "
    "first step samples at 1.2), measured by the strategy as -mean log p of the sampled tokens of the rows to be "
    "trained, before the update (the code averages it over the update's micro-batches), with one extra no-grad "
    "forward pass, and kept in its checkpointed state; H <= target gives T_high as in the code (README: H < target). "
    "(2) Regulariser rows overwrite the first k rows of the batch as in the code (P·G rows are trained); their "
    "advantage is 1 and they are excluded from the GRPO statistics, which are those of the full groups before the "
    "overwrite as in the code (the overwritten rows stay in the rollout for the advantage and leave through the "
    "aepo_overwritten filter). (3) At least one prompt is "
    "re-sampled (the code's len // 4 is empty below 4 prompts). Cost: one extra generation of P/4 x n completions "
    "and one forward pass per step.",
)
