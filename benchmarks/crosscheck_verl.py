"""Numerical cross-check of grpolab's core formulas against verl 0.9.1 (``verl.trainer.ppo.core_algos``).

Run BY HAND, never in CI: verl is not a dependency of grpolab. It lives in its own virtual environment,
because the verl wheel ships top-level ``tests/`` and ``scripts/`` packages that would shadow this project's
own if installed into the project's ``.venv``, and a full ``pip install verl`` downgrades transformers::

    python3 -m venv ../verl-ref/venv
    ../verl-ref/venv/bin/pip install torch==2.13.0                       # CPU wheel
    ../verl-ref/venv/bin/pip install --no-deps verl==0.9.1
    ../verl-ref/venv/bin/pip install packaging numpy ray tensordict==0.10.0 omegaconf transformers \
        codetiming orjson pyyaml

    cd <repository root>
    OMP_NUM_THREADS=1 PYTHONPATH=src ../verl-ref/venv/bin/python benchmarks/crosscheck_verl.py

grpolab is imported from ``src`` (``PYTHONPATH=src``), verl from the venv; this file only *calls* verl.

What it does: on several seeded random batches (B = 12 completions in unequal, non-contiguous groups that
include size-1 groups; T = 9 positions with right padding, and on half of the batches also masked "holes"
inside a completion as tool output makes them; float64 throughout; finite garbage at masked positions) it
computes each grpolab part and its verl counterpart and prints one row per (part, settings): the largest
absolute difference of the value over all batches, of the gradient where the part is a loss (gradient with
respect to the log-probs / values), and a status at tolerance 1e-5:

- ``PASS``: grpolab and verl agree.
- ``CONV``: they differ by a documented convention (numbered notes under the table). The row then also
  shows the residual between verl and a *model* of that convention built from grpolab's own output (e.g.
  "verl gives a lone completion A = r / (1 + ε)"); the row is CONV only if that residual is within tolerance,
  so every difference is explained, not just tolerated.
- ``FAIL``: an unexplained difference. The exit code is 1 if any row FAILs, 2 if verl cannot be imported.

Options: ``--seeds N`` (number of batches, default 6), ``--tol`` (default 1e-5).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
from torch import Tensor

from grpolab.core.advantages import ADVANTAGES, compute_gae, discounted_returns, outcome_token_rewards
from grpolab.core.aggregation import aggregate
from grpolab.core.kl import kl_estimate
from grpolab.core.losses import POLICY_LOSSES, value_loss
from grpolab.core.regularizers import REGULARIZERS
from grpolab.core.shaping import SHAPING
from grpolab.core.stats import group_count, group_mean, masked_mean, masked_var
from grpolab.core.types import Rollout

DT = torch.float64
B, T = 12, 9
C_NORM = 16  # the Dr. GRPO constant C (generation limit) used for seq_sum_const / seq-mean-token-sum-norm
VERL_NO_DUAL_CLIP = 1e9  # verl's vanilla loss always applies dual clip (c > 1 required); a huge c turns it off

# grpolab aggregation mode -> (verl loss_agg_mode, verl loss_scale_factor)
AGG_MODES = {
    "token_mean": ("token-mean", None),
    "seq_mean_token_mean": ("seq-mean-token-mean", None),
    "seq_mean_token_sum": ("seq-mean-token-sum", None),
    "seq_sum_const": ("seq-mean-token-sum-norm", C_NORM),
}

NOTES = {
    "lone": "verl gives a completion alone in its group mean 0 (and std 1), so its advantage is r (GRPO: r/(1+ε), "
    "RLOO/Dr.GRPO: r); grpolab follows the spec (baselines.md): mean = r, nothing to compare, A = 0. "
    "Residual: verl vs that model on the size-1 rows (n >= 2 rows are checked in the row above).",
    "rfpp_lone": "REINFORCE++-baseline: as [lone], verl subtracts mean 0 for a size-1 group, so its raw reward "
    "enters the batch whitening and shifts every row's whitened advantage. Model: grpolab reinforce_pp "
    "(baseline none, γ=1) on rewards centred verl's way (size-1 rows uncentred).",
    "rfpp_dense": "verl's reinforce_plus_plus_baseline is outcome-only: it sums ALL token rewards into one score, "
    "centres it within the group, broadcasts it to every token and ignores γ; grpolab centres the outcome reward "
    "only, adds dense token rewards per token and discounts (REINFORCE++ reward-to-go). Model: grpolab "
    "baseline=group, γ=1 on reward' = reward + Σ_t token_reward.",
    "remax_mask": "verl's ReMax advantage is the reward-to-go of the masked rewards minus the baseline times the "
    "mask, so at a masked hole INSIDE a completion (tool output) it is r_i, not 0; grpolab writes 0 at every "
    "masked position. Valid tokens agree (row above); masked positions never enter a masked loss. Model: r_i at "
    "holes before the last valid token.",
    "gae_mask": "verl's GAE does skip masked holes exactly like grpolab (valid tokens agree, rows above; older "
    "verl releases took values[:, t+1] whatever the mask), but it leaves non-zero values at masked positions: "
    "the carried A of the next valid token (0 after the last), then whitened. grpolab writes 0 there. Model: "
    "that carried value, whitened with the valid-token mean and unbiased variance, eps 1e-8 inside the root.",
    "norm_default": "verl's seq-mean-token-sum-norm divides by loss_scale_factor, which defaults to "
    "loss_mask.shape[-1], the padded width of the (micro-)batch tensor, so the loss changes when the same batch "
    "is padded wider (here T -> T+7); grpolab's seq_sum_const requires the constant C (Dr. GRPO: the generation "
    "limit) explicitly. With loss_scale_factor = C they agree (rows above). Model: grpolab x T/(T+7).",
    "k3_clamp": "verl clamps k3 to [-10, 10] (and x = ref - logp to [-20, 20]) 'for numerical stability'; "
    "grpolab computes the exact expm1(x) - x with no clamp. They differ only where k3 > 10 (x > ~2.53), where "
    "verl's value is 10 and its gradient 0. Model: min(k3, 10), gradient 0 where clamped.",
    "logratio_clamp": "verl's vanilla loss clamps log ρ to [-20, 20] before exp (no gradient beyond); grpolab "
    "uses the exact ratio (documented in grpolab.core.losses). Only matters for |log ρ| > 20, i.e. a broken "
    "old_logp; with A < 0 and dual clip off the loss then differs by orders of magnitude. Model: grpolab on the "
    "clamped log-ratio, gradient 0 where clamped. (verl's GSPO likewise clamps the sequence log-ratio at 10.)",
    "dual_default": "verl's vanilla PPO loss always applies dual clip with c = clip_ratio_c (default 3, must be "
    "> 1, cannot be switched off); grpolab's dual_clip defaults to None (off), as the spec. The rows above pass "
    "c = 1e9 to verl to switch it off. Model: grpolab ppo_clip with dual_clip=3.",
}


# ------------------------------------------------------------------------------------------------ verl access
def load_verl() -> SimpleNamespace:
    """Import verl lazily (it is not a dependency of grpolab); exit 2 with the install recipe if it is missing."""
    try:
        import verl.trainer.ppo.core_algos as ca
        from verl.trainer.config import AlgoConfig
        from verl.workers.config import ActorConfig
    except ImportError as e:  # pragma: no cover - depends on the environment
        print(f"cannot import verl ({e}); see this script's docstring for the separate venv recipe", file=sys.stderr)
        sys.exit(2)
    import verl

    return SimpleNamespace(ca=ca, AlgoConfig=AlgoConfig, ActorConfig=ActorConfig, version=verl.__version__)


def actor_config(V: SimpleNamespace, *, low: float, high: float, c: float = 3.0, lsf: int | None = None) -> Any:
    cfg = V.ActorConfig(
        strategy="fsdp",
        rollout_n=1,
        ppo_micro_batch_size_per_gpu=1,
        clip_ratio=low,
        clip_ratio_low=low,
        clip_ratio_high=high,
        clip_ratio_c=c,
    )
    if lsf is not None:
        cfg.global_batch_info["loss_scale_factor"] = lsf
    return cfg


# ------------------------------------------------------------------------------------------------ batches
@dataclass
class Batch:
    name: str
    rollout: Rollout  # grpolab input: token fields hold finite garbage at masked positions
    index: np.ndarray  # verl's group ids: one uid string per completion
    maskf: Tensor  # [B, T] float mask (verl's response_mask)
    sizes: Tensor  # [B] size of each completion's group
    tlr_outcome: Tensor  # [B, T] verl token_level_rewards: outcome reward on the last valid token, 0 elsewhere
    tlr_dense: Tensor  # [B, T] the same plus the dense token_reward at valid tokens
    logp: Tensor  # [B, T] current log-probs (old + N(0, 0.15), 10% outliers of ±1..2 to reach the dual clip)
    logp_small: Tensor  # [B, T] old + N(0, 6e-4): GSPO sequence ratios around its 3e-4 / 4e-4 band
    adv_tok: Tensor  # [B, T] token-level advantages N(0, 1)
    vpred: Tensor  # [B, T] current critic values (old values + N(0, 0.3))
    returns: Tensor  # [B, T] value targets
    holes: bool = field(default=False)


def make_batch(seed: int) -> Batch:
    gen = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)

    def randn(*shape: int) -> Tensor:
        return torch.randn(*shape, generator=gen, dtype=DT)

    # unequal groups with at least one of size 1, ids shuffled so that groups are non-contiguous
    sizes_list = [1]
    while sum(sizes_list) < B:
        sizes_list.append(min(int(rng.integers(2, 6)), B - sum(sizes_list)))
    group = torch.as_tensor(rng.permutation(np.repeat(np.arange(len(sizes_list)), sizes_list)), dtype=torch.long)
    sizes = torch.bincount(group)[group]  # [B]

    holes = seed % 2 == 1
    lengths = torch.as_tensor(rng.integers(2, T + 1, size=B))  # [B]
    lengths[0] = T
    mask = torch.arange(T)[None, :] < lengths[:, None]  # [B, T] right padding
    if holes:  # tool-output holes strictly inside a completion (first and last valid token kept)
        inner = (torch.arange(T)[None, :] > 0) & (torch.arange(T)[None, :] < lengths[:, None] - 1)
        mask = mask & ~(inner & torch.as_tensor(rng.random((B, T)) < 0.3))

    # binary rewards on even seeds (zero-variance groups occur), Gaussian on odd ones
    reward = torch.as_tensor(rng.integers(0, 2, size=B), dtype=DT) if seed % 2 == 0 else randn(B)

    def tok(x: Tensor) -> Tensor:  # finite garbage at masked positions
        return torch.where(mask, x, 3.0 * randn(B, T))

    old = tok(-torch.rand(B, T, generator=gen, dtype=DT) * 3.0 - 0.1)
    outlier = torch.rand(B, T, generator=gen, dtype=DT) < 0.1  # [B, T]
    jump = torch.sign(randn(B, T)) * (1 + torch.rand(B, T, generator=gen, dtype=DT))  # ±1..2: ratios e^±1..2
    logp = tok(old + 0.15 * randn(B, T) + torch.where(outlier, jump, 0.0))
    logp_small = tok(old + 6e-4 * randn(B, T))
    ref = tok(old + 0.3 * randn(B, T))
    token_reward = tok(0.1 * randn(B, T))
    value = tok(randn(B, T))
    vpred = tok(value + 0.3 * randn(B, T))
    returns = tok(randn(B, T))
    adv_tok = tok(randn(B, T))
    greedy = randn(int(group.max()) + 1)[group]  # one greedy decode per prompt

    rollout = Rollout(
        group=group,
        mask=mask,
        reward=reward,
        old_logp=old,
        ref_logp=ref,
        token_reward=token_reward,
        value=value,
        extras={"greedy_reward": greedy},
    )
    maskf = mask.to(DT)
    last = rollout.last_index  # [B]
    tlr_outcome = torch.zeros(B, T, dtype=DT)
    tlr_outcome[torch.arange(B), last] = reward
    tlr_dense = tlr_outcome + token_reward * maskf
    return Batch(
        name=f"seed{seed}",
        rollout=rollout,
        index=np.array([f"uid-{g}" for g in group.tolist()], dtype=object),
        maskf=maskf,
        sizes=sizes,
        tlr_outcome=tlr_outcome,
        tlr_dense=tlr_dense,
        logp=logp,
        logp_small=logp_small,
        adv_tok=adv_tok,
        vpred=vpred,
        returns=returns,
        holes=holes,
    )


# ------------------------------------------------------------------------------------------------ results
def diff(a: Tensor, b: Tensor, where: Tensor | None = None) -> float:
    d = (a.detach().to(DT) - b.detach().to(DT)).abs()
    if where is not None:
        d = d[where]
    return float(d.max()) if d.numel() else 0.0


def vg(fn: Callable[..., Any], x: Tensor, *args: Any, **kwargs: Any) -> tuple[Tensor, Tensor, Any]:
    """``fn(x, *args, **kwargs)``: its value, the gradient of its sum with respect to x (the elementwise
    derivative for [B, T] outputs) and, when fn returns ``(loss, metrics)``, the metrics (else None)."""
    x = x.detach().clone().requires_grad_(True)
    out = fn(x, *args, **kwargs)
    out, aux = out if isinstance(out, tuple) else (out, None)
    (g,) = torch.autograd.grad(out.sum(), x)
    return out.detach(), g, aux


# small adapters so that the differentiated tensor comes first (vg's convention)
def ours_micro(v: Tensor, m: Tensor, mode: str, parts: tuple[slice, ...], **kw: Any) -> Tensor:
    return sum(aggregate(v[s], m[s], mode, **kw) for s in parts)  # type: ignore[return-value]


def verl_micro(v: Tensor, ca: Any, mf: Tensor, vmode: str, parts: tuple[slice, ...], **kw: Any) -> Tensor:
    return sum(ca.agg_loss(v[s], mf[s], vmode, **kw) for s in parts)  # type: ignore[return-value]


def verl_kl(lp: Tensor, ca: Any, ref: Tensor, name: str, mf: Tensor) -> Tensor:
    return ca.kl_penalty(lp, ref, name) * mf


def verl_kl_loss(lp: Tensor, ca: Any, ref: Tensor, mf: Tensor, vmode: str, lsf: int | None, coef: float) -> Tensor:
    """verl's actor: ``kl_coef * agg_loss(kl_penalty(logp, ref, "low_var_kl"), mask, loss_agg_mode)``."""
    return coef * ca.agg_loss(ca.kl_penalty(lp, ref, "low_var_kl"), mf, vmode, loss_scale_factor=lsf)


