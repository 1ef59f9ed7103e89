"""grpolab vs TRL's GRPOTrainer: median seconds per training step, side by side, on the same model and batch.

Run BY HAND (TRL is not a dependency of grpolab; it is installed in the dev venv)::

    cd <repository root>
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/vs_trl.py                      # both configs, 12 steps each
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/vs_trl.py --configs tiny --steps 20
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/vs_trl.py --beta 0              # no KL term, no reference model

What it measures. Both trainers live in ONE process on ONE thread (``torch.set_num_threads(1)``), and their steps
are interleaved: a TrainerCallback runs one grpolab step (``trainer.rollout_batch(); trainer.update(batch)``) at
the end of each TRL optimizer step, so machine noise (this is a shared 2-core box) hits both sides alike. Per
step it records

- TRL: the time from ``on_step_begin`` to ``on_step_end`` (generation, reward, reference/old log-probs, loss,
  backward, clipping, optimizer step: everything ``GRPOTrainer`` does for one step) and, for reference, the full
  cycle from the end of the previous grpolab step to ``on_step_end`` (adds the data loader and logging hooks);
- grpolab: ``rollout_batch()`` + ``update()`` (the whole step; ``Trainer.run`` adds only a JSON-line write).

The first ``--warmup`` steps of each side are dropped; the table shows the median over the next ``--steps``
steps, the ratio of medians grpolab / TRL, the median of the per-step paired ratios (robust to slow drifts of
machine load), completion tokens per second (each side's own completion tokens / its step time) and each
side's mean completion length (the two sides sample independently; the lengths show whether the comparison
is like for like).

Configurations (``--configs``):

- ``tiny``: the built-in pretrained ``tiny-arith`` model (Llama, hidden 128, 4 layers, char vocabulary) on the
  ``arith`` task with grpolab's own reward ``arith_exact_reward`` (TRL's reward-function convention, used
  unchanged by both); 16 prompts x 8 completions, 8 new tokens at most (grpolab's defaults). Completions
  end at EOS after ~3 tokens. If the built-in model is not there yet, ``--tiny-model PATH`` takes a folder
  (e.g. ``scripts/pretrain_tiny.py --out PATH``); without either, a random model of the same shape is used
  and the table says so.
- ``large``: a random Llama, hidden 256, 4 layers, 4 heads, MLP 512 (2.6 M parameters) over grpolab's char
  tokenizer, 4 prompts x 8 completions, 64 new tokens. Every completion runs to 64 tokens on both sides through
  the same transformers logits processors: ``min_new_tokens = 64`` masks EOS until then, and ``suppress_tokens``
  masks ``<pad>``, ``<bos>`` and ``<unk>`` (a random model samples them; grpolab masks a sampled ``<pad>`` out of a
  completion, TRL does not, so the token counts would differ). grpolab's ``model.generate`` call inherits both
  from the ``generation_config.json`` saved with the model; TRL gets them as ``GRPOConfig.generation_kwargs``
  (TRL builds its own generation config and ignores the model's). Log-probs for the loss come from the raw
  logits on both sides. The mean completion length of each side is printed to show it worked.

Each model is a ``save_pretrained`` folder (model + tokenizer; the built-in one, or a temporary folder for the
random model) and that PATH is given to both trainers. Matched settings (printed above the table): same β with
the k3 estimator (grpolab preset ``grpo`` = ``kl(coef=0.04, k3)``; TRL ``beta``), seq-mean-token-mean aggregation
(grpolab preset ``grpo``; TRL ``loss_type="grpo"``), PPO clip ε = 0.2, group-std-scaled advantages (both), one
update per rollout (``num_iterations=1``), one optimizer step per batch (TRL ``per_device_train_batch_size = P*G``,
``num_generations = G``, ``gradient_accumulation_steps = 1``), same ``max_new_tokens`` / ``max_completion_length``,
temperature 1, top_p 1, top_k 0, AdamW with the same learning rate, betas (0.9, 0.99), weight decay 0, constant
schedule, no warm-up, gradient clipping at 1.0, fp32, no gradient checkpointing (TRL 1.16 turns it on by default;
``--trl-gradient-checkpointing`` restores that), no evaluation, no saving, no logging to disk or trackers.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import logging
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch

from grpolab.data.arith import arith_exact_reward, arith_task
from grpolab.models import char_tokenizer, resolve_model_path, set_special_token_ids, tiny_llama_config


# ------------------------------------------------------------------------------------------------ configurations
@dataclass
class BenchConfig:
    """One benchmark configuration: model folder, batch shape and generation limit."""

    name: str
    model: str  # a folder written by save_pretrained
    label: str  # the model as shown in the table
    num_prompts: int
    num_generations: int
    max_new_tokens: int
    learning_rate: float = 2e-4
    generation_kwargs: dict[str, Any] | None = None  # forces full-length completions (see the module docstring)
    notes: list[str] = field(default_factory=list)

    @property
    def batch(self) -> int:
        return self.num_prompts * self.num_generations


def build_random_model(
    folder: Path, *, hidden: int, layers: int, heads: int = 4, seed: int = 0, min_new_tokens: int | None = None
) -> str:
    """A random Llama over grpolab's char tokenizer, saved (model + tokenizer) to ``folder``; returns the path.

    ``min_new_tokens``: written into the saved ``generation_config.json`` with ``suppress_tokens`` = the pad, bos
    and unk ids, so every ``model.generate`` call that does not override them masks EOS until that many tokens
    are generated and never samples those three.
    """
    from transformers import LlamaForCausalLM

    tokenizer = char_tokenizer(model_max_length=256)
    config = tiny_llama_config(tokenizer, hidden=hidden, layers=layers, heads=heads, max_positions=256)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    set_special_token_ids(model, tokenizer)
    if min_new_tokens is not None:
        for key, value in full_length_kwargs(tokenizer, min_new_tokens).items():
            setattr(model.generation_config, key, value)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


def full_length_kwargs(tokenizer: Any, min_new_tokens: int) -> dict[str, Any]:
    """Generation settings that make a random model's completions run to ``min_new_tokens`` real tokens."""
    special = [tokenizer.pad_token_id, tokenizer.bos_token_id, tokenizer.unk_token_id]
    return {"min_new_tokens": min_new_tokens, "suppress_tokens": special}


