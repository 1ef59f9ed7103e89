import torch

from grpolab.models import random_tiny_model
from grpolab.rollout.hf import HFEngine
from grpolab.trainer.logprob import completion_outputs


def test_completion_mask_ends_at_the_first_eos_and_skips_padding():
    _, tok = random_tiny_model(seed=0)
    engine = HFEngine(tok, max_new_tokens=4)
    eos, pad = tok.eos_token_id, tok.pad_token_id
    ids = torch.tensor([[5, eos, 7, 7], [eos, 7, 7, 7], [5, 6, 7, 8], [5, pad, pad, pad]])
    mask, ended = engine._completion_mask(ids)
    assert mask.tolist() == [
        [True, True, False, False],  # EOS is kept: the model learns to stop
        [True, False, False, False],
        [True, True, True, True],
        [True, False, False, False],  # a stop string ended it; generate padded the rest
    ]
    assert ended.tolist() == [True, True, False, False]


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
