"""OTC-GRPO: GRPO on OTC's tool-integrated reward α·r_tool(m, n)·r_φ, n = the group's fewest calls when correct."""

from grpolab.algorithms.grpo import OBJECTIVE
from grpolab.algorithms.preset import Part, Preset

PRESET = Preset(
    name="otc_grpo",
    paper="Acting Less is Reasoning More! Teaching Model to Act Efficiently (OTC: Optimal Tool Calls)",
    arxiv="2504.14870",
    # OTC-GRPO (Sec. 3.3): n = min tool calls over the group's correct responses, kept per question across epochs
    # (state memory keyed by extras["prompt_id"]); α = 1 and c = 1 are the reference reimplementation's defaults
    shaping=(Part("otc", {"variant": "grpo", "alpha": 1.0, "c": 1.0}),),
    **OBJECTIVE,  # GRPO's advantage, PPO clip 0.2, per-sequence token mean, k3 KL β = 0.04 (DeepSeekMath, Eq. 3)
    trainer={"num_iterations": 1},
    notes="OTC replaces the outcome reward by r = α·r_tool·r_φ (core/otc.py): r_φ is the task's first reward "
    "column (the search task's exact match, search_em), m the rollout's extras['tool_calls'] (multi-turn rollouts; "
    "single-turn rollouts count m = 0, so on such tasks this is GRPO on the first reward). n is the fewest calls "
    "among the group's correct responses; the paper keeps it across epochs per question: the 'otc' part keeps the "
    "smallest n per question in its run state, keyed by extras['prompt_id'] (the question's train row, which the "
    "trainer provides; without it n is the group's own). r_tool = sin(f(m,n)·π/(2n)) peaks at m = n; with n = 0, "
    "cos(m·π/(2m+c)). The paper trains Search-R1 (Qwen2.5 3B/7B, retrieval) and ToRL (code) with GRPO and PPO; "
    "the α and c defaults (1.0, 1.0) follow a third-party reimplementation that matches the paper's formulas (the "
    "paper's values were not confirmed). Tool-output tokens are masked out of the loss by the multi-turn rollout, "
    "as in Search-R1.",
)