def verl_policy(lp: Tensor, fn: Any, old: Tensor, adv: Tensor, mf: Tensor, vmode: str, cfg: Any) -> Any:
    return fn(old, lp, adv, mf, loss_agg_mode=vmode, config=cfg)


@dataclass
class Row:
    part: str
    settings: str
    dv: float = 0.0
    dg: float | None = None
    resid: float | None = None  # residual of verl vs the convention model (CONV rows only)
    note: str | None = None  # key into NOTES for CONV rows

    def add(self, dv: float, dg: float | None = None, resid: float | None = None) -> None:
        self.dv = max(self.dv, dv)
        if dg is not None:
            self.dg = max(self.dg or 0.0, dg)
        if resid is not None:
            self.resid = max(self.resid or 0.0, resid)

    def status(self, tol: float) -> str:
        if self.note is None:
            return "PASS" if self.dv <= tol and (self.dg is None or self.dg <= tol) else "FAIL"
        return "CONV" if self.resid is not None and self.resid <= tol else "FAIL"


class Table:
    def __init__(self) -> None:
        self.rows: dict[tuple[str, str], Row] = {}
        self.coverage: dict[str, list[float]] = {}  # how much of each branch the batches exercised

    def cover(self, what: str, x: float) -> None:
        self.coverage.setdefault(what, []).append(float(x))

    def row(self, part: str, settings: str, note: str | None = None) -> Row:
        key = (part, settings)
        if key not in self.rows:
            self.rows[key] = Row(part, settings, note=note)
        return self.rows[key]


def fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.1e}"


# ------------------------------------------------------------------------------------------------ advantages
def check_advantages(V: SimpleNamespace, batches: list[Batch], tab: Table) -> None:
    ca = V.ca
    for b in batches:
        r, m, big, lone = b.rollout, b.rollout.mask, (b.sizes >= 2)[:, None] & b.rollout.mask, b.sizes == 1
        lone_tok = lone[:, None] & m
        g, P = r.group, r.num_groups
        tab.cover("size-1 groups per batch", int((r.group_sizes == 1).sum()))
        flat = (group_mean(r.reward**2, g, P) - group_mean(r.reward, g, P) ** 2).abs() < 1e-12
        tab.cover("zero-variance groups of size >= 2 per batch", int((flat & (r.group_sizes >= 2)).sum()))
        inside = torch.arange(T) < r.last_index[:, None]  # [B, T]
        tab.cover("masked holes inside completions per batch", int((~m & inside).sum()))
        # GRPO, std-normalised; eps outside the root in both
        for eps in (1e-6, 1e-4):
            ours = ADVANTAGES["grpo"](r, scale="group", eps=eps)
            theirs, _ = ca.compute_grpo_outcome_advantage(
                b.tlr_outcome.clone(), b.maskf, b.index, epsilon=eps, norm_adv_by_std_in_grpo=True
            )
            tab.row("adv grpo", f"scale=group ddof=1 eps={eps:g}, groups n>=2").add(diff(ours, theirs, big))
            model = torch.where(lone_tok, (r.reward / (1 + eps))[:, None], ours)
            tab.row("adv grpo", f"eps={eps:g}, size-1 groups", "lone").add(
                diff(ours, theirs, lone_tok), resid=diff(model, theirs)
            )
        theirs, _ = ca.compute_grpo_outcome_advantage(
            b.tlr_outcome.clone(), b.maskf, b.index, norm_adv_by_std_in_grpo=False
        )
        for name, ours in (("dr_grpo", ADVANTAGES["dr_grpo"](r)), ("grpo", ADVANTAGES["grpo"](r, scale="none"))):
            label = "" if name == "dr_grpo" else "scale=none "
            tab.row(f"adv {name}", f"{label}vs norm_adv_by_std=False, n>=2").add(diff(ours, theirs, big))
            model = torch.where(lone_tok, r.reward[:, None], ours)
            tab.row(f"adv {name}", f"{label}size-1 groups", "lone").add(
                diff(ours, theirs, lone_tok), resid=diff(model, theirs)
            )
        # RLOO
        ours = ADVANTAGES["rloo"](r)
        theirs, _ = ca.compute_rloo_outcome_advantage(b.tlr_outcome.clone(), b.maskf, b.index)
        tab.row("adv rloo", "groups n>=2").add(diff(ours, theirs, big))
        model = torch.where(lone_tok, r.reward[:, None], ours)
        tab.row("adv rloo", "size-1 groups", "lone").add(diff(ours, theirs, lone_tok), resid=diff(model, theirs))
        # ReMax
        ours = ADVANTAGES["remax"](r)
        theirs, _ = ca.compute_remax_outcome_advantage(b.tlr_outcome.clone(), r.extras["greedy_reward"], b.maskf)
        tab.row("adv remax", "valid tokens").add(diff(ours, theirs, m))
        before_last = torch.arange(T)[None, :] < r.last_index[:, None]
        model = torch.where(~m & before_last, r.reward[:, None], ours)
        tab.row("adv remax", "masked positions (holes)", "remax_mask").add(
            diff(ours, theirs, ~m), resid=diff(model, theirs)
        )
        # REINFORCE++ (dense token rewards present, reward-to-go with γ, batch whitening)
        for gamma in (1.0, 0.9):
            ours = ADVANTAGES["reinforce_pp"](r, gamma=gamma)
            theirs, ret = ca.compute_reinforce_plus_plus_outcome_advantage(
                b.tlr_dense.clone(), b.maskf, config=V.AlgoConfig(gamma=gamma)
            )
            tab.row("adv reinforce_pp", f"baseline=none γ={gamma:g} dense rewards, all pos").add(diff(ours, theirs))
            ours_ret = discounted_returns(outcome_token_rewards(r), m, gamma=gamma)
            tab.row("returns reinforce_pp", f"discounted_returns γ={gamma:g}, all pos").add(diff(ours_ret, ret))
        # REINFORCE++-baseline: outcome-only, on the groups of size >= 2, then the conventions
        r_out = r.replace(token_reward=None)
        keep = b.sizes >= 2
        sub = r_out.select(keep)
        ours = ADVANTAGES["reinforce_pp"](sub, gamma=1.0, baseline="group")
        theirs, _ = ca.compute_reinforce_plus_plus_baseline_outcome_advantage(
            b.tlr_outcome[keep].clone(), b.maskf[keep], b.index[keep.numpy()]
        )
        tab.row("adv reinforce_pp", "baseline=group γ=1 outcome-only, n>=2").add(diff(ours, theirs))
        ours = ADVANTAGES["reinforce_pp"](r_out, gamma=1.0, baseline="group")
        theirs, _ = ca.compute_reinforce_plus_plus_baseline_outcome_advantage(b.tlr_outcome.clone(), b.maskf, b.index)
        centred = torch.where(group_count(g, P).to(DT)[g] > 1, r.reward - group_mean(r.reward, g, P)[g], r.reward)
        model = ADVANTAGES["reinforce_pp"](r_out.replace(reward=centred), gamma=1.0)
        tab.row("adv reinforce_pp", "baseline=group, batch with size-1 groups", "rfpp_lone").add(
            diff(ours, theirs), resid=diff(model, theirs)
        )
        sub_dense = r.select(keep)
        ours = ADVANTAGES["reinforce_pp"](sub_dense, gamma=0.9, baseline="group")
        theirs, _ = ca.compute_reinforce_plus_plus_baseline_outcome_advantage(
            b.tlr_dense[keep].clone(), b.maskf[keep], b.index[keep.numpy()]
        )
        summed = sub_dense.reward + torch.where(sub_dense.mask, sub_dense.token_reward, 0.0).sum(-1)
        model = ADVANTAGES["reinforce_pp"](
            sub_dense.replace(reward=summed, token_reward=None), gamma=1.0, baseline="group"
        )
        tab.row("adv reinforce_pp", "baseline=group γ=0.9 dense rewards, n>=2", "rfpp_dense").add(
            diff(ours, theirs), resid=diff(model, theirs)
        )
        # GAE (dense token rewards, critic values with garbage at masked positions)
        for gamma, lam in ((1.0, 0.95), (0.9, 0.8)):
            ours = ADVANTAGES["gae"](r, gamma=gamma, lam=lam)
            theirs, ret = ca.compute_gae_advantage_return(b.tlr_dense.clone(), r.value, b.maskf, gamma, lam)
            tab.row("adv gae", f"γ={gamma:g} λ={lam:g} whitened, valid tokens").add(diff(ours, theirs, m))
            raw, ours_ret = compute_gae(outcome_token_rewards(r), r.value, m, gamma=gamma, lam=lam)
            tab.row("returns gae", f"compute_gae γ={gamma:g} λ={lam:g}, valid tokens").add(diff(ours_ret, ret, m))
            carried = torch.zeros(B, dtype=DT)  # A of the next valid token, 0 after the last
            pre = torch.zeros(B, T, dtype=DT)
            for t in reversed(range(T)):
                carried = torch.where(m[:, t], raw[:, t], carried)
                pre[:, t] = carried
            mean, var = masked_mean(raw, m), masked_var(raw, m, ddof=1)
            model = torch.where(m, ours, (pre - mean) * torch.rsqrt(var + 1e-8))
            tab.row("adv gae", f"γ={gamma:g} λ={lam:g}, masked positions", "gae_mask").add(
                diff(ours, theirs, ~m), resid=diff(model, theirs)
            )


