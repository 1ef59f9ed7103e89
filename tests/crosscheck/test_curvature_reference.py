"""Independent cross-check of CAPO's curvature model (arXiv 2510.00819) against the official code's arithmetic.

Reference: luckeciano/stable-pg-llm, ``src/open_r1/grpo_entropy_trainer.py`` (``_compute_token_level_gradients``,
``_compute_and_log_hessian_coefficient``, ``_compute_and_log_fisher_curvature``, ``_compute_hessian_token_mask``,
``_compute_fisher_token_mask``) and ``src/open_r1/sparse_optim_models/sparse_adam_model.py``. What it computes,
per completion token t with last hidden state h, sampled token a and sequence advantage A:

- S = the top-k vocabulary ids of the logits; pi = softmax over S only (renormalised); e_a = one-hot of a in S.
- g = A (e_a - pi) (x) h: the gradient of the objective wrt the rows S of the LM head (ascent direction).
- Delta = the Adam step the sparse Adam model would take with g added to its moments:
  m' = b1 m + (1-b1) g, v' = b2 v + (1-b2) g^2, Delta = (m'/(1-b1^(t+1))) / (sqrt(v'/(1-b2^(t+1))) + eps);
  with no state yet (first step) Delta = g (plain SGD).
- m_H = lr <g, Delta> + lr^2/2 Delta^T H Delta, H the Hessian of A pi_a/pi_old,a at pi = pi_old;
  m_F = lr^2/2 (grad log pi_a . Delta)^2 (sampled-token Fisher).
- keep the token if -tau_H < m_H < tau_H (symmetric) or 0 <= m_H < tau_H, and m_F < tau_F.

Here the gradient, the Hessian-vector product and the Fisher are taken with torch.autograd on a per-token
objective written out in plain Python loops, never with the closed forms of grpolab.core.curvature.
"""

from __future__ import annotations

import math

import pytest
import torch

from grpolab.core.curvature import lm_head_coefficients, shifts
from grpolab.core.selection import SELECTORS
from grpolab.core.types import Rollout

DT = torch.float64  # the reference works in double precision


# ----------------------------------------------------------------------------------------------------------------
# Reference, token by token (plain loops + autograd)
# ----------------------------------------------------------------------------------------------------------------


def _support(logits: torch.Tensor, top_k: int | None, a: int, with_action: bool) -> list[int]:
    """Top-k ids of one token's logits (the whole vocabulary when top_k is None or >= V); ``with_action`` adds the
    sampled id when the top-k misses it (grpolab's support; the official code cannot miss it: it samples top-k)."""
    V = logits.shape[0]
    k = V if top_k is None else min(top_k, V)
    S = sorted(range(V), key=lambda i: -float(logits[i]))[:k]
    return [*S, a] if with_action and a not in S else S


