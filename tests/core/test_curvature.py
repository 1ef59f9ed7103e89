"""CAPO's curvature model (grpolab.core.curvature): closed forms against autograd, the Adam step model against
torch's Adam, the top-k restriction, the mask's invariants and hand-computed values."""

import math

import pytest
import torch
from torch.autograd.functional import hessian

from grpolab.core.curvature import (
    adam_preconditioner,
    capo,
    capo_coefficients,
    curvature_mask,
    lm_head_coefficients,
    shifts,
    step_scale,
    topk_support,
)
from grpolab.core.selection import SELECTORS
from grpolab.core.types import Rollout

D = torch.float64


def tiny_head(seed=0, V=5, H=3):
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(V, H, generator=g, dtype=D)  # [V, H]
    h = torch.randn(H, generator=g, dtype=D)  # [H]
    P = torch.rand(V, H, generator=g, dtype=D) * 0.5 + 0.05  # [V, H] any positive elementwise step size
    return W, h, P


def autograd_shifts(W, h, P, token, A, tau):
    """gᵀΔψ, ΔψᵀHΔψ for A·log p_a and A·p_a/p_a_old, ΔψᵀFΔψ (exact and empirical) by autograd, full vocab."""
    W = W.clone().requires_grad_(True)

    def logp(w):
        return torch.log_softmax(w @ h / tau, dim=-1)[token]

    score = torch.autograd.grad(logp(W), W)[0]  # [V, H] ∇ log p_a
    g = A * score  # [V, H] gradient of A·log p_a
    step = (P * g).reshape(-1)  # [V·H] Δψ = P ⊙ g
    n = W.numel()
    H_logp = hessian(lambda w: A * logp(w), W.detach()).reshape(n, n)  # [VH, VH]
    old = logp(W).detach()
    H_ratio = hessian(lambda w: A * torch.exp(logp(w) - old), W.detach()).reshape(n, n)  # [VH, VH]
    p_old = torch.softmax(W.detach() @ h / tau, dim=-1)  # [V]

    def kl(w):  # KL(p_old ‖ p(w)); its Hessian at w = W is the Fisher
        return (p_old * (torch.log(p_old) - torch.log_softmax(w @ h / tau, dim=-1))).sum()

    F = hessian(kl, W.detach()).reshape(n, n)  # [VH, VH]
    return {
        "first": g.reshape(-1) @ step,
        "logp": step @ H_logp @ step,
        "ratio": step @ H_ratio @ step,
        "fisher": step @ F @ step,
        "empirical": (score.reshape(-1) @ step) ** 2,
    }


@pytest.mark.parametrize("token, A, tau", [(0, 1.3, 1.0), (3, -0.7, 0.6), (4, 2.0, 1.4)])
def test_closed_forms_match_the_autograd_hessians_and_fishers(token, A, tau):
    W, h, P = tiny_head(seed=token)
    ref = autograd_shifts(W, h, P, token, A, tau)
    probs = torch.softmax(W @ h / tau, dim=-1)  # [V]
    action = torch.arange(W.shape[0]) == token  # [V]
    scale = P @ (h / tau) ** 2  # [V] s_k = Σ_h P_kh h'_h²
    lin, quad = capo_coefficients(probs, action, scale)
    assert A**2 * lin == pytest.approx(ref["first"].item(), rel=1e-9)
    assert -(A**3) * quad == pytest.approx(ref["logp"].item(), rel=1e-9)  # H of A·log π = −A·F
    assert A**3 * (lin**2 - quad) == pytest.approx(ref["ratio"].item(), rel=1e-9)  # H of A·π/π_old
    assert A**2 * quad == pytest.approx(ref["fisher"].item(), rel=1e-9)
    assert A**2 * lin**2 == pytest.approx(ref["empirical"].item(), rel=1e-9)
    adv = torch.tensor(A, dtype=D)
    m_h, m_f = shifts(adv, lin, quad, hessian="policy", fisher="exact")
    assert m_h.item() == pytest.approx((ref["first"] + 0.5 * ref["ratio"]).item(), rel=1e-9)
    assert m_f.item() == pytest.approx(0.5 * ref["fisher"].item(), rel=1e-9)
    m_h, m_f = shifts(adv, lin, quad, hessian="logp", fisher="empirical")
    assert m_h.item() == pytest.approx((ref["first"] + 0.5 * ref["logp"]).item(), rel=1e-9)
    assert m_f.item() == pytest.approx(0.5 * ref["empirical"].item(), rel=1e-9)


