"""Independent cross-check of reward-model scoring (rewards/reward_model.py): padding side, truncation, pooling and
batch invariance, against an unpadded one-sequence forward pass of the same classifier.

The reference is what a decoder sequence classifier means by "the score of a text": run the model on the text's ids
alone (no padding at all) and read the logits it pools at the last token. Whatever batching, padding and chunking
the library does must reproduce that number; with truncation, the ids are the tokenizer's BOS followed by the LAST
``max_length − 1`` tokens of prompt + completion (the end, where a decoder RM reads its score, is kept).
"""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from grpolab.rewards.reward_model import RewardModel, reward_model_heads, train_reward_model

PROMPTS = ["1+1=", "123+456=", "9=", "7*7=", "10-3=", "2/2="]
COMPLETIONS = ["2", "579 579 579", "", "49", "7 and", "1.0"]


@pytest.fixture(scope="module")
def rm_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("rm")
    texts = ["1+1=2", "2+2=5", "10+3=13", "7*7=49"]
    labels = [[1.0, 0.2], [0.0, 0.5], [1.0, 0.1], [1.0, 0.9]]
    train_reward_model(
        texts, labels, label_names=["good", "short"], steps=2, batch_size=4, max_positions=32, output_dir=root / "a"
    )
    # the same model with a tokenizer saved LEFT-padding / right-truncating: the loader must override both
    shutil.copytree(root / "a", root / "left")
    cfg = root / "left" / "tokenizer_config.json"
    config = json.loads(cfg.read_text())
    config.update(padding_side="left", truncation_side="right")
    cfg.write_text(json.dumps(config))
    return root


def reference_scores(fn: RewardModel, prompts, completions, max_length: int | None = None) -> torch.Tensor:
    tok, model = fn.backbone.tokenizer, fn.backbone.model
    out = []
    for p, c in zip(prompts, completions, strict=True):
        ids = tok(p + c, add_special_tokens=True)["input_ids"]
        if max_length is not None and len(ids) > max_length:
            ids = ids[:1] + ids[len(ids) - (max_length - 1) :]  # BOS + the last max_length − 1 tokens
        with torch.no_grad():
            out.append(model(input_ids=torch.tensor([ids])).logits[0].float())  # [K]
    return torch.stack(out)  # [B, K]


@pytest.mark.parametrize("batch_size", [1, 2, 4, 32])
def test_batched_scores_equal_unpadded_single_forwards(rm_dir, batch_size):
    fn = RewardModel(rm_dir / "a", head="good", batch_size=batch_size)
    expected = reference_scores(fn, PROMPTS, COMPLETIONS)
    torch.testing.assert_close(fn.scores(PROMPTS, COMPLETIONS), expected, atol=1e-5, rtol=1e-5)
    assert fn(PROMPTS, COMPLETIONS) == pytest.approx(expected[:, 0].tolist(), abs=1e-5)


def test_batch_invariance_under_permutation_and_company(rm_dir):
    fn = RewardModel(rm_dir / "a", head=0, batch_size=3)
    alone = [fn([p], [c])[0] for p, c in zip(PROMPTS, COMPLETIONS, strict=True)]
    order = [5, 2, 0, 4, 1, 3]
    permuted = fn([PROMPTS[i] for i in order], [COMPLETIONS[i] for i in order])
    assert permuted == pytest.approx([alone[i] for i in order], abs=1e-5)
    # next to a much longer text (more right padding on the short ones)
    long_p, long_c = "1" * 20 + "+", "2" * 10
    company = fn([PROMPTS[0], long_p, PROMPTS[2]], [COMPLETIONS[0], long_c, COMPLETIONS[2]])
    assert [company[0], company[2]] == pytest.approx([alone[0], alone[2]], abs=1e-5)


def test_left_padding_tokenizer_is_overridden(rm_dir):
    from transformers import AutoTokenizer

    saved = AutoTokenizer.from_pretrained(rm_dir / "left", local_files_only=True)
    assert saved.padding_side == "left" and saved.truncation_side == "right"  # what the folder asks for
    fn = RewardModel(rm_dir / "left", head="good", batch_size=4)
    tok = fn.backbone.tokenizer
    assert tok.padding_side == "right" and tok.truncation_side == "left"
    torch.testing.assert_close(
        fn.scores(PROMPTS, COMPLETIONS), reference_scores(fn, PROMPTS, COMPLETIONS), atol=1e-5, rtol=1e-5
    )


@pytest.mark.parametrize("max_length", [3, 6, 9])
def test_truncation_keeps_bos_and_the_end(rm_dir, max_length):
    fn = RewardModel(rm_dir / "a", head="good", max_length=max_length, batch_size=2)
    expected = reference_scores(fn, PROMPTS, COMPLETIONS, max_length=max_length)
    torch.testing.assert_close(fn.scores(PROMPTS, COMPLETIONS), expected, atol=1e-5, rtol=1e-5)
    ids = fn.backbone.encode("123456789+", "1=0", max_length)
    full = fn.backbone.tokenizer("123456789+1=0")["input_ids"]
    assert len(ids) == max_length and ids[0] == full[0] and ids[1:] == full[len(full) - max_length + 1 :]
    # two texts that differ only before the kept window score the same
    a, b = fn(["98765+"], ["4=0000000"]), fn(["12345+"], ["4=0000000"])
    if max_length <= 9:
        assert a == pytest.approx(b, abs=1e-6)


def test_every_head_is_its_column_of_one_forward(rm_dir):
    heads = reward_model_heads(rm_dir / "a", batch_size=4)
    assert [h.__name__ for h in heads] == ["rm_a_good", "rm_a_short"]
    expected = reference_scores(heads[0], PROMPTS, COMPLETIONS)
    for k, fn in enumerate(heads):
        assert fn(PROMPTS, COMPLETIONS) == pytest.approx(expected[:, k].tolist(), abs=1e-5)
    # the cached [B, K] of the first head is reused by the second for the same batch, not recomputed wrongly
    assert heads[0].backbone is heads[1].backbone
