"""rubric_env: Baichuan-M2's improved GRPO for rubric-scored multi-turn consultations (arXiv 2509.02208).

Train it on the ``consultation`` task (``grpolab.data.consultation``: a patient simulator environment and a rubric
reward); as a preset it runs on any task. The objective is GRPO with the changes recalled from the paper's RL
section (the section's text was not reachable from this workspace; see the preset notes):

- no KL term (no reference model);
- clip-higher (DAPO's decoupled clip range, the ``clip_higher`` loss);
- token-level loss normalisation (``token_mean``: Σ_{i,t} l_{i,t} / Σ_i |o_i|);
- mean-centred advantages without the std division (``dr_grpo``: A_i = r_i − mean_g r);
- a length penalty: the SHAPING part ``group_length_reward`` (``grpolab.core.shaping``).
"""

from __future__ import annotations

from grpolab.algorithms.preset import Part, Preset

PRESET = Preset(
    name="rubric_env",
    paper="Baichuan-M2: Scaling Medical Capability with Large Verifier System",
    arxiv="2509.02208",
    shaping=(Part("group_length_reward", {"coef": 0.1}),),  # the length penalty (form: Kimi k1.5 §2.3.3; coef ours)
    advantage=Part("dr_grpo"),  # mean-centred advantage, no std division
    loss=Part("clip_higher", {"epsilon_low": 0.2, "epsilon_high": 0.28}),  # clip-higher (DAPO's values)
    aggregation="token_mean",  # token-level loss normalisation
    regularizers=(),  # no KL term: no reference model is loaded
    trainer={"temperature": 1.0, "top_p": 1.0},
    notes="Source: arXiv 2509.02208 (Baichuan-M2). Verified from stored copies of the paper: its abstract only "
    "(Patient Simulator from de-identified records, Clinical Rubrics Generator, multi-stage RL with 'an improved "
    "GRPO'); the RL section itself was not reachable, so the five changes are the spec's recollection "
    "(part B §13, confidence 'memory'): no KL, clip-higher, token-level loss normalisation, mean-centred advantages "
    "without std division, a length penalty. Assumptions: clip range ε_low 0.2 / ε_high 0.28 from DAPO "
    "(arXiv 2503.14476); 'token-level normalisation' read as DAPO's token_mean (Dr. GRPO's constant normaliser "
    "seq_sum_const is the other reading); the length penalty takes Kimi k1.5's group-relative form (arXiv "
    "2501.12599 §2.3.3) with a gate at the group mean and coef 0.1 (ours). Temperature 1 / top-p 1 follow DAPO. "
    "The rubric reward (Σ w·sat / Σ_{w>0} w, clipped to [-1, 1]) and the patient simulator are in the "
    "'consultation' task (grpolab.data.consultation), not in the preset.",
)
