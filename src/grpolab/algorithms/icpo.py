"""ICPO: mixed-policy GRPO with implicit expert forcing (in-context demonstrations), expert region reject sampling
and an annealed expert bonus."""

from grpolab.algorithms.preset import Part, Preset

PRESET = Preset(
    name="icpo",
    paper="Think Outside the Policy: In-Context Steered Policy Optimization",
    arxiv="2510.26519",
    rollout=(
        # one IEF completion per prompt (n_off=1, n_demo=1, random match, FIFO cache of 75k; ICPO-rs scripts),
        # kept only if correct (δ=1), reward 1 + β·max(0, 1 − t/T) with β=1, T=400 (reward_score.py)
        Part(
            "icpo_expert",
            {
                "n_off": 1,
                "n_demo": 1,
                "answer_key": "answer",
                "demo_template": "{prompt}{solution}",
                "separator": " ",
                "template": "{demos} {prompt}",
                "cache_size": 75_000,
                "delta": 1.0,
                "beta": 1.0,
                "anneal_steps": 400,
            },
        ),
    ),
    advantage=Part("grpo", {"scale": "group"}),  # GRPO on the mixed group (algorithm.adv_estimator=grpo)
    # on-policy: dual-clip PPO (clip_ratio_low/high 0.2, verl's clip_ratio_c 3); off-policy: f(π) = π/(π + 0.1)
    loss=Part("mixed_policy", {"epsilon_low": 0.2, "epsilon_high": 0.2, "dual_clip": 3.0, "lam": 0.1}),
    aggregation="token_mean",  # verl's default loss_agg_mode "token-mean" (spec part A, cross-cutting notes)
    regularizers=(Part("kl", {"coef": 0.001, "estimator": "k3"}),),  # kl_loss_coef 0.001, low_var_kl (= k3)
    # 7 on-policy + 1 IEF = the scripts' n_rollout=8 with n_off_policy=1; temperature 1.0; one update per batch
    trainer={"num_generations": 7, "num_iterations": 1, "temperature": 1.0},
    notes="Sources: arXiv 2510.26519 and the code Celine-hxy/ICPO (verl/recipe/icpo: core_algos.py "
    "compute_icpo_policy_loss, icpo_trainer.py, reward_score.py compute_score_icpo_bonus, scripts "
    "ICPO_qwen3-*_math-demo-icpo-rs.sh). Groups are 7 on-policy + up to 1 IEF completion: the same policy "
    "answers under a 1-shot demonstration prompt, then the prompt is swapped back to the plain question and the "
    "completion is trained off-policy. Choices: (1) lam = 0.1 as hard-coded in the code (the paper note says "
    "0.01). (2) Expert region reject sampling: the paper keeps IEF trajectories with reward >= delta = 1; where "
    "the code enforces it was not found, so rejected IEF completions are simply not appended (a group may then "
    "have 7 completions). (3) Annealed bonus: the code reads extra_info['current_step'], which nothing sets, so "
    "its bonus stays at beta = 1 (R = 2) for the whole run; here t is the number of completed steps (0 at the "
    "first step) and the bonus decays linearly to 0 at T = 400 (the paper's schedule; the paper's run length), "
    "added to the combined reward; anneal_steps=None would use the run's total steps instead. (4) Demo cache: the "
    "paper/code load a cold-start cache of solved MATH/OpenR1 problems (update_from_batch is never called); here "
    "the cache holds the training rows' own reference answers (FIFO, 75k, a row never sees its own question), "
    "drawn at random. Default templates suit the char-level arith task ('12+30=42 23+45='); the code's builder "
    "writes 'Question: ...\\nAnswer: ...' blocks; pass such templates for text tasks. The built-in tiny-arith model "
    "has no in-context ability (a demonstration prefix drops its accuracy from ~40% to ~1%), so few IEF completions "
    "are accepted there. (5) KL: k3 in the loss, coef 0.001 (verl's low_var_kl also clamps k3 to [-10, 10]; not "
    "done here). Paper scale: Qwen3-1.7B/8B, 128 prompts, mini-batch 64 (2 optimizer steps per batch: use "
    "--minibatches 2, where the on-policy clip and dual clip can bind), lr 1e-6, max response 8192, 400 steps.",
)
