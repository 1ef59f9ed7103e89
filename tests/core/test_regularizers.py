import math

import pytest
import torch

from grpolab.core.regularizers import REGULARIZERS
from grpolab.core.types import Rollout


def make(**fields):
    mask = torch.tensor([[True, True], [True, False]])
    return Rollout(group=torch.tensor([0, 0]), mask=mask, reward=torch.tensor([1.0, 0.0]), **fields)


def test_registry_names():
    assert {"entropy", "kl"} <= set(REGULARIZERS)


def test_kl_in_the_loss_hand_computed_with_gradient():
    ref = torch.log(torch.tensor([[0.5, 0.25], [0.5, 0.9]]))  # [B, T]
    logp = torch.log(torch.tensor([[0.25, 0.25], [0.5, 0.1]])).requires_grad_()  # [B, T]; (1, 1) is padding
    r = make(ref_logp=ref)
    loss, metrics = REGULARIZERS["kl"](logp, r, coef=0.1, estimator="k3", aggregation="token_mean")
    # k3 = exp(x) - x - 1 with x = ref - logp: token (0,0) x = ln 2 -> 1 - ln 2; the other valid ones x = 0 -> 0
    assert loss.item() == pytest.approx(0.1 * (1 - math.log(2)) / 3)
    assert metrics["kl"] == pytest.approx((1 - math.log(2)) / 3)
    loss.backward()
    # d k3 / d logp = 1 - exp(ref - logp) = 1 - 2 = -1 at (0, 0); 0 at the others (and at padding)
    torch.testing.assert_close(logp.grad, torch.tensor([[-0.1 / 3, 0.0], [0.0, 0.0]]))


def test_entropy_bonus_hand_computed():
    entropy = torch.tensor([[1.0, 2.0], [3.0, 100.0]])  # 100 sits at padding
    loss, metrics = REGULARIZERS["entropy"](
        torch.zeros(2, 2), make(), entropy=entropy, coef=0.01, aggregation="seq_mean_token_mean"
    )
    # per-sequence means 1.5 and 3.0 -> 2.25; the bonus is -coef times that
    assert loss.item() == pytest.approx(-0.0225)
    assert metrics["entropy"] == pytest.approx(2.0)


def test_regularizer_errors():
    with pytest.raises(ValueError, match="ref_logp"):
        REGULARIZERS["kl"](torch.zeros(2, 2), make())
    with pytest.raises(ValueError, match="entropy"):
        REGULARIZERS["entropy"](torch.zeros(2, 2), make())
    with pytest.raises(ValueError, match=r"entropy must be \[B, T\]"):
        REGULARIZERS["entropy"](torch.zeros(2, 2), make(), entropy=torch.zeros(2, 3))


def test_kl_gradient_is_clean_when_padding_holds_garbage():
    ref = torch.tensor([[-1.0, -1.0], [-1.0, float("nan")]])  # (1, 1) is padding
    logp = torch.tensor([[-1.0, -1.0], [-1.0, float("-inf")]], requires_grad=True)
    loss, _ = REGULARIZERS["kl"](logp, make(ref_logp=ref), coef=0.1)
    loss.backward()
    assert loss.item() == 0.0 and torch.isfinite(logp.grad).all()
