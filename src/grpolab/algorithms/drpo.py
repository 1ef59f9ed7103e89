"""DR-PO: PPO whose rollouts restart inside reference responses (dataset resets), roll-in tokens out of the loss."""

from grpolab.algorithms.preset import Part, Preset

PRESET = Preset(
    name="drpo",
    paper="Dataset Reset Policy Optimization for RLHF",
    arxiv="2404.08495",
    # dataset reset: the reference's first h tokens forced, h uniform on {1..L-1} per completion (RollinProcessor):
    # reset_prob = the code's beta = 1.0, min_rollin 1 = the code's shortest roll-in
    rollout=(
        Part("dataset_reset", {"reset_prob": 1.0, "min_rollin": 1, "answer_key": "answer", "template": "{answer}"}),
    ),
    # the rest is PPO exactly as the ppo preset (the DR-PO code's PPO part equals its PPO baseline's)
    shaping=(Part("kl_reward", {"coef": 0.05, "estimator": "k1", "level": "token"}),),  # code: kl_coef 0.05
    advantage=Part("gae", {"gamma": 1.0, "lam": 0.95}),  # code: gamma 1, lam 0.95, advantages whitened
    loss=Part("ppo_clip", {"epsilon": 0.2}),  # code: cliprange 0.2
    aggregation="token_mean",  # code: Σ(term · ~rollin_mask) / Σ ~rollin_mask, a token mean over sampled tokens
    selectors=(Part("mask_prefix"),),  # roll-in tokens get no policy gradient (the code's ~rollin_mask)
    value_loss={"clip_eps": 0.2},  # code: cliprange_value 0.2
    trainer={"vf_coef": 0.5, "num_iterations": 4},  # as ppo; code: noptepochs 4 (vf_coef 0.1 there, see notes)
    notes="DR-PO (arXiv 2404.08495; code github.com/Cornell-RL/drpo src/tldr/drpo.py, RollinProcessor in "
    "github.com/Cornell-RL/tril src/tril/utils/logit_processors.py; spec part B §14e). (1) Resets: the code draws "
    "per batch row a reset with probability beta (default 1.0, always) and a roll-in length h uniform on {1, ..., "
    "L-1}, L = reference tokens up to the first pad (EOS included), h = 0 when L < 2: at least one reference token "
    "is forced and the last (EOS) never is. Here: per prompt group (the code samples one response per prompt, so "
    "per row = per prompt there; our G completions of a reset group each draw their own h), reference = the task's "
    "'answer' column + EOS cut to the generation limit (the task's chosen response; arith has no preference pairs, "
    "its answer is the reference), roll-in + sampled tokens <= max_new_tokens (the code forces the roll-in inside "
    "its fixed response_length). min_rollin=0 (our option, off by default) makes the prompt itself a reset state: "
    "with the code's h >= 1 a reset row never trains its first token, which on arith decides most answers. (2) "
    "Loss: only the PPO policy loss drops the roll-in tokens (selector mask_prefix, the code's pg_loss = "
    "sum(max(pg1, pg2) * ~rollin_mask) / sum(~rollin_mask)); as in the code the reward is the task score of the "
    "full prefix + generated response, and the per-token KL penalty, GAE, the advantage whitening and the value "
    "loss cover every token, roll-in included (the trainer's critic trains on the mask before selectors). Reset "
    "rows stay on-policy (off_policy False): their sampled tokens are the current policy's given the prefix, and "
    "old log-probs of roll-in tokens only enter masked terms. (3) PPO parts and values are those of the ppo preset;"
    " the code's PPO (shared with its PPO baseline) has kl 0.05, 4 epochs, clip 0.2 / value clip 0.2, gamma 1, "
    "lambda 0.95, but vf_coef 0.1, whitened rewards, temperature 0.7, lr 3e-6 and response_length 53 (TL;DR, Pythia"
    " 2.8B LoRA): the TL;DR setup, not the method, so the ppo preset's vf_coef 0.5 is kept and reset_prob = 0 is "
    "exactly the ppo preset. (4) Cost: the main batch is sampled before rollout strategies run, so with beta = 1 it"
    " is sampled and dropped (1.5x PPO's sampled tokens on arith, the reset rollouts sampling only their suffix); "
    "the logged accuracy is that of the dropped main sample (the policy from the prompt alone), reset rollouts "
    "report reset_accuracy / reset_reward.",
)
