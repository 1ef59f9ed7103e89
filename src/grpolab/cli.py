"""The ``grpolab`` command line: train, sft, eval, algorithms."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _algorithms(args: argparse.Namespace) -> int:
    from grpolab.algorithms import catalogue

    if args.markdown:
        text = catalogue.methods_markdown()
    elif args.parts:
        text = catalogue.parts_table()
    else:
        text = catalogue.presets_table()
    sys.stdout.write(text)
    return 0


def _train(args: argparse.Namespace) -> int:
    from transformers.utils import logging as hf_logging

    from grpolab.rewards.scoring import RewardError
    from grpolab.trainer.config import FIELDS, parse_value, resolve
    from grpolab.trainer.loop import NonFiniteLossError, Trainer

    hf_logging.disable_progress_bar()  # grpolab shows one progress bar; hide the loading / saving bars
    try:
        overrides = {name: parse_value(name, getattr(args, name)) for name in FIELDS if hasattr(args, name)}
    except ValueError as e:
        print(f"grpolab train: {e}", file=sys.stderr)
        return 2
    config_file = args.config
    if args.resume:
        run_dir = Path(args.resume)
        if not (run_dir / "config.yaml").is_file():
            raise SystemExit(f"--resume: {run_dir} is not a run folder (no config.yaml)")
        config_file = run_dir / "config.yaml"
        overrides.update(name=run_dir.name, output_dir=str(run_dir.parent))
    try:  # everything that can be checked fails here, before any work starts
        config = resolve(config_file, overrides)
        trainer = Trainer(config, resume=bool(args.resume))
    except (ValueError, KeyError, FileNotFoundError, FileExistsError, ImportError) as e:
        print(f"grpolab train: {e}", file=sys.stderr)
        return 2
    try:
        metrics = trainer.run()
    except (RewardError, NonFiniteLossError) as e:
        print(f"grpolab train: stopped at step {trainer.step + 1}: {e}", file=sys.stderr)
        return 1
    summary = {k: v for k, v in metrics.items() if k.startswith("eval/") or k in ("step", "reward", "accuracy")}
    print(f"run folder: {Path(config.output_dir) / str(config.name)}")
    print(json.dumps(summary))
    return 0


def _sft(args: argparse.Namespace) -> int:
    from transformers.utils import logging as hf_logging

    from grpolab.trainer.loop import NonFiniteLossError
    from grpolab.trainer.sft import SFT_FIELDS, SFTTrainer, parse_sft_value, resolve_sft

    hf_logging.disable_progress_bar()  # grpolab shows one progress bar; hide the loading / saving bars
    try:  # everything that can be checked fails here, before any work starts
        overrides = {name: parse_sft_value(name, getattr(args, name)) for name in SFT_FIELDS if hasattr(args, name)}
        config = resolve_sft(args.config, overrides)
        trainer = SFTTrainer(config)
    except (ValueError, KeyError, FileNotFoundError, FileExistsError, ImportError) as e:
        print(f"grpolab sft: {e}", file=sys.stderr)
        return 2
    try:
        metrics = trainer.run()
    except NonFiniteLossError as e:
        print(f"grpolab sft: {e}", file=sys.stderr)
        return 1
    summary = {k: v for k, v in metrics.items() if k.startswith("eval/") or k in ("step", "loss")}
    print(f"run folder: {trainer.run_dir}")
    if config.save_model:
        print(f"model: {trainer.model_dir}  (grpolab train --model {trainer.model_dir} ...)")
    print(json.dumps(summary))
    return 0


def _eval(args: argparse.Namespace) -> int:
    import torch
    import yaml

    from grpolab.data import TASKS  # importing the package registers the built-in tasks
    from grpolab.models.policy import load_policy
    from grpolab.trainer.loop import evaluate

    torch.manual_seed(args.seed)
    model, tokenizer = load_policy(args.model, seed=args.seed)
    task = TASKS[args.task](**(yaml.safe_load(args.task_args) or {}))
    result = evaluate(
        model,
        tokenizer,
        task,
        num_prompts=args.prompts,
        samples=args.samples,
        temperature=args.temperature,
        max_new_tokens=args.max_new_tokens or int(task.info.get("max_new_tokens", 8)),
        stop=task.info.get("stop"),
        seed=args.seed,
    )
    print(json.dumps({"model": args.model, "task": args.task, **result}))
    return 0


def _add_field_options(parser: argparse.ArgumentParser, fields: dict, *, resume: bool = False) -> None:
    """``--config`` (and ``--resume`` with ``resume``), then one ``--<option> V`` per config field (``fields``:
    name -> dataclass field carrying its help text, as ``grpolab.trainer.config.opt`` makes them)."""
    from grpolab.trainer.config import flag

    parser.add_argument("--config", help="YAML file of options (overridden by the options given here)")
    if resume:
        parser.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its last checkpoint")
    group = parser.add_argument_group("options (YAML syntax for lists and mappings)")
    for name, f in fields.items():
        default = f.default_factory() if callable(f.default_factory) else f.default
        extra = {"nargs": "?", "const": "true"} if f.type in ("bool", bool) else {}
        text = f"{f.metadata['help']} [{default}]"
        group.add_argument(flag(name), dest=name, default=argparse.SUPPRESS, metavar="V", help=text, **extra)


def build_parser() -> argparse.ArgumentParser:
    from grpolab.trainer.config import FIELDS
    from grpolab.trainer.sft import SFT_FIELDS

    parser = argparse.ArgumentParser(prog="grpolab", description="GRPO-family RL post-training as composable parts.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = sub.add_parser(
        "train",
        help="train a policy (no options: the built-in model on arith with grpo)",
        description="Train a policy. With no options: the built-in tiny model on the arith task with preset grpo.",
    )
    _add_field_options(train, FIELDS, resume=True)
    train.set_defaults(run=_train)

    sft = sub.add_parser(
        "sft",
        help="supervised fine-tuning on a task's rows (TON's thought-dropout cold start: --thought-dropout 0.5)",
        description="Supervised fine-tuning: next-token cross-entropy on the completion tokens of a task's training "
        "rows, greedy held-out accuracy at the start and end, the model saved to <output_dir>/<name>/model for "
        "`grpolab train --model`. TON's first stage: grpolab sft --task arith_think --thought-dropout 0.5",
    )
    _add_field_options(sft, SFT_FIELDS)
    sft.set_defaults(run=_sft)

    ev = sub.add_parser("eval", help="pass@1 and pass@k of a model on a task's held-out prompts")
    ev.add_argument("--model", default="tiny-arith", help="built-in name or a local Hugging Face folder [tiny-arith]")
    ev.add_argument("--task", default="arith", help="task name [arith]")
    ev.add_argument("--task-args", default="{}", help="YAML mapping of task options [{}]")
    ev.add_argument("--prompts", type=int, default=500, help="held-out prompts [500]")
    ev.add_argument("--samples", type=int, default=8, help="samples per prompt; pass@k for k = samples [8]")
    ev.add_argument("--temperature", type=float, default=1.0, help="sampling temperature, 0 = greedy [1.0]")
    ev.add_argument("--max-new-tokens", type=int, default=None, help="generation limit [the task's suggestion, else 8]")
    ev.add_argument("--seed", type=int, default=0, help="seed [0]")
    ev.set_defaults(run=_eval)

    algorithms = sub.add_parser("algorithms", help="list presets with their slot parts and papers")
    view = algorithms.add_mutually_exclusive_group()
    view.add_argument("--parts", action="store_true", help="list every registered core part by slot instead")
    view.add_argument("--markdown", action="store_true", help="print docs/methods.md (presets and parts)")
    algorithms.set_defaults(run=_algorithms)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    raise SystemExit(main())
