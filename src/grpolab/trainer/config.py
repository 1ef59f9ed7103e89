"""The training configuration: one flat dataclass, every option documented with its default and usual range.

Precedence, lowest first: the defaults here (sized for the built-in CPU run) < the preset's method settings
(``Preset.trainer``) < a YAML file (``--config``) < ``--key value`` on the command line. ``resolve`` applies
that order and validates every value before any work starts.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from grpolab.algorithms import PRESETS, Part, Preset
from grpolab.core.aggregation import AGGREGATIONS
from grpolab.data.sampler import SAMPLERS

#: The generation limit when neither the run nor the task sets one (the built-in arith answers take <= 4 tokens).
DEFAULT_MAX_NEW_TOKENS = 8


def opt(default: Any, help: str, **kw: Any) -> Any:
    """A dataclass field with its help text (shown by ``grpolab train --help`` and in docs)."""
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata={"help": help, **kw})
    return field(default=default, metadata={"help": help, **kw})


@dataclass
class TrainConfig:
    # ------------------------------------------------------------------ run
    name: str | None = opt(None, "run name; the run writes <output_dir>/<name>/ (default: <algo>-<task>-<time>)")
    output_dir: str = opt("runs", "folder that holds the run folders")
    seed: int = opt(0, "seed of every random choice (prompts, sampling, initialisation); runs are deterministic on CPU")
    # ------------------------------------------------------------------ model
    model: str = opt(
        "tiny-arith",
        "policy: a built-in name (tiny-arith, tiny-tools, tiny-clinical, random-tiny, random-tiny-text) or a local "
        "Hugging Face folder",
    )
    dtype: str = opt("fp32", "parameter dtype: fp32 or bf16 (log-prob statistics are always taken in fp32)")
    lora: bool = opt(False, "train LoRA adapters (peft) instead of all weights; the reference is the base model")
    lora_r: int = opt(16, "LoRA rank (usually 8 to 64)")
    lora_alpha: int = opt(32, "LoRA scale alpha (usually 2x the rank)")
    lora_dropout: float = opt(0.0, "LoRA dropout (usually 0 to 0.1)")
    # ------------------------------------------------------------------ task
    task: str = opt("arith", "task name (arith, file, ... see grpolab.data.TASKS)")
    task_args: dict = opt({}, "keyword arguments of the task, e.g. {train: data.jsonl, reward: numeric} for task file")
    # ------------------------------------------------------------------ algorithm
    algo: str = opt("grpo", "preset naming the parts below (grpolab algorithms lists them)")
    advantage: str | None = opt(None, "override the preset's advantage estimator (e.g. rloo)")
    advantage_args: dict = opt({}, "hyper-parameters of the advantage, merged over the preset's")
    loss: str | None = opt(None, "override the preset's policy loss (e.g. clip_higher)")
    loss_args: dict = opt({}, "hyper-parameters of the policy loss, merged over the preset's (e.g. {epsilon: 0.2})")
    aggregation: str | None = opt(None, "override the preset's loss aggregation (token_mean, seq_mean_token_mean ...)")
    regularizers: list | None = opt(
        None, "replace the preset's regularizers: [kl] or [{name: kl, params: {coef: 0.01}}]"
    )
    shaping: list | None = opt(None, "replace the preset's reward shaping steps (same format)")
    filters: list | None = opt(None, "replace the preset's sample filters (same format)")
    selectors: list | None = opt(None, "replace the preset's token/sample selectors (same format)")
    rollout: list | None = opt(None, "replace the preset's rollout strategies (same format), e.g. [greedy_baseline]")
    # ------------------------------------------------------------------ rollout
    sampler: str = opt(
        "uniform",
        "prompt sampler: uniform (each row once per epoch), dynamic (DAPO: regenerate until num_prompts groups are "
        "neither all correct nor all wrong), vas, vade, cures, hard_mining, variance_select (see docs/methods.md)",
    )
    sampler_args: dict = opt({}, "hyper-parameters of the sampler, e.g. {max_rounds: 10, oversample: 3} for dynamic")
    num_prompts: int = opt(16, "prompts per step P (usually 8 to 512)")
    num_generations: int = opt(8, "completions per prompt G (GRPO paper 64; usually 4 to 16)")
    max_new_tokens: int | None = opt(
        None,
        "generation limit per completion; also Dr. GRPO's constant and DAPO's L_max (default: the task's suggestion, "
        "task.info['max_new_tokens'], e.g. 24 for arith_think; else 8)",
    )
    temperature: float = opt(1.0, "sampling temperature of rollouts (usually 0.6 to 1.2); log-probs use the same")
    top_p: float = opt(1.0, "nucleus sampling threshold (1 = off; usually 0.9 to 1)")
    top_k: int = opt(0, "top-k sampling (0 = off)")
    stop: list = opt([], "stop strings that end a completion besides EOS [the task's suggestion, else none]")
    # ------------------------------------------------------------------ optimisation
    steps: int = opt(400, "training steps (one rollout batch each)")
    max_generated_tokens: int = opt(
        0,
        "stop early once the run has sampled this many completion tokens (every sampler round and rollout "
        "strategy counted; evaluation not): a fixed generation budget for comparing samplers (0 = off)",
    )
    learning_rate: float = opt(
        2e-4, "AdamW learning rate (1e-6 for 7B models in the papers; 1e-4 to 5e-4 for tiny models)"
    )
    weight_decay: float = opt(0.0, "AdamW weight decay (usually 0 to 0.1)")
    adam_betas: list = opt([0.9, 0.99], "AdamW betas")
    lr_schedule: str = opt("constant", "learning-rate schedule after warm-up: constant, linear or cosine")
    warmup_steps: int = opt(0, "linear warm-up optimizer steps (DAPO: 20)")
    max_grad_norm: float = opt(1.0, "gradient clipping by global norm (0 = off; usually 0.5 to 1)")
    num_iterations: int = opt(1, "passes over each rollout batch (GRPO's μ, PPO epochs; usually 1 to 4)")
    minibatches: int = opt(1, "optimizer steps per pass: the batch is split into this many mini-batches")
    grad_accum: int = opt(1, "micro-batches per mini-batch, accumulated into one optimizer step")
    minibatch_groups: bool = opt(
        False,
        "split batches by prompt groups, so each mini- and micro-batch holds whole groups (group-level losses "
        "such as DisCO, TRPA, P3O need them); default False splits by completions, as TRL and verl do",
    )
    vf_coef: float = opt(0.5, "value-loss weight for methods with a critic (CleanRL 0.5; usually 0.25 to 1)")
    logprob_chunk: int = opt(1024, "tokens per chunk when taking log-softmax and entropy (bounds memory)")
    share_prompt_forward: bool = opt(
        True, "run each prompt once for its G completions, in generation and in training forwards (exact)"
    )
    # ------------------------------------------------------------------ rewards
    on_reward_error: str = opt("raise", "a reward function that raises: raise (stop the run) or skip (mask the sample)")
    # ------------------------------------------------------------------ evaluation, logging, checkpoints
    eval_every: int = opt(50, "evaluate on held-out prompts every N steps (0 = only at the start and the end)")
    eval_prompts: int = opt(500, "held-out prompts per evaluation (the built-in arith task holds out 500)")
    eval_samples: int = opt(1, "samples per held-out prompt (pass@1 is their mean accuracy; pass@k for k <= this)")
    eval_temperature: float = opt(1.0, "sampling temperature of evaluation (0 = greedy)")
    eval_top_p: float = opt(
        1.0, "nucleus threshold of evaluation (default 1: every preset is evaluated with the same plain sampling)"
    )
    eval_top_k: int = opt(0, "top-k truncation of evaluation (0 = off)")
    save_every: int = opt(50, "checkpoint every N steps (0 = only at the end)")
    keep_checkpoints: int = opt(2, "checkpoints kept on disk (older ones are deleted)")
    progress: bool = opt(True, "show a progress bar")

    # ------------------------------------------------------------------ derived
    def preset(self) -> Preset:
        """The preset with this config's part overrides applied (validated by Preset itself)."""
        base = PRESETS[self.algo]
        changes: dict[str, Any] = {"name": f"{base.name}+overrides"}
        for slot, name, args in (
            ("advantage", self.advantage, self.advantage_args),
            ("loss", self.loss, self.loss_args),
        ):
            if name is not None or args:
                current: Part = getattr(base, slot)
                same = name is None or name == current.name  # same part: the given args merge over the preset's
                changes[slot] = Part(current.name if same else name, {**(current.params if same else {}), **args})
        if self.aggregation is not None:
            changes["aggregation"] = self.aggregation
        for slot in ("regularizers", "shaping", "filters", "selectors", "rollout"):
            value = getattr(self, slot)
            if value is not None:
                changes[slot] = tuple(_part(item, slot) for item in value)
        if len(changes) == 1:
            return base
        return dataclasses.replace(base, **changes)