def ref_token(
    h: torch.Tensor,
    W: torch.Tensor,
    a: int,
    A: float,
    *,
    lr: float,
    top_k: int | None = None,
    temperature: float = 1.0,
    m: torch.Tensor | None = None,
    v: torch.Tensor | None = None,
    t: int = 0,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    hessian: str = "ratio",
    fisher: str = "sampled",
    delta: torch.Tensor | None = None,
    with_action: bool = True,
) -> dict[str, float]:
    """m_H, m_F and their parts for one token, the official code's model, with autograd.

    ``m`` / ``v``: the Adam moments of the ASCENT gradient per vocabulary row ([V, H]); None = no state (SGD step).
    ``delta``: a given per-row update direction [V, H] (overrides the Adam model; for testing the algebra alone).
    """
    h, W = h.to(DT), W.to(DT)
    logits = (W @ h) / temperature  # [V]
    S = _support(logits, top_k, a, with_action)
    WS = W[S].detach().clone().requires_grad_(True)  # [K, H]
    pos = S.index(a) if a in S else None

    def ell(Wx: torch.Tensor, b: int | None) -> torch.Tensor:
        # e_b . z_S - logsumexp(z_S): its gradient is (e_b - pi) (x) h / T, the official "score" (e_b = 0 if b not in S)
        z = (Wx @ h) / temperature  # [K]
        return (z[b] if b is not None else z.new_zeros(())) - torch.logsumexp(z, 0)

    l0 = ell(WS, pos).detach()
    if hessian == "ratio":
        J = A * torch.exp(ell(WS, pos) - l0)  # A pi/pi_old at pi = pi_old (the official Hessian)
    elif hessian == "logp":
        J = A * ell(WS, pos)
    else:
        raise ValueError(hessian)
    (g,) = torch.autograd.grad(J, WS, create_graph=True)  # [K, H]
    gd = g.detach()
    if delta is not None:
        D = delta[S].to(DT).clone()
    elif m is None:
        D = gd.clone()  # official: no moments yet -> the raw gradient
    else:
        b1, b2 = betas
        m1 = b1 * m[S].to(DT) + (1 - b1) * gd
        v1 = b2 * v[S].to(DT) + (1 - b2) * gd * gd
        D = (m1 / (1 - b1 ** (t + 1))) / ((v1 / (1 - b2 ** (t + 1))).sqrt() + eps)
    lin = float((gd * D).sum())
    (Hd,) = torch.autograd.grad((g * D).sum(), WS)  # H Delta
    quad = float((Hd * D).sum())
    (s,) = torch.autograd.grad(ell(WS, pos), WS)
    if fisher == "sampled":
        fis = float((s * D).sum()) ** 2
    elif fisher == "exact":
        pi = torch.softmax(logits[S], 0)  # [K]
        fis = 0.0
        for b in range(len(S)):
            (sb,) = torch.autograd.grad(ell(WS, b), WS)
            fis += float(pi[b]) * float((sb * D).sum()) ** 2
    else:
        raise ValueError(fisher)
    return {"lin": lin, "quad": quad, "fisher": fis, "m_h": lr * lin + 0.5 * lr**2 * quad, "m_f": 0.5 * lr**2 * fis}


def ref_keep(m_h: float, m_f: float, *, tau_h: float | None, tau_f: float | None, symmetric: bool) -> bool:
    """Official token mask: strict bounds; a threshold of 0/None is off."""
    ok = True
    if tau_h:
        ok &= (-tau_h < m_h < tau_h) if symmetric else (0.0 <= m_h < tau_h)
    if tau_f:
        ok &= m_f < tau_f
    return ok


def ref_adam_direction(
    g: torch.Tensor,
    *,
    m: torch.Tensor | None,
    v: torch.Tensor | None,
    t: int,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
) -> torch.Tensor:
    """SparseAdamModel.compute_effective_token_gradients for one gradient (no lr), elementwise."""
    if m is None:
        return g.clone()
    b1, b2 = betas
    m1 = b1 * m + (1 - b1) * g
    v1 = b2 * v + (1 - b2) * g * g
    return (m1 / (1 - b1 ** (t + 1))) / ((v1 / (1 - b2 ** (t + 1))).sqrt() + eps)


def score_rows(h: torch.Tensor, W: torch.Tensor, a: int, *, top_k: int | None, temperature: float) -> torch.Tensor:
    """(e_a - pi) (x) h / T on the support rows, scattered into a [V, H] matrix (0 elsewhere), with plain loops."""
    V, H = W.shape
    h, W = h.to(DT), W.to(DT)
    logits = [float(W[i] @ h) / temperature for i in range(V)]
    S = _support(torch.tensor(logits), top_k, a, True)
    mx = max(logits[i] for i in S)
    Z = sum(math.exp(logits[i] - mx) for i in S)
    out = torch.zeros(V, H, dtype=DT)
    for i in S:
        p = math.exp(logits[i] - mx) / Z
        out[i] = ((1.0 if i == a else 0.0) - p) * h / temperature
    return out


# ----------------------------------------------------------------------------------------------------------------
# Comparisons with grpolab (imported above, never used by the reference itself)
# ----------------------------------------------------------------------------------------------------------------

HESSIANS = {"policy": "ratio", "logp": "logp"}  # grpolab name -> reference name
FISHERS = {"empirical": "sampled", "exact": "exact"}
ADVANTAGES = (-1.7, -1.0, -0.3, 0.0, 0.45, 1.0, 2.2)


def _lib_shifts(h, W, a, A, *, hessian, fisher, **kw):
    lin, quad = lm_head_coefficients(h[None].float(), W.float(), torch.tensor([a]), **kw)
    m_h, m_f = shifts(torch.tensor([float(A)]), lin.double(), quad.double(), hessian=hessian, fisher=fisher)
    return float(m_h), float(m_f)


