"""Tasks ``countdown`` and ``reasoning_gym``: procedurally generated problems from the reasoning-gym package.

reasoning-gym (0.1.25, Apache-2.0; ``pip install 'grpolab[data]'``) generates problems with
``reasoning_gym.create_dataset(name, size=N, seed=S, **config)``; item ``i`` is drawn from ``random.Random(S + i)``, so
two datasets whose seeds differ by less than their size share items. Both tasks therefore build ONE dataset of
``eval_size + train_size`` items and split it by index: items ``0 .. eval_size-1`` are the eval split (the same for
any ``train_size``), the next ``train_size`` items the training split.

``countdown`` (TinyZero's task; reasoning-gym's generator: 4-6 numbers in 1..100, a target in 100..999 by default):

- rows: ``prompt``, ``question`` (reasoning-gym's text, with its format instructions), ``answer`` (one solution
  expression), ``target`` (int), ``numbers`` (list of ints), ``metadata`` (reasoning-gym's);
- reward: the binary ``countdown`` verifier (``grpolab.rewards.countdown``: every number exactly once, only
  ``+ - * /`` and parentheses, evaluated exactly without ``eval``) — also the accuracy. ``shaped=True`` uses
  reasoning-gym's own shaped scorer instead (0.01 empty / unparsable, 0.05 wrong, 1.0 right; logged as
  ``countdown_shaped``), which parses with sympy's ``parse_expr`` (an ``eval``): only answers made of digits,
  ``+ - * /``, parentheses and whitespace reach it, any other answer is scored as an empty one (0.01);
- rows are generated LAZILY (``LazyRows``, on first access, then cached): reasoning-gym's countdown generator takes
  ~25 ms per problem, so the default 10,000 training problems cost nothing up front. Two items share a problem only by
  chance (the same numbers and target), which is negligible at the default sizes, so no de-duplication is done.

``reasoning_gym`` (any reasoning-gym dataset, ``dataset=<name>``, scored by the dataset's own ``score_answer``):

- rows: ``prompt``, ``question``, ``answer`` (the oracle answer), ``metadata``;
- reward: ``score_answer(extracted answer, entry)`` (logged under the dataset's name; many scorers give partial
  credit); accuracy: that score is 1.0 (``<dataset>_solved``);
- rows are generated eagerly; training items whose question text equals an eval item's are dropped (small problem
  spaces such as 1-digit 2-term arithmetic repeat problems), counted in ``info["dropped_duplicates"]``;
- scorers that call ``eval`` or sympy's ``parse_expr`` on the model's answer run that in the trainer's process
  (``EVAL_SCORERS``): those datasets need ``trust_scorer=True`` (for countdown use the ``countdown`` task).

Curricula: reasoning-gym defines difficulty levels for most datasets (``reasoning_gym.factory.has_curriculum``);
``curriculum=<int>`` sets every attribute to that level (reasoning-gym's ``set_global_level``; an attribute with
fewer levels stays at its highest), ``curriculum={attribute: level}`` sets single attributes. ``curriculum_mode``
turns levels into the config's ranges (reasoning-gym's ``RangeAttributeMode``): "inclusive" (default, reasoning-gym's
default) spans levels 0..L (basic_arithmetic level 1: 2-3 terms of 1-2 digits), "upper_bound" only level L's segment
(3 terms of 2 digits). ``info["config"]`` records the resulting settings. This fixes the difficulty of a run; a
schedule that raises the level during training needs a sampler that can see the rows' levels (not offered here).

The answer is found in a completion by ``extract`` (``grpolab.rewards.countdown.EXTRACT_MODES``; default "auto": the
last ``<answer>...</answer>`` content, else the last non-empty line). Prompts: ``template`` with ``{question}``
replaced (defaults ``COUNTDOWN_TEMPLATE`` / ``REASONING_GYM_TEMPLATE``: the question, then "write only the final
answer inside <answer> </answer> tags"); ``chat`` / ``system`` as in ``grpolab.data.math_tasks``.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable, Sequence
from typing import Any

from grpolab.core.checks import check_choice, is_int
from grpolab.data.math_tasks import check_prompt_options, make_prompt
from grpolab.data.task import TASKS, Task
from grpolab.rewards.countdown import ARITHMETIC_CHARS, EXTRACT_MODES, countdown, extract_answer
from grpolab.rewards.verifiers import completion_text

#: What to run when reasoning-gym is missing.
REASONING_GYM_INSTALL = "pip install 'grpolab[data]' (or pip install reasoning-gym)"
#: Datasets (reasoning-gym 0.1.25) whose ``score_answer`` calls ``eval`` or sympy's ``parse_expr`` on the model's
#: answer, in the trainer's process: the ``reasoning_gym`` task refuses them unless ``trust_scorer=True``.
EVAL_SCORERS = frozenset(
    {
        "binary_matrix",
        "countdown",
        "intermediate_integration",
        "n_queens",
        "polynomial_multiplication",
        "puzzle24",
        "simple_integration",
        "spiral_matrix",
        "string_insertion",
    }
)
#: ``curriculum_mode`` values: how a level becomes a config range (reasoning-gym's ``RangeAttributeMode``).
CURRICULUM_MODES = ("inclusive", "upper_bound")

#: The default countdown prompt; ``{question}`` is replaced by reasoning-gym's question.
COUNTDOWN_TEMPLATE = (
    "{question}\nWrite only the final expression inside <answer> </answer> tags, "
    "for example <answer>(1 + 2) * 3</answer>.\n"
)
#: The default prompt of the generic ``reasoning_gym`` task.
REASONING_GYM_TEMPLATE = "{question}\nWrite only the final answer inside <answer> </answer> tags.\n"
#: Suggested generation limits (``Task.info["max_new_tokens"]``): room for a short chain of thought and the answer.
COUNTDOWN_MAX_NEW_TOKENS, REASONING_GYM_MAX_NEW_TOKENS = 512, 256


def _reasoning_gym(task: str) -> Any:
    """The ``reasoning_gym`` module, imported lazily (an optional extra); ``ImportError`` naming the extra."""
    try:
        return importlib.import_module("reasoning_gym")
    except ImportError as e:
        raise ImportError(
            f"task {task!r} generates its problems with reasoning-gym, which is not installed: {REASONING_GYM_INSTALL}"
        ) from e


class LazyRows(Sequence):
    """Rows made on first access by ``make_row(i)`` and cached: ``len``, indexing and slicing, as ``Task`` and the
    trainer use them (a ``list(...)`` of it makes every row).

    >>> rows = LazyRows(lambda i: {"prompt": str(i * i)}, 4)
    >>> len(rows), rows[3], rows[1:3]
    (4, {'prompt': '9'}, [{'prompt': '1'}, {'prompt': '4'}])
    """

    def __init__(self, make_row: Callable[[int], dict[str, Any]], length: int) -> None:
        self._make_row = make_row
        self._length = length
        self._cache: dict[int, dict[str, Any]] = {}

    def __len__(self) -> int:
        return self._length

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return [self[i] for i in range(self._length)[index]]
        if not is_int(index):
            raise TypeError(f"row indices must be integers or slices, not {type(index).__name__}")
        if index < 0:
            index += self._length
        if not 0 <= index < self._length:
            raise IndexError(f"row {index} out of range (there are {self._length})")
        if index not in self._cache:
            self._cache[index] = self._make_row(index)
        return self._cache[index]


class ReasoningGymReward:
    """A reasoning-gym dataset's own ``score_answer`` as a TRL-convention reward function.

    Each completion's answer (``extract_answer(text, extract=...)``) is scored against the entry rebuilt from the
    row's ``question``, ``answer`` and ``metadata`` columns; ``binary=True`` gives 1.0 when that score is 1.0 (within
    1e-9), else 0.0. With ``arithmetic_only`` an answer holding anything but digits, ``+ - * /``, parentheses and
    whitespace is passed as None (an empty answer), so it never reaches an ``eval``-based parser. The scorer is the
    ``score_answer`` of ``create_dataset(dataset, **config)``, built on first use and not pickled.
    """

    def __init__(
        self, dataset: str, config: dict[str, Any], *, extract: str, binary: bool, name: str, arithmetic_only: bool
    ) -> None:
        self.__name__ = self.__qualname__ = name
        self.dataset, self.config = dataset, dict(config)
        self.extract, self.binary, self.arithmetic_only = extract, binary, arithmetic_only
        self._score: Callable[[str | None, dict], float] | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_score": None}

    def __call__(self, prompts: Sequence[Any] | None = None, completions: Sequence[Any] = (), **columns: Any):
        missing = [c for c in ("question", "answer", "metadata") if c not in columns]
        if missing:
            raise ValueError(
                f"reward {self.__name__!r} rebuilds reasoning-gym entries from the columns question, answer and "
                f"metadata; missing {missing} (columns: {sorted(columns)})"
            )
        if self._score is None:
            self._score = _reasoning_gym(self.dataset).create_dataset(self.dataset, **self.config).score_answer
        out = []
        for c, question, answer, metadata in zip(
            completions, columns["question"], columns["answer"], columns["metadata"], strict=True
        ):
            given = extract_answer(completion_text(c), extract=self.extract)
            if self.arithmetic_only and given is not None and not ARITHMETIC_CHARS.fullmatch(given):
                given = None  # reasoning-gym's parse_expr evals: only plain arithmetic may reach it
            score = float(self._score(given, {"question": question, "answer": answer, "metadata": metadata}))
            out.append((1.0 if score >= 1.0 - 1e-9 else 0.0) if self.binary else score)
        return out

    def __repr__(self) -> str:
        return f"ReasoningGymReward({self.dataset!r}, extract={self.extract!r}, binary={self.binary!r})"


def _config_class(dataset: str, task: str) -> Any:
    factory = importlib.import_module("reasoning_gym.factory")
    if dataset not in factory.DATASETS:
        raise ValueError(
            f"task {task!r}: reasoning-gym has no dataset {dataset!r}; known: {', '.join(sorted(factory.DATASETS))}"
        )
    return factory.DATASETS[dataset][1]


def curriculum_settings(dataset: str, curriculum: Any, *, mode: str = "inclusive", task: str = "reasoning_gym") -> dict:
    """The config fields reasoning-gym's curriculum of ``dataset`` sets at ``curriculum`` (module docstring).

    ``curriculum``: an int (every attribute at that level, clamped to each attribute's highest) or a dict
    ``{attribute: level}`` (unset attributes stay at level 0). ``mode``: "inclusive" or "upper_bound".
    Returns e.g. ``{"min_terms": 2, "max_terms": 3, "min_digits": 1, "max_digits": 2}`` for basic_arithmetic at level 1
    (its levels: num_terms 2, 3, 4, 5, 6; num_digits 1, 2, 3, 4).
    """
    _reasoning_gym(task)
    factory = importlib.import_module("reasoning_gym.factory")
    base = importlib.import_module("reasoning_gym.coaching.base_curriculum")
    check_choice(f"task {task!r}", "curriculum_mode", mode, CURRICULUM_MODES)
    _config_class(dataset, task)
    if not factory.has_curriculum(dataset):
        raise ValueError(f"task {task!r}: reasoning-gym defines no curriculum for {dataset!r}; leave curriculum unset")
    cur = factory.create_curriculum(dataset)
    attrs = cur.attributes
    levels = "; ".join(f"{n}: levels 0..{len(a.levels) - 1} = {list(a.levels)}" for n, a in attrs.items())
    top = max(len(a.levels) for a in attrs.values()) - 1
    if is_int(curriculum):
        if not 0 <= curriculum <= top:
            raise ValueError(f"task {task!r}: curriculum level must be in 0..{top} for {dataset} ({levels})")
        cur.set_global_level(curriculum)
    elif isinstance(curriculum, dict):
        for name, level in curriculum.items():
            if name not in attrs or not is_int(level) or not 0 <= level < len(attrs[name].levels):
                raise ValueError(
                    f"task {task!r}: curriculum {{{name!r}: {level!r}}} is not a level of {dataset} ({levels})"
                )
            cur.set_attr_level(name, level)
    else:
        raise ValueError(
            f"task {task!r}: curriculum must be a level (int) or {{attribute: level}}, got {curriculum!r} ({levels})"
        )
    config = cur.generate_configuration(
        defaults={}, context=base.DefaultCurriculumContext(mode=base.RangeAttributeMode(mode))
    )
    fields = []
    for a in attrs.values():
        fields += [a.lower_field_name, a.upper_field_name] if hasattr(a, "lower_field_name") else [a.field_name]
    return {f: getattr(config, f) for f in fields}


def dataset_config(
    dataset: str,
    *,
    size: int,
    seed: int,
    options: dict[str, Any],
    curriculum: Any = None,
    curriculum_mode: str = "inclusive",
    task: str = "reasoning_gym",
) -> dict[str, Any]:
    """The keyword arguments of ``create_dataset(dataset, ...)``: ``size``, ``seed``, the curriculum's settings and the
    user's ``options`` (config fields of the dataset). An unknown option, or one the curriculum also sets, raises
    ``ValueError`` listing the dataset's config fields."""
    fields = [f.name for f in dataclasses.fields(_config_class(dataset, task)) if f.name not in ("size", "seed")]
    unknown = sorted(set(options) - set(fields))
    if unknown:
        raise ValueError(f"task {task!r}: {dataset} has no config option {unknown}; its options are {fields}")
    settings = (
        curriculum_settings(dataset, curriculum, mode=curriculum_mode, task=task) if curriculum is not None else {}
    )
    both = sorted(set(settings) & set(options))
    if both:
        raise ValueError(f"task {task!r}: {both} set both by the curriculum and as options; give one or the other")
    return {**settings, **options, "size": size, "seed": seed}


def _create(rg: Any, dataset: str, config: dict[str, Any], task: str) -> Any:
    try:
        return rg.create_dataset(dataset, **config)
    except (AssertionError, TypeError, ValueError) as e:  # a config's validate() asserts
        raise ValueError(f"task {task!r}: reasoning-gym rejected the {dataset} config {config}: {e}") from e


def _check_sizes(task: str, **sizes: Any) -> None:
    for name, value in sizes.items():
        if not (is_int(value) and value >= 1):
            raise ValueError(f"task {task!r}: {name} must be an integer >= 1, got {value!r}")


# ------------------------------------------------------------------------------------------------ countdown
@TASKS.register("countdown")
def countdown_task(
    *,
    train_size: int = 10000,
    eval_size: int = 500,
    seed: int = 0,
    shaped: bool = False,
    use_all: bool = True,
    extract: str = "auto",
    template: str = COUNTDOWN_TEMPLATE,
    chat: bool = False,
    system: str | None = None,
    curriculum: int | dict[str, int] | None = None,
    curriculum_mode: str = "inclusive",
    **options: Any,
) -> Task:
    """Countdown from reasoning-gym with a binary verifier (module docstring).

    Args:
        train_size: training problems (default 10,000; made lazily, ~25 ms each on first use).
        eval_size: eval problems (default 500; items 0..eval_size-1 of the seeded stream).
        seed: the dataset seed (default 0).
        shaped: reward with reasoning-gym's shaped scorer (0.01 / 0.05 / 1.0) instead of the binary verifier (default
            False); the accuracy stays binary.
        use_all: the binary verifier's rule: every number exactly once (default True, as the question states) or at
            most once (False).
        extract: where the answer is in a completion (``EXTRACT_MODES``; default "auto").
        template, chat, system: the prompt (default ``COUNTDOWN_TEMPLATE``, plain text).
        curriculum, curriculum_mode: a reasoning-gym difficulty level (attributes numbers: 3, 6, 9, 12, 15; target:
            100, 500, 1000, 5000, 10000; value: 1, 100, 200, 300), see the module docstring.
        options: CountdownConfig fields, e.g. ``min_numbers=3, max_numbers=4, max_target=100`` (TinyZero-like).

    Needs ``pip install 'grpolab[data]'`` (reasoning-gym).
    """
    rg = _reasoning_gym("countdown")
    check_prompt_options("countdown", template, chat, system)
    _check_sizes("countdown", train_size=train_size, eval_size=eval_size)
    if not isinstance(shaped, bool):
        raise ValueError(f"task 'countdown': shaped must be True or False, got {shaped!r}")
    binary = countdown(use_all=use_all, extract=extract)  # validates use_all and extract
    config = dataset_config(
        "countdown",
        size=eval_size + train_size,
        seed=seed,
        options=options,
        curriculum=curriculum,
        curriculum_mode=curriculum_mode,
        task="countdown",
    )
    data = _create(rg, "countdown", config, "countdown")

    def row(index: int) -> dict[str, Any]:
        item = data[index]
        return {
            "prompt": make_prompt(item["question"], template=template, chat=chat, system=system),
            "question": item["question"],
            "answer": item["answer"],
            "target": item["metadata"]["target"],
            "numbers": list(item["metadata"]["numbers"]),
            "metadata": item["metadata"],
        }

    reward = binary
    if shaped:
        reward = ReasoningGymReward(
            "countdown", config, extract=extract, binary=False, name="countdown_shaped", arithmetic_only=True
        )
    return Task(
        name="countdown",
        train=LazyRows(lambda i: row(eval_size + i), train_size),
        eval=LazyRows(row, eval_size),
        reward_funcs=[reward],
        accuracy=binary,
        info={
            "max_new_tokens": COUNTDOWN_MAX_NEW_TOKENS,
            "source": "reasoning-gym countdown (Apache-2.0): create_dataset('countdown', size=eval+train, seed=seed)",
            "config": {k: v for k, v in config.items() if k not in ("size", "seed")},
            "train_size": train_size,
            "eval_size": eval_size,
            "seed": seed,
            "shaped": shaped,
            "use_all": use_all,
            "extract": extract,
            "chat": chat,
        },
    )


# ------------------------------------------------------------------------------------------------ generic
@TASKS.register("reasoning_gym")
def reasoning_gym_task(
    *,
    dataset: str | None = None,
    size: int = 1000,
    eval_size: int = 200,
    seed: int = 0,
    extract: str = "auto",
    template: str = REASONING_GYM_TEMPLATE,
    chat: bool = False,
    system: str | None = None,
    curriculum: int | dict[str, int] | None = None,
    curriculum_mode: str = "inclusive",
    trust_scorer: bool = False,
    **options: Any,
) -> Task:
    """Any reasoning-gym dataset, scored by its own ``score_answer`` (module docstring).

    Args:
        dataset: the reasoning-gym dataset name (required), e.g. "basic_arithmetic", "chain_sum", "gsm_symbolic".
        size: training problems (default 1,000), made eagerly; duplicates of eval problems are dropped.
        eval_size: eval problems (default 200).
        seed: the dataset seed (default 0).
        extract: where the answer is in a completion (``EXTRACT_MODES``; default "auto").
        template, chat, system: the prompt (default ``REASONING_GYM_TEMPLATE``, plain text).
        curriculum, curriculum_mode: a difficulty level of the dataset's reasoning-gym curriculum (module docstring),
            e.g. ``curriculum=2`` or ``{num_terms: 1, num_digits: 0}`` for basic_arithmetic.
        trust_scorer: allow datasets whose scorer runs ``eval`` / sympy's ``parse_expr`` on the model's answer
            (``EVAL_SCORERS``; default False: they are refused).
        options: fields of the dataset's config, e.g. ``operators: ["+", "-"]`` for basic_arithmetic.

    ``grpolab train --task reasoning_gym --task-args "{dataset: basic_arithmetic, size: 1000}"``. Needs
    ``pip install 'grpolab[data]'`` (reasoning-gym).
    """
    rg = _reasoning_gym("reasoning_gym")
    if not isinstance(dataset, str) or not dataset:
        raise ValueError(
            "task 'reasoning_gym' needs dataset=<a reasoning-gym dataset name>, e.g. "
            '--task-args "{dataset: basic_arithmetic, size: 1000}"'
        )
    check_prompt_options("reasoning_gym", template, chat, system)
    check_choice("task 'reasoning_gym'", "extract", extract, EXTRACT_MODES)
    _check_sizes("reasoning_gym", size=size, eval_size=eval_size)
    _config_class(dataset, "reasoning_gym")
    if dataset in EVAL_SCORERS and trust_scorer is not True:
        hint = " (or use --task countdown: a verifier that never evals)" if dataset == "countdown" else ""
        raise ValueError(
            f"task 'reasoning_gym': the {dataset} scorer runs eval / sympy parse_expr on the model's answer in this "
            f"process; pass trust_scorer=True to accept that{hint}"
        )
    config = dataset_config(
        dataset,
        size=eval_size + size,
        seed=seed,
        options=options,
        curriculum=curriculum,
        curriculum_mode=curriculum_mode,
    )
    data = _create(rg, dataset, config, "reasoning_gym")

    def row(item: dict[str, Any]) -> dict[str, Any]:
        return {
            "prompt": make_prompt(item["question"], template=template, chat=chat, system=system),
            "question": item["question"],
            "answer": item["answer"],
            "metadata": item["metadata"],
        }

    held = [row(data[i]) for i in range(eval_size)]
    seen = {r["question"] for r in held}
    candidates = [row(data[i]) for i in range(eval_size, eval_size + size)]
    train = [r for r in candidates if r["question"] not in seen]
    if not train:
        raise ValueError(
            f"task 'reasoning_gym': every training problem of {dataset} also appears in the eval split; this "
            "configuration has too few distinct problems (raise the difficulty or lower eval_size)"
        )
    kw = {"extract": extract, "arithmetic_only": False}
    return Task(
        name="reasoning_gym",
        train=train,
        eval=held,
        reward_funcs=[ReasoningGymReward(dataset, config, binary=False, name=dataset, **kw)],
        accuracy=ReasoningGymReward(dataset, config, binary=True, name=f"{dataset}_solved", **kw),
        info={
            "max_new_tokens": REASONING_GYM_MAX_NEW_TOKENS,
            "source": f"reasoning-gym {dataset} (Apache-2.0): create_dataset({dataset!r}, size=eval+train, seed=seed)",
            "dataset": dataset,
            "config": {k: v for k, v in config.items() if k not in ("size", "seed")},
            "size": size,
            "eval_size": eval_size,
            "seed": seed,
            "dropped_duplicates": len(candidates) - len(train),
            "extract": extract,
            "chat": chat,
        },
    )


__all__ = [
    "COUNTDOWN_TEMPLATE",
    "EVAL_SCORERS",
    "REASONING_GYM_TEMPLATE",
    "LazyRows",
    "ReasoningGymReward",
    "countdown_task",
    "curriculum_settings",
    "dataset_config",
    "reasoning_gym_task",
]
