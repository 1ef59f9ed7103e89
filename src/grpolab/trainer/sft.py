# ruff: noqa: RUF009  (opt() returns a dataclasses.field carrying the option's help text, as in trainer/config.py)
"""Supervised fine-tuning (``grpolab sft``): the cold-start stage before RL, with TON's thought dropout.

    rows of a task -> completion = template(row) (thought dropped with probability p) -> next-token cross-entropy
    on the completion tokens and EOS (prompt masked) -> AdamW -> greedy held-out accuracy at the start and end
    -> <output_dir>/<name>/model (save_pretrained: ``grpolab train --model <that folder>`` loads it)

TON ("Think or Not? Selective Reasoning via Reinforcement Learning for Vision-Language Models", arXiv 2505.16854)
is two stages: SFT with thought dropout (``grpolab sft --task arith_think --thought-dropout 0.5``), then plain
GRPO on accuracy + format (``grpolab train --algo ton --task arith_think --model runs/<sft>/model
--max-new-tokens 24``). The SFT stage is task-agnostic: any task whose rows hold the completion's columns works
(``--task arith`` trains ``"{answer}"``; ``--completion "{answer}"`` with ``--task file`` SFTs on a data file).

A run writes ``<output_dir>/<name>/config.yaml``, ``metrics.jsonl`` (one record per step, written as it goes,
plus the evaluations), and ``model/`` at the end (written to a temporary folder, then renamed into place, so a
crash never leaves a half-written ``model/``). A run that raises after at least one step saves its weights to
``interrupted/`` the same way before the error propagates.
"""

from __future__ import annotations

import dataclasses
import math
import os
import shutil
import string
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
import yaml

from grpolab.data import TASKS, Task
from grpolab.data.sampler import UniformSampler
from grpolab.data.thought_dropout import thought_dropout
from grpolab.models.policy import load_policy
from grpolab.trainer.config import (
    CHOICES,
    DEFAULT_MAX_NEW_TOKENS,
    check_choices,
    check_ints,
    default_name,
    flag,
    load_options,
    opt,
    parse_value,
)
from grpolab.trainer.loop import NonFiniteLossError, append_metrics, evaluate, lr_factor, progress_bar


@dataclass
class SFTConfig:
    # ------------------------------------------------------------------ run
    name: str | None = opt(None, "run name; the run writes <output_dir>/<name>/ (default: sft-<task>-<time>)")
    output_dir: str = opt("runs", "folder that holds the run folders")
    seed: int = opt(0, "seed of every random choice (batch order, thought dropout, initialisation)")
    # ------------------------------------------------------------------ model and data
    model: str = opt("tiny-arith", "policy: a built-in name (tiny-arith, random-tiny) or a local Hugging Face folder")
    task: str = opt("arith_think", "task whose train rows are the SFT data and whose eval rows measure accuracy")
    task_args: dict = opt({}, "keyword arguments of the task, e.g. {train: data.jsonl} for task file")
    completion: str | None = opt(
        None,
        "completion template over the row's columns, e.g. '({thought}){answer}'; default: the task's "
        "info['sft_completion'] ('({thought}){answer}' for arith_think), else '{answer}'",
    )
    thought_dropout: float = opt(
        0.0, "TON thought dropout: probability of replacing the thought by an empty one (0 = off; TON 0.5)"
    )
    thought_column: str = opt("thought", "the column thought dropout empties")
    # ------------------------------------------------------------------ optimisation
    steps: int = opt(
        1000, "optimizer steps (one batch each); tiny-arith learns arith_think in 1,000 (about 3 CPU minutes)"
    )
    batch_size: int = opt(64, "rows per step (usually 16 to 256)")
    learning_rate: float = opt(1e-3, "AdamW peak learning rate (1e-5 for 1B+ models; 1e-4 to 1e-3 for tiny models)")
    weight_decay: float = opt(0.0, "AdamW weight decay (usually 0 to 0.1)")
    adam_betas: list = opt([0.9, 0.99], "AdamW betas")
    lr_schedule: str = opt("cosine", "learning-rate schedule after warm-up: constant, linear or cosine (to 0)")
    warmup_steps: int = opt(50, "linear warm-up steps")
    max_grad_norm: float = opt(1.0, "gradient clipping by global norm (0 = off; usually 0.5 to 1)")
    # ------------------------------------------------------------------ evaluation, logging, saving
    eval_every: int = opt(0, "greedy held-out evaluation every N steps (0 = only at the start and the end)")
    eval_prompts: int = opt(500, "held-out prompts per evaluation (the built-in arith tasks hold out 500)")
    max_new_tokens: int | None = opt(
        None,
        "generation limit of the evaluation; must hold the longest training completion (default: the task's "
        "suggestion, task.info['max_new_tokens'], e.g. 24 for arith_think, which needs 22 with EOS; else 8)",
    )
    save_model: bool = opt(True, "save the final model and tokenizer to <output_dir>/<name>/model")
    progress: bool = opt(True, "show a progress bar")


