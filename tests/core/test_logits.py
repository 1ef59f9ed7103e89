import math

import pytest
import torch

from grpolab.core.logits import entropy_from_logits, token_logprobs


def test_entropy_hand_computed():
    logits = torch.log(torch.tensor([[[0.5, 0.25, 0.25], [1.0, 1e-30, 1e-30]]]))  # [1, 2, 3]
    # H(0.5, .25, .25) = 0.5 ln 2 + 2 * 0.25 ln 4 = 1.5 ln 2; a one-hot distribution has H = 0
    torch.testing.assert_close(entropy_from_logits(logits), torch.tensor([[1.5 * math.log(2), 0.0]]))


@pytest.mark.parametrize("chunk_size", [1, 3, 7, 1000])
def test_chunking_changes_neither_values_nor_gradients(chunk_size):
    torch.manual_seed(0)
    logits = torch.randn(3, 5, 11, dtype=torch.float64, requires_grad=True)  # [B, T, V]
    tokens = torch.randint(0, 11, (3, 5))  # [B, T]
    weights = torch.randn(3, 5, dtype=torch.float64)  # [B, T]

    def reference():
        logp = torch.log_softmax(logits, dim=-1)  # [B, T, V]
        return -(logp.exp() * logp).sum(-1), logp.gather(-1, tokens[..., None]).squeeze(-1)

    ent_ref, lp_ref = reference()
    (g_ref,) = torch.autograd.grad(((ent_ref + lp_ref) * weights).sum(), logits)
    ent = entropy_from_logits(logits.double(), chunk_size=chunk_size)
    lp = token_logprobs(logits, tokens, chunk_size=chunk_size)
    (g,) = torch.autograd.grad(((ent + lp) * weights).sum(), logits)
    assert ent.dtype == torch.float32  # statistics are taken in fp32
    torch.testing.assert_close(ent.double(), ent_ref, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(lp.double(), lp_ref, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(g, g_ref, atol=1e-6, rtol=1e-6)


def test_bf16_logits_give_fp32_results_and_bad_input_raises():
    logits = torch.zeros(2, 4, dtype=torch.bfloat16)
    assert entropy_from_logits(logits).dtype == torch.float32
    with pytest.raises(ValueError, match="tokens shape"):
        token_logprobs(logits, torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="chunk_size"):
        entropy_from_logits(logits, chunk_size=0)
