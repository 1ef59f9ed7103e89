"""GSPO: a length-normalised sequence-level importance ratio with sequence-level clipping."""

from grpolab.algorithms.preset import Part, Preset

PRESET = Preset(
    name="gspo",
    paper="Group Sequence Policy Optimization",
    arxiv="2507.18071",
    advantage=Part("grpo", {"scale": "group"}),
    loss=Part("gspo", {"epsilon_low": 3e-4, "epsilon_high": 4e-4}),
    aggregation="seq_mean_token_mean",  # with a per-sequence ratio this is the paper's mean over sequences
    notes="ε_left 3e-4, ε_right 4e-4 from the paper; no KL. Implemented as GSPO-token, which equals the "
    "sequence-level objective in value and gradient when advantages are per sequence.",
)
