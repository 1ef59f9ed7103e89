"""D³S on GRPO: max-Var(A) rollout subset per group, top |A|·H tokens, ratios relaxing to 1 (arXiv 2509.22115)."""

from grpolab.algorithms.preset import Part, Preset

PRESET = Preset(
    name="d3s",
    paper="Learning More with Less: A Dynamic Dual-Level Down-Sampling Framework for Efficient Policy Optimization",
    arxiv="2509.22115",
    advantage=Part("grpo", {"scale": "group"}),  # D³S plugs into GRPO (also DAPO / GSPO): GRPO's advantage
    selectors=(
        Part(
            "d3s",
            {
                "sample_ratio_start": 0.5,  # m/n at step 0: not recovered from the paper; PODS's n/2 (chosen)
                "sample_ratio_end": 1.0,  # the schedule relaxes to no down-sampling (paper: "gradually relaxes")
                "token_ratio_start": 0.2,  # top-20 % |A|·H tokens at step 0: not recovered; 80/20 rule (chosen)
                "token_ratio_end": 1.0,
                "schedule": "linear",  # form not recovered (chosen); "cosine" is the other option
                "sample_scope": "group",  # D3S-I (intra-group), the variant the paper finds the more robust
                "token_scope": "batch",
            },
        ),
    ),
    loss=Part("ppo_clip", {"epsilon": 0.2}),  # GRPO's clipped surrogate
    aggregation="seq_mean_token_mean",  # GRPO (DeepSeekMath Eq. 3), over the kept tokens of each kept rollout
    regularizers=(Part("kl", {"coef": 0.04, "estimator": "k3"}),),  # GRPO's k3 KL in the loss, as the grpo preset
    trainer={"num_iterations": 1},
    notes="Sources: paper abstract and summaries (arXiv 2509.22115; the code is in the supplement, not read); spec "
    "part B §4. The abstract selects samples 'across groups' (cross-group D3S: sample_scope='batch'); summaries "
    "report the intra-group variant D3S-I as the more robust (unaligned models), our default (a choice). "
    "Whether D3S re-normalises A on the kept subset is not recovered: the already computed A are kept (the "
    "abstract ranks rollouts by Var(A)). Sample level: max-variance subset of m = ceil(ratio*n) rollouts per "
    "group (D3S-I) by the exact "
    "PODS rule (arXiv 2504.13818: sort by A, top-k + bottom-(m-k), scan k; ties: stable index order, smallest "
    "k); per-completion A = mean of the token advantages. Token level: score |A|*H with H the rollout policy's "
    "entropy (extras['old_entropy']), keep exactly ceil(rho*N) of the kept rollouts' tokens over the batch, ties "
    "in row-major order. Schedule: ratio = start + (end - start)*step/(total_steps - 1) (end reached at the last "
    "step); start values 0.5 / 0.2, the linear form and batch-wide token ranking are choices (not recovered). "
    "The GRPO base (k3 KL 0.04, clip 0.2, 1/|o_i| aggregation) is the grpo preset's; the paper's verl GRPO "
    "settings were not recovered. Paper scale: Qwen2.5 / Llama3.1, lr and batch sizes not recovered.",
)
