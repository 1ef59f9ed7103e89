"""REC: group-mean REINFORCE with a detached clip mask, read as an off-policy algorithm (REC-OneSide-NoIS)."""

from grpolab.algorithms.preset import Part, Preset

PRESET = Preset(
    name="rec",
    paper="Group-Relative REINFORCE Is Secretly an Off-Policy Algorithm: Demystifying Some Myths About GRPO and "
    "Its Friends",
    arxiv="2509.24203",
    advantage=Part("dr_grpo"),  # REC baseline r − mean_G r; std normalisation off (rec_advantage std_normalize=False)
    loss=Part(
        "rec",
        {
            "clip_mode": "one-side",  # REC-OneSide: GRPO's clipping kept as a mask on a detached ratio
            "weight": "none",  # NoIS: the paper finds importance weights unnecessary
            "epsilon_low": 0.2,  # README / gsm8k.yaml: ε_low = ε_high = 0.2
            "epsilon_high": 0.2,
        },
    ),
    aggregation="token_mean",  # Trinity's loss_agg_mode "token-mean"
    # G = 8 (gsm8k.yaml repeat_times 8); each batch used once; rollout temperature 1.0
    trainer={"num_generations": 8, "num_iterations": 1, "temperature": 1.0},
    notes="Preset = REC-OneSide-NoIS (examples/rec_gsm8k/README.md in Trinity-RFT), the variant the paper puts "
    "forward: one-side clip mask, no importance weights, no std normalisation. gsm8k.yaml's template default "
    "clip_mode 'none' is the paper's vanilla-REINFORCE baseline (rec loss with its defaults); other variants are loss "
    "options: REC-TwoSide-IS (clip_mode='two-side', weight='importance_sampling'), REC-Ring-NoIS (clip_mode='ring', "
    "ε' 0.6 / 2.0), the widened band (0.6, 2.0), RED-Weight (weight='advantage', temperature 1.0), REP k2 = Kimi's "
    "OPMD (regularizer='k2', regularizer_coef 0.1) and forward-KL = AsymRE (see the asymre preset); GRPO = "
    "one-side + IS + advantage grpo(ddof=0). RED-Drop (drop extra negatives to balance a group) is not implemented. "
    "Paper scale: Qwen2.5-3B-Instruct, G = 8, 96 prompts per batch, lr 1e-6, grad clip 1.0, sync_interval 20 (the "
    "rollout model lags up to 20 steps; this trainer's staleness comes only from num_iterations / minibatches, so "
    "with one on-policy pass the mask is all ones and REC equals REINFORCE with the dr_grpo advantage). A lone "
    "completion (group of size 1) gets A = 0 here (dr_grpo: r − its own mean); Trinity's rec_advantage sets the "
    "baseline of a size-1 group to 0 instead (A = r).",
)
