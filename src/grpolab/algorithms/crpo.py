"""CRPO (Clinical-R1): GRPO on a multi-objective verifiable reward: accuracy + faithfulness + comprehensiveness.

The method lives in the reward, not in the objective: the three rule-based rewards are the ``clinical`` task's
(``grpolab.rewards.clinical``) and their weights are the task's (``TASKS["clinical"](weights=...)``, default
accuracy 1, faithfulness 0.5, comprehensiveness 0.5). The policy update is GRPO's parts (grpo.py) with the
released training script's KL setting and verl's token-mean loss.
"""

from grpolab.algorithms.grpo import OBJECTIVE
from grpolab.algorithms.preset import Part, Preset

PRESET = Preset(
    name="crpo",
    paper="Clinical-R1: Empowering Large Language Models for Faithful and Comprehensive Reasoning with Clinical "
    "Objective Relative Policy Optimization",
    arxiv="2512.00601",
    # GRPO's advantage (group mean / std) and PPO clip 0.2: the released code runs verl's adv_estimator=grpo with
    # its default clip_ratio 0.2 (BoyangGu1/Clinical-R1-3B, scripts/grpo/*.sh)
    advantage=OBJECTIVE["advantage"],
    loss=OBJECTIVE["loss"],
    # verl (the ~0.2 copy in the released code) averages the policy loss and the KL loss over all response tokens of
    # a (micro-)batch: token_mean, where grpo.py has DeepSeekMath's per-sequence mean
    aggregation="token_mean",
    # use_kl_loss=True, kl_loss_coef=0.001, kl_loss_type=low_var_kl (the scripts): the KL is in the loss, not the
    # reward (ray_trainer.py skips apply_kl_penalty with use_kl_loss). low_var_kl is k3 clamped to [-10, 10];
    # grpolab's k3 is not clamped (identical while k3 <= 10)
    regularizers=(Part("kl", {"coef": 0.001, "estimator": "k3"}),),
    # rollout.n=5 and rollout.temperature=0.6 (run_qwen-3B_after-deepseek-distil-on-medqa_seq_balance_medqa.sh); one
    # pass over each batch (verl's ppo_epochs default 1)
    trainer={"num_generations": 5, "temperature": 0.6, "num_iterations": 1},
    notes="Sources: the arXiv 2512.00601 abstract (CRPO combines rule-based, verifiable rewards for accuracy, "
    "medical faithfulness and cognitive comprehensiveness into one GRPO reward, with no human annotation) and the "
    "released code github.com/BoyangGu1/Clinical-R1-3B (verl ~0.2). The code's reward is NOT the paper's three "
    "objectives: verl/utils/reward_score/medical_rule_based.py scores 10*acc + fmt + 0.5*eng (acc 1/0 for the "
    "single boxed option letter, -0.5 for a non-letter, -1 for none, -k for k != 1 boxes; fmt 1 for "
    "<think>..</think><answer>..</answer> + 0.5 for a summary beside the box; eng the ASCII fraction). The "
    "faithfulness and comprehensiveness checkers and their weights were not found (spec section 6), so they are "
    "this library's, on a synthetic task built for them: TASKS['clinical'] (grpolab.data.clinical; docs/clinical.md)"
    ", whose answers 'findings: ..; ddx: ..; dx: ..' are scored by dx_accuracy (dx equals the gold diagnosis), "
    "faithfulness (fraction of cited findings the vignette states; 0 when none cited) and comprehensiveness "
    "(coverage of the key findings and of the differentials, padding diluted). The weights are the task's: "
    "default 1 / 0.5 / 0.5 (accuracy first, as the code's 10x weight on acc says, yet the two process objectives "
    "together weigh as much as accuracy so that they move under group normalisation; the paper's claim is that "
    'they improve while accuracy holds); change them with --task-args "{weights: {faithfulness: 1.0}}". They are '
    "not a preset hyper-parameter because the preset cannot know a task's reward functions; each is logged "
    "separately (reward/dx_accuracy, reward/faithfulness, reward/comprehensiveness). Trainer settings from the "
    "scripts: n = 5 rollouts, temperature 0.6 (the post-SFT run; the base-model script keeps verl's 1.0), KL "
    "loss 0.001 low_var_kl (here k3, unclamped), token-mean loss (verl ~0.2's masked mean; grpo.py uses "
    "seq_mean_token_mean), PPO clip 0.2. Divergences from grpo.py: β 0.001 instead of 0.04, token_mean, G = 5, "
    "temperature 0.6. Paper scale, not set: lr 1e-6, 512 prompts per step (1,024 in the base-model script), PPO "
    "mini-batches of 16 prompts (32 optimizer steps per batch), 20 epochs, response length 4,096; verl's entropy "
    "coefficient default of that version (0.001, from memory, unverified) is left out. Fleming-R1's hard-sample "
    "mining (preset hard_mining) runs on the same task.",
)