def _part(item: Any, slot: str) -> Part:
    if isinstance(item, str):
        return Part(item)
    if isinstance(item, dict) and set(item) <= {"name", "params"} and "name" in item:
        return Part(item["name"], item.get("params") or {})
    raise ValueError(f"{slot}: each entry is a name or {{name: ..., params: {{...}}}}, got {item!r}")


FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}
CHOICES = {
    "dtype": ("fp32", "bf16"),
    "lr_schedule": ("constant", "linear", "cosine"),
    "on_reward_error": ("raise", "skip"),
}


def flag(name: str) -> str:
    """The command-line flag of an option: ``max_new_tokens`` -> ``--max-new-tokens``."""
    return "--" + name.replace("_", "-")


def parse_value(name: str, text: str, fields: dict[str, Any] | None = None, command: str = "train") -> Any:
    """A command-line string as the field's type (YAML syntax for lists and dicts); ``fields`` are the options of
    ``grpolab <command>`` (default: ``train``'s)."""
    fields = FIELDS if fields is None else fields
    if name not in fields:
        raise ValueError(f"unknown option {flag(name)}; see grpolab {command} --help")
    kind = str(fields[name].type)
    try:
        if kind in ("int", "float"):  # YAML would read "5e-4" as a string: numbers are parsed as numbers
            return int(text) if kind == "int" else float(text)
    except ValueError:
        raise ValueError(f"{flag(name)} takes a number, got {text!r}") from None
    value = yaml.safe_load(text) if text != "" else ""
    if kind.startswith("str") and not isinstance(value, str) and value is not None:
        value = text  # "--name 123" stays a string
    return value