def test_lm_head_coefficients_with_the_stored_moment_use_adams_preconditioner():
    W, h, _ = tiny_head(seed=7, V=6, H=4)
    v = torch.rand(6, 4, generator=torch.Generator().manual_seed(1), dtype=D) * 1e-3  # [V, H] exp_avg_sq
    lr, step, betas, eps, tau = 1e-2, 3, (0.9, 0.99), 1e-8, 0.8
    P = lr / (torch.sqrt(v / (1 - 0.99**3)) + eps)  # [V, H] written out: bias-corrected, eps outside the root
    torch.testing.assert_close(adam_preconditioner(v, lr=lr, step=step, beta2=0.99, eps=eps), P.float())
    for token in range(6):
        ref = autograd_shifts(W, h, P, token, 1.0, tau)
        lin, quad = lm_head_coefficients(
            h[None],
            W,
            torch.tensor([token]),
            exp_avg_sq=v,
            step=step,
            lr=lr,
            betas=betas,
            eps=eps,
            reference_advantage=None,
            temperature=tau,
            top_k=99,
        )
        assert lin.item() == pytest.approx(ref["first"].item(), rel=1e-4)
        assert quad.item() == pytest.approx(ref["fisher"].item(), rel=1e-4)
    # no state yet: SGD with lr, P = lr everywhere
    lin, quad = lm_head_coefficients(h[None], W, torch.tensor([2]), lr=lr, reference_advantage=None, top_k=99)
    ref = autograd_shifts(W, h, torch.full_like(W, lr), 2, 1.0, 1.0)
    assert lin.item() == pytest.approx(ref["first"].item(), rel=1e-4)
    assert quad.item() == pytest.approx(ref["fisher"].item(), rel=1e-4)


@pytest.mark.parametrize("step, A", [(0, 1.0), (4, 1.0), (4, -1.0), (2, 0.5)])
def test_the_prospective_step_is_torch_adams_step_on_the_token_gradient(step, A):
    """reference_advantage = |A| and a zero first moment: the modelled Δψ is exactly torch's Adam update."""
    W, h, _ = tiny_head(seed=11, V=6, H=4)
    token, tau, lr, betas, eps = 2, 0.9, 1e-2, (0.9, 0.99), 1e-8
    v = torch.rand(6, 4, generator=torch.Generator().manual_seed(2), dtype=D) * 1e-4  # [V, H]
    param = torch.nn.Parameter(W.clone())
    opt = torch.optim.Adam([param], lr=lr, betas=betas, eps=eps, foreach=False)
    if step:
        opt.state[param] = {"step": torch.tensor(float(step)), "exp_avg": torch.zeros_like(W), "exp_avg_sq": v.clone()}
    loss = -A * torch.log_softmax(param @ h / tau, dim=-1)[token]  # the trainer minimises −A·log p_a
    loss.backward()
    opt.step()
    delta = (param.detach() - W).reshape(-1)  # [V·H] torch's Adam step
    grad = (-param.grad).reshape(-1)  # [V·H] g = ∇(A·log p_a)
    lin, quad = lm_head_coefficients(
        h[None],
        W,
        torch.tensor([token]),
        exp_avg_sq=v if step else None,
        step=step,
        lr=lr,
        betas=betas,
        eps=eps,
        reference_advantage=abs(A),
        temperature=tau,
        top_k=99,
    )
    assert (grad @ delta).item() == pytest.approx(A**2 * lin.item(), rel=1e-6)  # gᵀΔψ = A²·lin
    probs = torch.softmax(W @ h / tau, dim=-1)  # [V]
    dz = (delta.reshape(6, 4) @ (h / tau)).double()  # [V] the logit change of torch's step
    fisher = (probs * dz**2).sum() - (probs * dz).sum() ** 2  # Δzᵀ F_z Δz
    assert fisher.item() == pytest.approx(A**2 * quad.item(), rel=1e-6)


