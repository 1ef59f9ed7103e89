"""DeepVideo-R1 in full: Reg-GRPO plus difficulty-aware prompt augmentation (hints for hard, noise for easy prompts)."""

from grpolab.algorithms.preset import Part, Preset

PRESET = Preset(
    name="reg_grpo_aug",
    paper="DeepVideo-R1: Video Reinforcement Fine-Tuning via Difficulty-aware Regressive GRPO",
    arxiv="2506.07464",
    rollout=(
        # ΔR = mean of the last W = 100 rewards − group mean; hard (ΔR > 0): hint, easy (ΔR < 0): noise
        Part("difficulty_augment", {"window": 100, "scale": 1.0, "margin": 0.0, "hard": "hint", "easy": "space_noise"}),
    ),
    # the Reg-GRPO parts exactly as the reg_grpo preset
    advantage=Part("grpo", {"scale": "group"}),  # the regression target Â = (r − mean_G r) / std_G r
    loss=Part("reg_grpo", {"eps": 1e-6, "ddof": 1}),  # MSE between Â and (ρ − mean ρ)/(std ρ + ε); no min, no clip
    aggregation="seq_mean_token_mean",  # GRPO's 1/|o| Σ_t for the KL term
    regularizers=(Part("kl", {"coef": 0.1, "estimator": "k3"}),),  # β = 0.1 (SEED-Bench-R1 setting)
    trainer={"num_generations": 8, "minibatch_groups": True},  # G = 8; the group std of ρ needs whole groups
    notes="The reg_grpo preset (see its notes for the loss: MSE reading, ε, whole-group mini-batches) plus the "
    "difficulty-aware data augmentation (spec part A §5, from the paper text; the official repo was not available), "
    "as the rollout strategy difficulty_augment. Difficulty ΔR(x) = mean reward of a replay buffer of the last 100 "
    "rewards (earlier steps; the batch mean at the first step; the un-augmented rewards enter it) − the group's "
    "mean reward. Hard groups (ΔR > 0) get a hint whose level grows with |ΔR|; the paper inserts a partial reasoning "
    "trace of a ground-truth-guided completion, here the task's 'hints' column or answer prefixes ('(6) 23+45='), "
    "which for a task whose completion is the answer is the same thing. Easy groups (ΔR < 0): the paper adds "
    "frame-level Gaussian noise to the video; text has no frames, so spaces are inserted where they split no "
    "number or word ('23 + 45='), which changes the surface form, never the problem (our choice; easy='none' for "
    "tasks where whitespace matters). UNVERIFIED scalings (not recovered): strength s = min(1, |ΔR|), hint level "
    "ceil(s·K) of K, ceil(4·s) spaces. Augmented groups are re-sampled (G completions under the augmented prompt) "
    "and replace the original group; they are trained under that prompt, so they are on-policy. With margin 0 "
    "almost every group is augmented: about twice the generation of reg_grpo.",
)
