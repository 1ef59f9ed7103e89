"""MedS³-style process rewards: MCTS over steps, a PRM trained on the node values, process-supervised GRPO."""

from grpolab.algorithms.grpo import OBJECTIVE
from grpolab.algorithms.preset import Part, Preset

PRESET = Preset(
    name="mcts_prm",
    paper="MedS3: Towards Medical Slow Thinking with Self-Evolved Soft Dual-sided Process Supervision",
    arxiv="2501.12051",
    rollout=(
        Part(
            "mcts_prm",
            {
                "delimiters": (",", ")"),  # arith_think's steps; MedS³ joins steps with "\n\n"
                "search_every": 2,  # bounded cost (MedS³ searches offline, once per self-evolution round)
                "search_prompts": 2,
                "iterations": 4,  # MedS³ grows up to 60 nodes per question (max_nodes 60)
                "expand": 3,  # MedS³ config trial5: expand.max_children 3
                "rollouts": 4,  # MedS³: max(20 // (depth + 1), 5) simulations per node
                "c": 2.0,  # MedS³ config: expand.constant 2
                "look_back": 1.0,  # MedS³ v4 PRM run: --look_back_factor 1.0
                "complete_only": True,  # MedS³ code: collect_all_complete_paths (root-to-terminal paths only)
                "contrast": True,  # MedS³ v4 PRM run: --filter_invalid True (questions with right and wrong paths)
                "prm_loss_type": "bce",  # MedS³ v4 PRM run: --loss_type bce
                "append_verified": 0,  # the batch stays GRPO's G samples per prompt (see notes)
            },
        ),
    ),
    # DeepSeekMath §4.1.3 process supervision (group-normalised step rewards, sum over the steps at or after each
    # token) plus GRPO's outcome advantage (PRIME, arXiv 2502.01456, sums the process return and the outcome advantage)
    advantage=Part("process", {"process_coef": 1.0, "outcome_coef": 1.0}),
    loss=OBJECTIVE["loss"],  # GRPO: PPO clip 0.2
    aggregation=OBJECTIVE["aggregation"],  # GRPO Eq. 3: 1/G Σ_i 1/|o_i| Σ_t
    regularizers=OBJECTIVE["regularizers"],  # GRPO: k3 KL in the loss, β 0.04
    trainer={"num_iterations": 1},
    notes="Sources: arXiv 2501.12051 v4 (abstract and method summary) and the official code pixas/MedSSS "
    "(Evol_Instruct/MCTS/tree.py: select_child UCT value + c*sqrt(ln N_parent / n_child), c = 2, completed subtrees "
    "never re-selected, rollout value = accuracy of simulated completions, back-propagation; config/trial5.json: "
    "max_children 3, constant 2, simulation 20; training/prm_train.py: token-classification PRM labelled on the last "
    "token of each step, look-back penalty label_i = v_i - lambda (v_{i-1} - v_i), BCE or Huber loss; "
    "scripts/iter_run_mcts_mixdata_prm.sh: --look_back_factor 1.0 --loss_type bce; utils/utils.py "
    "compute_weighted_values: Vote-Sum over final answers with min/mean/prod/last step aggregation). MedS³ is an "
    "offline self-evolution pipeline (MCTS data -> SFT/DPO of the policy -> PRM training -> PRM-guided Vote-Sum at "
    "inference); here its pieces run inside online GRPO: every search_every steps the rollout strategy mcts_prm runs a "
    "small MCTS over steps on search_prompts prompts of the batch (node value = fraction of simulated completions "
    "through the node that pass the task's accuracy check; nodes store MC wins/sims, MedS³'s code instead averages "
    "children values weighted by visits, its update_rule 'comp' also mixes in the node's own simulation), labels "
    "every root-to-leaf path with the soft dual-sided target clamp(v + lambda (v - v_parent), 0, 1) (lambda 1.0; "
    "the parent's value, not the code's previously adjusted label, and the first step is compared with the root), "
    "labels only root-to-terminal paths (the code's collect_all_complete_paths) of trees that hold both a verified "
    "and a failed completion (the released run's --filter_invalid True), and trains the PRM on a 256-path buffer (16 "
    "Adam steps of 32 paths per search, lr 1e-3). The PRM is a small MLP head (hidden 32) on the current policy's "
    "last hidden states plus three confidence features of the prefix (the policy's token log-prob, its running min "
    "and mean over the completion), computed without gradient. MedS³ fine-tunes the policy's own 8B backbone with a "
    "token-classification head and LoRA (lr 5e-5) offline; a head on frozen features keeps the policy's knowledge "
    "for one forward pass. Measured on arith_think (docs/process_rewards.md): the hidden state alone, or a separate "
    "tiny Llama trained from scratch (prm_model='tiny'), did not rank right above wrong completions of a question "
    "after 20 searches; with the confidence features the within-question AUC is about 0.74. Head, optimizer and "
    "buffer live in the part's state, so checkpoints carry them. Its step scores (sigmoid) are the process rewards "
    "of every completion; until it has had a label every step scores 0.5, so the process term is 0 (GRPO). "
    "Advantage: DeepSeekMath (arXiv 2402.03300) §4.1.3 process supervision (step rewards normalised over all steps "
    "of the group, std ddof 1 + 1e-6; a token's advantage is the sum of the normalised rewards of the steps ending "
    "at or after it) plus GRPO's outcome advantage with weight 1 (PRIME's sum of process return and outcome "
    "advantage); outcome_coef 0 gives DeepSeekMath's process supervision alone. Objective otherwise GRPO's (PPO "
    "clip 0.2, seq_mean_token_mean, k3 KL 0.04). Not reproduced: MedS³'s Reflect/Refine/Medrag actions, bear_ratio "
    "early finishing, and its SFT/DPO on verified chains (append_verified > 0 adds verified search completions to "
    "the prompt's group instead, off by default so that groups stay the G samples GRPO normalises over). "
    "Delimiters default to ',' and ')' (arith_think's thought steps); set the task's step separator (MedS³: '\\n\\n'). "
    "A completion without a delimiter is one step, so the PRM then scores whole completions.",
)