def make_configs(names: list[str], workdir: Path, *, tiny_model: str | None) -> list[BenchConfig]:
    """The requested configurations, building the models they need under ``workdir``."""
    configs = []
    for name in names:
        if name == "tiny":
            notes = []
            if tiny_model is not None:
                path, label = tiny_model, f"tiny-arith stand-in ({tiny_model})"
            else:
                try:
                    path, label = resolve_model_path("tiny-arith"), "tiny-arith (built-in, pretrained)"
                except ValueError:
                    path = build_random_model(workdir / "tiny_random", hidden=128, layers=4)
                    label = "RANDOM Llama h128 x4 (tiny-arith shape; built-in model missing)"
                    notes.append("tiny-arith is not built yet: random weights, completions rarely stop early")
            configs.append(BenchConfig("tiny", path, label, 16, 8, 8, notes=notes))
        elif name == "large":
            path = build_random_model(workdir / "large_random", hidden=256, layers=4, min_new_tokens=64)
            label = "random Llama h256 x4 (2.6 M params), min_new_tokens 64 + pad/bos/unk suppressed on both sides"
            kwargs = full_length_kwargs(char_tokenizer(), 64)
            configs.append(BenchConfig("large", path, label, 4, 8, 64, generation_kwargs=kwargs))
        else:
            raise SystemExit(f"unknown config {name!r}; known: tiny, large")
    return configs


# ------------------------------------------------------------------------------------------------ the trainers
def grpolab_trainer(cfg: BenchConfig, *, beta: float, output_dir: str, seed: int = 0) -> Any:
    """A grpolab Trainer with the benchmark's matched settings (preset ``grpo``; β via its kl regularizer)."""
    from grpolab.trainer.config import resolve
    from grpolab.trainer.loop import Trainer

    overrides: dict[str, Any] = {
        "model": cfg.model,
        "task": "arith",
        "algo": "grpo",  # ppo_clip ε=0.2, seq_mean_token_mean, group-scaled advantages, kl(k3, 0.04)
        "num_prompts": cfg.num_prompts,
        "num_generations": cfg.num_generations,
        "max_new_tokens": cfg.max_new_tokens,
        "learning_rate": cfg.learning_rate,
        "adam_betas": [0.9, 0.99],
        "weight_decay": 0.0,
        "max_grad_norm": 1.0,
        "lr_schedule": "constant",
        "temperature": 1.0,
        "top_p": 1.0,
        "top_k": 0,
        "num_iterations": 1,
        "steps": 10**6,
        "eval_every": 0,
        "save_every": 0,
        "progress": False,
        "output_dir": output_dir,
        "name": f"bench-{cfg.name}",
        "seed": seed,
    }
    overrides["regularizers"] = [{"name": "kl", "params": {"coef": beta, "estimator": "k3"}}] if beta else []
    return Trainer(resolve(None, overrides))


def grpolab_step(trainer: Any) -> tuple[float, int, float]:
    """One timed grpolab step: (seconds, completion tokens, mean completion length)."""
    t0 = time.perf_counter()
    batch = trainer.rollout_batch()
    trainer.update(batch)
    elapsed = time.perf_counter() - t0
    return elapsed, batch.gen.num_tokens, batch.metrics["response_length"]


