"""AsymRE: REINFORCE with a baseline shifted below the group mean (= REC + forward-KL regulariser)."""

from grpolab.algorithms.preset import Part, Preset

PRESET = Preset(
    name="asymre",
    paper="Group-Relative REINFORCE Is Secretly an Off-Policy Algorithm: Demystifying Some Myths About GRPO and "
    "Its Friends",
    arxiv="2509.24203",
    advantage=Part("asymre", {"delta": 0.1}),  # baseline mean_G r − 0.1 (Trinity asymre baseline_shift −0.1)
    loss=Part("rec", {"clip_mode": "none", "weight": "none"}),  # plain −A·log π: AsymRE clips nothing
    aggregation="token_mean",  # Trinity's token-mean
    trainer={"num_generations": 8, "num_iterations": 1, "temperature": 1.0},  # as rec: gsm8k.yaml repeat_times 8
    notes="AsymRE is from Arnal et al., Asymmetric REINFORCE for off-Policy RL (arXiv 2506.20520); arXiv 2509.24203 "
    "shows that shifting the baseline down by δ equals REC with the forward-KL regulariser −δ·log π (its README: "
    "rec loss, regularizer 'forward-kl', coef 0.1, dr_grpo advantage), which gives the same loss gradient. Trinity's "
    "own 'asymre' algorithm pairs this advantage with the 'opmd' loss at τ = 1, i.e. the same gradient halved. "
    "A lone completion (group of size 1) gets A = δ so that asymre − dr_grpo = δ everywhere. Paper scale as for "
    "rec: G = 8, lr 1e-6, 96 prompts per batch.",
)