# ------------------------------------------------------------------------------------------------ aggregation
def check_aggregation(V: SimpleNamespace, batches: list[Batch], tab: Table) -> None:
    ca = V.ca
    for b in batches:
        m, mf = b.rollout.mask, b.maskf
        x = b.adv_tok  # any per-token "loss" with garbage at masked positions
        for mode, (vmode, lsf) in AGG_MODES.items():
            c = C_NORM if lsf else None
            ov, og, _ = vg(aggregate, x, m, mode, norm_constant=c)
            tv, tg, _ = vg(ca.agg_loss, x, mf, vmode, loss_scale_factor=lsf)
            label = f"{mode} C={C_NORM}" if c else mode
            tab.row("aggregate", f"{label} vs {vmode}").add(diff(ov, tv), diff(og, tg))
            # micro-batches with the whole batch's counts: the sum over micro-batches
            n_tok, n_seq = m.sum(), B
            parts = (slice(0, 5), slice(5, B))
            counts = {"num_tokens": n_tok, "num_seqs": n_seq, "norm_constant": c}
            ov, og, _ = vg(ours_micro, x, m, mode, parts, **counts)
            vcounts = {"batch_num_tokens": n_tok, "global_batch_size": n_seq, "loss_scale_factor": lsf}
            tv, tg, _ = vg(verl_micro, x, ca, mf, vmode, parts, **vcounts)
            tab.row("aggregate", f"{label}, 2 micro-batches, global counts").add(diff(ov, tv), diff(og, tg))
        # verl's default loss_scale_factor: the padded width of the tensor
        ov = aggregate(x, m, "seq_sum_const", norm_constant=T)
        tv = ca.agg_loss(x, mf, "seq-mean-token-sum-norm")
        tab.row("aggregate", f"seq_sum_const C=T={T} vs sum-norm default").add(diff(ov, tv))
        wide_x = torch.cat([x, torch.randn(B, 7, dtype=DT)], dim=1)
        wide_m = torch.cat([mf, torch.zeros(B, 7, dtype=DT)], dim=1)
        tv = ca.agg_loss(wide_x, wide_m, "seq-mean-token-sum-norm")
        tab.row("aggregate", f"seq_sum_const C={T} vs sum-norm default, padded T+7", "norm_default").add(
            diff(ov, tv), resid=diff(ov * T / (T + 7), tv)
        )