def test_step_scale_bounds_a_tokens_adam_step_where_the_stored_moment_is_tiny():
    h2 = torch.ones(1, 8)  # [M, H] h' = 1
    score = torch.tensor([[0.5, -0.5]])  # [M, K]
    tiny = torch.full((1, 2, 8), 1e-20)  # [M, K, H] a row that has hardly ever had a gradient
    bounded = step_scale(h2, score, tiny, lr=1e-3, step=10, betas=(0.9, 0.999))
    # the token's own g² dominates the second moment: |Δψ| = lr·c1·|g| / sqrt((1 − β2)·g²/c2) = lr·c1·sqrt(c2/(1 − β2))
    # per element whatever |g| is (c1, c2 the bias corrections of step 11); P = |Δψ| / |g| with |g| = |v_k|·h' = ½
    c1 = (1 - 0.9) / (1 - 0.9**11)
    c2 = 1 - 0.999**11
    per_element = 1e-3 * c1 * math.sqrt(c2 / (1 - 0.999)) / 0.5  # |P| for |g| = 0.5 (= |v_k|·h')
    assert bounded[0].tolist() == pytest.approx([8 * per_element] * 2, rel=1e-4)  # s_k = Σ_h P_kh h'² = 8·P
    unbounded = step_scale(h2, score, tiny, lr=1e-3, step=10, reference_advantage=None)
    assert unbounded.min() > 1e3 * bounded.max()  # the stored moment alone gives a huge step


def test_topk_support_adds_the_sampled_token_only_when_it_is_missing():
    logits = torch.tensor([[5.0, 1.0, 4.0, 0.0], [5.0, 1.0, 4.0, 0.0]])  # [2, 4]
    index, sup, action = topk_support(logits, torch.tensor([2, 3]), top_k=2)
    assert index.tolist() == [[0, 2, 2], [0, 2, 3]]
    assert sup[0].tolist() == [5.0, 4.0, -math.inf] and sup[1].tolist() == [5.0, 4.0, 0.0]
    assert action.tolist() == [[False, True, False], [False, False, True]]
    index, _, _ = topk_support(logits, torch.tensor([0, 1]), top_k=10)  # k >= V: the whole vocabulary
    assert sorted(index[0, :4].tolist()) == [0, 1, 2, 3]


def test_the_top_k_model_is_the_exact_model_of_the_head_restricted_to_the_support():
    W, h, P = tiny_head(seed=3, V=8, H=3)
    logits = W @ h  # [V]
    order = torch.argsort(logits, descending=True)
    for token, support in [(int(order[1]), order[:3]), (int(order[6]), torch.cat([order[:3], order[6:7]]))]:
        # the same head with only the support's rows: softmax renormalised over them
        sub = W[support]  # [K, H]
        ref = autograd_shifts(sub, h, P[support], int((support == token).nonzero()), 1.0, 1.0)
        probs = torch.softmax(sub @ h, dim=-1)  # [K]
        scale = P[support] @ h**2  # [K]
        lin, quad = capo_coefficients(probs, support == token, scale)
        assert lin.item() == pytest.approx(ref["first"].item(), rel=1e-9)
        assert quad.item() == pytest.approx(ref["fisher"].item(), rel=1e-9)
        # lm_head_coefficients restricts to the same support (top-3 plus the sampled token), SGD lr = 1
        lin2, quad2 = lm_head_coefficients(h[None], W, torch.tensor([token]), reference_advantage=None, top_k=3)
        ref_sgd = autograd_shifts(sub, h, torch.ones_like(sub), int((support == token).nonzero()), 1.0, 1.0)
        assert lin2.item() == pytest.approx(ref_sgd["first"].item(), rel=1e-5)
        assert quad2.item() == pytest.approx(ref_sgd["fisher"].item(), rel=1e-5)


def loop_lm_head_coefficients(hidden, W, tokens, v, *, lr, step, betas, eps, r, tau, top_k):
    """Slow, obvious re-implementation: one token, one support row, one hidden unit at a time."""
    lins, quads = [], []
    b1, b2 = betas
    for m in range(hidden.shape[0]):
        h = [float(x) / tau for x in hidden[m]]
        logits = [sum(float(W[k, j]) * h[j] for j in range(len(h))) for k in range(W.shape[0])]
        top = sorted(range(len(logits)), key=lambda k: -logits[k])[:top_k]
        a = int(tokens[m])
        support = top if a in top else [*top, a]
        mx = max(logits[k] for k in support)
        ex = [math.exp(logits[k] - mx) for k in support]
        p = [e / sum(ex) for e in ex]
        score = [(1.0 if k == a else 0.0) - p[i] for i, k in enumerate(support)]
        d = []
        for i, k in enumerate(support):
            s = 0.0
            for j, hj in enumerate(h):
                g = r * score[i] * hj
                vn = b2 * float(v[k, j]) + (1 - b2) * g * g
                P = lr * (1 - b1) / (1 - b1 ** (step + 1)) / (math.sqrt(vn / (1 - b2 ** (step + 1))) + eps)
                s += P * hj * hj
            d.append(score[i] * s)
        lins.append(sum(score[i] * d[i] for i in range(len(d))))
        mean = sum(p[i] * d[i] for i in range(len(d)))
        quads.append(sum(p[i] * d[i] ** 2 for i in range(len(d))) - mean**2)
    return torch.tensor(lins), torch.tensor(quads)