def _close(got: float, want: float, rel: float = 2e-4, tiny: float = 1e-12) -> bool:
    return abs(got - want) <= rel * abs(want) + tiny


@pytest.mark.parametrize("top_k", [3, None])
@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_shift_algebra_matches_autograd_for_a_given_preconditioner(top_k, temperature):
    """Stored-moment model (reference_advantage=None): Delta = A * P (.) score, P = lr / (sqrt(v/(1-b2^t)) + eps).
    Every Hessian / Fisher option, tokens inside and outside the top-k, advantages of both signs."""
    gen = torch.Generator().manual_seed(1)
    V, H, t, lr, b2, eps = 7, 4, 3, 0.05, 0.99, 1e-3
    W = torch.randn(V, H, generator=gen)
    v2 = torch.rand(V, H, generator=gen) * 0.5 + 0.01
    P = lr / ((v2 / (1 - b2**t)).sqrt() + eps)  # [V, H] Adam's per-element step size (torch: eps outside the root)
    kw = dict(exp_avg_sq=v2.float(), step=t, lr=lr, betas=(0.9, b2), eps=eps, reference_advantage=None)
    for trial in range(2):
        h = torch.randn(H, generator=gen) * (1.0 + trial)
        for a in range(trial, V, 2):
            score = score_rows(h, W, a, top_k=top_k, temperature=temperature)
            for A in ADVANTAGES:
                for hess, fish in (("policy", "empirical"), ("logp", "exact")):
                    ref = ref_token(
                        h, W, a, A, lr=1.0, top_k=top_k, temperature=temperature, delta=A * P * score,
                        hessian=HESSIANS[hess], fisher=FISHERS[fish],
                    )  # fmt: skip
                    m_h, m_f = _lib_shifts(
                        h, W, a, A, hessian=hess, fisher=fish, temperature=temperature, top_k=top_k or 50, **kw
                    )
                    assert _close(m_h, ref["m_h"]), (a, A, hess, m_h, ref)
                    assert _close(m_f, ref["m_f"]), (a, A, fish, m_f, ref)


@pytest.mark.parametrize("top_k", [4, None])
def test_default_step_is_the_official_sparse_adam_step_at_unit_advantage_with_zero_momentum(top_k):
    """reference_advantage=1: at A = +-1 the step is SparseAdamModel's (m_{t+1}, v_{t+1} formed with the token's
    own gradient) when its old first moment is 0; for other A it is that step scaled linearly in A."""
    gen = torch.Generator().manual_seed(2)
    V, H, lr, betas, eps = 8, 5, 0.02, (0.9, 0.999), 1e-8
    W = torch.randn(V, H, generator=gen)
    for t, scale in ((0, 0.0), (1, 0.3), (5, 0.01)):
        v2 = torch.rand(V, H, generator=gen) * scale  # t = 0: no state, Adam's first step
        kw = dict(exp_avg_sq=v2.float() if t else None, step=t, lr=lr, betas=betas, eps=eps, top_k=top_k or 50)
        for trial in range(2):
            h = torch.randn(H, generator=gen)
            for a in range(trial, V, 2):
                zero = torch.zeros(V, H)
                for A in (-1.0, 1.0):  # the official model, gradient A*score inside m and v, m_t = 0
                    ref = ref_token(h, W, a, A, lr=lr, top_k=top_k, m=zero, v=v2, t=t, betas=betas, eps=eps)
                    m_h, m_f = _lib_shifts(h, W, a, A, hessian="policy", fisher="empirical", **kw)
                    assert _close(m_h, ref["m_h"]) and _close(m_f, ref["m_f"]), (t, a, A, m_h, m_f, ref)
                score = score_rows(h, W, a, top_k=top_k, temperature=1.0)
                unit = lr * ref_adam_direction(score, m=zero, v=v2, t=t, betas=betas, eps=eps)  # [V, H] at A = 1
                for A in ADVANTAGES:  # documented choice: linear in A
                    ref = ref_token(h, W, a, A, lr=1.0, top_k=top_k, delta=A * unit)
                    m_h, m_f = _lib_shifts(h, W, a, A, hessian="policy", fisher="empirical", **kw)
                    assert _close(m_h, ref["m_h"]) and _close(m_f, ref["m_f"]), (t, a, A, m_h, m_f, ref)