# ------------------------------------------------------------------------------------------------ KL
def check_kl(V: SimpleNamespace, batches: list[Batch], tab: Table) -> None:
    ca = V.ca
    for b in batches:
        r, m, mf = b.rollout, b.rollout.mask, b.maskf
        for est, vnames in (("k1", ("kl", "k1")), ("k2", ("mse", "k2")), ("k3", ("low_var_kl", "k3"))):
            ov, og, _ = vg(kl_estimate, b.logp, r.ref_logp, estimator=est, mask=m)
            for vn in vnames:
                tv, tg, _ = vg(verl_kl, b.logp, ca, r.ref_logp, vn, mf)
                tab.row("kl_estimate", f"{est} vs kl_penalty('{vn}'), |x|<~2").add(diff(ov, tv, m), diff(og, tg))
        # wide range of x = ref - logp, where verl's clamp bites
        wide = torch.where(m, r.ref_logp - torch.empty(B, T, dtype=DT).uniform_(-5.0, 5.0), b.logp)
        ov, og, _ = vg(kl_estimate, wide, r.ref_logp, estimator="k3", mask=m)
        tv, tg, _ = vg(verl_kl, wide, ca, r.ref_logp, "low_var_kl", mf)
        clamped = ov > 10
        tab.cover("k3 tokens clamped by verl (x in [-5, 5])", float(clamped[m].double().mean()))
        tab.row("kl_estimate", "k3, x uniform in [-5, 5]", "k3_clamp").add(
            diff(ov, tv, m),
            diff(og, tg, m),
            resid=max(diff(torch.clamp(ov, max=10.0), tv, m), diff(torch.where(clamped, 0.0, og), tg, m)),
        )
        # KL in the loss (GRPO): coef * aggregate(k3) vs verl actor's kl_coef * agg_loss(kl_penalty(...))
        for mode, (vmode, lsf) in AGG_MODES.items():
            c = C_NORM if lsf else None
            ov, og, _ = vg(REGULARIZERS["kl"], b.logp, r, aggregation=mode, norm_constant=c, coef=0.04)
            tv, tg, _ = vg(verl_kl_loss, b.logp, ca, r.ref_logp, mf, vmode, lsf, 0.04)
            tab.row("kl regularizer", "k3 β=0.04 in loss, 4 agg modes").add(diff(ov, tv), diff(og, tg))
        # KL in the reward (PPO / REINFORCE++): verl compute_rewards (k1) with the kl masked as its trainer does
        shaped, _ = SHAPING["kl_reward"](r, coef=0.05, estimator="k1", level="token")
        ours = outcome_token_rewards(shaped)
        theirs = ca.compute_rewards(b.tlr_dense, r.old_logp * mf, r.ref_logp * mf, 0.05)
        tab.row("kl_reward shaping", "k1 β=0.05 token level vs compute_rewards").add(diff(ours, theirs, m))


