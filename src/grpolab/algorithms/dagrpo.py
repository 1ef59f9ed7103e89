"""DaGRPO: pair-masked GRPO advantage (low-distinctiveness pairs dropped) plus expert anchors for all-zero groups.

Unverified interpretation (arXiv 2512.06337: abstract only, no code); see the notes and grpolab.core.dagrpo.
"""

from grpolab.algorithms.preset import Part, Preset

PRESET = Preset(
    name="dagrpo",
    paper="DaGRPO: Rectifying Gradient Conflict in Reasoning via Distinctiveness-Aware Group Relative Policy "
    "Optimization",
    arxiv="2512.06337",
    rollout=(
        # off-policy data augmentation: one reference-answer completion for every group where all scored 0
        Part("expert_anchors", {"answer_key": "answer", "template": "{answer}", "hard_signal": "accuracy"}),
        Part("token_ids"),  # last, so the anchors' token ids are stored too (read by the distinctiveness)
    ),
    # sequence-level gradient rectification: pairs with normalised token edit distance < 0.1 are masked (chosen)
    advantage=Part("dagrpo", {"threshold": 0.1, "distance": "edit"}),
    loss=Part("ppo_clip", {"epsilon": 0.2}),  # GRPO's clipped surrogate; anchors enter it plainly (ratio vs old)
    aggregation="token_mean",  # not recovered; token-level mean as the off-policy-guided LUFFY (chosen)
    trainer={"num_iterations": 1},
    notes="UNVERIFIED: only the abstract and summaries of arXiv 2512.06337 were available (no code or full text; "
    "spec part A §6; the arXiv HTML v1 is indexed but only its abstract and the opening of the introduction "
    "were readable; summaries add that the scoring is LLM-based and costly). (1) Gradient rectification: the "
    "GRPO advantage written as a sum over pairs of the group, "
    "A_i = sum_j m_ij (r_i - r_j) / (n (std + 1e-6)), m_ij = 1[d_ij >= tau_d]; with all pairs kept it is the grpo "
    "advantage. The paper's LLM scorer is replaced by a model-free distinctiveness d_ij = token Levenshtein "
    "distance / longer length (our choice: near-duplicate completions with opposite rewards are the 'homogeneous "
    "samples' whose updates on shared tokens conflict); tau_d = 0.1 is our choice. distance='score' uses "
    "|s_i - s_j| of a per-completion score column instead (the form the spec suggests; the closer reading of "
    "'fine-grained scoring', given a judge's scores). (2) Off-policy augmentation: "
    "for each group where every completion has accuracy 0, one expert completion = the row's 'answer' column + "
    "EOS (cut to the generation limit), scored by the task, appended to the group and marked extras['off_policy'] "
    "(as LUFFY / ICPO add one off-policy trajectory). Anchors enter the loss plainly: old log-probs are computed "
    "by the trainer under the current policy, so their ratio is pi/pi_old (1 on-policy), an advantage-weighted "
    "SFT term, not LUFFY's shaped importance weight. No KL term (anchors are off the reference model's support; "
    "LUFFY drops it too). Loss aggregation token_mean and clip 0.2 are choices. Paper scale not recovered.",
)
