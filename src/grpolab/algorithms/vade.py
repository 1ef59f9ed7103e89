"""VADE: GRPO whose prompts are chosen by Thompson sampling of online Beta difficulty estimates (prompt sampler
``vade``, math in ``core/vade.py``)."""

from grpolab.algorithms.grpo import OBJECTIVE
from grpolab.algorithms.preset import Preset

PRESET = Preset(
    name="vade",
    paper="VADE: Variance-Aware Dynamic Sampling via Online Sample-Level Difficulty Estimation for Multimodal RL",
    arxiv="2511.18902",
    # VADE is a plug-in sampler for GRPO / GSPO; the objective is GRPO's (DeepSeekMath, Eq. 3), unchanged
    **OBJECTIVE,
    trainer={
        "num_iterations": 1,
        "sampler": "vade",
        # λ1 (selected rows, "fast adaptation") and λ2 (unselected rows, "gradual decay"): the worked example of the
        # paper's framework figure; unverified as the values of its experiments
        "sampler_args": {"decay_selected": 0.2, "decay_unselected": 0.999},
    },
    notes="Sources: the abstract and the framework figure with caption (project page VADE-RL.github.io, the paper's "
    "overview figure); the method section and the code (github.com/FloSophoraeX/VADE) were out of reach. Per row, "
    "(α, β) are decayed counts of correct / incorrect rollouts; p ~ Beta(α+1, β+1) is drawn for every row "
    "(Thompson sampling), scored by InfoGain I = p(1−p)² and the top-B rows are rolled out (the figure says "
    "'Select top-B'). Two-scale prior decay after each step's rollouts (figure): selected rows α ← λ1·α + r, "
    "β ← λ1·β + G − r; unselected rows α ← λ2·α, β ← λ2·β. λ1 = 0.2 and λ2 = 0.999 are read off the figure's worked "
    "example ((0.1, 8.4) with 1/8 correct -> (1.02, 8.68); (9.0, ·) -> 8.991; its printed β = 1.998 must be 0.1998): "
    "unverified as the experiments' values. The λ2 decay is applied lazily (λ2^(idle steps) when a row is read), equal "
    "to decaying every idle row each step. Accuracies are counted softly (r = Σ accuracy). No extra rollouts: one "
    "round per step, every group trains. Every row is scored each step (about 4 ms for 19,500 rows on one CPU core); "
    "sampler_args candidates=k scores a seeded random subset instead. The paper's ablation (Table 2, project page): "
    "p(1−p) instead of p(1−p)² loses 1.1 points, greedy instead of Thompson 1.5, 'last update' 1.65. GRPO parts "
    "and their defaults as in the grpo preset (β = 0.04, ε = 0.2); the paper trains Qwen2.5-VL models with GRPO and "
    "GSPO on multimodal math (batch sizes and learning rate not read).",
)
