"""OPMD: online policy mirror descent as Trinity's standalone loss −A·log π / (1 + τ)."""

from grpolab.algorithms.preset import Part, Preset

PRESET = Preset(
    name="opmd",
    paper="Group-Relative REINFORCE Is Secretly an Off-Policy Algorithm: Demystifying Some Myths About GRPO and "
    "Its Friends",
    arxiv="2509.24203",
    advantage=Part("dr_grpo"),  # Trinity opmd_advantage default opmd_baseline="mean" (= r − mean_G r)
    loss=Part("opmd", {"tau": 1.0}),  # Trinity opmd_policy_loss: −A·log π / (1 + τ), τ = 1.0
    aggregation="token_mean",  # Trinity: masked_mean over all response tokens
    trainer={"num_generations": 8, "num_iterations": 1, "temperature": 1.0},  # as rec: gsm8k.yaml repeat_times 8
    notes="OPMD comes from Kimi k1.5 (arXiv 2501.12599, Sec. 2.3.2); arXiv 2509.24203 reads it as REINFORCE plus a "
    "regulariser. This preset is Trinity-RFT's standalone 'opmd' algorithm (policy loss 'opmd', τ = 1, mean "
    "baseline). The exact OPMD baseline τ·logavgexp(r/τ) is advantage 'opmd' (use the same τ as the loss). Kimi's "
    "form as the paper writes it, REINFORCE + τ·(log π − log π_old)², is loss rec(regularizer='k2', "
    "regularizer_coef=0.1) with advantage dr_grpo. Trinity's OPMD config also names a k2 KL-to-reference loss; it "
    "is left out here (coefficient 0, as in the paper's runs). A group of size 1 gets A = 0 (dr_grpo, and the "
    "'opmd' advantage: logavgexp of one reward is that reward); Trinity's OPMD strategy uses baseline 0 (A = r) "
    "there. Paper scale as for rec: G = 8, lr 1e-6, 96 prompts.",
)