# ------------------------------------------------------------------------------------------------ losses
def check_losses(V: SimpleNamespace, batches: list[Batch], tab: Table) -> None:
    ca = V.ca
    vanilla, gspo_fn = ca.get_policy_loss_fn("vanilla"), ca.get_policy_loss_fn("gspo")
    # (row part, settings, grpolab name, grpolab hp, verl fn, cfg kwargs, logp attr, advantages kind, note)
    cases: list[tuple[str, str, str, dict[str, Any], Any, dict[str, Any], str, str, str | None]] = [
        ("ppo_clip", "ε=0.2 dual off (verl c=1e9)", "ppo_clip", {}, vanilla,
         {"low": 0.2, "high": 0.2, "c": VERL_NO_DUAL_CLIP}, "logp", "tok", None),
        ("ppo_clip", "ε=0.2 dual_clip=3", "ppo_clip", {"dual_clip": 3.0}, vanilla,
         {"low": 0.2, "high": 0.2, "c": 3.0}, "logp", "tok", None),
        ("ppo_clip", "ε=0.2 defaults: grpolab dual off, verl c=3", "ppo_clip", {}, vanilla,
         {"low": 0.2, "high": 0.2}, "logp", "tok", "dual_default"),
        ("clip_higher", "ε=0.2/0.28 dual off (verl c=1e9)", "clip_higher", {}, vanilla,
         {"low": 0.2, "high": 0.28, "c": VERL_NO_DUAL_CLIP}, "logp", "tok", None),
        ("clip_higher", "ε=0.2/0.28 dual_clip=5", "clip_higher", {"dual_clip": 5.0}, vanilla,
         {"low": 0.2, "high": 0.28, "c": 5.0}, "logp", "tok", None),
        ("gspo", "ε=3e-4/4e-4, seq-level A", "gspo", {}, gspo_fn,
         {"low": 3e-4, "high": 4e-4}, "logp_small", "seq", None),
        ("gspo", "ε=0.2/0.28, seq-level A", "gspo", {"epsilon_low": 0.2, "epsilon_high": 0.28}, gspo_fn,
         {"low": 0.2, "high": 0.28}, "logp", "seq", None),
        ("gspo", "ε=0.2/0.28, token-level A (GSPO-token)", "gspo", {"epsilon_low": 0.2, "epsilon_high": 0.28},
         gspo_fn, {"low": 0.2, "high": 0.28}, "logp", "tok", None),
        ("reinforce", "vs compute_policy_loss_reinforce", "reinforce", {}, ca.compute_policy_loss_reinforce,
         {"low": 0.2, "high": 0.2}, "logp", "tok", None),
    ]  # fmt: skip
    for b in batches:
        r, m, mf = b.rollout, b.rollout.mask, b.maskf
        adv_seq = ADVANTAGES["grpo"](r)  # [B, T] sequence-level
        for part, settings, name, hp, vfn, ckw, logp_attr, adv_kind, note in cases:
            adv = b.adv_tok if adv_kind == "tok" else adv_seq
            logp0 = getattr(b, logp_attr)
            for mode, (vmode, lsf) in AGG_MODES.items():
                c = C_NORM if lsf else None
                ov, og, om = vg(POLICY_LOSSES[name], logp0, r, adv, aggregation=mode, norm_constant=c, **hp)
                cfg = actor_config(V, lsf=lsf, **ckw)
                tv, tg, tm = vg(verl_policy, logp0, vfn, r.old_logp, adv, mf, vmode, cfg)
                row = tab.row(f"loss {part}", f"{settings}, 4 agg modes", note)
                if note == "dual_default":
                    mv, mg, _ = vg(POLICY_LOSSES[name], logp0, r, adv, aggregation=mode, norm_constant=c, dual_clip=3.0)
                    row.add(diff(ov, tv), diff(og, tg), resid=max(diff(mv, tv), diff(mg, tg)))
                    continue
                row.add(diff(ov, tv), diff(og, tg))
                if mode == "token_mean" and name != "reinforce":
                    d = abs(om["clip_frac"] - tm["actor/pg_clipfrac"])
                    tab.cover(f"{part} {settings}: clip_frac", om["clip_frac"])
                    if "dual_clip_frac" in om:
                        d = max(d, abs(om["dual_clip_frac"] - tm["actor/pg_clipfrac_lower"]))
                        tab.cover(f"{part} {settings}: dual_clip_frac", om["dual_clip_frac"])
                    label = "clip_frac (+dual_clip_frac) vs pg_clipfrac (+_lower)"
                    tab.row(f"metric {part}", f"{settings}: {label}").add(d)
    # verl clamps the log-ratio to [-20, 20] before exp; grpolab does not (documented in grpolab.core.losses)
    for b in batches:
        r, m, mf = b.rollout, b.rollout.mask, b.maskf
        far = torch.rand(B, T, dtype=DT) < 0.05  # [B, T]
        logp0 = torch.where(far & m, r.old_logp + 25.0 * torch.sign(torch.randn(B, T, dtype=DT)), b.logp)
        cfg = actor_config(V, low=0.2, high=0.2, c=VERL_NO_DUAL_CLIP)
        ov, og, _ = vg(POLICY_LOSSES["ppo_clip"], logp0, r, b.adv_tok)
        tv, tg, _ = vg(verl_policy, logp0, vanilla, r.old_logp, b.adv_tok, mf, "token-mean", cfg)
        clamped_lp = r.old_logp + torch.clamp(logp0 - r.old_logp, -20.0, 20.0)
        mv, mg, _ = vg(POLICY_LOSSES["ppo_clip"], clamped_lp, r, b.adv_tok)
        outside = (logp0 - r.old_logp).abs() > 20
        resid = max(diff(mv, tv), diff(torch.where(outside, 0.0, mg), tg))
        tab.row("loss ppo_clip", "ε=0.2 dual off, 5% tokens with |log ρ| = 25", "logratio_clamp").add(
            diff(ov, tv), diff(og, tg), resid=resid
        )
    # PPO value loss
    for b in batches:
        r, mf = b.rollout, b.maskf
        for clip, vclip in ((0.2, 0.2), (None, 1e9)):
            for mode, (vmode, lsf) in AGG_MODES.items():
                c = C_NORM if lsf else None
                ov, og, om = vg(value_loss, b.vpred, r, b.returns, clip_eps=clip, aggregation=mode, norm_constant=c)
                tv, tg, tfrac = vg(
                    ca.compute_value_loss, b.vpred, b.returns, r.value, mf, vclip, vmode, loss_scale_factor=lsf
                )
                settings = "clip_eps=0.2" if clip else "clip_eps=None (verl cliprange 1e9)"
                tab.row("loss value", f"{settings}, 4 agg modes").add(diff(ov, tv), diff(og, tg))
                if mode == "token_mean":
                    d = abs(om["vf_clip_frac"] - float(tfrac))
                    if clip:
                        tab.cover("value loss clip_eps=0.2: vf_clip_frac", om["vf_clip_frac"])
                    tab.row("metric value", f"{settings}: vf_clip_frac vs vf_clipfrac").add(d)