def load_options(file: str | Path | None, overrides: dict[str, Any] | None, fields: dict[str, Any]) -> dict[str, Any]:
    """The options a run sets: the YAML file's mapping (if any), then ``overrides`` over it; raises ValueError for a
    file that is not a mapping or an option not in ``fields`` (the config dataclass's fields by name)."""
    values: dict[str, Any] = {}
    if file is not None:
        loaded = yaml.safe_load(Path(file).read_text()) or {}
        if not isinstance(loaded, dict):
            raise ValueError(f"{file}: a config file holds a mapping of option: value")
        values.update(loaded)
    values.update(overrides or {})
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ValueError(f"unknown options {unknown}; known: {sorted(fields)}")
    return values


def default_name(prefix: str, task: str) -> str:
    """The run name when ``--name`` is not given: ``<prefix>-<task>-<date>-<time>``."""
    return f"{prefix}-{task}-{time.strftime('%Y%m%d-%H%M%S')}"


def resolve(file: str | Path | None = None, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Build the config: defaults < preset method settings < YAML file < overrides; validate everything."""
    values = load_options(file, overrides, FIELDS)
    algo = values.get("algo", TrainConfig.algo)
    preset = PRESETS[algo]  # unknown presets raise here, listing the known ones
    merged = {**copy.deepcopy(dict(preset.trainer)), **values}  # a copy: the config never aliases the preset
    config = TrainConfig(**{k: v for k, v in merged.items() if k in FIELDS})
    if config.name is None:
        config.name = default_name(config.algo, config.task)
    validate(config)
    return config


def check_choices(config: Any, choices: dict[str, Sequence[Any]]) -> None:
    """Raise ValueError unless each option named in ``choices`` holds one of its allowed values."""
    for name, allowed in choices.items():
        if getattr(config, name) not in allowed:
            raise ValueError(f"{flag(name)} must be one of {list(allowed)}, got {getattr(config, name)!r}")


def check_ints(config: Any, names: Iterable[str], *, minimum: int = 1, optional: bool = False) -> None:
    """Raise ValueError unless each named option is an integer >= ``minimum`` (a bool is not an integer here);
    with ``optional`` None is allowed too (an option whose default is decided later)."""
    what = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
    for name in names:
        value = getattr(config, name)
        if optional and value is None:
            continue
        if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
            raise ValueError(f"{flag(name)} must be {what}, got {value!r}")


def validate(config: TrainConfig) -> None:
    """Raise ValueError naming the option for anything that would fail later; builds the preset too."""
    check_choices(config, CHOICES)
    positive = [
        "num_prompts",
        "num_generations",
        "steps",
        "num_iterations",
        "minibatches",
        "grad_accum",
        "eval_prompts",
        "eval_samples",
        "logprob_chunk",
        "keep_checkpoints",
        "lora_r",
    ]
    check_ints(config, positive)
    check_ints(config, ["max_new_tokens"], optional=True)  # None: the task's suggestion (Trainer)
    check_ints(config, ["eval_every", "save_every", "warmup_steps", "max_generated_tokens"], minimum=0)
    for name in ("learning_rate", "temperature"):
        if not isinstance(getattr(config, name), (int, float)) or getattr(config, name) <= 0:
            raise ValueError(f"{flag(name)} must be > 0, got {getattr(config, name)!r}")
    for name in ("top_p", "eval_top_p"):
        if not 0 < getattr(config, name) <= 1:
            raise ValueError(f"{flag(name)} must be in (0, 1], got {getattr(config, name)}")
    nonnegative = (config.eval_temperature, config.max_grad_norm, config.weight_decay, config.top_k, config.eval_top_k)
    if min(nonnegative) < 0:
        raise ValueError("--eval-temperature, --max-grad-norm, --weight-decay, --top-k and --eval-top-k must be >= 0")
    batch = config.num_prompts if config.minibatch_groups else config.num_prompts * config.num_generations
    if batch < config.minibatches * config.grad_accum:
        raise ValueError(
            f"a batch of {batch} {'prompt groups' if config.minibatch_groups else 'completions'} cannot be split "
            f"into {config.minibatches} mini-batches x "
            f"{config.grad_accum} micro-batches"
        )
    if config.aggregation is not None and config.aggregation not in AGGREGATIONS:
        AGGREGATIONS[config.aggregation]
    config.preset()  # unknown parts or hyper-parameters raise here
    try:
        SAMPLERS[config.sampler](1, seed=0, **config.sampler_args)  # unknown samplers or arguments raise here
    except TypeError as e:
        raise ValueError(f"--sampler-args: {e}") from None


def to_dict(config: TrainConfig) -> dict[str, Any]:
    return dataclasses.asdict(config)