def trl_trainer(cfg: BenchConfig, *, beta: float, steps: int, output_dir: str, callbacks: list, gc: bool, seed: int):
    """TRL's GRPOTrainer with the benchmark's matched settings."""
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    rows = list(arith_task().train)
    args = GRPOConfig(
        output_dir=output_dir,
        use_cpu=True,
        bf16=False,
        fp16=False,
        seed=seed,
        max_steps=steps,
        per_device_train_batch_size=cfg.batch,
        gradient_accumulation_steps=1,
        num_generations=cfg.num_generations,
        max_completion_length=cfg.max_new_tokens,
        temperature=1.0,
        top_p=1.0,
        top_k=0,
        beta=beta,
        loss_type="grpo",
        scale_rewards="group",
        epsilon=0.2,
        num_iterations=1,
        learning_rate=cfg.learning_rate,
        lr_scheduler_type="constant",
        warmup_steps=0,
        adam_beta1=0.9,
        adam_beta2=0.99,
        weight_decay=0.0,
        max_grad_norm=1.0,
        gradient_checkpointing=gc,
        report_to="none",
        logging_strategy="no",
        save_strategy="no",
        eval_strategy="no",
        disable_tqdm=True,
        dataloader_num_workers=0,
        model_init_kwargs={"dtype": torch.float32},
        generation_kwargs=cfg.generation_kwargs,
    )
    return GRPOTrainer(
        model=cfg.model,
        reward_funcs=[arith_exact_reward],
        args=args,
        train_dataset=Dataset.from_list(rows),
        callbacks=callbacks,
    )


# ------------------------------------------------------------------------------------------------ measurement
@dataclass
class SideBySide:
    trl_window: list[float] = field(default_factory=list)  # on_step_begin -> on_step_end
    trl_cycle: list[float] = field(default_factory=list)  # end of previous grpolab step -> on_step_end
    trl_len: list[float] = field(default_factory=list)
    trl_tokens: list[float] = field(default_factory=list)
    grpolab: list[float] = field(default_factory=list)
    grpolab_len: list[float] = field(default_factory=list)
    grpolab_tokens: list[float] = field(default_factory=list)


def run_side_by_side(cfg: BenchConfig, *, steps: int, warmup: int, beta: float, gc: bool, seed: int) -> SideBySide:
    """Interleave TRL and grpolab steps (warm-up + measured) in this process; returns the measured steps."""
    from transformers import TrainerCallback

    res = SideBySide()
    total = warmup + steps
    with tempfile.TemporaryDirectory(prefix="grpolab-vs-trl-") as tmp:
        glab = grpolab_trainer(cfg, beta=beta, output_dir=tmp, seed=seed)
        trl_holder: dict[str, Any] = {}

        class Interleave(TrainerCallback):
            def __init__(self) -> None:
                self.t_begin = self.t_resume = None
                self.done = 0

            def on_step_begin(self, args, state, control, **kw):
                self.t_begin = time.perf_counter()

            def on_step_end(self, args, state, control, **kw):
                t_end = time.perf_counter()
                measured = self.done >= warmup
                if measured:
                    metrics = trl_holder["trainer"]._metrics["train"]
                    mean_len = metrics["completions/mean_length"][-1]
                    res.trl_window.append(t_end - self.t_begin)
                    res.trl_cycle.append(t_end - (self.t_resume or self.t_begin))
                    res.trl_len.append(mean_len)
                    res.trl_tokens.append(mean_len * cfg.batch)
                seconds, tokens, mean_len = grpolab_step(glab)
                if measured:
                    res.grpolab.append(seconds)
                    res.grpolab_tokens.append(tokens)
                    res.grpolab_len.append(mean_len)
                self.done += 1
                print(
                    f"  [{cfg.name}] step {self.done}/{total}: TRL {t_end - self.t_begin:.3f}s  grpolab {seconds:.3f}s"
                    + ("" if measured else "  (warm-up)"),
                    file=sys.stderr,
                    flush=True,
                )
                self.t_resume = time.perf_counter()

        trainer = trl_trainer(
            cfg, beta=beta, steps=total, output_dir=f"{tmp}/trl", callbacks=[Interleave()], gc=gc, seed=seed
        )
        trl_holder["trainer"] = trainer
        trainer.train()
    return res