# ------------------------------------------------------------------------------------------------ main
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=6, help="number of random batches (default 6)")
    ap.add_argument("--tol", type=float, default=1e-5, help="absolute tolerance (default 1e-5)")
    args = ap.parse_args(argv)

    torch.set_num_threads(1)
    V = load_verl()
    torch.manual_seed(12345)  # for the few draws outside the per-batch generators
    batches = [make_batch(s) for s in range(args.seeds)]
    tab = Table()
    check_advantages(V, batches, tab)
    check_aggregation(V, batches, tab)
    check_kl(V, batches, tab)
    check_losses(V, batches, tab)

    rows = list(tab.rows.values())
    note_ids = {k: i + 1 for i, k in enumerate(dict.fromkeys(r.note for r in rows if r.note))}
    w_part = max(len(r.part) for r in rows)
    w_set = max(len(r.settings) for r in rows)
    header = f"{'part':<{w_part}}  {'settings':<{w_set}}  {'|Δ value|':>9}  {'|Δ grad|':>9}  {'conv.res':>9}  status"
    print(f"grpolab vs verl {V.version} core_algos, {args.seeds} batches of B={B}, T={T} (float64), tol {args.tol:g}")
    print(header)
    print("-" * len(header))
    failed = 0
    for r in rows:
        st = r.status(args.tol)
        failed += st == "FAIL"
        tag = f" [{note_ids[r.note]}]" if r.note else ""
        print(
            f"{r.part:<{w_part}}  {r.settings:<{w_set}}  {fmt(r.dv):>9}  {fmt(r.dg):>9}  {fmt(r.resid):>9}  {st}{tag}"
        )
    print("\ncoverage (mean over batches; shows the branches the batches exercise):")
    for what, xs in tab.coverage.items():
        print(f"  {what}: {sum(xs) / len(xs):.3g} (min {min(xs):.3g}, max {max(xs):.3g})")
    print()
    print("conv.res = residual between verl and the model of the documented convention (CONV rows only).")
    for key, i in note_ids.items():
        print(f"[{i}] {NOTES[key]}")
    counts = {s: sum(r.status(args.tol) == s for r in rows) for s in ("PASS", "CONV", "FAIL")}
    print(f"\n{counts['PASS']} PASS, {counts['CONV']} CONV (explained), {counts['FAIL']} FAIL")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