SFT_FIELDS = {f.name: f for f in dataclasses.fields(SFTConfig)}


def parse_sft_value(name: str, text: str) -> Any:
    """A command-line string as the SFT option's type (YAML syntax for lists and dicts)."""
    return parse_value(name, text, SFT_FIELDS, "sft")


def resolve_sft(file: str | Path | None = None, overrides: dict[str, Any] | None = None) -> SFTConfig:
    """Build the SFT config: defaults < YAML file < overrides; validate everything before any work starts."""
    config = SFTConfig(**load_options(file, overrides, SFT_FIELDS))
    if config.name is None:
        config.name = default_name("sft", config.task)
    validate_sft(config)
    return config


def validate_sft(config: SFTConfig) -> None:
    """Raise ValueError naming the option for anything that would fail later."""
    check_ints(config, ("steps", "batch_size", "eval_prompts"))
    check_ints(config, ("max_new_tokens",), optional=True)  # None: the task's suggestion (SFTTrainer)
    check_ints(config, ("eval_every", "warmup_steps"), minimum=0)
    for name in ("learning_rate", "weight_decay", "max_grad_norm", "thought_dropout"):
        value = getattr(config, name)
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
            raise ValueError(f"{flag(name)} must be a number, got {value!r}")
    if config.learning_rate <= 0:
        raise ValueError(f"--learning-rate must be > 0, got {config.learning_rate}")
    if config.weight_decay < 0 or config.max_grad_norm < 0:
        raise ValueError("--weight-decay and --max-grad-norm must be >= 0")
    if not 0.0 <= config.thought_dropout <= 1.0:
        raise ValueError(f"--thought-dropout is a probability in [0, 1] (TON: 0.5), got {config.thought_dropout}")
    check_choices(config, {"lr_schedule": CHOICES["lr_schedule"]})
    betas = config.adam_betas
    if not (isinstance(betas, (list, tuple)) and len(betas) == 2 and all(0 <= float(b) < 1 for b in betas)):
        raise ValueError(f"--adam-betas must be two numbers in [0, 1), e.g. [0.9, 0.99], got {betas!r}")
    if not isinstance(config.task_args, dict):
        raise ValueError(f"--task-args must be a mapping, e.g. {{n_eval: 500}}, got {config.task_args!r}")
    if config.completion is not None and not isinstance(config.completion, str):
        raise ValueError(f"--completion must be a template string such as '{{answer}}', got {config.completion!r}")
    for name in ("save_model", "progress"):
        if not isinstance(getattr(config, name), bool):
            raise ValueError(f"{flag(name)} must be true or false, got {getattr(config, name)!r}")
    if config.task not in TASKS:
        TASKS[config.task]  # raises UnknownNameError listing the known tasks


def to_dict(config: SFTConfig) -> dict[str, Any]:
    return dataclasses.asdict(config)


# ------------------------------------------------------------------------------------------------ data
def completion_template(config: SFTConfig, task: Task) -> str:
    """The template that turns a row into its target completion: ``--completion``, else the task's
    ``info["sft_completion"]``, else ``"{answer}"``. Checked against the first training row."""
    template = config.completion or task.info.get("sft_completion") or "{answer}"
    try:
        fields = {f for _, f, _, _ in string.Formatter().parse(template) if f is not None}
    except ValueError as e:
        raise ValueError(f"--completion {template!r} is not a format template: {e}") from None
    if not fields:
        raise ValueError(
            f"--completion {template!r} names no column; write e.g. '{{answer}}' or '({{thought}}){{answer}}'"
        )
    row = task.train[0]
    missing = sorted(f for f in fields if f not in row)
    if missing:
        raise ValueError(
            f"--completion {template!r} reads columns {missing} that task {task.name!r} rows lack "
            f"(columns: {sorted(row)})"
        )
    if config.thought_dropout > 0 and config.thought_column not in fields:
        raise ValueError(
            f"--thought-dropout {config.thought_dropout} empties column {config.thought_column!r}, which the "
            f"completion template {template!r} does not use; use a task with thoughts (arith_think) or set "
            "--thought-dropout 0"
        )
    return template


