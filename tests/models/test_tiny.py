"""The built-in tiny-arith model: it loads offline, its tokenizer, its size, and its documented accuracy."""

import json
from pathlib import Path

import pytest
import torch
from transformers import LlamaForCausalLM

from grpolab.data.arith import arith_exact_reward, arith_rows
from grpolab.models import BUILTIN_MODELS, char_tokenizer, load_pretrained, random_tiny_model, resolve_model_path

FOLDER = Path(BUILTIN_MODELS["tiny-arith"])


@pytest.fixture(scope="module")
def tiny():
    return load_pretrained("tiny-arith")


def test_builtin_names_resolve_to_the_package_folder():
    assert resolve_model_path("tiny-arith") == resolve_model_path("builtin:tiny-arith") == str(FOLDER)
    assert (FOLDER / "model.safetensors").is_file() and (FOLDER / "tokenizer.json").is_file()
    assert resolve_model_path(str(FOLDER)) == str(FOLDER)  # a local folder passes through


def test_unknown_names_raise_a_clear_error():
    with pytest.raises(ValueError, match="does not download"):
        load_pretrained("Qwen/Qwen2.5-0.5B")
    with pytest.raises(ValueError, match="unknown built-in"):
        load_pretrained("builtin:huge-arith")


def test_tokenizer_adds_bos_round_trips_and_pads_left(tiny):
    _, tok = tiny
    ids = tok("23+45=").input_ids
    assert ids == [tok.bos_token_id, *tok.convert_tokens_to_ids(list("23+45="))]
    assert len(ids) == 7
    for text in ["23+45=68", "0-99=-99", "1 + 2 = 3", "(3*4)/2=6.0,"]:
        assert tok.decode([*tok(text).input_ids, tok.eos_token_id], skip_special_tokens=True) == text
    assert tok.padding_side == "left"
    batch = tok(["1+1=", "10-20="], padding=True).input_ids
    assert batch[0][:2] == [tok.pad_token_id] * 2 and batch[0][2] == tok.bos_token_id
    assert (tok.pad_token_id, tok.bos_token_id, tok.eos_token_id) == (0, 1, 2)
    assert tok.get_vocab() == char_tokenizer().get_vocab()


def test_model_is_the_documented_small_llama(tiny):
    model, tok = tiny
    assert isinstance(model, LlamaForCausalLM)
    cfg = model.config
    assert (cfg.hidden_size, cfg.num_hidden_layers, cfg.num_attention_heads, cfg.head_dim) == (128, 4, 4, 32)
    assert (cfg.intermediate_size, cfg.max_position_embeddings, cfg.vocab_size) == (256, 64, len(tok))
    assert cfg.tie_word_embeddings and model.lm_head.weight is model.model.embed_tokens.weight
    # embeddings 24*128 + per layer (4 * 128*128 attention + 3 * 128*256 MLP + 2 * 128 norms) + final norm 128
    assert sum(p.numel() for p in model.parameters()) == 24 * 128 + 4 * (4 * 128 * 128 + 3 * 128 * 256 + 256) + 128
    assert next(model.parameters()).dtype == torch.float32
    assert (FOLDER / "model.safetensors").stat().st_size < 4_000_000
    for c in (cfg, model.generation_config):
        assert (c.pad_token_id, c.bos_token_id, c.eos_token_id) == (0, 1, 2)


def test_pretrain_report_says_rl_has_something_to_learn():
    report = json.loads((FOLDER / "pretrain_report.json").read_text())
    assert 0.2 <= report["eval_temp1_accuracy"] <= 0.6
    assert report["eval_greedy_accuracy"] >= report["eval_temp1_accuracy"] + 0.3  # the mode is mostly right
    assert report["split"] == {"n_eval": 500, "seed": 0, "train_problems": 19_500}


def test_temperature_one_accuracy_on_held_out_prompts(tiny):
    model, tok = tiny
    rows = arith_rows("eval")[:200]
    enc = tok([r["prompt"] for r in rows], return_tensors="pt", padding=True)
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(0)
        out = model.generate(
            **enc, do_sample=True, temperature=1.0, top_k=0, top_p=1.0, max_new_tokens=5, num_return_sequences=2
        )  # [400, T + new]
    texts = tok.batch_decode(out[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)
    answers = [r["answer"] for r in rows for _ in range(2)]
    accuracy = sum(arith_exact_reward([], texts, answer=answers)) / len(texts)
    assert 0.15 <= accuracy <= 0.65


def test_random_tiny_model_is_seeded_and_shares_the_vocabulary(tiny):
    _, shipped_tok = tiny
    state = torch.random.get_rng_state()
    model, tok = random_tiny_model(seed=0)
    assert torch.equal(torch.random.get_rng_state(), state)  # the global RNG is left alone
    again, _ = random_tiny_model(seed=0)
    other, _ = random_tiny_model(seed=1)
    w = model.model.embed_tokens.weight
    assert torch.equal(w, again.model.embed_tokens.weight) and not torch.equal(w, other.model.embed_tokens.weight)
    assert tok.get_vocab() == shipped_tok.get_vocab() and model.config.vocab_size == len(tok)
    assert (model.config.hidden_size, model.config.num_hidden_layers) == (64, 2)
    enc = tok(["1+1=", "12-3="], return_tensors="pt", padding=True)
    out = model.generate(**enc, do_sample=False, max_new_tokens=3)  # [2, T + 3]
    assert out.shape == (2, enc["input_ids"].shape[1] + 3)
    logits = model(**enc).logits  # [2, T, V]
    logits.sum().backward()
    assert model.model.embed_tokens.weight.grad is not None
