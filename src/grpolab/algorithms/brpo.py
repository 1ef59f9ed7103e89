"""BRPO / AnytimeReasoner: thinking cut at budgets, summaries scored at each budget, budget-relative baseline."""

from grpolab.algorithms.preset import Part, Preset

PRESET = Preset(
    name="brpo",
    paper="Optimizing Anytime Reasoning via Budget Relative Policy Optimization",
    arxiv="2505.13438",
    rollout=(
        Part(
            "brpo_budgets",
            {
                "num_budgets": 4,  # S = 4 (n_budget_support=4, README main runs; 2k/4k/6k/8k of 8000)
                "n_summary": 4,  # README main runs: n_summary=4
                "summary_tokens": 8,  # paper/code: 128 at L = 8000; an arith answer is <= 4 chars + EOS
                "summary_marker": "",  # code: "...\n\n...\n\n</think>\n\n**Final Answer**\n"; arith has no separator
            },
        ),
    ),
    advantage=Part(
        "brpo",
        {
            "prior": "linear",  # AR-linear (README main results also run uniform and base)
            "variance_reduction": "brpo",  # b = (s·V1 + (S−s)·V2)/S
            "summary_method": "brpo",  # every summary trained (decoupled summary policy)
        },
    ),
    selectors=(Part("mask_prefix"),),  # summary rows: the thinking prefix and marker were given, not sampled
    loss=Part("ppo_clip", {"epsilon": 0.2}),  # verl clip_ratio 0.2
    aggregation="seq_sum_const",  # code: verl_F.just_mean = Σ masked loss / (rows × padded length)
    trainer={"num_generations": 8, "num_iterations": 1, "temperature": 1.0},  # rollout.n=8, ppo_epochs 1, T 1.0
    notes="Sources: paper arXiv 2505.13438 and the official code sail-sg/AnytimeReasoner (verl/verl/trainer/ppo/"
    "brpo.py, scripts/train/run_1.5b_8k.sh, README), read for this preset. Verified: budgets L//S·j, priors "
    "uniform/linear(∝ b_j)/base, Ret_s = Σ_{j≥s} p_j r̄_j, V1 = 2^j-weighted mean of earlier r̄ times Σ_{j≥s} p_j, V2 = "
    "group mean of Ret_s, b = (s·V1 + (S−s)·V2)/S with 0-based s, summary advantage r − mean over the same "
    "(trajectory, budget) (group mean at the budget when n_summary = 1), G = 8, 64 prompts, mini-batch 32 prompts "
    "(2 updates per rollout: a trainer setting, not set here), lr 1e-6, temperature 1.0, no KL loss, no entropy "
    "bonus, clip 0.2, summaries of at most 128 tokens. Interpretation choices: (1) the char-level arith task has no "
    "</think> separator, so summary_marker is empty and a summary is the continuation of the cut completion, scored "
    "as a whole text; (2) a completion that ended (EOS) within a budget already holds its answer: its own reward is "
    "its budget reward there and no summary is sampled (the paper always samples summaries after </think>); (3) "
    "summaries are separate rows (full completions with the prefix masked by mask_prefix) instead of the code's "
    "tree-attention packing, so seq_sum_const normalises by all rows rather than by thinking trees (same relative "
    "token weights, different overall scale); (4) a prompt with a single thinking trajectory gets V2 = its own "
    "return (the code: 0 when G = 1). summary_tokens 8 is sized for the tiny arith runs (paper 128). "
    "The GRPO recipe of the paper is n_summary=1, num_budgets=1, prior='base', variance_reduction='v2only', "
    "summary_method='grpo'.",
)