@dataclass
class SFTBatch:
    """Right-padded prompt + completion + EOS sequences; ``labels`` is -100 on the prompt and the padding."""

    input_ids: torch.Tensor  # [B, L] long
    attention_mask: torch.Tensor  # [B, L] long
    labels: torch.Tensor  # [B, L] long

    @property
    def num_tokens(self) -> int:
        """Tokens that carry loss (completion tokens and EOS)."""
        return int((self.labels != -100).sum())


def encode_pairs(
    tokenizer: Any, prompts: Sequence[Any], completions: Sequence[str]
) -> list[tuple[list[int], list[int]]]:
    """``(prompt ids, completion ids + [EOS])`` per pair. String prompts get the tokenizer's special tokens (BOS);
    chat prompts go through the chat template with the generation prompt, as the rollout engine encodes them."""
    if len(prompts) != len(completions):
        raise ValueError(f"{len(prompts)} prompts for {len(completions)} completions")
    texts = [
        tokenizer.apply_chat_template(p, tokenize=False, add_generation_prompt=True) if isinstance(p, list) else p
        for p in prompts
    ]
    chat = [isinstance(p, list) for p in prompts]
    prompt_ids = [
        tokenizer(text, add_special_tokens=not is_chat).input_ids for text, is_chat in zip(texts, chat, strict=True)
    ]
    completion_ids = tokenizer(list(completions), add_special_tokens=False).input_ids
    return [(p, [*c, tokenizer.eos_token_id]) for p, c in zip(prompt_ids, completion_ids, strict=True)]


def build_sft_batch(
    tokenizer: Any, prompts: Sequence[Any], completions: Sequence[str], *, max_length: int | None = None
) -> SFTBatch:
    """Tokenize prompt/completion pairs into a right-padded batch whose labels cover the completion and EOS only.

    Raises ValueError when a sequence is longer than ``max_length`` (the model's positions).

    >>> from grpolab.models import char_tokenizer
    >>> b = build_sft_batch(char_tokenizer(), ["1+2="], ["3"])
    >>> b.input_ids.tolist(), b.labels.tolist()
    ([[1, 5, 14, 6, 18, 7, 2]], [[-100, -100, -100, -100, -100, 7, 2]])
    """
    pairs = encode_pairs(tokenizer, prompts, completions)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    width = max(len(p) + len(c) for p, c in pairs)
    if max_length is not None and width > max_length:
        i = max(range(len(pairs)), key=lambda j: len(pairs[j][0]) + len(pairs[j][1]))
        raise ValueError(
            f"prompt {prompts[i]!r} + completion {completions[i]!r} is {width} tokens, more than the model's "
            f"{max_length} positions; shorten the completion template or use a model with more positions"
        )
    ids = torch.full((len(pairs), width), pad, dtype=torch.long)  # [B, L]
    mask = torch.zeros(len(pairs), width, dtype=torch.long)  # [B, L]
    labels = torch.full((len(pairs), width), -100, dtype=torch.long)  # [B, L]
    for i, (p, c) in enumerate(pairs):
        n = len(p) + len(c)
        ids[i, :n] = torch.tensor([*p, *c])
        mask[i, :n] = 1
        labels[i, len(p) : n] = torch.tensor(c)  # the loss reads the completion and EOS, never the prompt
    return SFTBatch(ids, mask, labels)


def sft_loss(model: Any, batch: SFTBatch) -> torch.Tensor:
    """Mean next-token cross-entropy over the batch's completion tokens (token mean: every labelled token of the
    batch weighs the same, so long completions weigh more than short ones, as in HF/TRL SFT). Taken in fp32."""
    device = next(model.parameters()).device
    logits = model(
        input_ids=batch.input_ids.to(device), attention_mask=batch.attention_mask.to(device)
    ).logits  # [B, L, V]
    logits = logits[:, :-1].float()  # [B, L-1, V]: position t predicts token t+1
    targets = batch.labels[:, 1:].to(device)  # [B, L-1]
    total = F.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-100, reduction="sum"
    )
    return total / max(1, batch.num_tokens)


