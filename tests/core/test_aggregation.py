"""Tests for grpolab.core.aggregation: hand values, masking, Dr. GRPO's constant, micro-batch invariance."""

from __future__ import annotations

import pytest
import torch

from grpolab.core.aggregation import AGGREGATIONS, aggregate
from grpolab.core.registry import UnknownNameError

NAN = float("nan")
MODES = sorted(AGGREGATIONS)


def example() -> tuple[torch.Tensor, torch.Tensor]:
    """2 x 3 batch; row 1 is padded at t = 2 (value NaN there)."""
    values = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, NAN]], dtype=torch.float64)  # [2, 3]
    mask = torch.tensor([[True, True, True], [True, True, False]])  # [2, 3]
    return values, mask


def random_batch(seed: int, B: int = 6, T: int = 7) -> tuple[torch.Tensor, torch.Tensor]:
    """Random per-token values with unequal lengths 1..T and garbage (incl. NaN) at padding."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.tensor([1, 7, 3, 5, 2, 6])[:B]  # unequal on purpose
    mask = torch.arange(T)[None, :] < lengths[:, None]  # [B, T]
    values = torch.randn(B, T, generator=g, dtype=torch.float64)  # [B, T]
    values = torch.where(mask, values, torch.full_like(values, NAN))  # [B, T]
    values[0, 5] = 1e30  # a huge value at padding too
    return values, mask


def loop_aggregate(values, mask, mode, num_tokens=None, num_seqs=None, norm_constant=None) -> float:
    """Slow, obvious Python version of each mode."""
    B, T = mask.shape
    rows = [[float(values[i, t]) for t in range(T) if mask[i, t]] for i in range(B)]
    n_seq = B if num_seqs is None else num_seqs
    if mode == "token_mean":
        n_tok = sum(len(r) for r in rows) if num_tokens is None else num_tokens
        return sum(sum(r) for r in rows) / n_tok
    if mode == "seq_mean_token_mean":
        return sum(sum(r) / len(r) for r in rows) / n_seq
    if mode == "seq_mean_token_sum":
        return sum(sum(r) for r in rows) / n_seq
    if mode == "seq_sum_const":
        return sum(sum(r) for r in rows) / (norm_constant * n_seq)
    raise AssertionError(mode)


def test_registry_names():
    assert MODES == ["seq_mean_token_mean", "seq_mean_token_sum", "seq_sum_const", "token_mean"]


def test_hand_values_default_counts():
    values, mask = example()
    # token_mean: (1 + 2 + 3 + 4 + 5) / 5 = 3
    assert aggregate(values, mask, "token_mean").item() == pytest.approx(3.0)
    # seq_mean_token_mean: (6/3 + 9/2) / 2 = (2 + 4.5) / 2 = 3.25
    assert aggregate(values, mask, "seq_mean_token_mean").item() == pytest.approx(3.25)
    # seq_mean_token_sum: (6 + 9) / 2 = 7.5
    assert aggregate(values, mask, "seq_mean_token_sum").item() == pytest.approx(7.5)
    # seq_sum_const, C = 10: (6 + 9) / (10 * 2) = 0.75
    assert aggregate(values, mask, "seq_sum_const", norm_constant=10).item() == pytest.approx(0.75)


def test_hand_values_global_counts():
    values, mask = example()
    # token_mean with N_tok = 10: 15 / 10
    assert aggregate(values, mask, "token_mean", num_tokens=10).item() == pytest.approx(1.5)
    # num_seqs = 4: 6.5 / 4, 15 / 4, 15 / (10 * 4)
    assert aggregate(values, mask, "seq_mean_token_mean", num_seqs=4).item() == pytest.approx(1.625)
    assert aggregate(values, mask, "seq_mean_token_sum", num_seqs=4).item() == pytest.approx(3.75)
    assert aggregate(values, mask, "seq_sum_const", num_seqs=4, norm_constant=10).item() == pytest.approx(0.375)
    # counts given as (all-reduced) tensors work the same
    n = torch.tensor(10.0, dtype=torch.float64)
    assert aggregate(values, mask, "token_mean", num_tokens=n).item() == pytest.approx(1.5)


def test_irrelevant_counts_are_ignored():
    values, mask = example()
    assert aggregate(values, mask, "token_mean", num_seqs=99, norm_constant=7).item() == pytest.approx(3.0)
    assert aggregate(values, mask, "seq_mean_token_sum", num_tokens=99).item() == pytest.approx(7.5)


@pytest.mark.parametrize("mode", MODES)
def test_masked_nan_does_not_leak(mode):
    values, mask = example()
    values = values.clone().requires_grad_(True)
    loss = aggregate(values, mask, mode, norm_constant=10)
    loss.backward()
    assert torch.isfinite(loss)
    assert torch.isfinite(values.grad).all()
    assert values.grad[1, 2].item() == 0.0  # the padded position gets exactly no gradient
    # same value with any other garbage at the padding
    clean = torch.where(mask, values.detach(), torch.zeros_like(values))
    assert loss.item() == aggregate(clean, mask, mode, norm_constant=10).item()


@pytest.mark.parametrize("mode", MODES)
def test_loop_equals_vectorised(mode):
    for seed in range(3):
        values, mask = random_batch(seed)
        got = aggregate(values, mask, mode, norm_constant=7).item()
        assert got == pytest.approx(loop_aggregate(values, mask, mode, norm_constant=7), rel=1e-12)
        got = aggregate(values, mask, mode, num_tokens=50, num_seqs=11, norm_constant=7).item()
        want = loop_aggregate(values, mask, mode, num_tokens=50, num_seqs=11, norm_constant=7)
        assert got == pytest.approx(want, rel=1e-12)


def test_seq_sum_const_ignores_padding_length_and_scales_as_one_over_c():
    row = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    results = []
    for T in (5, 50):
        values = torch.full((1, T), 123.0, dtype=torch.float64)  # garbage at padding
        values[0, :3] = row
        mask = torch.zeros(1, T, dtype=torch.bool)
        mask[0, :3] = True
        results.append(aggregate(values, mask, "seq_sum_const", norm_constant=10).item())
    # 6 / (10 * 1) whatever the padding
    assert results == pytest.approx([0.6, 0.6])
    values, mask = torch.zeros(1, 5, dtype=torch.float64), torch.zeros(1, 5, dtype=torch.bool)
    values[0, :3], mask[0, :3] = row, True
    assert aggregate(values, mask, "seq_sum_const", norm_constant=20).item() == pytest.approx(0.3)  # 6 / 20
    assert aggregate(values, mask, "seq_sum_const", norm_constant=5).item() == pytest.approx(1.2)  # 6 / 5


def test_seq_sum_const_does_not_depend_on_lengths_unlike_seq_mean_token_mean():
    # Dr. GRPO's point: with per-token loss 1 everywhere, a 4-token answer weighs 4x a 1-token one.
    values = torch.ones(2, 4, dtype=torch.float64)
    mask = torch.tensor([[True, False, False, False], [True, True, True, True]])
    grad = torch.autograd.functional.jacobian(lambda v: aggregate(v, mask, "seq_sum_const", norm_constant=4), values)
    # d/dv of Σ m v / (4 * 2): 1/8 at every valid token, whatever the row's length
    assert grad[mask].tolist() == pytest.approx([0.125] * 5)
    grad = torch.autograd.functional.jacobian(lambda v: aggregate(v, mask, "seq_mean_token_mean"), values)
    # GRPO: 1 / (L_i * 2): 1/2 for the 1-token row, 1/8 for the 4-token row (the length bias)
    assert grad[mask].tolist() == pytest.approx([0.5, 0.125, 0.125, 0.125, 0.125])


@pytest.mark.parametrize("mode", MODES)
def test_micro_batches_with_global_counts_sum_to_full_batch(mode):
    values, mask = random_batch(seed=1)
    C = 7.0
    counts = {"num_tokens": int(mask.sum()), "num_seqs": mask.shape[0], "norm_constant": C}

    full_v = values.clone().requires_grad_(True)
    full = aggregate(full_v, mask, mode, norm_constant=C)  # default counts = the whole batch's
    full.backward()

    micro_v = values.clone().requires_grad_(True)
    total = torch.zeros((), dtype=torch.float64)
    start = 0
    for size in (1, 2, 3):  # unequal micro-batches
        sl = slice(start, start + size)
        total = total + aggregate(micro_v[sl], mask[sl], mode, **counts)
        start += size
    assert start == mask.shape[0]
    total.backward()

    assert total.item() == pytest.approx(full.item(), rel=1e-12)
    torch.testing.assert_close(micro_v.grad, full_v.grad, rtol=1e-12, atol=0.0)


@pytest.mark.parametrize("mode", ["token_mean", "seq_mean_token_mean"])
def test_micro_batches_with_local_counts_differ(mode):
    # The reason for global counts: averaging micro-batch means does not give the full-batch mean.
    values, mask = random_batch(seed=1)
    full = aggregate(values, mask, mode).item()
    parts = [aggregate(values[s], mask[s], mode).item() for s in (slice(0, 1), slice(1, 3), slice(3, 6))]
    assert sum(parts) / 3 != pytest.approx(full, rel=1e-6)


def test_unknown_mode_lists_known_names():
    values, mask = example()
    with pytest.raises(UnknownNameError) as info:
        aggregate(values, mask, "token_avg")
    message = str(info.value)
    assert "token_avg" in message
    for name in MODES:
        assert name in message


def test_missing_norm_constant_raises():
    values, mask = example()
    with pytest.raises(ValueError, match=r"norm_constant.*generation limit"):
        aggregate(values, mask, "seq_sum_const")


@pytest.mark.parametrize("bad", [0, -3, 0.0, float("nan"), float("inf"), torch.tensor(0.0), torch.tensor([1.0, 2.0])])
def test_bad_counts_raise(bad):
    values, mask = example()
    with pytest.raises(ValueError, match="num_tokens"):
        aggregate(values, mask, "token_mean", num_tokens=bad)
    with pytest.raises(ValueError, match="num_seqs"):
        aggregate(values, mask, "seq_mean_token_mean", num_seqs=bad)
    with pytest.raises(ValueError, match="norm_constant"):
        aggregate(values, mask, "seq_sum_const", norm_constant=bad)


def test_bad_inputs_raise():
    values, mask = example()
    with pytest.raises(ValueError, match="bool"):
        aggregate(values, mask.long(), "token_mean")
    with pytest.raises(ValueError, match=r"\[B, T\]"):
        aggregate(values[:, :2], mask, "token_mean")
    with pytest.raises(ValueError, match=r"\[B, T\]"):
        aggregate(values.sum(-1), mask, "token_mean")


def test_empty_row_contributes_zero_not_nan():
    values = torch.tensor([[1.0, 3.0], [NAN, NAN]], dtype=torch.float64)
    mask = torch.tensor([[True, True], [False, False]])
    # (2 + 0) / 2
    assert aggregate(values, mask, "seq_mean_token_mean").item() == pytest.approx(1.0)