def med(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def iqr(xs: list[float]) -> str:
    if len(xs) < 4:
        return "-"
    q = statistics.quantiles(xs, n=4)
    return f"{q[0]:.3f}–{q[2]:.3f}"


def settings_header(args: argparse.Namespace, configs: list[BenchConfig]) -> str:
    import transformers
    import trl

    lines = [
        f"# grpolab vs TRL GRPOTrainer ({datetime.date.today().isoformat()}, {platform.machine()}, "
        f"{os.cpu_count()} CPU cores, torch {torch.__version__}, transformers {transformers.__version__}, "
        f"trl {trl.__version__}, {torch.get_num_threads()} torch thread, one process, steps interleaved)",
        "",
        f"Settings, identical on both sides: β = {args.beta} (k3 estimator; "
        f"{'reference model loaded' if args.beta else 'no reference model'}), loss aggregation seq-mean-token-mean "
        "(grpolab preset grpo / TRL loss_type='grpo'), PPO clip ε = 0.2, advantages (r − mean_group) / std_group, "
        "num_iterations = 1, one optimizer step per batch (TRL per_device_train_batch_size = P·G, grad accum 1), "
        "temperature 1.0, top_p 1.0, top_k 0, AdamW betas (0.9, 0.99), weight decay 0, constant LR, no warm-up, "
        f"grad clip 1.0, fp32, TRL gradient checkpointing {'ON' if args.trl_gradient_checkpointing else 'off'}, "
        "no eval / saving / logging. "
        f"{args.warmup} warm-up steps excluded, then {args.steps} measured steps per side.",
        "",
    ]
    for c in configs:
        lines.append(
            f"- `{c.name}`: {c.label}; P = {c.num_prompts} prompts × G = {c.num_generations} = {c.batch} "
            f"completions, max_new_tokens = {c.max_new_tokens}, lr = {c.learning_rate:g}; task arith, reward "
            "arith_exact_reward" + ("".join(f"; NOTE: {n}" for n in c.notes))
        )
    return "\n".join(lines)


def table(results: list[tuple[BenchConfig, SideBySide]], targets: dict[str, float]) -> str:
    head = (
        "| config | grpolab s/step (IQR) | TRL s/step (IQR) | ratio grpolab/TRL | paired ratio | target | met? "
        "| grpolab tok/s | TRL tok/s | mean len grpolab / TRL | TRL cycle s/step |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|"
    )
    rows = [head]
    for cfg, r in results:
        g, t = med(r.grpolab), med(r.trl_window)
        ratio = g / t
        paired = med([a / b for a, b in zip(r.grpolab, r.trl_window, strict=True)])
        target = targets.get(cfg.name)
        met = "-" if target is None else ("yes" if ratio <= target else "NO")
        g_tps = med([n / s for n, s in zip(r.grpolab_tokens, r.grpolab, strict=True)])
        t_tps = med([n / s for n, s in zip(r.trl_tokens, r.trl_window, strict=True)])
        rows.append(
            f"| {cfg.name} | {g:.3f} ({iqr(r.grpolab)}) | {t:.3f} ({iqr(r.trl_window)}) | {ratio:.2f} | "
            f"{paired:.2f} | ≤ {target} | {met} | {g_tps:.0f} | {t_tps:.0f} | "
            f"{statistics.fmean(r.grpolab_len):.1f} / {statistics.fmean(r.trl_len):.1f} | {med(r.trl_cycle):.3f} |"
        )
    return "\n".join(rows)


TARGETS = {"tiny": 0.5, "large": 0.8}


def quiet_single_thread() -> None:
    """One torch thread (no oversubscription on 2 cores) and no library warnings or progress bars."""
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=12, help="measured steps per side (default 12; at least 10)")
    p.add_argument("--warmup", type=int, default=2, help="warm-up steps per side, excluded (default 2)")
    p.add_argument("--configs", default="tiny,large", help="comma-separated: tiny, large (default both)")
    p.add_argument("--beta", type=float, default=0.04, help="KL coefficient on both sides (default 0.04; 0 = no KL)")
    p.add_argument("--tiny-model", default=None, help="folder to use instead of the built-in tiny-arith")
    p.add_argument("--trl-gradient-checkpointing", action="store_true", help="TRL 1.16's default (off here)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    quiet_single_thread()

    with tempfile.TemporaryDirectory(prefix="grpolab-bench-models-") as workdir:
        configs = make_configs(args.configs.split(","), Path(workdir), tiny_model=args.tiny_model)
        results = []
        for cfg in configs:
            with contextlib.redirect_stdout(sys.stderr):  # TRL's own prints stay off the table
                res = run_side_by_side(
                    cfg,
                    steps=args.steps,
                    warmup=args.warmup,
                    beta=args.beta,
                    gc=args.trl_gradient_checkpointing,
                    seed=args.seed,
                )
            results.append((cfg, res))
        print(settings_header(args, configs))
        print()
        print(table(results, TARGETS))
        print()
        print(
            "s/step: median over measured steps (IQR = 25th–75th percentile). ratio = median grpolab / median TRL; "
            "paired ratio = median of per-step ratios (steps are interleaved). TRL s/step = on_step_begin → "
            "on_step_end; TRL cycle adds data loading and logging hooks. tok/s = completion tokens (EOS included) "
            "per second of step time. Targets: ratio ≤ 0.5 (tiny), ≤ 0.8 (large)."
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