# ------------------------------------------------------------------------------------------------ the trainer
class SFTTrainer:
    """Builds everything an SFT run needs from an ``SFTConfig``; ``run()`` trains, evaluates and saves."""

    def __init__(self, config: SFTConfig) -> None:
        validate_sft(config)
        self.config = config
        self.run_dir = Path(config.output_dir) / str(config.name)
        for done in ("model", "interrupted"):
            if (self.run_dir / done).exists():
                raise FileExistsError(
                    f"{self.run_dir / done} exists (an earlier SFT run); choose another --name or delete the folder"
                )
        torch.manual_seed(config.seed)
        self.task: Task = TASKS[config.task](**config.task_args)
        if config.max_new_tokens is None:  # the task's suggestion, as grpolab train takes it
            config.max_new_tokens = int(self.task.info.get("max_new_tokens", DEFAULT_MAX_NEW_TOKENS))
        self.template = completion_template(config, self.task)
        self.model, self.tokenizer = load_policy(config.model, seed=config.seed)
        limit = getattr(self.model.config, "max_position_embeddings", None)
        self.max_length = int(limit) if limit else None
        self._check_rows()
        self.optimizer = torch.optim.AdamW(
            [p for p in self.model.parameters() if p.requires_grad],
            lr=config.learning_rate,
            betas=(float(config.adam_betas[0]), float(config.adam_betas[1])),
            weight_decay=config.weight_decay,
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lr_factor(self.config.lr_schedule, self.config.warmup_steps, self.config.steps)
        )
        self.sampler = UniformSampler(len(self.task.train), seed=config.seed)  # seeded epochs over the training rows
        self.step = 0
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.metrics_path.write_text("")
        (self.run_dir / "config.yaml").write_text(yaml.safe_dump(to_dict(config), sort_keys=False))

    def _check_rows(self, sample: int = 256) -> None:
        """The training completions (with their full thoughts) fit the model's positions and the evaluation's
        generation limit, and use only characters the tokenizer knows. Checked on the ``sample`` longest rows (by
        characters) and the first ``sample`` rows, and on every distinct character: tokenizing every row of a large
        task would take seconds."""
        rows = list(self.task.train)
        completions = [self.template.format_map(r) for r in rows]
        chars = sorted(
            {ch for c in completions for ch in c}
            | {ch for r in rows if isinstance(r["prompt"], str) for ch in r["prompt"]}
        )
        unk = self.tokenizer.unk_token_id
        if unk is not None:
            unknown = [ch for ch in chars if unk in self.tokenizer(ch, add_special_tokens=False).input_ids]
            if unknown:
                raise ValueError(
                    f"the tokenizer of {self.config.model!r} does not know the characters {unknown} of task "
                    f"{self.task.name!r} (completion template {self.template!r}); it would train on "
                    f"{self.tokenizer.unk_token}"
                )
        size = [len(str(r["prompt"])) + len(c) for r, c in zip(rows, completions, strict=True)]
        longest = sorted(range(len(rows)), key=size.__getitem__)[-sample:]
        index = sorted(set(longest) | set(range(min(sample, len(rows)))))
        pairs = encode_pairs(self.tokenizer, [rows[i]["prompt"] for i in index], [completions[i] for i in index])
        for i, (p, c) in zip(index, pairs, strict=True):
            if self.max_length is not None and len(p) + len(c) > self.max_length:
                raise ValueError(
                    f"row {i}: prompt {rows[i]['prompt']!r} + completion {completions[i]!r} is {len(p) + len(c)} "
                    f"tokens, more than the model's {self.max_length} positions"
                )
        most = max(len(c) for _, c in pairs)
        if self.task.eval and most > self.config.max_new_tokens:
            raise ValueError(
                f"the longest training completion is {most} tokens with EOS but --max-new-tokens is "
                f"{self.config.max_new_tokens}: evaluation would cut completions off; set --max-new-tokens {most} "
                "or more"
            )

    def next_rows(self) -> list[dict[str, Any]]:
        """The next ``batch_size`` training rows: seeded epochs, each row once per epoch."""
        return [self.task.train[i] for i in self.sampler.next(self.config.batch_size)]

    def batch(self, rows: list[dict[str, Any]]) -> tuple[SFTBatch, dict[str, float]]:
        """The SFT batch of ``rows`` (thought dropout applied with this step's seed) and its data metrics."""
        config = self.config
        metrics: dict[str, float] = {}
        if config.thought_dropout > 0:
            # a fresh draw every step (seed, step), so a problem met twice may come with and without its thought
            rows = thought_dropout(
                rows, config.thought_dropout, config.seed * 1_000_003 + self.step, column=config.thought_column
            )
        if rows and config.thought_column in rows[0]:
            metrics["empty_thought_frac"] = sum(r[config.thought_column] == "" for r in rows) / len(rows)
        completions = [self.template.format_map(r) for r in rows]
        batch = build_sft_batch(self.tokenizer, [r["prompt"] for r in rows], completions, max_length=self.max_length)
        return batch, metrics

    def train_step(self) -> dict[str, float]:
        """One optimizer step on the next batch; returns its metrics."""
        t0 = time.perf_counter()
        batch, metrics = self.batch(self.next_rows())
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        loss = sft_loss(self.model, batch)
        if not torch.isfinite(loss):
            raise NonFiniteLossError(
                f"step {self.step + 1}: the SFT loss is {loss.item()}; lower --learning-rate or check the data"
            )
        loss.backward()
        params = [p for group in self.optimizer.param_groups for p in group["params"]]
        grad_norm = torch.nn.utils.clip_grad_norm_(params, self.config.max_grad_norm or math.inf).item()
        self.optimizer.step()
        self.scheduler.step()
        self.step += 1
        metrics.update(
            step=self.step,
            loss=loss.item(),
            grad_norm=grad_norm,
            lr=self.scheduler.get_last_lr()[0],
            tokens=float(batch.num_tokens),
            step_time=time.perf_counter() - t0,
        )
        return metrics

    def evaluate(self) -> dict[str, float]:
        """Greedy held-out scores (``loop.evaluate`` at temperature 0): ``eval/pass@1`` is what ``grpolab eval
        --temperature 0`` reports; ``eval/reward/<name>`` each reward function's mean (for ``arith_think``,
        ``eval/reward/empty_thought`` is the fraction of greedy answers that skip thinking); a reward function that
        raises is skipped (``eval/reward_errors``), never stopping the run. Empty when the task has no eval rows."""
        return evaluate(
            self.model,
            self.tokenizer,
            self.task,
            num_prompts=self.config.eval_prompts,
            temperature=0.0,
            max_new_tokens=self.config.max_new_tokens,
            seed=self.config.seed,
            on_error="skip",
        )

    def run(self) -> dict[str, float]:
        """Train for ``steps`` steps; returns the last record (with the final evaluation)."""
        config = self.config
        last = append_metrics(self.metrics_path, {"step": 0, **self.evaluate()})
        progress = progress_bar(config.progress, config.steps, str(config.name))
        try:
            while self.step < config.steps:
                metrics = self.train_step()
                if self.step == config.steps or (config.eval_every and self.step % config.eval_every == 0):
                    metrics.update(self.evaluate())
                last = append_metrics(self.metrics_path, metrics)
                progress.update(1)
                postfix = f"loss={metrics['loss']:.3g}"
                if "eval/pass@1" in metrics:
                    postfix += f" eval={metrics['eval/pass@1']:.3f}"
                progress.set_postfix_str(postfix, refresh=False)
        except BaseException:
            if self.step > 0:  # keep the weights of the last completed step
                save_model(self.model, self.tokenizer, self.run_dir / "interrupted")
            raise
        finally:
            progress.close()
        if config.save_model:
            save_model(self.model, self.tokenizer, self.model_dir)
        return last

    @property
    def model_dir(self) -> Path:
        """Where the final model is saved (``grpolab train --model <this>``)."""
        return self.run_dir / "model"

    @property
    def metrics_path(self) -> Path:
        """The run's ``metrics.jsonl``: one record per step and evaluation, appended as the run goes."""
        return self.run_dir / "metrics.jsonl"


def save_model(model: Any, tokenizer: Any, folder: Path) -> Path:
    """``save_pretrained`` of model and tokenizer into ``folder``, atomically: written to a temporary sibling
    folder, then renamed into place, so ``folder`` is either absent, the previous one, or complete."""
    folder = Path(folder)
    tmp = folder.with_name(f".{folder.name}.tmp-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    if folder.exists():  # replace an older copy: move it aside first (a directory cannot be renamed onto another)
        old = folder.with_name(f".{folder.name}.old-{os.getpid()}")
        os.replace(folder, old)
        os.replace(tmp, folder)
        shutil.rmtree(old)
    else:
        os.replace(tmp, folder)
    return folder


def sft(config: SFTConfig) -> dict[str, float]:
    """Run supervised fine-tuning with ``config``; returns the last metrics. See :class:`SFTTrainer`."""
    return SFTTrainer(config).run()


__all__ = [
    "SFTBatch",
    "SFTConfig",
    "SFTTrainer",
    "build_sft_batch",
    "resolve_sft",
    "save_model",
    "sft",
    "sft_loss",
]
