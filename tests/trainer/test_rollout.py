import pytest
import torch

from grpolab.models import random_tiny_model
from grpolab.rollout.hf import DecodedStop, HFEngine
from grpolab.trainer.logprob import completion_outputs


def test_completion_mask_ends_at_the_first_eos_and_skips_padding():
    _, tok = random_tiny_model(seed=0)
    engine = HFEngine(tok, max_new_tokens=4)
    eos, pad = tok.eos_token_id, tok.pad_token_id
    ids = torch.tensor([[5, eos, 7, 7], [eos, 7, 7, 7], [5, 6, 7, 8], [5, pad, pad, pad], [5, pad, 6, pad]])
    mask, ended = engine._completion_mask(ids)
    assert mask.tolist() == [
        [True, True, False, False],  # EOS is kept: the model learns to stop
        [True, False, False, False],
        [True, True, True, True],
        [True, False, False, False],  # a stop string ended it; generate padded the rest
        [True, True, True, False],  # a pad token sampled mid-completion is a real token
    ]
    assert ended.tolist() == [True, True, False, False, False]


def test_generation_shapes_truncation_and_grouping():
    torch.manual_seed(0)
    model, tok = random_tiny_model(seed=0)
    engine = HFEngine(tok, max_new_tokens=5)
    gen = engine.generate(model, ["12+3=", "7-70="], num_generations=3)
    assert gen.completion_ids.shape[0] == 6 and gen.prompt_index.tolist() == [0, 0, 0, 1, 1, 1]
    assert gen.completion_mask[:, 0].all() and len(gen.texts) == 6
    lengths = gen.completion_mask.sum(-1)
    assert (gen.truncated == (lengths == 5) & ~(gen.completion_ids == tok.eos_token_id).any(-1)).all()


def test_log_probs_match_the_sampling_distribution_with_left_padding():
    """The training forward pass (positions from the attention mask) gives the log-probs generate sampled from."""
    torch.manual_seed(1)
    model, tok = random_tiny_model(seed=1)
    engine = HFEngine(tok, max_new_tokens=4, temperature=0.7)
    prompt_ids, prompt_mask = engine.encode(["1+1=", "99-12="])  # different lengths: left padding
    out = model.generate(
        input_ids=prompt_ids,
        attention_mask=prompt_mask.long(),
        max_new_tokens=4,
        do_sample=True,
        temperature=0.7,
        top_k=0,
        top_p=1.0,
        output_scores=True,
        return_dict_in_generate=True,
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
    )
    completion = out.sequences[:, prompt_ids.shape[1] :]  # [2, T]
    mask, _ = engine._completion_mask(completion)
    expected = torch.stack(
        [torch.log_softmax(s, -1).gather(-1, completion[:, t : t + 1]).squeeze(-1) for t, s in enumerate(out.scores)], 1
    )  # [2, T] log-probs of the tempered distribution generate sampled from
    got = completion_outputs(model, prompt_ids, prompt_mask, completion, mask, temperature=0.7).logp
    torch.testing.assert_close(got[mask], expected[mask], atol=1e-4, rtol=1e-4)


def test_chat_prompts_go_through_the_chat_template():
    torch.manual_seed(0)
    model, tok = random_tiny_model(seed=0)
    tok.chat_template = "{{ bos_token }}{% for m in messages %}{{ m['content'] }}={% endfor %}"  # minimal
    engine = HFEngine(tok, max_new_tokens=3)
    ids, mask = engine.encode([[{"role": "user", "content": "12+3"}]])
    assert tok.decode(ids[0][mask[0]], skip_special_tokens=True) == "12+3="
    assert (ids[0] == tok.bos_token_id).sum() == 1  # the template's BOS only
    gen = engine.generate(model, [[{"role": "user", "content": "12+3"}]], num_generations=2)
    assert gen.completion_ids.shape[0] == 2