def test_stored_moment_model_without_state_is_the_official_sgd_first_step():
    """reference_advantage=None and no optimizer state: Delta = lr * g (SparseAdamModel with empty moments)."""
    gen = torch.Generator().manual_seed(3)
    V, H, lr = 6, 3, 0.1
    W = torch.randn(V, H, generator=gen)
    h = torch.randn(H, generator=gen)
    for a in range(V):
        for A in ADVANTAGES:
            ref = ref_token(h, W, a, A, lr=lr, top_k=4, m=None)
            m_h, m_f = _lib_shifts(
                h, W, a, A, hessian="policy", fisher="empirical", lr=lr, top_k=4, reference_advantage=None
            )
            assert _close(m_h, ref["m_h"]) and _close(m_f, ref["m_f"]), (a, A, m_h, m_f, ref)


def _random_batch(gen, B, T, V, H):
    W = torch.randn(V, H, generator=gen)
    hidden = torch.randn(B, T, H, generator=gen) * 1.5
    tokens = torch.randint(0, V, (B, T), generator=gen)
    lengths = [T, T - 2, 1][:B]
    mask = torch.tensor([[j < n for j in range(T)] for n in lengths])
    adv = torch.randn(B, T, generator=gen) * 1.2  # token-level advantages of both signs
    adv[0, 1] = 0.0
    return W, hidden, tokens, mask, adv


