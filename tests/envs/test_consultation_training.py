"""The consultation task end to end: a 3-step run of the real Trainer with the "rubric_env" preset on a random tiny
text model (multi-turn rollouts against the rule-based patient, rubric rewards logged per dimension)."""

import json

import pytest

from grpolab.data import TASKS
from grpolab.data.consultation import INSTRUCTIONS
from grpolab.envs.consultation import ConsultationEnv, RulePatient
from grpolab.rewards.rubric import DIMENSIONS, RuleVerifier
from grpolab.trainer.config import resolve
from grpolab.trainer.loop import Trainer

# tests/trainer/test_loop.py's TINY settings, with a text model and room for a few turns.
TINY = dict(
    model="random-tiny-text",
    steps=3,
    num_prompts=2,
    num_generations=4,
    max_new_tokens=12,
    eval_prompts=2,
    eval_every=0,
    save_every=0,
    progress=False,
    learning_rate=1e-3,
)

CASES = [
    {
        "id": f"c{i}",
        "prompt": f"Case {i}: {complaint}\n",
        "vignette": f"A patient with {complaint}",
        "findings": findings,
        "key_findings": findings[:2],
        "diagnosis": diagnosis,
        "differentials": differentials,
    }
    for i, (complaint, findings, diagnosis, differentials) in enumerate(
        [
            ("cough and fever.", ["productive cough", "fever", "chest pain"], "pneumonia", ["bronchitis"]),
            ("short of breath.", ["wheeze at night", "pet cat", "dry cough"], "asthma", ["bronchitis"]),
            ("belly pain.", ["right lower pain", "nausea", "fever"], "appendicitis", ["gastroenteritis"]),
            ("headache.", ["one sided headache", "light hurts", "nausea"], "migraine", ["tension headache"]),
        ]
        * 3
    )
]


def write_cases(tmp_path):
    path = tmp_path / "cases.jsonl"
    path.write_text("".join(json.dumps(c) + "\n" for c in CASES))
    return str(path)


def test_the_task_from_a_case_file(tmp_path):
    task = TASKS["consultation"](cases=write_cases(tmp_path), eval_fraction=0.25, max_turns=3)
    assert len(task.train) == 9 and len(task.eval) == 3
    # the prompt states the chief complaint only; the rest is for the doctor to ask about
    row = task.train[0]
    assert row["prompt"] == f"A patient complains of {row['findings'][0]}.\n" + INSTRUCTIONS
    assert row["presented"] == row["findings"][:1]
    items = task.reward_funcs[0].scorer.generator(row)
    assert [i.target for i in items if i.check == "asks_about"] == row["key_findings"][1:]
    kept = TASKS["consultation"](cases=write_cases(tmp_path), prompt="case")
    assert {r["prompt"] for r in kept.train} <= {c["prompt"] for c in CASES} and "presented" not in kept.train[0]
    assert isinstance(task.env, ConsultationEnv) and isinstance(task.env.patient, RulePatient)
    assert task.env.max_turns == 3
    names = [f.__name__ for f in task.reward_funcs]
    assert names == ["rubric", "diagnosis_accuracy", *(f"rubric_{d}" for d in DIMENSIONS)]
    assert task.reward_weights == [1.0] + [0.0] * (len(names) - 1)  # the rubric is the reward; the rest is logged
    assert task.accuracy.__name__ == "diagnosis_accuracy"
    assert isinstance(task.reward_funcs[0].scorer.verifier, RuleVerifier)
    with pytest.raises(ValueError, match="findings"):
        TASKS["consultation"](cases=[{**CASES[0], "findings": "cough"}, CASES[1]])
    with pytest.raises(ValueError, match="nothing to tell"):
        TASKS["consultation"](cases=[{**CASES[0], "findings": [], "key_findings": []}, CASES[1]])
    with pytest.raises(ValueError, match="prompt must be one of"):
        TASKS["consultation"](cases=CASES, prompt="vignette")


def test_the_task_without_a_case_source_needs_the_clinical_generator():
    try:
        from grpolab.data.clinical import generate_cases  # noqa: F401
    except ImportError:
        with pytest.raises(ValueError, match=r"cases=<file\.jsonl>"):
            TASKS["consultation"]()
    else:  # the generator exists: its cases feed the task, opened with the chief complaint only
        task = TASKS["consultation"](n_train=4, n_eval=2)
        assert len(task.train) == 4 and len(task.eval) == 2
        for row in task.train:
            assert row["prompt"].startswith(f"A {row['age']} y/o {row['sex']} complains of {row['findings'][0]}.")
            assert all(f not in row["prompt"] for f in row["findings"][1:] if f not in row["findings"][0])


def test_rubric_env_trains_three_steps_on_consultations(tmp_path):
    task_args = {"cases": write_cases(tmp_path), "eval_fraction": 0.25, "max_turns": 2}
    config = resolve(
        None,
        {**TINY, "task": "consultation", "task_args": task_args, "algo": "rubric_env", "output_dir": str(tmp_path)},
    )
    trainer = Trainer(config)
    assert trainer.ref_model is None  # no KL: no reference model
    trainer.run()
    run_dir = tmp_path / config.name
    logged = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logged] == [0, 1, 2, 3]
    for r in logged[1:]:
        assert r.get("skipped") or (r["loss"] is not None and abs(r["loss"]) < 1e6)
        assert {"reward/rubric", "reward/diagnosis_accuracy", "reward/rubric_honesty", "tool_calls", "turns"} <= set(r)
        assert -1.0 <= r["reward/rubric"] <= 1.0 and 1.0 <= r["turns"] <= 2.0
    assert "eval/reward/rubric" in logged[-1] and "eval/turns" in logged[-1]