def test_lm_head_coefficients_loop_vs_vectorised_on_random_tokens():
    g = torch.Generator().manual_seed(5)
    W = torch.randn(11, 6, generator=g)  # [V, H]
    hidden = torch.randn(9, 6, generator=g) * 2  # [M, H]
    tokens = torch.randint(0, 11, (9,), generator=g)  # [M]
    v = torch.rand(11, 6, generator=g) * 1e-3  # [V, H]
    kw = dict(lr=3e-3, step=5, betas=(0.9, 0.99), eps=1e-8, tau=0.7, top_k=4)
    lin, quad = lm_head_coefficients(
        hidden, W, tokens, exp_avg_sq=v, reference_advantage=0.8, temperature=kw.pop("tau"), **kw
    )
    ref_lin, ref_quad = loop_lm_head_coefficients(hidden, W, tokens, v, r=0.8, tau=0.7, **kw)
    torch.testing.assert_close(lin, ref_lin.float(), rtol=1e-4, atol=1e-9)
    torch.testing.assert_close(quad, ref_quad.float(), rtol=1e-3, atol=1e-9)


def test_a_confident_token_keeps_its_coefficients_accurate_in_fp32():
    # Two-token support, a = 0 with p_b = ε ≈ 1e-6 (a confident token, the usual LLM case), s = [1, 1]:
    # v = [ε, −ε], d = v, lin = 2ε², quad = p_a·p_b·(d_a − d_b)² = 4ε³(1 − ε). In fp32, 1 − p_a keeps ~1 digit and
    # Σpd² − (Σpd)² cancels to noise; the coefficients must still hold to fp32 precision (found by the crosscheck).
    logits = torch.tensor([[0.0, -13.8]])  # fp32
    eps_b = 1.0 / (1.0 + math.exp(13.8))  # p_b in exact arithmetic
    probs = torch.softmax(logits, dim=-1)  # [1, 2] fp32
    lin, quad = capo_coefficients(probs, torch.tensor([[True, False]]), torch.ones(1, 2))
    assert lin.item() == pytest.approx(2 * eps_b**2, rel=1e-5, abs=0)
    assert quad.item() == pytest.approx(4 * eps_b**3 * (1 - eps_b), rel=1e-5, abs=0)
    # the same through the head: one hidden unit, W = [[0], [−13.8]], h = 1, SGD lr = 1 (s_k = h² = 1)
    lin, quad = lm_head_coefficients(
        torch.ones(1, 1), torch.tensor([[0.0], [-13.8]]), torch.tensor([0]), reference_advantage=None
    )
    assert lin.item() == pytest.approx(2 * eps_b**2, rel=1e-5, abs=0)
    assert quad.item() == pytest.approx(4 * eps_b**3 * (1 - eps_b), rel=1e-5, abs=0)


# ------------------------------------------------------------------------------------------- shifts and mask
def test_shifts_hand_values():
    # lin = 0.5, quad = 0.25 (p = [½, ½], a = 0, s = [1, 1]); A = 2
    adv, lin, quad = torch.tensor([2.0]), torch.tensor([0.5]), torch.tensor([0.25])
    m_h, m_f = shifts(adv, lin, quad)  # policy / empirical: 4·0.5 + ½·8·(0.25 − 0.25) = 2; ½·4·0.25 = 0.5
    assert (m_h.item(), m_f.item()) == (2.0, 0.5)
    m_h, m_f = shifts(adv, lin, quad, hessian="logp", fisher="exact")  # 2 − ½·8·0.25 = 1; ½·4·0.25 = 0.5
    assert (m_h.item(), m_f.item()) == (1.0, 0.5)
    m_h, _ = shifts(torch.tensor([-2.0]), lin, quad, hessian="logp")  # 2 + ½·8·0.25 = 3
    assert m_h.item() == 3.0


