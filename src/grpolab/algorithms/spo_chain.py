"""SPO-chain: cutpoint segments, Monte-Carlo segment values, probability mask, PPO-clip without a critic."""

from grpolab.algorithms.preset import Part, Preset

PRESET = Preset(
    name="spo_chain",
    paper="Segment Policy Optimization: Effective Segment-Level Credit Assignment in RL for Large Language Models",
    arxiv="2505.23564",
    # SPO-chain: every 5th token with p < 0.9 is a cutpoint; 9 MC continuations per cutpoint (GSM8K, RhoMath-1.1B config
    # polIter_rho1bSft2_spo_chain_GSM8K: episode_generators/9rolls; the MATH/Qwen-1.5B config uses 4)
    rollout=(Part("spo_chain", {"num_rollouts": 9, "cutpoint_interval": 5, "prob_threshold": 0.9}),),
    # A_k = V(cut_k) − V(cut_{k−1}), whitened over the kept tokens (ppo_MATH.jsonnet: whiten_advantages true)
    advantage=Part("spo_chain", {"base": "group", "whiten": True}),
    selectors=(Part("spo_mask"),),  # probability mask: tokens with p ≥ 0.9 leave the loss (use_prob_mask)
    loss=Part("ppo_clip", {"epsilon": 0.2}),  # ppo_MATH.jsonnet: cliprange 0.2, no critic (trainers/no_critic)
    aggregation="token_mean",  # official PPO trainer: masked_mean of the per-token loss over the (micro-)batch
    # trainers/refKl0.0001 + trainers/klLoss: k3 ("control_variate") KL to the reference in the loss, β = 1e-4
    regularizers=(Part("kl", {"coef": 1e-4, "estimator": "k3"}),),
    # 8 samples per prompt, 2 epochs per iteration, temperature 0.6 (polIter_rho1bSft2_ppo_MATH.jsonnet, ppo_MATH)
    trainer={"num_generations": 8, "num_iterations": 2, "temperature": 0.6},
    notes="Sources: arXiv 2505.23564 (SPO framework, SPO-chain) and the official code AIFrameResearch/SPO (episode "
    "generator math_episode_generator_with_mc_advantages.py, ppo_trainer.py, configs "
    "polIter_rho1bSft2_spo_chain_GSM8K / _MATH.jsonnet). Cutpoints: the official code takes the positions c = j −"
    " 1 before each low-probability token j (p < 0.9 under the rollout policy) and estimates the value of "
    "response[:c + 1]; here the token j is marked and continue_from(cut=j) keeps the same j tokens, so an "
    "uncertain token starts its segment. Every 5th such token is a cutpoint (cutpoint_interval 5). V at a "
    "cutpoint = mean reward of N continuations, N = 9 (GSM8K, RhoMath-1.1B, the paper's short-CoT setting, chosen"
    " here) or 4 (MATH, Qwen-1.5B); continuations share the run's max_len budget (deeper ones are cut back and "
    "rescored), and all cutpoints of a step go in one continue_from call. V(end) = the completion's reward. "
    "V(start): the official code samples MC rollouts from the prompt only when the first token is itself a "
    "cutpoint and otherwise gives the first segment no base (advantage 0); under the probability mask that first "
    "segment holds only p ≥ 0.9 tokens, so the base matters only when token 0 is uncertain. Here V(start) = the "
    "mean reward of the prompt's G samples (base='group', free: they are MC rollouts from the prompt); base='loo'"
    " excludes the completion itself, base='none' is the no-base rule. Probability mask: tokens with p_old ≥ 0.9 "
    "get A = 0 and leave the loss and the whitening statistics (use_prob_mask true in the SPO configs). Whitening"
    " over the kept tokens of the batch, unbiased variance, eps 1e-8 inside the root (treetune masked_whiten; the "
    "official PPO trainer calls it in _training_step, i.e. per micro-batch of per_device_train_batch_size 8 "
    "episodes, statistics gathered across GPUs: an implementation artefact, here the whole batch). "
    "KL: the spec's 'init KL coef 0.05 (fixed)' is trainers/ppo_MATH.jsonnet (adap_kl_ctrl false), but every SPO "
    "config then adds trainers/refKl0.0001 and trainers/klLoss, so the effective run uses β = 1e-4 on a k3 KL in "
    "the loss, on the same tokens as the policy loss (the code's action mask includes the probability mask; here"
    " the spo_mask selector narrows the regularizers' mask too); used here (the code sums KL over tokens per "
    "sequence; here it shares the loss's token-mean aggregation). Trainer settings: G = 8 "
    "(num_rollouts_per_sample), 2 epochs per iteration "
    "(num_epochs_per_iteration 2 in ppo_MATH; the Qwen-1.5B MATH chain config uses 1), temperature 0.6 (the "
    "probability mask and the cutpoints read the tempered probabilities, so it belongs to the method). Left in "
    "the notes (paper scale / model specific): top_p 0.9 for RhoMath (1.0 for Qwen; the mask reads the softmax "
    "without nucleus truncation), lr 1e-6 with 3% warm-up, 512 episodes (64 prompts x 8) per iteration in "
    "mini-batches of 64 (8 optimizer steps per epoch), 1000 iterations, max 1024 new tokens.",
)
