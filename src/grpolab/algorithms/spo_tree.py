"""SPO-tree: segment trees per prompt, node values from the leaves, V(child) − V(parent) per segment."""

from grpolab.algorithms.preset import Part, Preset

PRESET = Preset(
    name="spo_tree",
    paper="Segment Policy Optimization: Effective Segment-Level Credit Assignment in RL for Large Language Models",
    arxiv="2505.23564",
    # SPO-tree: depth 3, branch factors 6-6-6 (G = 6 main completions are level 1, then 6 and 6), segments of M tokens
    # (M = 600 of a 2K context on MATH -> 0.3 of max_len), the last level runs free; "rloo" advantages
    rollout=(
        Part(
            "spo_tree",
            {
                "branch_factors": (6, 6),
                "segment_frac": 0.3,
                "method": "rloo",
                "node_value": "children",
                "only_nonzero": True,
                "prob_threshold": 0.9,
            },
        ),
    ),
    advantage=Part("spo_tree", {"whiten": True}),  # whitened over the kept tokens (ppo_MATH: whiten_advantages)
    selectors=(Part("spo_mask"),),  # each segment once (its own row), nonzero advantage, p < 0.9 (use_prob_mask)
    loss=Part("ppo_clip", {"epsilon": 0.2}),  # cliprange 0.2, no critic
    aggregation="token_mean",  # official PPO trainer: masked_mean over the batch's kept tokens
    regularizers=(Part("kl", {"coef": 1e-4, "estimator": "k3"}),),  # refKl0.0001 + klLoss (k3 in the loss)
    # branch factor of level 1 = G = 6; 1 epoch per iteration (num_epochs_per_iteration 1); temperature 0.6
    trainer={"num_generations": 6, "num_iterations": 1, "temperature": 0.6},
    notes="Sources: arXiv 2505.23564 (SPO-tree) and the official code AIFrameResearch/SPO (hybrid_inference_strategy.py"
    " builds the tree, tree_episode_generator.py extract_edges_from_tree makes the (prefix -> segment) samples, "
    "configs polIter_qwen1b_spo_tree_MATH / polIter_rho1bSft2_spo_tree_GSM8K.jsonnet). Tree: depth 3, branch "
    "factors 6-6-6; here the prompt's G = 6 main completions are the 6 level-1 branches and continue_from adds "
    "the other children level by level (one call per level): a free-running completion is a valid root-to-leaf "
    "path, so every row is a full completion (leaf) of its prompt and the tree costs exactly its 216 leaves per "
    "prompt, the main batch included. Segments: M tokens at every level but the last, which runs free (max_tokens"
    " None at depth D - 1 in the code); a segment that ends before M tokens is a leaf. The paper fixes M in "
    "tokens (600 for long-CoT MATH at 2K context, 30 in the GSM8K config); M must scale with the run, so M = "
    "round(0.3 * max_len) (segment_frac; segment_len fixes it), clipped so that (D - 1) * M < max_len. V(node): "
    "the code averages the children's values (node reward = mean of child rewards; the spec's 'mean reward of the"
    " leaves below' is node_value='leaves', equal for full subtrees); with children values the rloo advantages of"
    " a node's children average exactly to 0. Advantage: V(child) - V(parent) ('rloo', the code's default "
    "adv_method) or divided by (np.std of the siblings + 1e-8) ('grpo'). Samples: the code trains each edge "
    "(prefix -> segment) once and keeps only nonzero-advantage edges; here a segment is trained in the row that "
    "sampled it (t >= prefix_len), with the true prefix as context, other rows' copies masked (spo_keep + the "
    "spo_mask selector). The SPO-tree configs inherit use_prob_mask true from the chain configs, so tokens with "
    "p_old >= 0.9 leave the loss here too (prob_threshold None turns it off). Advantages whitened over the kept "
    "tokens (whiten_advantages true; the official trainer whitens per micro-batch, per_device_train_batch_size 2"
    " for Qwen: an implementation artefact, here the whole batch). KL: beta = 1e-4 k3 in the loss, on the kept "
    "tokens only (refKl0.0001 + klLoss override the 0.05 of ppo_MATH.jsonnet). Trainer settings: G = 6, "
    "num_epochs_per_iteration 1 (both tree configs), temperature 0.6."
    " Paper scale in the notes only: lr 1e-6, 512 episodes per iteration from 32 questions (16 for GSM8K with "
    "1024 episodes; the kept (prefix -> segment) samples are drawn up to that count), mini-batches of 128 (4 "
    "optimizer steps per epoch), top_p 1.0 (Qwen), 2K/4K context. Not reproduced: hybrid_episode_generator.py "
    "puts the nonzero edges in an on-policy replay buffer and trains at most 32 edges per question per "
    "iteration, keeping the rest (with their stored old log-probs) for up to 8 iterations; here every kept "
    "segment of the step's trees is trained at once, on-policy.",
)