@pytest.mark.parametrize(
    "options",
    [
        dict(),  # the preset: symmetric, policy Hessian, empirical Fisher
        dict(symmetric=False),
        dict(hessian="logp", fisher="exact"),
        dict(tau_h=None),
        dict(tau_f=None, symmetric=False, hessian="logp"),
        dict(sequence_tau_h="q", sequence_tau_f="q", reduce="mean"),  # "q": a threshold between observed values
        dict(sequence_tau_h="q", global_tau_h="q", reduce="sum"),
        dict(global_tau_f="q", reduce="mean"),
    ],
)
def test_selector_keeps_exactly_the_tokens_the_reference_keeps(options):
    gen = torch.Generator().manual_seed(4)
    B, T, V, H, lr, t = 3, 5, 10, 4, 0.03, 2
    W, hidden, tokens, mask, adv = _random_batch(gen, B, T, V, H)
    v2 = torch.rand(V, H, generator=gen) * 0.05
    kw = dict(exp_avg_sq=v2.float(), step=t, lr=lr, betas=(0.9, 0.999), top_k=4)
    lin, quad = lm_head_coefficients(hidden[mask].float(), W.float(), tokens[mask], **kw)
    extras = {"capo_lin": torch.zeros(B, T), "capo_quad": torch.zeros(B, T)}
    extras["capo_lin"][mask], extras["capo_quad"][mask] = lin, quad
    extras["capo_lin"][~mask] = float("nan")  # padding must not matter
    hess = HESSIANS[options.get("hessian", "policy")]
    fish = FISHERS[options.get("fisher", "empirical")]
    ref = {}
    for i, j in mask.nonzero().tolist():
        A, a, h = float(adv[i, j]), int(tokens[i, j]), hidden[i, j]
        score = score_rows(h, W, a, top_k=4, temperature=1.0)
        unit = lr * ref_adam_direction(score, m=torch.zeros(V, H), v=v2, t=t)  # [V, H] the step at A = 1
        ref[i, j] = ref_token(h, W, a, A, lr=1.0, top_k=4, delta=A * unit, hessian=hess, fisher=fish)
    # thresholds between reference values (never on one), so that both outcomes occur
    m_h = sorted(abs(r["m_h"]) for r in ref.values())
    m_f = sorted(r["m_f"] for r in ref.values())
    tau_h = options.pop("tau_h", math.sqrt(m_h[len(m_h) * 2 // 3] * m_h[len(m_h) * 2 // 3 + 1]))
    tau_f = options.pop("tau_f", math.sqrt(m_f[len(m_f) * 3 // 4] * m_f[len(m_f) * 3 // 4 + 1]))
    symmetric = options.get("symmetric", True)
    want = torch.zeros(B, T, dtype=torch.bool)
    for (i, j), r in ref.items():
        want[i, j] = ref_keep(r["m_h"], r["m_f"], tau_h=tau_h, tau_f=tau_f, symmetric=symmetric)
    # grpolab's documented coarser levels: each reduces (mean or sum) the token shifts the previous level kept
    how = options.get("reduce", "mean")

    def reduce(vals):
        return (sum(vals) / len(vals) if how == "mean" else sum(vals)) if vals else 0.0

    def between(vals):  # a threshold strictly between two observed magnitudes
        v = sorted({abs(x) for x in vals if x != 0.0})
        return math.sqrt(v[len(v) // 2 - 1] * v[len(v) // 2]) if len(v) > 1 else 1.0

    seq = {i: [ref[i, j] for j in range(T) if want[i, j]] for i in range(B)}
    seq_h = {i: reduce([r["m_h"] for r in rs]) for i, rs in seq.items()}
    seq_f = {i: reduce([r["m_f"] for r in rs]) for i, rs in seq.items()}
    if options.get("sequence_tau_h") == "q":
        options["sequence_tau_h"] = between(seq_h.values())
    if options.get("sequence_tau_f") == "q":
        options["sequence_tau_f"] = between(seq_f.values())
    token_level = want.clone()
    if "sequence_tau_h" in options or "sequence_tau_f" in options:
        for i in range(B):
            if seq[i] and not ref_keep(
                seq_h[i], seq_f[i], tau_h=options.get("sequence_tau_h"), tau_f=options.get("sequence_tau_f"),
                symmetric=symmetric,
            ):  # fmt: skip
                want[i] = False
        assert not torch.equal(want, token_level)  # the sequence level removes a sequence here
    if "global_tau_h" in options or "global_tau_f" in options:
        live = [i for i in range(B) if want[i].any()]
        kept = [ref[i, j] for i in live for j in range(T) if want[i, j]]
        if how == "mean":  # mean over sequences of their means over kept tokens
            gh = sum(reduce([ref[i, j]["m_h"] for j in range(T) if want[i, j]]) for i in live) / max(1, len(live))
            gf = sum(reduce([ref[i, j]["m_f"] for j in range(T) if want[i, j]]) for i in live) / max(1, len(live))
        else:
            gh, gf = sum(r["m_h"] for r in kept), sum(r["m_f"] for r in kept)
        # the tests take the bound just above the batch value for "h" and just below it for "f": one passes, one fails
        if options.get("global_tau_h") == "q":
            options["global_tau_h"] = abs(gh) * 1.01
        if options.get("global_tau_f") == "q":
            options["global_tau_f"] = gf * 0.99
        glob = dict(tau_h=options.get("global_tau_h"), tau_f=options.get("global_tau_f"), symmetric=symmetric)
        if not ref_keep(gh, gf, **glob):
            want[:] = False
    rollout = Rollout(group=torch.tensor([0, 0, 1]), mask=mask, reward=torch.zeros(B), extras=extras)
    out_adv, keep, metrics = SELECTORS["capo"](rollout, adv.float(), tau_h=tau_h, tau_f=tau_f, **options)
    assert torch.equal(keep, want), (keep, want)
    assert int(want.sum()) < int(mask.sum()) and (int(want.sum()) > 0 or "global_tau_f" in options)
    assert torch.equal(out_adv, torch.where(want, adv.float(), torch.zeros(B, T)))
    assert metrics["selector/capo_masked_frac"] == pytest.approx(1 - int(want.sum()) / int(mask.sum()))
    assert bool(want[0, 1]) or not want.any() or "sequence_tau_h" in options  # A = 0: no update, kept by the token test


def test_strategy_stores_the_reference_coefficients_token_by_token_after_one_adamw_step(tmp_path):
    """ROLLOUT_STRATEGIES["capo_curvature"] on a random tiny model after one real AdamW step, against the reference
    rebuilt from an independent unpadded forward per completion, the optimizer's state and the scheduler's lr."""
    from grpolab.rollout.strategies import ROLLOUT_STRATEGIES
    from grpolab.trainer.config import resolve
    from grpolab.trainer.loop import Trainer

    from ..trainer.test_loop import TINY

    tau = 0.7
    loose = [{"name": "capo", "params": {"tau_f": 1e9, "tau_h": 1e9}}]  # train on every token: a non-zero moment
    settings = {**TINY, "algo": "capo", "output_dir": str(tmp_path), "name": "capo", "temperature": tau}
    settings["selectors"] = loose
    t = Trainer(resolve(None, settings))
    t.update(t.rollout_batch())  # one optimizer step: the head has Adam moments
    W = t.model.get_output_embeddings().weight
    state = t.optimizer.state[W]
    step, v2 = int(state["step"]), state["exp_avg_sq"].detach()
    assert step == 1 and float(v2.abs().sum()) > 0
    lr, betas = t.scheduler.get_last_lr()[0], tuple(t.config.adam_betas)
    sampled = t._sample([t.task.train[i] for i in range(2)], 3)
    out, _ = ROLLOUT_STRATEGIES["capo_curvature"](t.context, sampled, top_k=5, chunk_size=4, forward_rows=2)
    gen = sampled.gen
    W = W.detach()
    V, H = W.shape
    checked = outside = 0
    for i in range(gen.completion_ids.shape[0]):
        prompt = gen.prompt_ids[i][gen.prompt_mask[i].bool()]
        n = int(gen.completion_mask[i].sum())
        assert bool(gen.completion_mask[i, :n].all())  # completions are right-padded
        ids = torch.cat([prompt, gen.completion_ids[i, :n]])[None]  # [1, L] no padding at all
        with torch.no_grad():
            o = t.model(input_ids=ids, output_hidden_states=True)
        for j in range(n):
            pos = len(prompt) - 1 + j  # the state that predicts completion token j
            h, a = o.hidden_states[-1][0, pos].double(), int(gen.completion_ids[i, j])
            torch.testing.assert_close(W.double() @ h, o.logits[0, pos].double(), rtol=1e-4, atol=1e-4)
            score = score_rows(h, W, a, top_k=5, temperature=tau)
            unit = lr * ref_adam_direction(score, m=torch.zeros(V, H), v=v2, t=step, betas=betas)  # A = 1
            ref = ref_token(h, W, a, 1.0, lr=1.0, top_k=5, temperature=tau, delta=unit, fisher="exact")
            outside += a not in _support(W.double() @ h, 5, a, False)
            # lin = g.Delta at A = 1; quad = Delta^T F Delta at A = 1 (exact Fisher)
            assert _close(float(out.extras["capo_lin"][i, j]), ref["lin"], 1e-3), (i, j, ref)
            assert _close(float(out.extras["capo_quad"][i, j]), ref["fisher"], 1e-3, 1e-15), (i, j, ref)
            m_h, _ = shifts(torch.tensor(1.0), out.extras["capo_lin"][i, j], out.extras["capo_quad"][i, j])
            assert _close(float(m_h), ref["m_h"], 1e-3)  # the policy-Hessian shift at A = 1
            checked += 1
        assert (out.extras["capo_lin"][i, n:] == 0).all() and (out.extras["capo_quad"][i, n:] == 0).all()
    assert checked >= 6 and outside >= 0


def test_linear_in_a_is_the_official_step_where_the_stored_moment_dominates_and_saturates_where_it_does_not():
    """The documented limit of the A-independent coefficients: with v_t >> (1-b2) A^2 g^2 the official step is
    linear in A (agreement); at Adam's first step (v_t = 0) the official step is A's sign times a fixed size, so
    grpolab's objective shift is |A| times the official one."""
    gen = torch.Generator().manual_seed(6)
    V, H, lr, t = 6, 3, 0.01, 4
    W, h = torch.randn(V, H, generator=gen), torch.randn(H, generator=gen)
    a = 2
    g2 = score_rows(h, W, a, top_k=None, temperature=1.0) ** 2  # [V, H] the token's squared gradient at A = 1
    zero = torch.zeros(V, H)
    for A in (2.2, -0.3):
        big = 10.0 * g2 + 1e-12  # the stored moment dominates the token's own (1 - b2) A^2 g^2
        off = ref_token(h, W, a, A, lr=lr, m=zero, v=big, t=t)
        m_h, m_f = _lib_shifts(h, W, a, A, hessian="policy", fisher="empirical", exp_avg_sq=big.float(), step=t, lr=lr)
        assert _close(m_h, off["m_h"], 1e-3) and _close(m_f, off["m_f"], 2e-3)
        first = ref_token(h, W, a, A, lr=lr, m=zero, v=zero, t=0)  # the official model's Adam first step
        m_h, _ = _lib_shifts(h, W, a, A, hessian="policy", fisher="empirical", lr=lr)
        assert m_h / first["m_h"] == pytest.approx(abs(A), rel=0.05)  # the first-order term's ratio is exactly |A|