@pytest.mark.parametrize("with_value", [False, True])
def test_shared_prompt_forward_equals_one_forward_per_row(with_value):
    """Running each prompt once for its G completions gives the same log-probs, entropy, values and gradients."""
    from grpolab.trainer.logprob import ValueHead

    torch.manual_seed(2)
    model, tok = random_tiny_model(seed=2)
    engine = HFEngine(tok, max_new_tokens=6)
    gen = engine.generate(model, ["1+1=", "99-12=", "7+70="], num_generations=3)  # unequal prompt lengths
    head = ValueHead(model.config.hidden_size) if with_value else None
    if head is not None:
        torch.nn.init.normal_(head.proj.weight)
    results = []
    for group in (None, gen.prompt_index):
        model.zero_grad()
        out = completion_outputs(
            model,
            gen.prompt_ids,
            gen.prompt_mask,
            gen.completion_ids,
            gen.completion_mask,
            group=group,
            temperature=0.9,
            entropy=True,
            entropy_grad=True,
            value_head=head,
        )
        m = gen.completion_mask
        total = out.logp[m].sum() + out.entropy[m].sum() + (out.value[m].sum() if with_value else 0)
        total.backward()
        grads = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
        results.append((out, grads))
    (full, g_full), (shared, g_shared) = results
    m = gen.completion_mask
    torch.testing.assert_close(shared.logp[m], full.logp[m], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(shared.entropy[m], full.entropy[m], atol=1e-5, rtol=1e-5)
    if with_value:
        torch.testing.assert_close(shared.value[m], full.value[m], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(g_shared, g_full, atol=1e-5, rtol=1e-4)


def test_rows_with_different_prompts_under_one_id_fall_back_to_the_full_forward():
    torch.manual_seed(3)
    model, tok = random_tiny_model(seed=3)
    gen = HFEngine(tok, max_new_tokens=3).generate(model, ["1+1=", "2+2="], num_generations=2)
    wrong = torch.zeros_like(gen.prompt_index)  # claims every row has the same prompt
    args = (model, gen.prompt_ids, gen.prompt_mask, gen.completion_ids, gen.completion_mask)
    torch.testing.assert_close(completion_outputs(*args, group=wrong).logp, completion_outputs(*args).logp)


@pytest.mark.parametrize("greedy", [True, False])
def test_shared_prefill_generates_what_a_plain_generate_does(greedy):
    """Prompts encoded once and their cache repeated for the G samples give the same completions (same seed)."""
    model, tok = random_tiny_model(seed=4)
    prompts = ["1+1=", "99-12=", "7+70="]  # unequal lengths: left padding
    outs = []
    for share in (False, True):
        torch.manual_seed(5)
        gen = HFEngine(tok, max_new_tokens=6, share_prefill=share).generate(
            model, prompts, num_generations=4, greedy=greedy
        )
        outs.append(gen)
    assert torch.equal(outs[0].completion_ids, outs[1].completion_ids)
    assert torch.equal(outs[0].completion_mask, outs[1].completion_mask)
    assert outs[0].texts == outs[1].texts


@pytest.mark.parametrize("greedy", [True, False])
def test_groups_of_unequal_size_share_the_prefill_exactly(greedy):
    """One G per prompt (samplers that allocate rollouts): rows follow the counts, and the shared prompt cache
    gives the completions a plain generate of the repeated prompts gives."""
    model, tok = random_tiny_model(seed=6)
    prompts = ["1+1=", "99-12=", "7+70="]
    counts = [3, 1, 2]
    outs = []
    for share in (False, True):
        torch.manual_seed(7)
        engine = HFEngine(tok, max_new_tokens=5, share_prefill=share)
        outs.append(engine.generate(model, prompts, num_generations=counts, greedy=greedy))
    assert outs[1].prompt_index.tolist() == [0, 0, 0, 1, 2, 2]
    assert torch.equal(outs[0].completion_ids, outs[1].completion_ids) and outs[0].texts == outs[1].texts
    torch.manual_seed(7)
    flat = HFEngine(tok, max_new_tokens=5, share_prefill=False).generate(
        model, [p for p, c in zip(prompts, counts, strict=True) for _ in range(c)], num_generations=1, greedy=greedy
    )
    assert torch.equal(flat.completion_ids, outs[0].completion_ids)
    with pytest.raises(ValueError, match=">= 1"):
        HFEngine(tok, max_new_tokens=5).generate(model, prompts, num_generations=[1, 0, 2])


def test_stop_strings_on_a_vocabulary_without_letters():
    """transformers' stop-string matcher cannot read the arithmetic character vocabulary (no letters): the engine
    falls back to DecodedStop, which ends a row right after a stop string and leaves the others running."""
    model, tok = random_tiny_model(seed=0)
    engine = HFEngine(tok, max_new_tokens=12, stop=["="])
    assert not engine._hf_stop_strings
    torch.manual_seed(0)
    gen = engine.generate(model, ["12+3=", "7-70="], num_generations=8)
    stopped = [t for t in gen.texts if "=" in t]
    assert stopped, "a random model writes '=' within 12 tokens in some of 16 samples"
    assert all(t.endswith("=") and t.count("=") == 1 for t in stopped)  # cut right after the first stop string
    assert not any(gen.truncated[i] for i, t in enumerate(gen.texts) if "=" in t)
    ids = torch.tensor([tok("9+3", add_special_tokens=False).input_ids, tok("+33", add_special_tokens=False).input_ids])
    # only the tokens after the prompt count: with a 1-token prompt row 0's new text is "+3", row 1's "33"
    assert DecodedStop(tok, ["+3"], prompt_len=1)(ids).tolist() == [True, False]
    assert DecodedStop(tok, ["+3"], prompt_len=0)(ids).tolist() == [True, True]