def test_a_token_with_a_large_predicted_kl_is_masked():
    """Spec: a synthetic token whose top-k logits give m_F > τ_F is masked; a calm one is kept."""
    W = torch.tensor([[4.0, 0.0], [0.0, 4.0], [-4.0, 0.0]])  # [V, H]
    hidden = torch.tensor([[1.0, 0.0], [1.0, 0.0]])  # [2, H]: p ≈ [0.98, 0.018, 0.0003]
    tokens = torch.tensor([1, 0])  # an unlikely token (score ≈ 1) and the likely one (score ≈ 0.02)
    lin, quad = lm_head_coefficients(hidden, W, tokens, lr=1e-2, top_k=2)  # Adam's first step, h' = [1, 0]
    _, m_f = shifts(torch.ones(2), lin, quad)
    assert m_f[0] > 1e-4 > m_f[1]
    r = Rollout(
        group=torch.tensor([0, 0]),
        mask=torch.ones(2, 1, dtype=torch.bool),
        reward=torch.zeros(2),
        extras={"capo_lin": lin[:, None], "capo_quad": quad[:, None]},
    )
    adv, keep, metrics = capo(r, torch.ones(2, 1), tau_h=None)
    assert keep[:, 0].tolist() == [False, True] and metrics["selector/capo_fisher_masked_frac"] == 0.5
    assert adv[:, 0].tolist() == [0.0, 1.0]


@pytest.mark.parametrize("symmetric", [True, False])
def test_a_zero_update_never_masks_a_token(symmetric):
    g = torch.Generator().manual_seed(0)
    mask = torch.rand(5, 7, generator=g) > 0.3  # [B, T]
    mask[:, 0] = True
    r = Rollout(
        group=torch.tensor([0, 0, 1, 1, 2]),
        mask=mask,
        reward=torch.zeros(5),
        extras={"capo_lin": torch.rand(5, 7, generator=g) * 1e6, "capo_quad": torch.rand(5, 7, generator=g) * 1e6},
    )
    levels = dict(sequence_tau_h=1e-9, sequence_tau_f=1e-9, global_tau_h=1e-9, global_tau_f=1e-9)
    for hess in ("policy", "logp"):
        for fisher in ("empirical", "exact"):
            _, keep, _ = capo(r, torch.zeros(5, 7), symmetric=symmetric, hessian=hess, fisher=fisher, **levels)
            assert torch.equal(keep, mask)
    # and a token kept at A = 0 by the paper's token test is exactly one with m_H = m_F = 0
    _, keep, _ = capo(r, torch.ones(5, 7), symmetric=symmetric)
    assert not keep.any()


def test_curvature_mask_hand_values_and_the_one_sided_hessian_test():
    m_h = torch.tensor([[0.005, 0.02, -0.005, 0.0]])
    m_f = torch.tensor([[0.0, 0.0, 0.0, 2e-4]])
    mask = torch.tensor([[True, True, True, True]])
    keep, metrics = curvature_mask(m_h, m_f, mask)  # symmetric: |m_H| < 0.01 and m_F < 1e-4
    assert keep.tolist() == [[True, False, True, False]]
    assert metrics["selector/capo_hessian_masked_frac"] == 0.25
    assert metrics["selector/capo_fisher_masked_frac"] == 0.25
    keep, _ = curvature_mask(m_h, m_f, mask, symmetric=False)  # 0 ≤ m_H < 0.01: the negative shift goes
    assert keep.tolist() == [[True, False, False, False]]
    keep, _ = curvature_mask(m_h, m_f, mask, tau_h=None, tau_f=None)
    assert keep.all()


