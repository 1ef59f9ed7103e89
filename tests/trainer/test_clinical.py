"""The clinical task end to end: the shipped tiny-clinical model, and real Trainer runs of crpo and hard_mining."""

import json
from pathlib import Path

import pytest
import torch

from grpolab.data.clinical import MAX_NEW_TOKENS, clinical_task
from grpolab.models import BUILTIN_MODELS, TEXT_CHARS, char_tokenizer, load_pretrained
from grpolab.trainer.config import resolve
from grpolab.trainer.loop import Trainer, evaluate

# TINY settings of tests/trainer/test_loop.py, on the clinical task and its built-in model
TINY = dict(
    model="tiny-clinical",
    task="clinical",
    task_args={"n_train": 40, "n_eval": 4},
    steps=3,
    num_prompts=2,
    eval_prompts=4,
    eval_every=0,
    save_every=0,
    progress=False,
    learning_rate=1e-3,
)
REWARDS = ("dx_accuracy", "faithfulness", "comprehensiveness")


def records(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_the_shipped_model_is_small_and_reads_the_task():
    model, tok = load_pretrained("tiny-clinical")
    cfg = model.config
    assert cfg.hidden_size <= 128 and cfg.num_hidden_layers <= 4
    assert cfg.max_position_embeddings >= 1 + 150 + MAX_NEW_TOKENS  # the longest prompt + BOS + generation
    assert tok.get_vocab() == char_tokenizer(chars=TEXT_CHARS).get_vocab()
    case = clinical_task(n_train=1, n_eval=1).eval[0]
    assert tok.decode(tok(case["prompt"]).input_ids, skip_special_tokens=True) == case["prompt"]
    report = json.loads((Path(BUILTIN_MODELS["tiny-clinical"]) / "warmstart_report.json").read_text())
    assert report["split"] == {"n_train": 2000, "n_eval": 200, "seed": 0}
    for label in ("greedy", "temp1", "temp0.6"):
        assert set(REWARDS) <= {k.removeprefix("reward/") for k in report["eval"][label]}


def test_the_shipped_model_knows_the_format_but_errs_when_sampled():
    model, tok = load_pretrained("tiny-clinical")
    task = clinical_task()  # the default split: eval cases held out from the warm-start data
    greedy = evaluate(model, tok, task, num_prompts=16, temperature=0.0, max_new_tokens=MAX_NEW_TOKENS)
    assert greedy["eval/truncated_frac"] == 0.0  # it stops (EOS) after the diagnosis
    assert greedy["eval/pass@1"] >= 0.5 and greedy["eval/reward/faithfulness"] >= 0.5


def test_crpo_trains_three_steps_on_the_clinical_task(tmp_path):
    config = resolve(None, {**TINY, "algo": "crpo", "name": "crpo", "output_dir": str(tmp_path)})
    assert (config.num_generations, config.temperature) == (5, 0.6)  # the preset's settings
    trainer = Trainer(config)
    assert config.max_new_tokens == MAX_NEW_TOKENS  # the task's suggestion
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer.run()
    logged = records(tmp_path / "crpo")
    assert [r["step"] for r in logged] == [0, 1, 2, 3]
    for r in logged[1:]:
        assert not r.get("skipped") and abs(r["loss"]) < 1e6
        # each objective is logged on its own, and the trained reward is the task's weighted sum
        assert all(0.0 <= r[f"reward/{n}"] <= 1.0 for n in REWARDS)
        combined = r["reward/dx_accuracy"] + 0.5 * r["reward/faithfulness"] + 0.5 * r["reward/comprehensiveness"]
        assert r["reward"] == pytest.approx(combined, abs=1e-5)
        assert r["accuracy"] == pytest.approx(r["reward/dx_accuracy"], abs=1e-6)
    for r in (logged[0], logged[-1]):
        assert {f"eval/reward/{n}" for n in REWARDS} <= set(r)
    assert any(not torch.equal(before[k], v) for k, v in trainer.model.state_dict().items())


def test_hard_mining_runs_on_the_clinical_task(tmp_path):
    overrides = {**TINY, "algo": "hard_mining", "name": "hm", "output_dir": str(tmp_path), "steps": 2}
    Trainer(resolve(None, overrides)).run()
    logged = records(tmp_path / "hm")
    assert [r["sampler/stage"] for r in logged[1:]] == [1.0, 2.0]  # stage 1, then the mined stage 2


def load_script():
    import importlib.util
    import sys

    scripts = Path(__file__).resolve().parents[2] / "scripts"
    if str(scripts) not in sys.path:  # the scripts import their shared scripts/_tiny_common.py
        sys.path.insert(0, str(scripts))
    path = scripts / "warmstart_clinical.py"
    spec = importlib.util.spec_from_file_location("warmstart_clinical", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_warmstart_batches_weight_the_answer_and_eos_and_the_script_runs(tmp_path):
    import random

    script = load_script()
    tok = char_tokenizer(chars=TEXT_CHARS)
    stoi = tok.get_vocab()
    case = clinical_task(n_train=1, n_eval=1).train[0]
    ids, targets, w = script.make_batch(
        [case], random.Random(0), batch_size=2, noisy=False, prompt_weight=0.2, stoi=stoi, bos=1, eos=2, pad=0
    )
    n_prompt, n_answer = len(case["prompt"]), len(case["answer"])
    row = w[0].tolist()
    assert ids[0, 0] == 1 and ids[0, 1 + n_prompt + n_answer] == 2  # BOS first, EOS after the answer
    assert row[0] == 0.0  # BOS is never predicted
    assert row[1 : 1 + n_prompt] == pytest.approx([0.2] * n_prompt)  # the prompt at the prompt weight
    assert row[1 + n_prompt : 2 + n_prompt + n_answer] == [1.0] * (n_answer + 1)  # the answer and EOS
    assert torch.equal(ids, targets)
    out = tmp_path / "tc"
    deterministic, py_state = torch.are_deterministic_algorithms_enabled(), random.getstate()
    try:  # main() sets process-wide state (deterministic algorithms, seeds, threads): restore it for other tests
        with torch.random.fork_rng(devices=[]):
            argv = ["--out", str(out), "--steps", "2", "--clean-steps", "1", "--eval-cases", "2", "--no-check"]
            assert script.main(argv) == 0
    finally:
        torch.use_deterministic_algorithms(deterministic)
        random.setstate(py_state)
    report = json.loads((out / "warmstart_report.json").read_text())
    assert report["steps"] == 2 and report["architecture"]["layers"] == 2
    assert load_pretrained(str(out))[0].config.max_position_embeddings == 256
