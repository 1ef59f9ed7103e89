"""OTC-PPO: PPO on OTC's tool-integrated reward α·cos(m·π/(2m+c))·r_φ (n = 0: every tool call costs)."""

import dataclasses

from grpolab.algorithms.ppo import PRESET as PPO
from grpolab.algorithms.preset import Part

PRESET = dataclasses.replace(
    PPO,
    name="otc_ppo",
    paper="Acting Less is Reasoning More! Teaching Model to Act Efficiently (OTC: Optimal Tool Calls)",
    arxiv="2504.14870",
    # OTC-PPO (Sec. 3.3): no group to estimate n from, so n = 0 and r_tool = cos(m·π/(2m + c)); the reward is
    # replaced first, then PPO's per-token KL penalty is added as in the ppo preset
    shaping=(Part("otc", {"variant": "ppo", "alpha": 1.0, "c": 1.0}), *PPO.shaping),
    notes="PPO's parts unchanged (ppo.py: GAE γ = 1, λ = 0.95, clip 0.2, value loss, k1 KL 0.05 in the reward, "
    "4 epochs) with the outcome reward replaced by OTC's r = α·r_tool·r_φ, r_tool = cos(m·π/(2m+c)) (OTC-PPO has no "
    "group, so n = 0: the reward falls with every call, from 1 at m = 0 to 0.5 at m = 1 with c = 1). r_φ is the "
    "task's first reward column (search_em on the search task), m = extras['tool_calls'] (0 on single-turn tasks: "
    "there it is PPO on the first reward). α = 1 and c = 1 follow a third-party reimplementation of the paper's "
    "formulas (paper values not confirmed). Tool-output tokens are masked out of the loss by the multi-turn rollout.",
)