def scripted_generate(tokenizer, seed=0):
    """A stand-in for ``model.generate``: each turn is drawn (seeded) from a few doctor moves, so completions of one
    prompt differ; the model's real forward pass still computes every log-prob and gradient."""
    import random

    import torch

    rng = random.Random(seed)
    first = ["<ask>cough?</ask>", "<ask>fever?</ask>", "<ask>rash?</ask>", "<dx>pneumonia</dx>"]
    second = ["<dx>pneumonia</dx>", "<dx>asthma; bronchitis</dx>", "<dx>rash</dx>", "<ask>nausea?</ask>"]

    def generate(input_ids, attention_mask, max_new_tokens, pad_token_id, eos_token_id, **_):
        turns = []
        for ids, mask in zip(input_ids, attention_mask, strict=True):
            done = tokenizer.decode(ids[mask.bool()], skip_special_tokens=True).count("</pt>")
            turn = rng.choice(first if done == 0 else second)
            turns.append(tokenizer(turn, add_special_tokens=False).input_ids[:max_new_tokens])
        width = max(len(t) for t in turns)
        out = torch.full((len(turns), width), pad_token_id, dtype=torch.long, device=input_ids.device)  # [M, W]
        for m, t in enumerate(turns):
            out[m, : len(t)] = torch.tensor(t)
        return torch.cat([input_ids, out], dim=1)  # [M, Lp + W]

    return generate


def test_rubric_env_learns_from_scored_consultations_with_a_scripted_sampler(tmp_path):
    import torch

    task_args = {"cases": write_cases(tmp_path), "eval_fraction": 0.25, "max_turns": 2, "prompt": "case"}
    overrides = {"task": "consultation", "task_args": task_args, "algo": "rubric_env", "max_new_tokens": 24}
    config = resolve(None, {**TINY, **overrides, "output_dir": str(tmp_path), "name": "scripted"})
    trainer = Trainer(config)
    trainer.model.generate = scripted_generate(trainer.tokenizer)
    batch = trainer.rollout_batch()
    rollout, gen = batch.rollout, batch.gen
    env_mask = rollout.extras["env_mask"][:, : rollout.mask.shape[1]]  # [B, T]
    assert env_mask.any() and not (rollout.mask & env_mask).any()  # the patient's tokens are out of the loss
    assert (rollout.extras["tool_calls"] > 0).any()
    rubric = rollout.reward_names.index("rubric")
    # hand-computed rubric rewards (positive total 2 + 2 + 5 + 1 = 10 for every fixture case)
    by_hand = {
        ("pneumonia", "<ask>cough?</ask><pt>yes: productive cough</pt><dx>pneumonia</dx>"): (2 + 5) / 10,
        ("pneumonia", "<dx>pneumonia</dx>"): 5 / 10,
        ("asthma", "<dx>pneumonia</dx>"): 0.0,
        ("asthma", "<ask>rash?</ask><pt>no</pt><dx>asthma; bronchitis</"): (5 + 1) / 10,  # cut at 24 tokens
        ("asthma", "<ask>cough?</ask><pt>yes: dry cough</pt><dx>rash</dx>"): 0.0,  # "rash" was never denied
        ("asthma", "<ask>rash?</ask><pt>no</pt><dx>rash</dx>"): -3 / 10,  # asserts the denied rash
    }
    diagnoses = [trainer.task.train[i]["diagnosis"] for i in rollout.extras["prompt_id"].tolist()]
    checked = 0
    for dx, text, value in zip(diagnoses, gen.texts, rollout.rewards[:, rubric].tolist(), strict=True):
        assert -1.0 <= value <= 1.0
        if (dx, text) in by_hand:
            assert value == pytest.approx(by_hand[dx, text])
            checked += 1
    assert checked >= 2
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer.run()
    logged = [json.loads(line) for line in (tmp_path / "scripted" / "metrics.jsonl").read_text().splitlines()]
    assert all(r["tool_calls"] > 0 for r in logged[1:])
    assert any(r["reward/rubric_std"] > 0 for r in logged[1:]) and not any(r.get("skipped") for r in logged[1:])
    assert any(not torch.equal(before[k], v) for k, v in trainer.model.state_dict().items())


def test_the_task_with_llm_backed_patient_and_verifier(tmp_path):
    from grpolab.envs.consultation import LLMPatient
    from grpolab.models import TEXT_CHARS, random_tiny_model
    from grpolab.rewards.rubric import LLMVerifier

    model, tok = random_tiny_model(chars=TEXT_CHARS, max_positions=256)
    folder = tmp_path / "judge"
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    task = TASKS["consultation"](
        cases=write_cases(tmp_path), patient_model=str(folder), patient_max_new_tokens=6, verifier_model=str(folder)
    )
    assert isinstance(task.env.patient, LLMPatient) and task.env.patient.max_new_tokens == 6
    assert isinstance(task.reward_funcs[0].scorer.verifier, LLMVerifier)
    row = task.train[0]
    reply = task.env.step(task.env.reset(row), row, "<ask>cough?</ask>")
    assert reply.tool_call and reply.text.startswith("<pt>") and reply.text.endswith("</pt>")
    columns = {k: [v] for k, v in row.items() if k != "prompt"}
    values = [
        f(prompts=[row["prompt"]], completions=["<ask>cough?</ask>" + reply.text], **columns) for f in task.reward_funcs
    ]
    assert -1.0 <= values[0][0] <= 1.0 and values[1] == [0.0]  # no diagnosis: accuracy 0
