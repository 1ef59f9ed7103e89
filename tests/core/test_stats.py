import torch

from grpolab.core import stats


def test_group_statistics_hand_computed():
    x = torch.tensor([1.0, 4.0, 0.0, 2.0, 7.0])
    g = torch.tensor([0, 1, 0, 0, 2])  # group 0 = {1, 0, 2}, group 1 = {4}, group 2 = {7}
    assert stats.group_count(g, 3).tolist() == [3, 1, 1]
    assert stats.group_sum(x, g, 3).tolist() == [3.0, 4.0, 7.0]
    assert stats.group_mean(x, g, 3).tolist() == [1.0, 4.0, 7.0]
    # group 0: deviations (0, -1, 1), sum of squares 2; ddof 1 -> var 1; ddof 0 -> var 2/3
    torch.testing.assert_close(stats.group_std(x, g, 3), torch.tensor([1.0, 0.0, 0.0]))
    torch.testing.assert_close(stats.group_std(x, g, 3, ddof=0), torch.tensor([(2 / 3) ** 0.5, 0.0, 0.0]))


def test_masked_statistics_ignore_padding_even_nan():
    x = torch.tensor([[1.0, 3.0, float("nan")], [5.0, float("inf"), 7.0]])
    m = torch.tensor([[True, True, False], [True, False, True]])
    assert stats.masked_sum(x, m).item() == 16.0
    assert stats.masked_mean(x, m).item() == 4.0
    assert stats.masked_mean(x, m, dim=-1).tolist() == [2.0, 6.0]
    # values 1, 3, 5, 7: mean 4, squared deviations 9+1+1+9 = 20, unbiased var 20/3
    torch.testing.assert_close(stats.masked_var(x, m), torch.tensor(20 / 3))
    white = stats.masked_whiten(x, m, eps=0.0)
    expected = (torch.tensor([1.0, 3.0, 5.0, 7.0]) - 4) / (20 / 3) ** 0.5
    torch.testing.assert_close(white[m], expected)
    assert white[~m].tolist() == [0.0, 0.0]
    torch.testing.assert_close(stats.masked_whiten(x, m, eps=0.0, shift_mean=False)[m], expected + 4)


def test_group_var_and_extremes_hand_computed():
    x = torch.tensor([1.0, 4.0, 0.0, 2.0, 7.0], dtype=torch.float64)
    g = torch.tensor([0, 1, 0, 0, 2])  # group 0 = {1, 0, 2}, group 1 = {4}, group 2 = {7}
    # group 0: sum of squared deviations 2 -> ddof 1: 1, ddof 0: 2/3; single members: 0
    assert stats.group_var(x, g, 3).tolist() == [1.0, 0.0, 0.0]
    assert stats.group_var(x, g, 3, ddof=0).tolist() == [2 / 3, 0.0, 0.0]
    # group_std is exactly the root of group_var (one computation)
    assert torch.equal(stats.group_std(x, g, 3, ddof=0), stats.group_var(x, g, 3, ddof=0).sqrt())
    assert stats.group_max(x, g, 3).tolist() == [2.0, 4.0, 7.0]
    assert stats.group_min(x, g, 4).tolist() == [0.0, 4.0, 7.0, float("inf")]  # group 3 has no member


def test_soft_counts_skip_nan_and_clamp():
    # 1 + 0.25 + clamp(3) = 1 + clamp(-2) = 0 -> 2.25 of 4 (the NaN is no evidence)
    assert stats.soft_counts(torch.tensor([1.0, 0.25, float("nan"), 3.0, -2.0])) == (2.25, 4)
    assert stats.soft_counts(torch.tensor([float("nan")])) == (0.0, 0)
