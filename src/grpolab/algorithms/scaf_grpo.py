"""Scaf-GRPO: GRPO plus progressive scaffolding: tiered in-prompt hints rescue true-hard groups after a warm-up."""

from grpolab.algorithms.preset import Part, Preset

PRESET = Preset(
    name="scaf_grpo",
    paper="Scaf-GRPO: Scaffolded Group Relative Policy Optimization for Enhancing LLM Reasoning",
    arxiv="2510.19807",
    rollout=(
        # script sh/hint_mix_grpo/bs256_6k_mix.sh: with_hint=True, warmup_steps=50, replace_num=1,
        # replace_hint_prompt=False (the rescuing completion keeps its hinted prompt)
        Part("scaf_grpo", {"warmup_steps": 50, "hints_key": "hints", "answer_key": "answer", "train_prompt": "hinted"}),
    ),
    advantage=Part("grpo", {"scale": "group"}),  # verl grpo: (r − mean) / (std_ddof1 + 1e-6), norm_adv_by_std True
    loss=Part("ppo_clip", {"epsilon": 0.2, "dual_clip": 3.0}),  # verl "vanilla" loss: clip_ratio 0.2, clip_ratio_c 3
    aggregation="token_mean",  # verl actor.yaml loss_agg_mode: token-mean
    trainer={"num_generations": 8, "num_iterations": 1, "temperature": 1.0, "top_p": 1.0},  # n 8, T 1.0, ppo_epochs 1
    notes="Sources: the released code (dvlab-research/Scaf-GRPO hint_mix_grpo/trainer/ray_trainer.py, "
    "build_new_message; sh/hint_mix_grpo/bs256_6k_mix.sh) and spec part A §19. No KL (use_kl_loss False, kl_coef "
    "0) and no entropy bonus. Scaffolding (rollout strategy scaf_grpo): from step 50 on (code: global_steps > "
    "warmup_steps, global_steps counted from 1), every group whose completions all have accuracy 0 is re-sampled "
    "once per hint level (levels = the task's 'hints' column of cumulative hinted prompts, Knowledge then "
    "Solution tier; the code's Planning tier is commented out); the correct hinted completion of minimal level "
    "replaces the group's first failing completion (replace_num 1), keeping its hinted prompt (so it is "
    "on-policy: extras['off_policy'] False; trained plainly, as the code recomputes old log-probs on the replaced"
    " batch; extras['hint_level'] marks it). Tasks without a 'hints' column use answer-prefix hints built from "
    "'answer' ('(6) 23+45=', '(68) 23+45='): the Solution tier in its plainest form (our fallback; the paper's "
    "hints are LLM-written per problem, HF dataset hkuzxc/scaf-grpo-dataset); arith_task(hints=True) adds "
    "arithmetic Knowledge-tier hints. The optional '6+1+1' mode (replace_num 2) is not built; "
    "train_prompt='original' is the code's replace_hint_prompt=True. Paper scale: Qwen2.5-Math-7B, 256 prompts x "
    "8, mini-batch 64 (4 optimizer steps per batch: --minibatches 4), lr 1e-6, max prompt 4096, max response "
    "2048.",
)