def test_sequence_and_global_levels_hand_values():
    m_h = torch.tensor([[0.004, 0.004, 0.5], [0.001, -0.001, 0.0]])  # token 3 of row 0 fails the token test
    m_f = torch.zeros(2, 3)
    mask = torch.tensor([[True, True, True], [True, True, False]])
    # mean over kept tokens: row 0 → 0.004, row 1 → 0; sum: row 0 → 0.008, row 1 → 0
    keep, m = curvature_mask(m_h, m_f, mask, sequence_tau_h=0.003)
    assert keep.tolist() == [[False, False, False], [True, True, False]]
    assert m["selector/capo_sequence_masked_frac"] == 0.5
    keep, _ = curvature_mask(m_h, m_f, mask, sequence_tau_h=0.005)
    assert keep.tolist() == [[True, True, False], [True, True, False]]
    keep, _ = curvature_mask(m_h, m_f, mask, sequence_tau_h=0.005, reduce="sum")  # 0.008 ≥ 0.005
    assert keep.tolist() == [[False, False, False], [True, True, False]]
    # global mean of sequence means = (0.004 + 0) / 2 = 0.002; global sum = 0.008
    keep, m = curvature_mask(m_h, m_f, mask, global_tau_h=0.0021)
    assert keep.tolist() == [[True, True, False], [True, True, False]] and m["selector/capo_global_masked"] == 0.0
    keep, m = curvature_mask(m_h, m_f, mask, global_tau_h=0.0019)
    assert not keep.any() and m["selector/capo_global_masked"] == 1.0
    keep, _ = curvature_mask(m_h, m_f, mask, global_tau_h=0.0079, reduce="sum")
    assert not keep.any()


def loop_mask(m_h, m_f, mask, *, tau_h, tau_f, seq_h, seq_f, glob_h, glob_f, symmetric, reduce):
    def ok(h, f, th, tf):
        good = True
        if th is not None:
            good &= (abs(h) < th) if symmetric else (0.0 <= h < th)
        if tf is not None:
            good &= f < tf
        return good

    B, T = mask.shape
    keep = [
        [bool(mask[b, t]) and ok(float(m_h[b, t]), float(m_f[b, t]), tau_h, tau_f) for t in range(T)] for b in range(B)
    ]
    seq_vals = []
    for b in range(B):
        ts = [t for t in range(T) if keep[b][t]]
        if not ts:
            seq_vals.append(None)
            continue
        sh, sf = sum(float(m_h[b, t]) for t in ts), sum(float(m_f[b, t]) for t in ts)
        if reduce == "mean":
            sh, sf = sh / len(ts), sf / len(ts)
        if (seq_h is not None or seq_f is not None) and not ok(sh, sf, seq_h, seq_f):
            keep[b] = [False] * T
            seq_vals.append(None)
        else:
            seq_vals.append((sh, sf))
    if glob_h is not None or glob_f is not None:
        if reduce == "mean":
            live = [s for b, s in enumerate(seq_vals) if s is not None and any(keep[b])]
            gh = sum(s[0] for s in live) / len(live) if live else 0.0
            gf = sum(s[1] for s in live) / len(live) if live else 0.0
        else:
            gh = sum(float(m_h[b, t]) for b in range(B) for t in range(T) if keep[b][t])
            gf = sum(float(m_f[b, t]) for b in range(B) for t in range(T) if keep[b][t])
        if not ok(gh, gf, glob_h, glob_f):
            keep = [[False] * T for _ in range(B)]
    return torch.tensor(keep)


@pytest.mark.parametrize("seed", range(4))
def test_curvature_mask_loop_vs_vectorised(seed):
    g = torch.Generator().manual_seed(seed)
    B, T = 6, 5
    mask = torch.rand(B, T, generator=g) > 0.25  # [B, T]
    mask[:, 0] = True
    m_h = (torch.rand(B, T, generator=g) - 0.3) * 0.03  # [B, T]
    m_f = torch.rand(B, T, generator=g) * 2e-4  # [B, T]
    m_h[~mask] = float("nan")  # padding must not matter
    for symmetric in (True, False):
        for reduce in ("mean", "sum"):
            kw = dict(tau_h=0.012, tau_f=1.5e-4, seq_h=0.01, seq_f=1.2e-4, glob_h=0.02, glob_f=3e-4)
            if seed % 2:
                kw.update(glob_h=None, glob_f=None)
            got, _ = curvature_mask(
                m_h,
                m_f,
                mask,
                tau_h=kw["tau_h"],
                tau_f=kw["tau_f"],
                sequence_tau_h=kw["seq_h"],
                sequence_tau_f=kw["seq_f"],
                global_tau_h=kw["glob_h"],
                global_tau_f=kw["glob_f"],
                symmetric=symmetric,
                reduce=reduce,
            )
            assert torch.equal(got, loop_mask(m_h, m_f, mask, symmetric=symmetric, reduce=reduce, **kw))


