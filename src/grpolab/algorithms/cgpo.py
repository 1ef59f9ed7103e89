"""CGPO: mixture of judges + calibrated reward + CRRAFT (the paper's and TRL's default constrained optimizer)."""

from grpolab.algorithms.preset import Part, Preset

PRESET = Preset(
    name="cgpo",
    paper="The Perfect Blend: Redefining RLHF with Mixture of Judges",
    arxiv="2409.20370",
    # r(x, ȳ): the task's reference answer scored by every reward function; appended for CRRAFT's ȳ fallback
    rollout=(Part("cgpo_baseline", {"answer_key": "answer", "template": "{answer}", "append": True}),),
    # judges = columns named judge_*, reward model = the other column (rollout.reward on a task without judges);
    # KL_thr has no default in TRL (it refuses to train without one): 10 nats of summed log-ratio, our choice
    shaping=(Part("cgpo_judges", {"kl_threshold": 10.0}),),
    advantage=Part("dr_grpo"),  # not read by the CGPO losses (their targets come from cgpo_judges); logged only
    loss=Part("crraft"),  # TRL CGPOConfig.rlhf_optimizer default; --loss crpg / --loss codpo switch
    aggregation="token_mean",  # not read by crraft / codpo (paper normalisers); crpg divides by tokens like it
    trainer={
        "num_generations": 4,  # TRL CGPOConfig.k = 4
        "temperature": 0.9,  # TRL CGPOConfig.temperature
        "num_iterations": 1,  # one update per rollout batch (TRL's training_step)
        "minibatch_groups": True,  # CODPO pairs and CRRAFT picks stay inside one (micro-)batch
    },
    notes="Single task, single objective (paper Sec. 4.1, TRL CGPOTrainer PR #2190); the multi-task version (one RM, "
    "judge set, optimizer, k and KL_thr per task, gradients summed) is not implemented. Judges are reward functions "
    "returning 0/1 (grpolab.rewards.judges: judge_answer, judge_format, judge_length, judge_refusal, LLMJudge); "
    "cgpo_judges treats columns named judge_* as judges (J = all pass) and the remaining column as the reward model, "
    "or takes judges=[...] / reward=... (--shaping). On a task with one reward column there is no judge: J = 1 and "
    "r = the task reward. r(x, ȳ) comes from the cgpo_baseline strategy scoring the row's 'answer' column as a "
    "completion (0 without it). KL = Σ_t (log π_old − log π_ref) of the response (TRL's sequence log-ratio). "
    "KL_thr = 10: the paper gives no value we could read and TRL has no default; 10 nats over a response is loose "
    "(the paper's advice for verifiable tasks: math, code, instruction following) and should be tightened for chat "
    "or scaled with the response length. CRRAFT: R̃ = 1[KL ≤ KL_thr]·J·R_cal, best response per prompt, fallback to "
    "ȳ with R̃ = 0.5 when it passes, loss −Σ R̃ log π(y_best) / #selected. CRPG: R̃ = J·R_cal·clamp(1 − KL/KL_thr, 0), "
    "coefficient R̃ − batch mean (TRL), loss over #completion tokens. CODPO: chosen = best passing, rejected = worst "
    "failing (or worst overall), β 0.1, λ 5 (TRL defaults). DPO warm-up (recommended by the paper) is not part of "
    "the preset.",
)