def test_padding_does_not_influence_the_selector():
    g = torch.Generator().manual_seed(3)
    mask = torch.tensor([[True, True, False], [True, False, False]])
    lin, quad, adv = torch.rand(2, 3, generator=g) * 0.05, torch.rand(2, 3, generator=g) * 1e-3, torch.ones(2, 3)
    r = Rollout(
        group=torch.tensor([0, 0]), mask=mask, reward=torch.zeros(2), extras={"capo_lin": lin, "capo_quad": quad}
    )
    out, keep, metrics = capo(r, adv, sequence_tau_h=0.05)
    garbage = {"capo_lin": lin.masked_fill(~mask, float("nan")), "capo_quad": quad.masked_fill(~mask, 1e9)}
    r2 = r.replace(extras=garbage)
    out2, keep2, metrics2 = capo(r2, adv.masked_fill(~mask, float("inf")), sequence_tau_h=0.05)
    assert torch.equal(keep, keep2) and torch.equal(out, out2) and metrics == metrics2
    assert not (keep & ~mask).any() and (out[~mask] == 0).all()


def test_the_selector_is_registered_and_declares_its_extras():
    assert SELECTORS["capo"] is capo
    assert SELECTORS.requires("capo") == frozenset({"capo_lin", "capo_quad"})


def test_bad_input_raises_value_errors():
    r = Rollout(group=torch.tensor([0]), mask=torch.ones(1, 2, dtype=torch.bool), reward=torch.zeros(1))
    with pytest.raises(ValueError, match="capo_curvature"):
        capo(r, torch.ones(1, 2))
    good = r.replace(extras={"capo_lin": torch.zeros(1, 2), "capo_quad": torch.zeros(1, 2)})
    with pytest.raises(ValueError, match="hessian"):
        capo(good, torch.ones(1, 2), hessian="full")
    with pytest.raises(ValueError, match="fisher"):
        capo(good, torch.ones(1, 2), fisher="true")
    with pytest.raises(ValueError, match="reduce"):
        capo(good, torch.ones(1, 2), reduce="max")
    for bad in (0.0, -1.0, "0.1"):
        with pytest.raises(ValueError, match="tau_f"):
            capo(good, torch.ones(1, 2), tau_f=bad)
    with pytest.raises(ValueError, match=r"\[1, 2\]"):
        capo(r.replace(extras={"capo_lin": torch.zeros(1, 3), "capo_quad": torch.zeros(1, 2)}), torch.ones(1, 2))
    with pytest.raises(ValueError, match="top_k"):
        topk_support(torch.zeros(1, 3), torch.tensor([0]), top_k=0)
    with pytest.raises(ValueError, match="reference_advantage"):
        step_scale(torch.ones(1, 2), torch.ones(1, 3), None, lr=1.0, reference_advantage=0.0)
    with pytest.raises(ValueError, match="step"):
        adam_preconditioner(torch.ones(2), lr=1.0, step=0, beta2=0.99)
    with pytest.raises(ValueError, match="temperature"):
        lm_head_coefficients(torch.ones(1, 2), torch.ones(3, 2), torch.tensor([0]), temperature=0.0)


def test_the_preset_normalises_advantages_by_the_group_std_as_the_paper_code():
    # stable-pg-llm GRPOEntropyTrainer._compute_advantages with its default advantage_target_std 1.0 (the CAPO recipe's
    # normalize_advantages: false is not read there): A = (r − mean) / (std_ddof1 + 1e-4).
    from grpolab.algorithms import PRESETS
    from grpolab.core.advantages import ADVANTAGES

    preset = PRESETS["capo"]
    r = Rollout(
        group=torch.tensor([0, 0, 0, 0, 1, 1]),
        mask=torch.ones(6, 1, dtype=torch.bool),
        reward=torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 1.0]),
    )
    adv = ADVANTAGES[preset.advantage.name](r, **preset.advantage.params)[:, 0]
    # group 0: mean 0.25, std (ddof 1) 0.5 → 0.75 / 0.5001, −0.25 / 0.5001; group 1: no variance → 0
    want = [0.75 / 0.5001, -0.25 / 0.5001, -0.25 / 0.5001, -0.25 / 0.5001, 0.0, 0.0]
    assert adv.tolist() == pytest.approx(want, rel=1e-6, abs=1e-7)
    assert preset.trainer["num_generations"] == 8 and "temperature" not in preset.trainer  # the code's log-probs: T 1
